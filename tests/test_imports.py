"""No import cycles among the library's modules (passivepaxos/ and backends/).

The graph is built from the source with ``ast``: an import at module level and one inside a
function both count (either runs, sooner or later, and a cycle is a cycle of dependencies
whichever runs first); an import under ``if TYPE_CHECKING:`` does not (it never runs). An
edge goes to the module imported: ``from pkg import sub`` to ``pkg.sub`` when ``sub`` is a
module, else to ``pkg``. Importing a submodule also runs its package's ``__init__``; that
implicit edge is left out (a package re-exporting its submodules is no dependency of theirs).
``passivepaxos_backends`` is the installed name of ``backends/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("passivepaxos", "backends")
ALIASES = {"passivepaxos_backends": "backends"}

# strongly connected components that may stay for now, each with the reason
ALLOWED: dict[frozenset[str], str] = {}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of ``PACKAGES``."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _canonical(name: str) -> str:
    head, dot, rest = name.partition(".")
    return ALIASES.get(head, head) + dot + rest


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the library modules it imports at run time."""
    mods = modules(root)
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        out: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [_canonical(alias.name) for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")[: None if is_package else -1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = _canonical(node.module or "")
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in mods else source
                    for alias in node.names
                ]
            out.update(t for t in targets if t in mods)
        edges[name] = out - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _describe(component: frozenset[str], edges: dict[str, set[str]]) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(edges[m] & component))}" for m in sorted(component))


def test_no_import_cycles() -> None:
    edges = graph()
    bad = [c for c in cycles(edges) if c not in ALLOWED]
    assert not bad, "import cycles: " + " | ".join(_describe(c, edges) for c in bad)


def test_allowlist_has_no_stale_entry() -> None:
    current = set(cycles(graph()))
    stale = [", ".join(sorted(c)) for c in ALLOWED if c not in current]
    assert not stale, f"allowed cycles that are gone (or changed): remove them: {stale}"


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Function-level and relative imports make edges; TYPE_CHECKING ones do not."""
    pkg = tmp_path / "passivepaxos"
    (pkg / "sub").mkdir(parents=True)
    (tmp_path / "backends").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from passivepaxos import b\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from passivepaxos.a import f\n"
        "else:\n    import passivepaxos_backends.x\n"
    )
    (pkg / "sub" / "__init__.py").write_text("from .d import g\n")
    (pkg / "sub" / "d.py").write_text("from ..c import TYPE_CHECKING\n")
    (tmp_path / "backends" / "__init__.py").write_text("")
    (tmp_path / "backends" / "x.py").write_text("import passivepaxos.c\n")
    edges = graph(tmp_path)
    assert edges["passivepaxos.a"] == {"passivepaxos.b"}
    assert edges["passivepaxos.b"] == {"passivepaxos.a"}
    assert edges["passivepaxos.c"] == {"backends.x"}
    assert edges["passivepaxos.sub"] == {"passivepaxos.sub.d"}
    assert edges["passivepaxos.sub.d"] == {"passivepaxos.c"}
    assert sorted(map(sorted, cycles(edges))) == [
        ["backends.x", "passivepaxos.c"],
        ["passivepaxos.a", "passivepaxos.b"],
    ]
