"""Regenerate the docs that are derived from code: docs/backends.md from the capability table.

Run: python scripts/gen_docs.py        (tests/test_docs.py fails while the file is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passivepaxos.capabilities import render_markdown  # noqa: E402

GENERATED = {ROOT / "docs" / "backends.md": render_markdown}


def main() -> int:
    for path, render in GENERATED.items():
        path.write_text(render(), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
