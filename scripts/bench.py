"""Run ``passivepaxos bench`` from a checkout (the same code as the installed command).

The one command that regenerates docs/performance.md's tables and plots:

    .venv/bin/python scripts/bench.py --docs docs --out docs/bench.json

Every option of ``passivepaxos bench --help`` works here too.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passivepaxos.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
