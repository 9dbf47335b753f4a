"""A key-value store with compare-and-set, replicated through the log.

Every write is a log entry (UTF-8 JSON)::

    {"ppx": "kv", "ns": "kv", "op": "put"|"del"|"cas", "key": "...", "v": "<b64>"|null,
     "e": "<b64>"|null, "id": "<request id>"}

(``v``: the new value, ``null`` = delete; ``e``: a cas's expected value, ``null`` =
expected absent.) Every replica applies the entries in log order with the same rules, so
all replicas agree on the outcome of every command, including every cas: **cas is decided
by its place in the log**, not by the process that sent it. The sender learns the outcome
by applying the log up to its own entry's position. Entries carry a request id and an
entry whose id was already applied is ignored, so a write retried after an ambiguous
failure takes effect once (its outcome is the first copy's).

Guarantees
----------
- Writes are linearizable: each takes effect at its log position, inside its call.
- Reads (``get``, ``list``) are linearizable by default: served after a read barrier,
  the lease path when this process holds the log's writer lease inside its read window
  and has no write of its own in flight or of unknown outcome (no request), else a read
  to a tail discovered after the read began
  (:meth:`StateMachine.sync`). ``consistent=False`` serves the local replica (stale).
- ``watch`` yields every change in log order, the same sequence on every process.

Failures
--------
A store outage: writes fail (``StoreError``; an ambiguous one is retried with the same
request id); reads through the log fail; nothing acknowledged is lost. While another process
holds the log's writer lease, writes raise ``LeaseHeldError`` (reads still work). A lease
holder could serve a stale *lease* read if a taker's clock runs more than 4/3 as fast as
the holder's (see :mod:`passivepaxos.lease` for the exact clock assumption); pass
``lease_reads=False`` to always read through the log. Writes never depend on clocks.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from passivepaxos.errors import (
    ConfigError,
    PassivePaxosError,
    ResultCompactedError,
    ResultUnreadError,
)
from passivepaxos.log import Entry, Log, Position
from passivepaxos.recipes._entry import append_retrying, decode_entry, encode_entry, runtime_of
from passivepaxos.recipes.rsm import StateMachine, new_id
from passivepaxos.snapshot import SnapshotInfo
from passivepaxos.types import require_bytes

__all__ = ["KV", "CasResult", "Change", "KVState", "decode_command", "encode_command"]

OPS = ("put", "del", "cas")


@dataclass(frozen=True)
class CasResult:
    ok: bool
    current: bytes | None  # the key's value right after the command (None: absent)
    position: Position


@dataclass(frozen=True)
class Change:
    position: Position
    op: str
    key: str
    value: bytes | None  # None: deleted


@dataclass(frozen=True)
class Command:
    op: str
    key: str
    value: bytes | None
    expected: bytes | None
    rid: str


def _b64(v: bytes | None) -> str | None:
    return None if v is None else base64.b64encode(v).decode("ascii")


def encode_command(ns: str, cmd: Command) -> bytes:
    fields = {
        "op": cmd.op,
        "key": cmd.key,
        "v": _b64(cmd.value),
        "e": _b64(cmd.expected),
        "id": cmd.rid,
    }
    return encode_entry("kv", "ns", ns, fields)


def decode_command(value: bytes, ns: str) -> Command | None:
    """The command in an entry of namespace ``ns``; ``None`` for any other entry."""
    doc = decode_entry(value, "kv", "ns", ns)
    if doc is None:
        return None
    try:
        op, key, rid, v, e = doc["op"], doc["key"], doc["id"], doc.get("v"), doc.get("e")
        if op not in OPS or not isinstance(key, str) or not isinstance(rid, str):
            return None
        val = None if v is None else base64.b64decode(v, validate=True)
        exp = None if e is None else base64.b64decode(e, validate=True)
        return Command(op, key, val, exp, rid)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


class KVState:
    """The deterministic state: data, applied request ids, and the apply rule."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.seen: set[str] = set()

    def apply(self, cmd: Command) -> tuple[bool, bytes | None, bool] | None:
        """Apply ``cmd``: (ok, value after, changed); ``None`` if its id was applied before."""
        if cmd.rid in self.seen:
            return None
        self.seen.add(cmd.rid)
        cur = self.data.get(cmd.key)
        if cmd.op == "put":
            ok = True
        elif cmd.op == "del":
            ok = cur is not None
        else:
            ok = cur == cmd.expected
        if not ok:
            return False, cur, False
        if cmd.op == "del" or cmd.value is None:
            self.data.pop(cmd.key, None)
            return True, None, cur is not None
        self.data[cmd.key] = cmd.value
        return True, cmd.value, True

    def encode(self) -> bytes:
        return json.dumps(
            {"data": {k: _b64(v) for k, v in self.data.items()}, "seen": sorted(self.seen)},
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, blob: bytes) -> KVState:
        doc: Any = json.loads(blob)
        st = cls()
        st.data = {k: base64.b64decode(v) for k, v in doc["data"].items()}
        st.seen = set(doc["seen"])
        return st


