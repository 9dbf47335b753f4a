"""The log's components import one way (docs/architecture.md, "The log's components"):
each module of ``passivepaxos/log/`` imports only the components listed before it, and
nothing below the log imports the membership procedure (the log<->membership cycle is
gone). Checked on the source with ``ast``, so a new import that breaks the order fails
here, not as a cycle at import time."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "passivepaxos"

# bottom up: a component may import only those before it
ORDER = [
    "record",
    "tailcache",
    "context",
    "slots",
    "config",
    "tail",
    "compaction",
    "reader",
    "leasing",
    "writer",
    "resume",
    "batch",
    "forward",
    "verify",
    "facade",
]


def _imports(path: Path) -> set[str]:
    """Every ``passivepaxos...`` module ``path`` imports (function-level imports too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.split(".")[0] == "passivepaxos"}


def test_every_log_module_is_placed() -> None:
    found = {p.stem for p in (ROOT / "log").glob("*.py")} - {"__init__"}
    assert found == set(ORDER), "add the new module to ORDER and to docs/architecture.md"


def test_components_import_one_way() -> None:
    for i, name in enumerate(ORDER):
        allowed = {f"passivepaxos.log.{n}" for n in ORDER[:i]}
        for mod in _imports(ROOT / "log" / f"{name}.py"):
            if mod == "passivepaxos.log" or mod.startswith("passivepaxos.log."):
                assert mod in allowed, f"log/{name}.py imports {mod}, above it"


def test_below_the_log_never_imports_the_membership_procedure() -> None:
    below = [*(ROOT / "log").glob("*.py"), ROOT / "membership_data.py", ROOT / "manifest.py"]
    for path in below:
        assert "passivepaxos.membership" not in _imports(path), path
    assert "passivepaxos.log" not in _imports(ROOT / "membership_data.py")
