"""Every ```python block of docs/*.md runs, unless it is marked as not runnable.

The convention: a block that is not meant to run (a fragment, signatures, code that needs
S3 credentials or a backend of your own) has an HTML comment on the line directly before
its opening fence, giving the reason::

    <!-- not-run: a fragment: log and batch come from elsewhere -->
    ```python
    futs = [log.append_async([event]) for event in batch]
    ```

The comment is invisible on the rendered site. Every other ```python block runs here, one
test per block (``docs/<page>.md:<line of the fence>``), as its own Python process in a
fresh temporary working directory (also its ``TMPDIR``, so ``tempfile.mkdtemp()`` stays
inside the test's directory), with a timeout; a block fails on a non-zero exit, and the
test shows its output. A block should check what it shows with ``assert``. Blocks of other
languages (``sh``, ``console``, ``mermaid``) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TIMEOUT = 120  # seconds, per block

NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: str  # e.g. "log.md"
    line: int  # 1-based line of the opening fence
    code: str
    not_run: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of one page (fences inside list items included)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, ticks = m["indent"], m["ticks"]
        language = (m["info"].split() or [""])[0].lstrip(".{").lower()
        close = re.compile(rf"^[ \t]*{re.escape(ticks[0])}{{{len(ticks)},}}\s*$")
        j = i + 1
        while j < len(lines) and close.match(lines[j]) is None:
            j += 1
        if language in ("python", "py", "python3"):
            marker = NOT_RUN.match(lines[i - 1]) if i > 0 else None
            body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
            found.append(
                Block(
                    page=path.name,
                    line=i + 1,
                    code=textwrap.dedent("\n".join(body)) + "\n",
                    not_run=marker["reason"] if marker else None,
                )
            )
        i = j + 1
    return found


ALL = [b for page in sorted(DOCS.glob("*.md")) for b in blocks(page)]


def test_blocks_found() -> None:
    """The extraction sees the examples (a regex gone wrong would run nothing)."""
    pages = {b.page for b in ALL if b.not_run is None}
    assert {"index.md", "log.md", "storage.md", "recipes.md"} <= pages, pages
    assert any(b.not_run for b in ALL)


def test_marker_only_before_a_python_fence() -> None:
    """A not-run marker that no ```python fence follows marks nothing: a typo or a moved
    block would silently turn a runnable example into an unchecked one, or the reverse."""
    stray = []
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if "not-run" in line:
                following = lines[n + 1] if n + 1 < len(lines) else ""
                m = FENCE.match(following)
                info = (m["info"].split() or [""])[0].lower() if m else ""
                if NOT_RUN.match(line) is None or info not in ("python", "py", "python3"):
                    stray.append(f"{page.name}:{n + 1}: {line.strip()}")
    assert not stray, "not-run markers not directly before a ```python fence:\n" + "\n".join(stray)


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_doc_example_runs(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"docs/{block.id}: marked not-run: {block.not_run}")
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    # the checkout's passivepaxos, as the tests import it
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=path)
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        out = [
            s.decode(errors="replace") if isinstance(s, bytes) else s or ""
            for s in (e.stdout, e.stderr)
        ]
        pytest.fail(f"docs/{block.id}: still running after {TIMEOUT} s\n{out[0]}\n{out[1]}")
    if proc.returncode != 0:
        pytest.fail(
            f"docs/{block.id} exited {proc.returncode}\n--- code ---\n{block.code}"
            f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
        )
