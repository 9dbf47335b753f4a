"""The shared log: an ordered sequence of slots, each holding a batch of entries.

Addressing
----------
Slot ``i`` is consensus instance ``log/<i:020d>``. An entry is addressed by
``(slot, index)``: the slot that holds it and its index inside that slot's batch.
``Log.append(values)`` puts all ``values`` of one call into one slot (several concurrent
calls of one process may share a slot: group commit) and returns one slot number per value,
in order; ``Log.append_positions`` returns the full ``Position(slot, index)`` pairs.

How a slot is decided (:mod:`passivepaxos.log.slots`, the only place that knows)
-------------------------------------------------------------------------------
- one store whose manifest mode is ``create``: ONE create-if-absent of the object
  ``log/<i:020d>``; the first creator wins, a loser finds the winner's record in
  ``AlreadyExistsError.current`` (no extra request);
- a quorum of stores, or ``blocks`` / ``cas`` mode: ``consensus.driver.propose`` on
  instance ``log/<i:020d>``; the decided bytes are the slot's record. Reading a slot uses
  ``core.learner`` on the same instance: a slot is *missing* only when it is provably
  undecided (a majority of its stores answered in full and hold no marker and nothing
  accepted); when the learner cannot tell, the reader finishes the instance
  (``core.finisher``: adopt the highest accepted value, invent none) or raises
  ``QuorumError``, never "absent" (see ``SlotIO.learn``).

An append whose record may have been decided but could not be established raises
``AppendOutcomeUnknownError`` (never ``QuorumError``, which means "not written"); its
token ``<slot>:<index>:<wid>`` resumes it exactly once (``append(values, resume=token)``),
because the record names its slot and its predecessor's hash: it can only ever be decided
at that slot, and the resumed append keeps its write id.

Slot record (format 1): UTF-8 JSON, keys sorted, no whitespace::

    {"kind": "ppx-slot", "f": 1, "slot": 3, "prev": "<sha256 hex of slot 2's record>",
     "writer": "host-123-ab12cd34", "epoch": 0, "wid": "<32 hex: unique write id>",
     "entries": ["<base64>", ...], "sum": "<sha256 hex of this object without 'sum'>"}

- ``prev`` of slot 0 is :func:`genesis_of` the log's identity (sha256 of
  ``b"passivepaxos-log-genesis:" + id``, the ``id`` of the manifest, see
  :mod:`passivepaxos.manifest`), so a record of another log is foreign everywhere in the
  chain; a log whose manifest has no identity (format 1, created before identities) keeps
  :data:`GENESIS` (sha256 of ``b"passivepaxos-log-genesis"``). The hash of a record is
  sha256 over its exact stored bytes (the Store frame's payload), so the chain covers
  every byte, ``sum`` included.
- ``sum`` is sha256 over the canonical encoding of the other fields; it travels with the
  record through consensus (the Store frame's crc32 covers only one object on one store).
- ``epoch`` is the writer-lease epoch (fencing token); 0 until leases exist.
- ``lease`` (optional; absent on records written outside a lease, so older records are
  unchanged): ``{"op": "claim"|"hold", "ttl": s, "wall": t}`` or ``{"op": "release"}``.
  The writer lease (ClaimWriter / WriterStatus / lease reads) is described in
  :mod:`passivepaxos.lease` and docs/log.md.
- ``cfg`` / ``conf`` (optional, absent until the log's first store membership change):
  a configuration record (one store added or removed: slots after it are decided on the
  new set) and, on every later record, the slot of the newest one before it. Design and
  safety argument: :mod:`passivepaxos.membership`; the reading side is
  :mod:`passivepaxos.log.config` (records learned in order, each slot with its own slot's store set).
- ``wid`` identifies one append attempt: if a lost race's winner carries our ``wid``, our
  own earlier (ambiguous) write landed, and its entries are counted once.
- ``fwd`` (optional, only on records that fold forwarded entries: :mod:`.forward`):
  ``[[fid, count], ...]``, the parcels whose entries follow the writer's own, in order.
  Older clients read such a record as a plain batch (same format, same entries).

A reader validates every record and raises :class:`DamagedSlotError` (an
``InvalidObjectError``) naming the slot and URL for: an unreadable frame, bad JSON, a
record of another kind, an unknown or newer format, the wrong slot number, a bad
checksum, a broken hash chain, or a slot missing while a later one exists. It never skips.

Tail discovery starts at the hint object ``log/tail-hint`` (an OVERWRITE written when the
known tail is ``hint_every`` slots past it or after a release, never on a timer, at most
once per ``hint_min_interval`` seconds per process because GCS allows ~1 write/s per object
name; ``Log.open`` reads it beside the manifest). The hint names a slot and the log's
identity: a guess, never trusted beyond what is read (a hint of another log is ignored). On
one create store whose backend lists strongly from a key (``Capabilities.strong_list``
and ``seek_list``) discovery LISTs ``log/`` from the hinted slot (one request shows the tail and any hole); elsewhere
it probes ``h, h+1, h+2, h+4, ... h+32`` in parallel (again from the highest found if all
exist) and narrows the gap to the first missing slot with 6 parallel probes a round. This
is sound because slots have no gaps: a record for slot ``i`` names slot ``i-1``'s hash, so
it can only be built after slot ``i-1`` was decided. A gap is therefore damage (a deleted
slot): a listing that shows one, or probing that finds the slot 2 or 4 after the first
missing one, raises ``DamagedSlotError`` (the gap is never filled), and a writer checks
that a tail found this way names its predecessor's hash before building on it
(``FencedWriter.check_chained``).

Snapshots and trim (formats: :mod:`passivepaxos.snapshot`; docs/log.md)
-----------------------------------------------------------------------
``Log.snapshot`` writes ``snapshot/<s:020d>`` holding slot ``s``'s record hash (the chain's
anchor) and either every entry of slots ``0..s`` or application state. Readers list the
small ``snapshot/`` prefix, serve slots ``<= s`` from the newest snapshot and check the
chain from its anchor. ``Log.trim`` (one create-mode store only) OVERWRITES each trimmed
slot object with a tombstone instead of deleting it, so a slot name is never free again: a
stale writer's create fails and its append raises :class:`TrimmedSlotError`, never
acknowledged. A tombstone keeps the trimmed record's hash (``prev`` of the next slot) and
lease state; a reader meeting one restarts from the newest snapshot. Tombstones must never
be deleted: ``verify`` checks every one (and names a missing one), and a writer refuses to
write a slot at or below a snapshot it has seen unless the slot is there (see
``FencedWriter.commit``);
a writer that never saw the snapshot cannot tell (docs/log.md, "Trim").
"""

