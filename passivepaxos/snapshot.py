"""Snapshot and tombstone objects of the shared log (used by :class:`passivepaxos.log.Log`).

Snapshot object ``snapshot/<s:020d>`` (format 1): UTF-8 JSON, keys sorted, no whitespace::

    {"kind": "ppx-snapshot", "f": 1, "slot": s, "hash": "<sha256 of slot s's record>",
     "entries": [["<base64>", ...], ...],   # one list per slot 0..s (cumulative), or
     "state": "<base64>",                   # the application's state after slot s
     "sum": "<sha256 hex of the canonical object without 'sum'>"}

``hash`` anchors the hash chain: slot ``s+1``'s record must name it as ``prev``. Exactly one
of ``entries`` / ``state`` is present.

Tombstone (format 1), written by ``trim`` OVER a trimmed slot object so that the slot's name
is never free again (a stale writer's create-if-absent of it fails)::

    {"kind": "ppx-trimmed", "f": 1, "slot": i, "snap": s, "hash": "<sha256 of slot i's
     record>", "prev": "<the trimmed record's prev>" (optional), "writer": ...,
     "epoch": ..., "wid": ..., "lease": {...} (optional), "sum": "..."}

``hash`` keeps the chain continuous for writers (a writer whose tail is a trimmed slot
still builds ``prev`` correctly); ``prev`` (written since issue 10; older tombstones lack
it) lets ``verify`` check the chain across consecutive tombstones, so a tombstone or record
put in from elsewhere is found; ``writer`` / ``epoch`` / ``lease`` keep the writer-lease
state after slot ``i``; ``wid`` lets an appender whose ambiguous write landed and was then
trimmed recognise it.

Tombstones must never be deleted: a deleted one reopens its slot name (docs/log.md, "Trim").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

# this module's errors live in passivepaxos.errors (re-exported here)
from passivepaxos.errors import (
    CompactedError,
    DamagedSnapshotError,
    TrimmedSlotError,
    TrimRefusedError,
)
from passivepaxos.lease import LeaseMeta, LeaseState

__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_PREFIX",
    "CompactedError",
    "DamagedSnapshotError",
    "SnapshotInfo",
    "Tombstone",
    "TrimRefusedError",
    "TrimmedSlotError",
    "decode_snapshot",
    "decode_tombstone",
    "encode_snapshot",
    "is_tombstone",
    "snapshot_key",
    "snapshot_slot_of",
]

SNAPSHOT_FORMAT = 1
SNAPSHOT_KIND = "ppx-snapshot"
TOMBSTONE_KIND = "ppx-trimmed"
SNAPSHOT_PREFIX = "snapshot/"
_KEY = re.compile(r"^snapshot/(\d{20})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TOMBSTONE_MARK = b'"kind":"ppx-trimmed"'


def snapshot_key(slot: int) -> str:
    return f"{SNAPSHOT_PREFIX}{slot:020d}"


def snapshot_slot_of(key: str) -> int | None:
    """The slot of a snapshot key (``None``: not a snapshot object's name)."""
    m = _KEY.match(key.lstrip("/"))
    return int(m.group(1)) if m else None


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()


# -- snapshots -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot: slot ``slot`` and everything before it, anchored at ``hash``."""

    slot: int
    hash: str
    key: str
    size: int  # bytes of the snapshot object
    slots: tuple[tuple[bytes, ...], ...] | None = None  # entries of slots 0..slot
    state: bytes | None = None  # or: the application's state after ``slot``

    @property
    def entries(self) -> int:
        """Number of entries held (0 for an application-state snapshot)."""
        return 0 if self.slots is None else sum(len(s) for s in self.slots)

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "entries": self.entries,
            "bytes": self.size,
            "key": self.key,
            "kind": "entries" if self.slots is not None else "state",
        }


def encode_snapshot(
    slot: int, anchor: str, *, slots: list[tuple[bytes, ...]] | None, state: bytes | None
) -> bytes:
    if (slots is None) == (state is None):
        raise ValueError("a snapshot holds either entries or state")
    body: dict[str, Any] = {"kind": SNAPSHOT_KIND, "f": SNAPSHOT_FORMAT, "slot": slot}
    body["hash"] = anchor
    if slots is not None:
        if len(slots) != slot + 1:
            raise ValueError("an entries snapshot holds every slot 0..slot")
        body["entries"] = [[base64.b64encode(e).decode("ascii") for e in s] for s in slots]
    else:
        assert state is not None
        body["state"] = base64.b64encode(state).decode("ascii")
    body["sum"] = _checksum(body)
    return _canonical(body)


