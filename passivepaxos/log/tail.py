"""Tail tracking: the end of the log as this process knows it, and how it finds it.

Owns the known tail (slot, hash, record), the records seen recently (so a state
machine's next read, or our own next write, needs no request for them), the tail hint
object and tail discovery. Discovery never lists the log: it reads the hint, probes
``h+1, h+2, h+4, ... h+32`` in parallel and narrows the gap, 6 probes a round; slots have
no gaps (a record names its predecessor's hash), so a missing slot followed by an
existing one is damage, never skipped.
"""

from __future__ import annotations

import collections
import json
from typing import Any

from passivepaxos.consensus import driver
from passivepaxos.errors import DamagedSlotError, QuorumError, StoreError
from passivepaxos.lease import TailWatch
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import chain_hash
from passivepaxos.types import PutMode

__all__ = ["HINT_KEY", "Tail"]

HINT_KEY = "log/tail-hint"
_RECENT_SLOTS, _RECENT_BYTES = 256, 8 << 20  # bounds of Tail.recent
_PROBES = 6  # slots probed at once by tail discovery (see discover)


class Tail:
    """The known tail and the recent records (guarded by the context's ``state`` lock)."""

    def __init__(
        self,
        c: LogContext,
        cfg: ConfigView,
        *,
        hint_every: int,
        hint_interval: float,
        hint_min_interval: float,
    ) -> None:
        self.c = c
        self.cfg = cfg
        # the hint is an OVERWRITE, written rarely: at most once per hint_min_interval s
        # per process (GCS allows ~1 write/s per object name), never trusted for correctness
        self.hint_every = hint_every
        self.hint_interval = hint_interval
        self.hint_min_interval = hint_min_interval
        self.hint_pool = c.runtime.pool(1, "ppx-hint")
        self.known: tuple[int, str] | None = None  # (last slot known to exist, its hash)
        self.known_data: bytes | None = None  # that slot's record
        self.known_chained = False  # that record was checked to chain to its predecessor
        # the newest decided records seen (slot -> (chain hash, record)), so a state
        # machine's next read needs neither its start slot's predecessor nor our own writes
        # again: decided slots never change (a trimmed one only becomes a tombstone)
        self.recent: collections.OrderedDict[int, tuple[str, bytes]] = collections.OrderedDict()
        self.recent_bytes = 0
        self.watch = TailWatch()  # when the known tail was first learned (lease expiry)
        self.hint_seen = -1  # the hint value last read or written
        self.hint_last_write = float("-inf")
        self.hint_inflight = False

    def close(self) -> None:
        self.hint_pool.shutdown(wait=True)

    def record_at(self, slot: int) -> bytes | None:
        """The known tail's record if the known tail is ``slot``."""
        with self.c.state:
            return self.known_data if self.known is not None and self.known[0] == slot else None

    def forget(self) -> None:
        """Drop the view of the tail (it was found stale); caller holds ``c.state``."""
        self.known = None
        self.known_data = None
        self.recent.clear()
        self.recent_bytes = 0

    def read_hint(self) -> int:
        try:
            got = self.c.stores[0].get(HINT_KEY) if len(self.c.stores) == 1 else self.quorum_hint()
        except (StoreError, QuorumError):
            return -1
        if got is None:
            return -1
        try:
            slot = json.loads(got[0]).get("slot")
        except (ValueError, AttributeError):
            return -1
        if not isinstance(slot, int) or slot < 0:
            return -1
        with self.c.state:
            self.hint_seen = max(self.hint_seen, slot)
        return slot

    def quorum_hint(self) -> tuple[bytes, Any] | None:
        """The highest hint of the stores that answer (all read at once; a hung minority
        is not waited for: the hint is only where tail discovery starts)."""
        best: tuple[bytes, Any] | None = None
        best_slot = -1
        for got in driver.each_store(self.c.stores, lambda s: s.get(HINT_KEY)):
            if got is None or isinstance(got, StoreError):
                continue
            try:
                s = json.loads(got[0]).get("slot")
            except (ValueError, AttributeError):
                continue
            if isinstance(s, int) and s > best_slot:
                best, best_slot = (got[0], got[1]), s
        return best

    def exists(self, slot: int) -> bytes | None:
        return self.cfg.fetch(slot)

    def exists_many(self, slots: list[int]) -> dict[int, bytes | None]:
        """``exists`` of each slot, in parallel."""
        if len(slots) == 1:
            return {slots[0]: self.exists(slots[0])}
        futs = {s: self.c.pool.submit(self.exists, s) for s in slots}
        return {s: f.result() for s, f in futs.items()}

    @staticmethod
    def narrow(
        found: dict[int, bytes | None], lo: int, lo_data: bytes | None, hi: int | None
    ) -> tuple[int, bytes | None, int | None]:
        """The search interval after a round of probes: the highest slot seen to exist,
        and the lowest slot above it seen missing (``hi`` if none)."""
        for slot in sorted(found):
            if found[slot] is not None and slot > lo:
                lo, lo_data = slot, found[slot]
        above = [slot for slot, data in found.items() if data is None and slot > lo]
        if above:
            hi = min(above) if hi is None else min(hi, min(above))
        return lo, lo_data, hi

    def head(self) -> int:
        """The last slot of the log (``-1`` when empty); never lists."""
        slot, _ = self.discover()
        return slot

    def discover(self, start: int | None = None) -> tuple[int, bytes | None]:
        """(last existing slot, its raw record) found from a starting guess."""
        with self.c.state:
            known = self.known[0] if self.known else -1
        guess = max(known, self.read_hint() if start is None else start)
        lo, lo_data = -1, None  # lo: a slot known to exist (-1: virtual)
        hi: int | None = None  # a slot known to be missing
        hit = self.cached(known) if known >= 0 else None
        if hit is not None:  # a slot we hold bounds the search from below: no GET for it
            lo, lo_data = known, hit[1]
        seen: dict[int, bytes | None] = {}  # every probe's answer
        if guess > lo:
            got = seen[guess] = self.exists(guess)
            if got is None:
                hi = guess
            else:
                lo, lo_data = guess, got
        # Both searches probe several slots at once (one round trip per round instead of
        # one per probe): a fresh process finds a tail 32 slots past the hint in ~3 round
        # trips instead of ~10, for a few more GETs. lo stays a slot seen to exist and hi
        # one seen missing (slots appearing meanwhile only move the answer forward).
        while True:
            base = 1
            while hi is None:
                found = self.exists_many([lo + base * (1 << k) for k in range(_PROBES)])
                seen.update(found)
                lo, lo_data, hi = self.narrow(found, lo, lo_data, None)
                base <<= _PROBES
            while hi - lo > 1:
                gap = hi - lo
                points = sorted({lo + (gap * k) // (_PROBES + 1) for k in range(1, _PROBES + 1)})
                found = self.exists_many([p for p in points if lo < p < hi])
                seen.update(found)
                lo, lo_data, narrowed = self.narrow(found, lo, lo_data, hi)
                hi = hi if narrowed is None else narrowed
            # slot lo+1 is missing: slots lo+2 and lo+4 must be missing too, as verify
            # checks (a deleted middle slot, or two or three consecutive ones, is damage;
            # filling it would break the chain there and erase the evidence). The first
            # search round usually probed them already; the rest go out in one batch.
            beyond = (lo + 2, lo + 4)
            todo = [p for p in beyond if p not in seen]
            if todo:
                seen.update(self.exists_many(todo))
            later = next((p for p in beyond if seen[p] is not None), None)
            if later is None:
                break
            first = self.exists(lo + 1)
            if first is None:
                url, key = self.c.where(lo + 1)
                raise DamagedSlotError(
                    lo + 1,
                    f"missing while slot {later} exists (a gap in the log)",
                    url=url,
                    key=key,
                )
            lo, lo_data, hi = lo + 1, first, None  # decided meanwhile: search on from it
            seen.clear()
        if lo >= 0 and lo_data is None:  # pragma: no cover - lo always comes with its data
            lo_data = self.cfg.fetch(lo)
        if lo >= 0 and lo_data is not None:
            self.learned(lo, lo_data)
        return lo, lo_data

    def learned(
        self, slot: int, data: bytes, digest: str | None = None, *, chained: bool = False
    ) -> None:
        """``slot`` exists with record ``data`` (``digest``: its ``record_hash``, when the
        caller has it and ``data`` is a record, not a tombstone; ``chained``: the caller
        checked that it names its predecessor's hash, see ``FencedWriter.check_chained``).

        The configuration view sees every record the tail learns, by whatever path (a
        read, a lost race, a resume's proposal): the next record is built on the known
        tail, and its ``conf`` and store set come from that view, so a tail record naming a
        membership change the view has not switched to would give a record that names no
        configuration, decided on the old set (the log then damaged for every reader)."""
        self.cfg.note(data)
        digest = digest or chain_hash(data, slot)
        with self.c.state:
            if self.known is None or slot > self.known[0]:
                self.known = (slot, digest)
                self.known_data = data
                self.known_chained = chained
                self.watch.saw(slot, self.c.runtime.monotonic())
            elif chained and slot == self.known[0]:
                self.known_chained = True
            if slot not in self.recent:
                self.recent[slot] = (digest, data)
                self.recent_bytes += len(data)
                while len(self.recent) > 1 and (
                    len(self.recent) > _RECENT_SLOTS or self.recent_bytes > _RECENT_BYTES
                ):
                    _, (_, old) = self.recent.popitem(last=False)
                    self.recent_bytes -= len(old)

    def cached(self, slot: int) -> tuple[str, bytes] | None:
        with self.c.state:
            return self.recent.get(slot)

    def fetch_reuse(self, slot: int) -> bytes | None:
        """``ConfigView.fetch``, served from the records this object has seen when it can: for reads
        only (verify and trim must see the stored bytes)."""
        hit = self.cached(slot)
        return hit[1] if hit is not None else self.cfg.fetch(slot)

    def maybe_write_hint(self) -> None:
        with self.c.state:
            if self.known is None or self.hint_inflight:
                return
            slot = self.known[0]
            now = self.c.runtime.monotonic()
            stale = slot - self.hint_seen
            wrote_before = self.hint_last_write > float("-inf")
            due = stale >= self.hint_every or (
                wrote_before and stale > 0 and now - self.hint_last_write >= self.hint_interval
            )
            if not due or now - self.hint_last_write < self.hint_min_interval:
                return
            self.hint_inflight = True
            self.hint_last_write = now
            self.hint_seen = slot
        try:
            self.hint_pool.submit(self.write_hint, slot)
        except RuntimeError:  # closed
            with self.c.state:
                self.hint_inflight = False

    def write_hint(self, slot: int) -> None:
        data = json.dumps({"slot": slot}).encode()
        try:  # a hint is never relied on: failures ignored, a hung store not waited for
            driver.each_store(self.c.stores, lambda s: s.put(HINT_KEY, data, PutMode.OVERWRITE))
        finally:
            with self.c.state:
                self.hint_inflight = False

    def observe(self) -> int:
        """The current tail slot, learned with one read when it has not moved."""
        with self.c.state:
            known = self.known[0] if self.known else None
        if known is None:
            return self.discover()[0]
        got = self.cfg.fetch(known + 1)
        if got is None:
            return known
        self.learned(known + 1, got)
        return self.discover(known + 1)[0]