from passivepaxos.errors import DamagedSlotError, TrimmedSlotError
from passivepaxos.log.batch import Pending as _Pending  # noqa: F401 (tests build queue entries)
from passivepaxos.log.compaction import TrimResult
from passivepaxos.log.facade import Log, default_writer_id
from passivepaxos.log.record import (
    GENESIS,
    RECORD_FORMAT,
    Entry,
    Position,
    Record,
    chain_hash,
    check_token,
    decode_record,
    genesis_of,
    parse_forward_token,
    parse_resume_token,
    record_hash,
    resume_unknown,
    resume_wid,
    slot_instance,
    tombstone_of,
)
from passivepaxos.log.tail import HINT_KEY
from passivepaxos.log.verify import VerifyReport
from passivepaxos.snapshot import SnapshotInfo

__all__ = [
    "GENESIS",
    "HINT_KEY",
    "RECORD_FORMAT",
    "DamagedSlotError",
    "Entry",
    "Log",
    "Position",
    "Record",
    "SnapshotInfo",
    "TrimResult",
    "TrimmedSlotError",
    "VerifyReport",
    "chain_hash",
    "check_token",
    "decode_record",
    "default_writer_id",
    "genesis_of",
    "parse_forward_token",
    "parse_resume_token",
    "record_hash",
    "resume_unknown",
    "resume_wid",
    "slot_instance",
    "tombstone_of",
]
