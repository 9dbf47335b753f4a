"""What the ``passivepaxos`` commands print: JSON lines, rich tables, a log's status.

Shared by :mod:`passivepaxos.cli` and the command modules it registers
(:mod:`passivepaxos.demo`, :mod:`passivepaxos.bench.cli`); it lives apart from the CLI so
that those modules never import the CLI back (imports point one way: cli -> demo ->
terminal).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "lease_line", "print_json", "print_status", "table"]


def print_json(obj: dict[str, Any]) -> None:
    """One JSON object per line, always valid UTF-8: a str that cannot be UTF-8 (a lone
    surrogate from a non-UTF-8 argument that no caller turned into ``*_b64``) is escaped
    instead of breaking the encoding."""
    line = json.dumps(obj, ensure_ascii=False, sort_keys=True)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj, ensure_ascii=True, sort_keys=True)
    print(line, flush=True)


def console(**kwargs: Any) -> Console:
    """A rich ``Console`` whose broken pipe (``| head``) raises ``BrokenPipeError`` for
    :func:`main` to end quietly with exit 0 (rich's default exits 1)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(**kwargs)


def table(title: str, columns: Sequence[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)


def print_status(log_urls: str, *, as_json: bool = False) -> None:
    """The ``status`` command's output for the log at ``log_urls`` (one URL or several
    joined by ','): head slot, mode, stores, writer lease, latest snapshot."""
    from passivepaxos.lease import format_wall
    from passivepaxos.log import Log

    with Log.open(log_urls) as log:
        ws = log.writer_status()
        head = ws.head
        snaps = log.snapshot_slots()
        out: dict[str, Any] = {
            "log": log_urls,
            "mode": log.mode.value,
            "stores": [s.url for s in log.stores],
            "head": head if head >= 0 else None,
            "slots": head + 1,
            "writer": ws.holder,
            "epoch": ws.epoch or None,
            "lease_expires": format_wall(ws.expires) if ws.expires is not None else None,
            "snapshot": snaps[-1] if snaps else None,
        }
    if as_json:
        print_json(out)
    else:
        table(
            f"status of {log_urls}",
            ["field", "value"],
            [
                ["head slot", "(empty)" if head < 0 else str(head)],
                ["mode", out["mode"]],
                ["stores", ", ".join(out["stores"])],
                ["writer lease", lease_line(ws.holder, ws.epoch, ws.expires)],
                ["snapshot", "none" if not snaps else f"slot {snaps[-1]}"],
            ],
        )


def lease_line(holder: str | None, epoch: int, expires: float | None) -> str:
    """A writer lease in one line, for ``status`` and ``writer``."""
    from passivepaxos.lease import format_wall

    if holder is None:
        return "none" if epoch == 0 else f"none (last epoch {epoch})"
    return f"{holder}, epoch {epoch}, expires about {format_wall(expires)} (estimate)"
