"""Generated docs must match the code they are generated from."""

from __future__ import annotations

from pathlib import Path

from passivepaxos.capabilities import render_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_backends_doc_is_current() -> None:
    doc = (ROOT / "docs" / "backends.md").read_text(encoding="utf-8")
    assert doc == render_markdown(), "docs/backends.md is stale: run python scripts/gen_docs.py"
