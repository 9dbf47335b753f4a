"""The reader: records and entries in slot order (read, follow, catch up).

Slots up to the newest snapshot come from it, later ones are fetched with a read-ahead
window (1, 2, 4, 8 slots, then growing by one per 8 slots read, up to ``fetch_ahead``),
each record validated and its chain checked from the snapshot's anchor (or genesis). A
missing slot ends a read unless a later slot exists: then it is a gap (damage, never
skipped). A tombstone met on the way (trimmed meanwhile) restarts from the newest
snapshot. Records this object already holds are not fetched again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future

from passivepaxos.errors import CompactedError, ConfigError, TrimmedSlotError
from passivepaxos.log.compaction import Compaction
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import Record, record_hash, tombstone_of
from passivepaxos.log.tail import Tail
from passivepaxos.retry import Backoff
from passivepaxos.runtime import EventLike
from passivepaxos.snapshot import is_tombstone

__all__ = ["Reader"]

_EARLY_WINDOW = 8  # read-ahead of a read's first slots (see raw_records)


class Reader:
    """Reads in order; learns what it reads into the tail's recent records."""

    def __init__(self, c: LogContext, cfg: ConfigView, tail: Tail, snaps: Compaction) -> None:
        self.c = c
        self.cfg = cfg
        self.tail = tail
        self.snaps = snaps
        self.end_probed = -1  # highest end slot a read probed past (see raw_records)

    def slot_entries(
        self,
        from_slot: int,
        *,
        follow: bool,
        poll: tuple[float, float] = (0.05, 2.0),
        stop: EventLike | None = None,
        to_slot: int | None = None,
    ) -> Iterator[tuple[int, tuple[bytes, ...]]]:
        """(slot, entries) from ``from_slot`` on: from the newest snapshot while it covers
        the slot, then from the log. A tombstone met on the way (trimmed meanwhile) restarts
        from the (re-listed) newest snapshot, which must cover it."""
        if from_slot < 0:
            raise ConfigError("--from must be a slot number >= 0")
        slot = from_slot
        # the listing is cached per object: a snapshot written since only matters for
        # slots trimmed since, and those read as tombstones, which re-list (below)
        with self.c.state:
            slots = self.snaps.listing
        if slots is None:
            slots = self.snaps.slots()
            with self.c.state:
                self.snaps.listing = slots
        covered = bool(slots) and (
            slot <= slots[-1] or (slot == slots[-1] + 1 and self.tail.cached(slot - 1) is None)
        )
        snap = self.snaps.load(slots[-1]) if covered else None
        while True:
            start_prev: str | None = None
            if snap is not None and slot <= snap.slot:
                if snap.slots is None:
                    raise CompactedError(slot, snap.slot, self.c.url)
                for s in range(slot, snap.slot + 1):
                    yield s, snap.slots[s]
                slot = snap.slot + 1
            if snap is not None and slot == snap.slot + 1:
                start_prev = snap.hash
            try:
                for s, rec, _ in self.raw_records(
                    slot,
                    follow=follow,
                    poll=poll,
                    stop=stop,
                    start_prev=start_prev,
                    reuse=True,
                    to_slot=to_slot,
                ):
                    yield s, rec.entries
                    slot = s + 1
                return
            except TrimmedSlotError as exc:
                with self.c.state:
                    self.snaps.listing = None
                snap = self.snaps.covering(exc.slot)

    def prev_of(self, from_slot: int, *, reuse: bool = False) -> str | None:
        """The hash the record of ``from_slot`` must name; ``None`` (not checked) when
        slot ``from_slot - 1`` does not exist yet (reading from beyond the end)."""
        if from_slot <= 0:
            return self.c.genesis
        hit = self.tail.cached(from_slot - 1) if reuse else None
        if hit is not None:
            return hit[0]
        data = self.cfg.fetch(from_slot - 1)
        if data is None:
            return None
        if is_tombstone(data):
            url, key = self.c.where(from_slot - 1)
            return tombstone_of(data, from_slot - 1, url=url, key=key).hash
        self.c.decode(data, from_slot - 1, None)
        return record_hash(data)

    def records(
        self,
        from_slot: int,
        *,
        follow: bool,
        poll: tuple[float, float] = (0.05, 2.0),
        stop: EventLike | None = None,
        on_slot: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[int, Record]]:
        """(slot, record) from the log itself (no snapshot; a tombstone raises
        ``TrimmedSlotError``)."""
        for slot, rec, _ in self.raw_records(
            from_slot, follow=follow, poll=poll, stop=stop, on_slot=on_slot
        ):
            yield slot, rec

    def raw_records(
        self,
        from_slot: int,
        *,
        follow: bool,
        poll: tuple[float, float] = (0.05, 2.0),
        stop: EventLike | None = None,
        on_slot: Callable[[int], None] | None = None,
        start_prev: str | None = None,
        reuse: bool = False,
        to_slot: int | None = None,
    ) -> Iterator[tuple[int, Record, bytes]]:
        """``reuse`` (reads, not verify): records this object has already seen (written,
        read) are not fetched again, and once it has probed past an end of the log (the
        slot after a missing one is missing too: no gap), a later read that stops at a
        missing slot beyond that end does not probe again; a slot deleted there would
        still show as a broken chain at the next write, and ``verify`` always probes."""
        if from_slot < 0:
            raise ConfigError("--from must be a slot number >= 0")
        prev = self.prev_of(from_slot, reuse=reuse) if start_prev is None else start_prev
        fetch = self.tail.fetch_reuse if reuse else self.cfg.fetch
        # (``to_slot``: stop after that slot, and never fetch beyond it)
        slot = from_slot
        ahead: dict[int, Future[bytes | None]] = {}
        pace = Backoff(poll[0], poll[1], floor=1.0)  # fixed doubling, reset on progress
        idle = 0  # polls in a row that found nothing new
        first_end = True
        # read-ahead: 1, 2, 4, 8 slots while slots exist, then (a long catch-up) one more
        # per 8 slots read, up to fetch_ahead: the GETs wasted past the end stay within 8
        # or 1/8 of the slots read
        window = 1
        run = 0  # slots read since the last time the end was reached
        try:
            while True:
                if to_slot is not None and slot > to_slot:
                    return
                hit = self.tail.cached(slot) if reuse else None
                if hit is not None:  # seen already: no request, and no read-ahead growth
                    ahead.pop(slot, None)
                    rec = self.c.decode(hit[1], slot, prev)
                    prev = hit[0]
                    if on_slot is not None:
                        on_slot(slot)
                    yield slot, rec, hit[1]
                    slot += 1
                    continue
                last = slot + window if to_slot is None else min(slot + window, to_slot + 1)
                for s in range(slot, last):
                    if s not in ahead:
                        ahead[s] = self.c.pool.submit(fetch, s)
                data = ahead.pop(slot).result()
                if data is None:
                    probe = first_end and not (reuse and 0 <= self.end_probed <= slot)
                    data = self.confirm_end(slot, ahead, probe=probe)
                    first_end = False
                    if data is None and probe:
                        with self.c.state:
                            self.end_probed = max(self.end_probed, slot)
                if data is None:
                    if not follow or (stop is not None and stop.is_set()):
                        return
                    for f in ahead.values():
                        f.cancel()
                    ahead.clear()
                    window, run = 1, 0
                    delay = pace.delay(idle, self.c.runtime.rng)
                    if stop is not None:
                        if stop.wait(delay):
                            return
                    else:
                        self.c.runtime.sleep(delay)
                    idle += 1
                    continue
                idle = 0
                run += 1
                window = min(
                    self.c.fetch_ahead,
                    window * 2 if window < _EARLY_WINDOW else max(window, run // 8),
                )
                # chain-checked unless this is the first slot and the one before it was
                # missing (prev None: reading from beyond the end, or a hole there)
                checked = prev is not None
                rec = self.c.decode(data, slot, prev)
                prev = record_hash(data)
                self.tail.learned(slot, data, prev, chained=checked)
                if on_slot is not None:
                    on_slot(slot)
                yield slot, rec, data
                slot += 1
        finally:
            for f in ahead.values():
                f.cancel()

    def confirm_end(
        self, slot: int, ahead: dict[int, Future[bytes | None]], probe: bool
    ) -> bytes | None:
        """``slot`` looked missing. If a later slot exists (prefetched ones, else slot+1
        when ``probe``), either ``slot`` was decided meanwhile (re-read) or it is a gap:
        damage, never skipped."""
        later = None
        for s in sorted(ahead):
            f = ahead[s]
            if f.cancelled():
                continue
            if f.exception() is None and f.result() is not None:
                later = s
                break
        if later is None and not ahead and probe and self.cfg.fetch(slot + 1) is not None:
            later = slot + 1
        if later is None:
            return None
        data = self.cfg.fetch(slot)
        if data is None:
            raise self.tail.gap(slot, later)
        return data
