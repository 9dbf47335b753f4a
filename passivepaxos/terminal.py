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

__all__ = [
    "console",
    "escape_value",
    "lease_line",
    "lock_wait_line",
    "plain_cell",
    "print_json",
    "print_status",
    "table",
]


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


def plain_cell(text: str) -> str:
    """Text on one line, read back unambiguously: a backslash is doubled, then control
    characters are escaped (:func:`_controls`)."""
    return _controls(text.replace("\\", "\\\\"))


def _escape_code(c: int) -> str:
    # \xNN only below 0x80: at or above it, \xNN is a byte that is not UTF-8
    return f"\\x{c:02x}" if c < 0x80 else f"\\u{c:04x}"


# C0 and C1 controls, DEL, the line and paragraph separators (which str.splitlines and
# many viewers break on) and the bidirectional overrides and isolates (which make a value
# display as another)
_CONTROL_CODES = (
    *range(0x20),
    *range(0x7F, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
)
_CONTROL_ESCAPES = {
    **{c: _escape_code(c) for c in _CONTROL_CODES},
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}


def _controls(text: str) -> str:
    return text.translate(_CONTROL_ESCAPES)


def escape_value(value: bytes) -> str:
    """A value on one line of text output (``log``, ``kv list``, ``kv watch``): a
    backslash is doubled, a byte that is not UTF-8 becomes ``\\xNN``, and ``\\t``
    ``\\n`` ``\\r``, other control characters, line separators and bidirectional
    controls are escaped (``\\xNN``, ``\\uNNNN``), so that ``slot<TAB>index<TAB>value``
    stays one line per entry and two values never print alike."""
    return _controls(value.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace"))


def table(title: str, columns: Sequence[str], rows: list[list[str]]) -> None:
    """A rich table in a terminal (words wrapped, never split unless one is wider than its
    column); in a pipe or a file, plain rows: a header line, then one line per row, cells
    separated by tabs, never wrapped (``passivepaxos backends | grep dropbox``)."""
    import sys

    if not sys.stdout.isatty():
        for row in [list(columns), *rows]:
            print("\t".join(plain_cell(c) for c in row))
        sys.stdout.flush()
        return
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
    from passivepaxos.errors import ConfigError, PassivePaxosError, UnsupportedError
    from passivepaxos.health import store_health
    from passivepaxos.lease import format_wall
    from passivepaxos.log import Log

    try:
        log = Log.open(log_urls)
    except (ConfigError, UnsupportedError):
        raise
    except PassivePaxosError as exc:
        if "," in log_urls:  # a quorum that cannot be opened: show why, store by store
            _print_unopened(log_urls, exc, as_json=as_json)
            exc.json_reported = True  # type: ignore[attr-defined]  # the CLI adds no second object
        raise
    with log:
        ws = log.writer_status()
        head = ws.head
        snaps = log.snapshot_slots()
        health = store_health(log.stores, log.manifest, head)
        out: dict[str, Any] = {
            "log": log_urls,
            "mode": log.mode.value,
            "stores": [s.url for s in log.stores],
            "head": head if head >= 0 else None,
            "slots": head + 1,
            "holder": ws.holder,
            "epoch": ws.epoch,  # 0: never claimed (as writer status says)
            "expires": format_wall(ws.expires) if ws.expires is not None else None,
            "mine": False,
            "snapshot": snaps[-1] if snaps else None,
            "health": [h.to_json() for h in health],
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
                *[[f"store {h.url}", h.describe()] for h in health],
            ],
        )


def _print_unopened(log_urls: str, exc: Exception, *, as_json: bool) -> None:
    """Each store's health when the quorum itself could not be opened (no majority of
    stores reachable with this log's manifest): the caller then reports the error."""
    from passivepaxos.health import store_health
    from passivepaxos.store import open_store
    from passivepaxos.urls import split_urls

    stores = [open_store(u) for u in split_urls(log_urls)]
    try:
        health = store_health(stores, None, -1)
    finally:
        for s in stores:
            s.close()
    if as_json:
        print_json(
            {
                "log": log_urls,
                "error": " ".join(str(exc).split()),
                "health": [h.to_json() for h in health],
            }
        )
    else:
        table(
            f"status of {log_urls}: cannot be opened",
            ["field", "value"],
            [[f"store {h.url}", h.describe()] for h in health],
        )


def lock_wait_line(name: str, rec: Any, wait: float, remaining: float) -> str:
    """What a call waiting for lock ``name`` held by ``rec`` (a ``LockRecord``) says on
    stderr, once (``lock acquire --wait``, ``lock run --wait``)."""
    return (
        f"passivepaxos: lock {name!r} is held by {plain_cell(str(rec.holder))} (token "
        f"{rec.token}); waiting up to {wait:g} s (it may be taken over in {remaining:.1f} s "
        "if it is not refreshed)"
    )


def lease_line(holder: str | None, epoch: int, expires: float | None) -> str:
    """A writer lease in one line, for ``status`` and ``writer``."""
    from passivepaxos.lease import format_wall

    if holder is None:
        return "none" if epoch == 0 else f"none (last epoch {epoch})"
    return f"{holder}, epoch {epoch}, expires about {format_wall(expires)} (estimate)"