class KV:
    """A linearizable KV store on ``log`` (module docstring). ``namespace`` separates
    several stores sharing one log."""

    def __init__(
        self,
        log: Log,
        *,
        namespace: str = "kv",
        lease_reads: bool = True,
        retries: int = 5,
        retry_delay: float = 0.05,
    ) -> None:
        self.log = log
        self.ns = namespace
        self.lease_reads = lease_reads
        self.retries = retries
        self.retry_delay = retry_delay
        self._state = KVState()
        self._mu = threading.Lock()  # bookkeeping only (no runtime or store call under it)
        self._waiting: dict[str, tuple[bool, bytes | None] | None] = {}
        self.last_read = ""  # "lease", "log" or "local": how the last read was served
        self.sm = StateMachine(log, self._apply, restore=self._restore)

    # -- the state machine ----------------------------------------------------------------

    def _apply(self, e: Entry) -> None:
        cmd = decode_command(e.value, self.ns)
        if cmd is None:
            return
        out = self._state.apply(cmd)
        if out is not None:
            with self._mu:
                if cmd.rid in self._waiting:
                    self._waiting[cmd.rid] = (out[0], out[1])

    def _restore(self, blob: bytes, slot: int) -> None:
        self._state = KVState.decode(blob)

    def snapshot(self) -> SnapshotInfo:
        """Write the store's state as an application-state snapshot of the log."""
        return self.sm.snapshot(self._state.encode)

    # -- writes ---------------------------------------------------------------------------

    def _submit(self, op: str, key: str, value: bytes | None, expected: bytes | None) -> CasResult:
        if not isinstance(key, str):
            raise TypeError(f"a key must be a str, not {type(key).__name__}")
        if not key:
            raise ConfigError("a key must be a non-empty string")
        if value is not None:
            value = require_bytes(value, "the value")
        cmd = Command(op, key, value, expected, new_id(runtime_of(self.log)))
        data = encode_command(self.ns, cmd)
        with self._mu:
            self._waiting[cmd.rid] = None
        try:
            pos = append_retrying(self.log, data, retries=self.retries, delay=self.retry_delay)
            try:
                self.sm.catch_up(through=pos)
            except PassivePaxosError as exc:
                # the entry is established at pos: it IS done, whatever the read after it
                # says (an outage, the deadline). A put always takes effect; the answer of
                # anything else is unknown, never "failed" (found by the simulator)
                if op == "put":
                    return CasResult(True, value, pos)
                raise ResultUnreadError(pos, exc, self.log.url) from exc
            with self._mu:
                out = self._waiting[cmd.rid]
            if out is None:
                # a snapshot restored during the catch-up covered our entry (another
                # process snapshotted and trimmed through it): its effect is in the state,
                # its answer is not. A put always takes effect; anything else is unknown.
                if op == "put":
                    return CasResult(True, value, pos)
                raise ResultCompactedError(pos, self.log.url)
            return CasResult(out[0], out[1], pos)
        finally:
            with self._mu:
                self._waiting.pop(cmd.rid, None)

    def put(self, key: str, value: bytes) -> Position:
        """Set ``key``; return the command's log position."""
        return self._submit("put", key, value, None).position

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed (at the command's place in the log)."""
        return self._submit("del", key, None, None).ok

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> CasResult:
        """Set ``key`` to ``new`` (``None``: delete it) iff its value is ``expected``
        (``None``: absent) at the command's place in the log. ``ok`` says whether it
        applied; ``current`` is the value right after it."""
        exp = None if expected is None else require_bytes(expected, "the expected value")
        return self._submit("cas", key, new, exp)

    # -- reads ----------------------------------------------------------------------------

    def _barrier(self, consistent: bool) -> None:
        if not consistent:
            self.last_read = "local"
            return
        self.last_read = self.sm.barrier(lease=self.lease_reads)

    def get(self, key: str, *, consistent: bool = True) -> bytes | None:
        """The value of ``key`` (``None``: absent); linearizable unless ``consistent=False``."""
        self._barrier(consistent)
        with self.sm._mutex:
            return self._state.data.get(key)

    def list(self, prefix: str = "", *, consistent: bool = True) -> list[tuple[str, bytes]]:
        """(key, value) of every key starting with ``prefix``, sorted by key."""
        self._barrier(consistent)
        with self.sm._mutex:
            return sorted((k, v) for k, v in self._state.data.items() if k.startswith(prefix))

    def watch(
        self,
        prefix: str = "",
        *,
        from_position: Position | None = None,
        follow: bool = True,
        stop: threading.Event | None = None,
        poll_min: float = 0.05,
        poll_max: float = 1.0,
    ) -> Iterator[Change]:
        """Every change (a put, a delete that removed something, a cas that applied) of keys
        starting with ``prefix``, in log order, from ``from_position``. It replays its own
        copy of the state from the start of the log (cas outcomes need it) and then follows
        the log until ``stop`` is set (``follow=False``: stop at the current end)."""
        start = from_position or Position(0, 0)
        state = KVState()
        entries = (
            self.log.follow(0, poll_min=poll_min, poll_max=poll_max, stop=stop)
            if follow
            else self.log.read(0)
        )
        for e in entries:
            cmd = decode_command(e.value, self.ns)
            if cmd is None:
                continue
            out = state.apply(cmd)
            if out is None or not out[2] or not cmd.key.startswith(prefix):
                continue
            if (e.slot, e.index) < (start.slot, start.index):
                continue
            op = "del" if out[1] is None else "put"
            yield Change(Position(e.slot, e.index), op, cmd.key, out[1])
