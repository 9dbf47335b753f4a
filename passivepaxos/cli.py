"""The ``passivepaxos`` command (contract: BRIEF section 5; docs/cli.md).

Exit codes: 0 success; 1 the operation failed (store error, conflict, damage found);
2 usage or configuration error (bad URL, unknown option, unsupported mode).
Errors are one line on stderr naming the URL/object at fault; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from passivepaxos.capabilities import BACKENDS, TABLE_COLUMNS, table_rows
from passivepaxos.errors import ConfigError, PassivePaxosError, UnsupportedError

__all__ = ["main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False, sort_keys=True), flush=True)


def _table(title: str, columns: Sequence[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def cmd_backends(args: argparse.Namespace) -> int:
    if args.probe:
        from passivepaxos.probe import probe
        from passivepaxos.store import open_store

        result = probe(open_store(args.probe))
        if args.json:
            _print_json(result.to_json())
        else:
            rows = [
                [cap, "yes" if ok else "no", result.detail.get(cap, "")]
                for cap, ok in (
                    ("create", result.create),
                    ("cas", result.cas),
                    ("delete_if_version", result.delete_if_version),
                )
            ]
            _table(
                f"probe of {result.url} ({result.backend})", ["capability", "works", "detail"], rows
            )
        return EXIT_OK
    if args.json:
        for caps in BACKENDS:
            _print_json(caps.to_json())
    else:
        _table("passivepaxos backends", TABLE_COLUMNS, table_rows())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passivepaxos",
        description="Consensus, a shared log, leases and locks on storage you already have.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("backends", help="print the backend capability table")
    p.add_argument("--probe", metavar="URL", help="test a live store for conditional writes")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_backends)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, UnsupportedError) as exc:
        return _fail(args, exc, EXIT_USAGE)
    except PassivePaxosError as exc:
        return _fail(args, exc, EXIT_FAIL)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


def _fail(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"passivepaxos: error: {message}", file=sys.stderr)
    return code
