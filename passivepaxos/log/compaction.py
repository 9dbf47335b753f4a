"""Compaction: snapshots (list, load, write) and trim (formats: :mod:`passivepaxos.snapshot`).

``snapshot/<s:020d>`` holds slot ``s``'s record hash (the chain's anchor) and either every
entry of slots ``0..s`` or application state; readers list the small ``snapshot/`` prefix
and serve slots ``<= s`` from the newest one. ``trim`` (one create-mode store only)
OVERWRITES each trimmed slot with a tombstone, never deletes it, so a slot name is never
free again. This component also remembers the highest snapshot slot this object has seen:
every slot up to it was decided, so the writer refuses to write there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from passivepaxos import fanout
from passivepaxos.errors import (
    AlreadyExistsError,
    ConfigError,
    DamagedSlotError,
    DamagedSnapshotError,
    InvalidObjectError,
    QuorumError,
    StoreError,
    TrimRefusedError,
    UnsupportedError,
)
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import Record, bare, chain_hash, record_hash, slot_instance
from passivepaxos.snapshot import (
    SNAPSHOT_PREFIX,
    SnapshotInfo,
    Tombstone,
    decode_snapshot,
    encode_snapshot,
    is_tombstone,
    snapshot_key,
    snapshot_slot_of,
)
from passivepaxos.store import Store
from passivepaxos.types import PutMode, require_bytes

__all__ = ["Compaction", "Records", "TrimResult"]

Records = Callable[..., Iterator[tuple[int, Record, bytes]]]
"""The reader's ``raw_records`` (snapshots are built from the records after the last one)."""


@dataclass(frozen=True)
class TrimResult:
    trimmed: int  # slot objects replaced by tombstones by this call
    before: int
    snapshot: int  # the covering snapshot's slot

    def to_json(self) -> dict[str, Any]:
        return {"trimmed": self.trimmed, "before": self.before, "snapshot": self.snapshot}