def decode_snapshot(data: bytes, slot: int, *, url: str = "", key: str = "") -> SnapshotInfo:
    """Parse and validate the snapshot object named for ``slot``."""

    def bad(reason: str) -> DamagedSnapshotError:
        return DamagedSnapshotError(slot, reason, url=url, key=key)

    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise bad("not a snapshot object (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("kind") != SNAPSHOT_KIND:
        raise bad("not a passivepaxos snapshot object")
    fmt = doc.get("f")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise bad(f"unknown snapshot format {fmt!r}")
    if fmt > SNAPSHOT_FORMAT:
        raise bad(
            f"snapshot format {fmt} is newer than this client supports ({SNAPSHOT_FORMAT}); "
            "upgrade passivepaxos"
        )
    body = dict(doc)
    given = body.pop("sum", None)
    if not isinstance(given, str) or given != _checksum(body):
        raise bad("bad checksum")
    try:
        s, anchor = body["slot"], body["hash"]
        if not isinstance(s, int) or not isinstance(anchor, str):
            raise TypeError("field types")
        slots: tuple[tuple[bytes, ...], ...] | None = None
        state: bytes | None = None
        if ("entries" in body) == ("state" in body):
            raise bad("holds neither or both of entries and state")
        if "entries" in body:
            raw = body["entries"]
            if not isinstance(raw, list) or not all(isinstance(x, list) for x in raw):
                raise TypeError("entries")
            slots = tuple(tuple(base64.b64decode(e, validate=True) for e in x) for x in raw)
        else:
            if not isinstance(body["state"], str):
                raise TypeError("state")
            state = base64.b64decode(body["state"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise bad("malformed snapshot fields") from None
    if s != slot:
        raise bad(f"object says it is the snapshot at slot {s}")
    if not _HEX64.match(anchor):
        raise bad("malformed anchor hash")
    if slots is not None and len(slots) != slot + 1:
        raise bad(f"holds {len(slots)} slots, expected {slot + 1}")
    return SnapshotInfo(slot, anchor, key, len(data), slots, state)


# -- tombstones ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tombstone:
    slot: int
    snap: int  # the covering snapshot's slot
    hash: str  # sha256 of the record that was at ``slot`` (the chain continues from it)
    writer: str
    epoch: int
    wid: str
    lease: LeaseMeta | None = None
    prev: str | None = None  # the trimmed record's ``prev`` (None: an older tombstone)

    @property
    def lease_state(self) -> LeaseState:
        return LeaseState.of(self.writer, self.epoch, self.lease)

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "kind": TOMBSTONE_KIND,
            "f": SNAPSHOT_FORMAT,
            "slot": self.slot,
            "snap": self.snap,
            "hash": self.hash,
            "writer": self.writer,
            "epoch": self.epoch,
            "wid": self.wid,
        }
        if self.lease is not None:
            body["lease"] = self.lease.to_json()
        if self.prev is not None:
            body["prev"] = self.prev
        body["sum"] = _checksum(body)
        return _canonical(body)


def is_tombstone(data: bytes) -> bool:
    """Cheap test: canonical JSON cannot contain this byte string inside a string value
    (its quotes would be escaped), so only a tombstone's ``kind`` matches."""
    return _TOMBSTONE_MARK in data


def decode_tombstone(data: bytes, slot: int) -> Tombstone:
    """Parse a tombstone; raises ``ValueError`` (the caller names the slot) if invalid."""
    doc: Any = json.loads(data)
    if not isinstance(doc, dict) or doc.get("kind") != TOMBSTONE_KIND:
        raise ValueError("not a tombstone")
    if doc.get("f") != SNAPSHOT_FORMAT:
        raise ValueError(f"unknown tombstone format {doc.get('f')!r}")
    body = dict(doc)
    if body.pop("sum", None) != _checksum(body):
        raise ValueError("bad tombstone checksum")
    try:
        t = Tombstone(
            body["slot"],
            body["snap"],
            body["hash"],
            body["writer"],
            body["epoch"],
            body["wid"],
            None if body.get("lease") is None else LeaseMeta.from_json(body["lease"]),
            body.get("prev"),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError("malformed tombstone fields") from exc

    def count(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 0

    def digest(x: object) -> bool:
        return isinstance(x, str) and _HEX64.match(x) is not None

    if not (
        count(t.slot)
        and count(t.snap)
        and digest(t.hash)
        and (t.prev is None or digest(t.prev))
        and isinstance(t.writer, str)
        and count(t.epoch)
        and isinstance(t.wid, str)
    ):
        raise ValueError("malformed tombstone fields")
    if t.slot != slot:
        raise ValueError(f"tombstone says it is slot {t.slot}")
    if t.snap < slot:
        raise ValueError(f"tombstone's snapshot slot {t.snap} does not cover it")
    return t