class Compaction:
    """Snapshots seen, listed, loaded and written; trim."""

    def __init__(self, c: LogContext, cfg: ConfigView) -> None:
        self.c = c
        self.cfg = cfg
        # guarded by c.state
        self.listing: list[int] | None = None  # snapshot slots listed (see Reader)
        # the highest snapshot slot this object has seen (listed, written, or named by a
        # tombstone): every slot up to it was decided, so a write there is refused
        self.seen = -1

    def slots(self) -> list[int]:
        """The slots of the snapshot objects, ascending: one LIST of the small ``snapshot/``
        prefix per store (never of the log). On a quorum: the union over the stores that
        answer; a majority must answer."""
        if len(self.c.stores) == 1:
            metas = [list(self.c.stores[0].list(SNAPSHOT_PREFIX))]
        else:
            metas, errors = [], []
            for got in fanout.each_store(self.c.stores, lambda st: list(st.list(SNAPSHOT_PREFIX))):
                if isinstance(got, StoreError):
                    errors.append(str(got))
                else:
                    metas.append(got)
            if len(metas) < len(self.c.stores) // 2 + 1:
                raise QuorumError(
                    f"cannot list the snapshots of {self.c.url}: no majority of stores "
                    f"answered: {'; '.join(errors)}"
                )
        found = {snapshot_slot_of(m.key) for ms in metas for m in ms}
        slots = sorted(s for s in found if s is not None)
        if slots:
            self.saw(slots[-1])
        return slots

    def saw(self, slot: int) -> None:
        """A snapshot at ``slot`` exists (or existed): slots ``0..slot`` were decided."""
        with self.c.state:
            self.seen = max(self.seen, slot)

    def newest(self) -> SnapshotInfo | None:
        """The newest snapshot (highest slot), validated; ``None`` if there is none. A
        damaged newest snapshot raises ``DamagedSnapshotError`` naming it (never skipped)."""
        slots = self.slots()
        return self.load(slots[-1]) if slots else None

    def load(self, slot: int) -> SnapshotInfo:
        key = snapshot_key(slot)
        errors: list[str] = []
        # all stores at once: a hung one is not waited for once a majority answered
        for store, got in zip(
            self.c.stores, fanout.each_store(self.c.stores, lambda s: s.get(key)), strict=True
        ):
            if isinstance(got, InvalidObjectError):
                raise DamagedSnapshotError(
                    slot, f"unreadable object ({bare(got)})", url=store.url, key=key
                ) from None
            if isinstance(got, StoreError):
                if len(self.c.stores) == 1:
                    raise got
                errors.append(str(got))
                continue
            if got is not None:
                return decode_snapshot(got[0], slot, url=store.url, key=key)
        url = self.c.stores[0].url if len(self.c.stores) == 1 else self.c.url
        raise DamagedSnapshotError(
            slot,
            "listed but could not be read" + (f": {'; '.join(errors)}" if errors else ""),
            url=url,
            key=key,
        )

    def covering(self, slot: int) -> SnapshotInfo:
        """The newest snapshot, which must cover trimmed slot ``slot``."""
        newest = self.newest()
        if newest is None or newest.slot < slot:
            url, key = self.c.where(slot)
            raise DamagedSlotError(
                slot,
                "trimmed, but no snapshot covers it"
                + ("" if newest is None else f" (newest snapshot: slot {newest.slot})"),
                url=url,
                key=key,
            )
        return newest

    def check_anchor(self, snap: SnapshotInfo, data: bytes) -> None:
        if record_hash(data) != snap.hash:
            raise self.bad(snap, f"its anchor hash does not match slot {snap.slot}'s record")

    def bad(self, snap: SnapshotInfo, reason: str) -> DamagedSnapshotError:
        url = self.c.stores[0].url if len(self.c.stores) == 1 else self.c.url
        return DamagedSnapshotError(snap.slot, reason, url=url, key=snap.key)

    def write(
        self,
        state: bytes | None,
        *,
        slot: int | None,
        records: Records,
        head: Callable[[], int],
    ) -> SnapshotInfo:
        """Write the snapshot ``snapshot/<s:020d>`` and return it.

        ``state=None``: an entries snapshot at the current head slot ``s`` holding every
        entry of slots 0..s, built from the newest snapshot plus the slots after it (so it
        costs reading only those). ``state``: the application's state after slot ``slot``
        (default: the current head; pass the slot your state has applied). Written with
        create-if-absent where the store has it; an existing snapshot at the same slot with
        the same anchor is returned instead (first writer wins). On a quorum it is written
        to every store and a majority must succeed (``QuorumError`` otherwise)."""
        if state is None:
            if slot is not None:
                raise ConfigError("slot= is only for application-state snapshots")
            base = self.newest()
            if base is not None and base.slots is None:
                raise ConfigError(
                    f"{self.c.url}: the newest snapshot (slot {base.slot}) holds application "
                    "state: an entries snapshot cannot be built from it; pass state="
                )
            acc: list[tuple[bytes, ...]] = [] if base is None else list(base.slots or ())
            last, anchor = (-1, self.c.genesis) if base is None else (base.slot, base.hash)
            for s, rec, data in records(last + 1, follow=False, start_prev=anchor):
                acc.append(rec.entries)
                last, anchor = s, record_hash(data)
            if last < 0:
                raise ConfigError(f"{self.c.url}: the log is empty: nothing to snapshot")
            if base is not None and last == base.slot:
                return base
            blob = encode_snapshot(last, anchor, slots=acc, state=None)
        else:
            last = head() if slot is None else slot
            if last < 0:
                raise ConfigError(f"{self.c.url}: the log is empty: nothing to snapshot")
            got = self.cfg.fetch(last)
            if got is None:
                raise ConfigError(f"{self.c.url}: slot {last} does not exist (head is {head()})")
            if not is_tombstone(got):
                self.c.decode(got, last, None)
            anchor = chain_hash(got, last)
            blob = encode_snapshot(last, anchor, slots=None, state=require_bytes(state, "state"))
        return self.put(last, anchor, blob)

    def put(self, slot: int, anchor: str, blob: bytes) -> SnapshotInfo:
        key = snapshot_key(slot)
        with self.c.state:
            self.listing = None  # our next read lists again and finds this one
        self.saw(slot)

        def one(store: Store) -> SnapshotInfo:
            mode = PutMode.CREATE if store.capabilities.create else PutMode.OVERWRITE
            try:
                store.put(key, blob, mode)
            except AlreadyExistsError as exc:
                if exc.current is None:
                    raise
                there = decode_snapshot(exc.current[0], slot, url=store.url, key=key)
                if there.hash != anchor:
                    raise DamagedSnapshotError(
                        slot, "its anchor hash differs from slot's record", url=store.url, key=key
                    ) from None
                return there
            return decode_snapshot(blob, slot, url=store.url, key=key)

        if len(self.c.stores) == 1:
            return one(self.c.stores[0])
        assert self.c.fanout is not None
        futs = [self.c.fanout.submit(one, s) for s in self.c.stores]
        self.c.runtime.wait(futs)  # the fan-out's futures are waited for through the runtime
        done: list[SnapshotInfo] = []
        errors: list[str] = []
        for f in futs:
            try:
                done.append(f.result())
            except (StoreError, QuorumError) as exc:
                errors.append(str(exc))
        if len(done) < len(self.c.stores) // 2 + 1:
            raise QuorumError(
                f"snapshot at slot {slot} of {self.c.url}: written to {len(done)} of "
                f"{len(self.c.stores)} stores, a majority is needed: {'; '.join(errors)}"
            )
        return done[0]

    def trim(self, before: int) -> TrimResult:
        """What :meth:`passivepaxos.log.Log.trim` promises (its docstring is the normative text)."""
        if not self.c.single_create:
            raise UnsupportedError(
                f"{self.c.url}: trim needs a single store in create mode (this log is "
                f"{'a quorum of ' + str(len(self.c.stores)) + ' stores' if len(self.c.stores) > 1 else 'in ' + self.c.mode.value + ' mode'}): "
                "a slot there is a consensus instance of several objects, which cannot be "
                "tombstoned safely yet (a slow proposer could complete it again). Snapshots "
                "work here; only trim does not",
                capability="trim",
            )
        if before < 0:
            raise ConfigError("--before must be a slot number >= 0")
        snap = self.newest()
        if snap is None or snap.slot < before - 1:
            have = "no snapshot" if snap is None else f"the newest snapshot is at slot {snap.slot}"
            raise TrimRefusedError(
                f"{self.c.url}: refusing to trim before slot {before}: {have}; a snapshot at "
                f"slot >= {before - 1} must exist first (run `passivepaxos snapshot`), so that "
                "no entry is lost"
            )
        if before == 0:
            return TrimResult(0, before, snap.slot)
        store = self.c.stores[0]
        # tombstones form a prefix (each trim goes up in order): find its end
        lo, lo_data, hi = -1, b"", before
        while hi - lo > 1:
            mid = (lo + hi) // 2
            got = self.cfg.fetch(mid)
            if got is None:
                url, key = self.c.where(mid)
                raise DamagedSlotError(mid, "missing below a snapshot (a gap)", url=url, key=key)
            if is_tombstone(got):
                lo, lo_data = mid, got
            else:
                hi = mid
        prev = self.c.genesis if lo < 0 else chain_hash(lo_data, lo)
        count = 0
        futs = {
            i: self.c.pool.submit(self.cfg.fetch, i)
            for i in range(lo + 1, min(before, lo + 1 + self.c.fetch_ahead))
        }
        for i in range(lo + 1, before):
            nxt = i + self.c.fetch_ahead
            if nxt < before:
                futs[nxt] = self.c.pool.submit(self.cfg.fetch, nxt)
            data = futs.pop(i).result()
            if data is None:
                url, key = self.c.where(i)
                raise DamagedSlotError(i, "missing below a snapshot (a gap)", url=url, key=key)
            if is_tombstone(data):  # a concurrent trim got here first
                prev = chain_hash(data, i)
                continue
            rec = self.c.decode(data, i, prev)
            h = record_hash(data)
            if snap.slots is not None and snap.slots[i] != rec.entries:
                raise self.bad(snap, f"its entries of slot {i} differ from the log's")
            if i == snap.slot and h != snap.hash:
                raise self.bad(snap, f"its anchor hash does not match slot {snap.slot}'s record")
            t = Tombstone(i, snap.slot, h, rec.writer, rec.epoch, rec.wid, rec.lease, rec.prev)
            store.put(slot_instance(i), t.encode(), PutMode.OVERWRITE)
            count += 1
            prev = h
        return TrimResult(count, before, snap.slot)
