"""Tail tracking: the end of the log as this process knows it, and how it finds it.

Owns the known tail (slot, hash, record), the records seen recently (so a state
machine's next read, or our own next write, needs no request for them), the tail hint
object and tail discovery. Discovery starts at the hint (read at open, beside the
manifest); on one create store whose backend lists strongly from a key it LISTs the
slots from there (one request shows the tail and any gap before it); otherwise it probes ``h, h+1,
h+2, h+4, ... h+32`` in parallel and narrows the gap, 6 probes a round. Slots have no gaps
(a record names its predecessor's hash), so a missing slot followed by an existing one is
damage, never skipped or filled.
"""

from __future__ import annotations

import collections
import json
import re
from concurrent.futures import Future
from typing import Any

from passivepaxos import fanout
from passivepaxos.errors import DamagedSlotError, QuorumError, StoreError
from passivepaxos.lease import TailWatch
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import chain_hash, slot_instance
from passivepaxos.log.tailcache import MAX_CACHED_RECORD, CachedTail, TailCache
from passivepaxos.snapshot import is_tombstone
from passivepaxos.types import PutMode, Version

__all__ = ["HINT_KEY", "Tail"]

HINT_KEY = "log/tail-hint"
_RECENT_SLOTS, _RECENT_BYTES = 256, 8 << 20  # bounds of Tail.recent
_PROBES = 6  # slots probed at once by tail discovery (see discover)
_LIST_MAX = 2000  # slots one listing discovery reads (2 pages) before probing on
_SLOT_KEY = re.compile(r"log/(\d{20})")


class Tail:
    """The known tail and the recent records (guarded by the context's ``state`` lock)."""

    def __init__(
        self,
        c: LogContext,
        cfg: ConfigView,
        *,
        hint_every: int,
        hint_min_interval: float,
        hint_prefetch: Future[tuple[bytes, Version] | None] | None = None,
    ) -> None:
        self.c = c
        self.cfg = cfg
        # the hint is an OVERWRITE, written rarely: when hint_every slots behind, or on a
        # release, at most once per hint_min_interval s per process (GCS allows
        # ~1 write/s per object name). Only a starting guess: its slot is always read
        self.hint_every = hint_every
        self.hint_min_interval = hint_min_interval
        # the hint object read by Log.open beside the manifest (one round trip for both);
        # taken by the first read_hint
        self.hint_prefetch = hint_prefetch
        self.cache: TailCache | None = None  # see warm() and remember()
        self.cached_slot = -1  # the slot last saved to the cache
        # the known tail came from the cache and nothing has confirmed it since: the first
        # sign that it is stale (a lost race, a trimmed slot, someone's lease) makes the
        # writer forget it and find the tail afresh (take_cached)
        self.from_cache = False
        self.cache_stale = False  # forget() ran: drop the cache entry unless replaced
        self.hole: int | None = None  # the lowest slot a discovery found to be a hole
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
        self.remember()

    def warm(self, cache: TailCache, got: CachedTail | None) -> bool:
        """Start from ``got``, the tail an earlier ``Log`` of this log left in ``cache``
        (used only if it names this log's identity and is a record of its slot); keep
        ``cache`` up to date from now on. Whether the cached tail was taken."""
        self.cache = cache
        if got is None or got.ident != self.c.ident or is_tombstone(got.record):
            return False
        try:
            self.c.decode(got.record, got.slot, None)
        except DamagedSlotError:
            return False  # a damaged cache entry: start cold
        # decided or chain-checked by the process that saved it (remember)
        self.learned(got.slot, got.record, chained=True)
        with self.c.state:
            self.cached_slot = got.slot
            self.hint_seen = max(self.hint_seen, got.slot)  # the hint is not read
            self.from_cache = True
        return True

    def take_cached(self) -> bool:
        """If the known tail came from the cache unconfirmed, forget it (the caller then
        finds the tail afresh: hint, LIST, the snapshots when it looks empty or trimmed)
        and say so; once per warm start."""
        with self.c.state:
            if not self.from_cache:
                return False
            self.from_cache = False
            self.forget()
            self.cached_slot = -1
            return True

    def confirmed(self) -> None:
        """The known tail is the log's own again (a write of ours was decided after it)."""
        with self.c.state:
            self.from_cache = False

    def remember(self) -> None:
        """Save the known tail to the cache, when it moved and this process decided it or
        checked that it chains (never a tombstone, never a large record)."""
        with self.c.state:
            cache, ident, known, data = self.cache, self.c.ident, self.known, self.known_data
            if cache is None or ident is None:
                return
            fit = (
                known is not None
                and data is not None
                and self.known_chained
                and len(data) <= MAX_CACHED_RECORD
                and not is_tombstone(data)
            )
            stale, self.cache_stale = self.cache_stale, False
            drop = stale and not fit
            if not drop and (
                not fit or known is None or (known[0] <= self.cached_slot and not stale)
            ):
                return
            self.cached_slot = -1 if drop or known is None else known[0]
        if drop:
            cache.drop(self.c.url)
            return
        assert known is not None and data is not None
        cache.save(self.c.url, CachedTail(ident, known[0], data))

    def committed(self) -> None:
        """After a batch was decided: the hint when due, the cache."""
        self.maybe_write_hint()
        self.remember()

    def record_at(self, slot: int) -> bytes | None:
        """The known tail's record if the known tail is ``slot``."""
        with self.c.state:
            return self.known_data if self.known is not None and self.known[0] == slot else None

    def forget(self) -> None:
        """Drop the view of the tail (it was found stale); caller holds ``c.state``. The
        cache entry goes too (``remember``), unless a checked tail replaces it: a stale
        entry would start the next ``Log`` of this machine from the same stale view (a
        slot after it may be a hole: simulator seed 4606 of damage)."""
        self.cache_stale = True
        self.known = None
        self.known_data = None
        self.recent.clear()
        self.recent_bytes = 0

    def read_hint(self) -> int:
        """The hinted tail slot (``-1``: no usable hint). A hint naming another log's
        identity is ignored: not even a guess."""
        prefetched, self.hint_prefetch = self.hint_prefetch, None
        try:
            if prefetched is not None:
                got = prefetched.result()
            elif len(self.c.stores) == 1:
                got = self.c.stores[0].get(HINT_KEY)
            else:
                got = self.quorum_hint()
        except (StoreError, QuorumError):
            return -1
        if got is None:
            return -1
        try:
            hint = json.loads(got[0])
            slot = hint.get("slot")
        except (ValueError, AttributeError):
            return -1
        if not isinstance(slot, int) or slot < 0:
            return -1
        log = hint.get("log")
        if log is not None and log != self.c.ident:
            return -1  # another log's hint (copied objects): not even a guess
        with self.c.state:
            self.hint_seen = max(self.hint_seen, slot)
        return slot

    def quorum_hint(self) -> tuple[bytes, Any] | None:
        """The highest hint of the stores that answer (all read at once; a hung minority
        is not waited for: the hint is only where tail discovery starts)."""
        best: tuple[bytes, Any] | None = None
        best_slot = -1
        for got in fanout.each_store(self.c.stores, lambda s: s.get(HINT_KEY)):
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
        """(last existing slot, its raw record) found from a starting guess (the hint
        when ``start`` is ``None``). A hole found on the way is ``DamagedSlotError``, and
        the known tail is forgotten (whether it is below the hole or a slot past it the
        search learned), so that the next write discovers again and is refused again
        instead of filling the hole, or building past it, from that view (re-review
        finding D; simulator seed 4801 of damage)."""
        try:
            return self.search(start)
        except DamagedSlotError as exc:
            self.found_hole(exc)
            raise

    def found_hole(self, exc: DamagedSlotError) -> None:
        """A discovery found a hole: forget the known tail, remember the hole (see
        ``discover`` and ``check_hole``)."""
        with self.c.state:
            self.forget()
            self.hole = exc.slot if self.hole is None else min(self.hole, exc.slot)

    def check_hole(self, slot: int) -> None:
        """Before writing ``slot``: if a discovery of this object found a hole below it,
        read the hole again; still missing is ``DamagedSlotError`` (a later discovery may
        sample past it, the hole is not forgotten: simulator seed 2261 of damage), there
        again (restored) clears it."""
        with self.c.state:
            hole = self.hole
        if hole is None or slot <= hole:
            return
        if self.exists(hole) is not None:
            with self.c.state:
                self.hole = None
            return
        url, key = self.c.where(hole)
        raise DamagedSlotError(
            hole,
            f"missing while later slots exist (found by an earlier tail discovery of this "
            f"Log): nothing was written at slot {slot}",
            url=url,
            key=key,
        )

    def search(self, start: int | None) -> tuple[int, bytes | None]:
        """``discover`` without the bookkeeping of a failure."""
        with self.c.state:
            known = self.known[0] if self.known else -1
        guess = max(known, self.read_hint() if start is None else start)
        lo, lo_data = -1, None  # lo: a slot known to exist (-1: virtual)
        hi: int | None = None  # a slot known to be missing
        hit = self.cached(known) if known >= 0 else None
        if hit is not None:  # a slot we hold bounds the search from below: no GET for it
            lo, lo_data = known, hit[1]
        seen: dict[int, bytes | None] = {}  # every probe's answer
        if self.lists_strongly():
            if guess > lo or guess == lo == -1:
                listed = self.list_tail(max(guess, 0))
            else:  # we hold slot lo: list what came after it
                listed = self.list_after(lo, lo_data)
            if listed is not None:
                return listed
        if guess > lo:
            # the guessed slot, the one before it (the writer checks that the tail names its
            # hash), the first probe round and guess+3 (the end check's, see end_checked)
            # at once: one round trip
            first = [guess, guess + 3] + [guess + (1 << k) for k in range(_PROBES)]
            found = self.exists_many(sorted(set(first)) + ([guess - 1] if guess > 0 else []))
            before = found.pop(guess - 1, None)
            got = found[guess]
            if got is not None and guess > 0:
                self.learned(guess - 1, self.hole_before(guess, before))
            if got is None:
                hi = guess  # probes past a missing guess prove nothing: not used
                seen[guess] = None
            else:
                seen.update(found)
                lo, lo_data, hi = self.narrow(found, guess, got, None)
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
            nxt = self.end_checked(lo + 1, seen)
            if nxt is None:
                self.recheck_below(lo, seen)
                break
            lo, lo_data, hi = lo + 1, nxt, None  # decided meanwhile: search on from it
            seen.clear()
        if lo >= 0 and lo_data is None:  # pragma: no cover - lo always comes with its data
            lo_data = self.cfg.fetch(lo)
        if lo >= 0 and lo_data is not None:
            self.learned(lo, lo_data)
        return lo, lo_data

    def gap(self, missing: int, later: int) -> DamagedSlotError:
        """The error for slot ``missing`` missing while slot ``later`` exists: damage (a
        record is only built after its predecessor was decided), never skipped or filled."""
        url, key = self.c.where(missing)
        return DamagedSlotError(
            missing, f"missing while slot {later} exists (a gap in the log)", url=url, key=key
        )

    def hole_before(self, slot: int, before: bytes | None) -> bytes:
        """Slot ``slot`` exists; ``before`` is what a read of slot ``slot - 1`` sent beside
        it answered. A record is only built after its predecessor was decided, so a
        "missing" is either that read racing the create (read again) or a hole:
        ``DamagedSlotError`` (re-review finding B). Returns slot ``slot - 1``'s record."""
        if before is None:
            before = self.exists(slot - 1)
        if before is None:
            raise self.gap(slot - 1, slot)
        return before

    def recheck_below(self, lo: int, seen: dict[int, bytes | None]) -> None:
        """Probing found the end after slot ``lo``; a probe below ``lo`` that answered
        "missing" was either racing a create (it exists now) or a hole: read it again
        (only when such an answer was seen: a healthy search pays nothing), and raise
        ``DamagedSlotError`` if it is still missing (re-review finding A)."""
        for slot in sorted(p for p, data in seen.items() if data is None and 0 <= p < lo):
            if self.exists(slot) is None:
                raise self.gap(slot, lo)

    def end_checked(self, missing: int, seen: dict[int, bytes | None]) -> bytes | None:
        """Slot ``missing`` was found missing, so the log looks like it ends before it: the
        slots 1, 2 and 3 after it must be missing too, as verify checks (a deleted middle
        slot, or two or three consecutive ones, is damage; filling it would break the
        chain there and erase the evidence). ``seen``: slots already read (the rest go out
        in one batch). ``None``: the end is confirmed; a record: slot ``missing`` was
        decided meanwhile (search on from it); ``DamagedSlotError`` naming ``missing``
        when it is still missing while a later slot exists."""
        beyond = (missing + 1, missing + 2, missing + 3)
        todo = [p for p in beyond if p not in seen]
        if todo:
            seen.update(self.exists_many(todo))
        later = next((p for p in beyond if seen[p] is not None), None)
        if later is None:
            return None
        nxt = self.exists(missing)
        if nxt is None:
            raise self.gap(missing, later)
        return nxt

    def lists_strongly(self) -> bool:
        """One create store whose LIST shows every acknowledged write and starts at a key
        without reading the ones before it (its slot objects are the only keys under
        ``log/`` besides the hint)."""
        caps = self.c.stores[0].capabilities
        return self.c.single_create and caps.strong_list and caps.seek_list

    def list_tail(self, guess: int) -> tuple[int, bytes | None] | None:
        """Tail discovery by listing (``lists_strongly``): one LIST of the slots from
        ``guess`` on, with (same round trip) GETs of ``guess`` and ``guess - 1``; then, if
        the tail is further on, the tail and its predecessor: the writer checks that the
        tail names its predecessor's hash without another round trip (and a hole right
        before the tail is seen).
        The listing shows every slot acknowledged before it started: the last listed slot
        is the tail (nothing after it existed), and a hole before it is damage
        (``DamagedSlotError`` naming the first missing slot), never filled. ``guess`` 0:
        from the start of the log, no GET first. ``None``: the guessed slot is missing,
        or the log goes on past ``_LIST_MAX`` slots (probe instead)."""
        want = [] if guess == 0 else [guess, guess - 1]
        futs = {s: self.c.pool.submit(self.exists, s) for s in want}
        try:
            slots = self.listed_slots(guess)
        finally:
            got = {s: f.result() for s, f in futs.items()}
        if slots is None:
            return None
        if not slots:
            return (-1, None) if guess == 0 else None
        tail = slots[-1]
        if guess > 0:
            if got[guess] is None:
                return None  # listed, then gone: let probing find out
            got[guess - 1] = self.hole_before(guess, got[guess - 1])  # re-review finding B
            for s in sorted(got):
                data = got[s]
                if data is not None:
                    self.learned(s, data)
        if guess > 0 and tail == guess:
            return guess, got[guess]
        return self.read_listed_tail(tail, guess if guess > 0 else -1)

    def list_after(self, lo: int, lo_data: bytes | None) -> tuple[int, bytes | None] | None:
        """``list_tail`` when slot ``lo`` is held: one LIST of the slots after it; if there
        are any, the last one and the one before it (``None``: probe instead)."""
        slots = self.listed_slots(lo + 1, held=lo)
        if slots is None:
            return None
        if not slots:
            return lo, lo_data
        return self.read_listed_tail(slots[-1], lo)

    def read_listed_tail(self, tail: int, held: int) -> tuple[int, bytes] | None:
        """The listed tail's record and, unless it is slot 0 or slot ``held`` (already
        read), its predecessor's, in one round trip (the writer checks the tail's chain
        from the cache); ``None`` when either vanished since the listing (probe instead)."""
        fetch = [tail] if tail == 0 or tail - 1 == held else [tail, tail - 1]
        more = self.exists_many(fetch)
        data = more[tail]
        if data is None or (len(fetch) == 2 and more[tail - 1] is None):
            return None  # deleted since it was listed: let probing find out
        before = more.get(tail - 1)
        if before is not None:
            self.learned(tail - 1, before)
        self.learned(tail, data)
        return tail, data

    def listed_slots(self, guess: int, *, held: int | None = None) -> list[int] | None:
        """The slots from ``guess`` on, listed (``guess, guess+1, ... tail``); ``None``
        when ``guess`` is missing but a later slot exists (unless ``held``: slot ``guess -
        1`` is known to exist, so that is a hole too), or past ``_LIST_MAX`` slots.
        Raises ``DamagedSlotError`` at a hole after ``guess``."""
        slots: list[int] = []
        after = slot_instance(guess - 1) if guess > 0 else None
        for meta in self.c.stores[0].list("log/", start_after=after):
            m = _SLOT_KEY.fullmatch(meta.key)
            if m is None:
                continue  # the hint (nothing else a create log writes under log/)
            slot, expect = int(m.group(1)), guess + len(slots)
            if slot != expect:
                if not slots and held is None:
                    return None  # the guess itself is missing: probing looks below it
                raise self.gap(expect, slot)
            slots.append(slot)
            if len(slots) >= _LIST_MAX:
                return None
        return slots

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

    def maybe_write_hint(self, *, force: bool = False) -> None:
        """Write the hint when the known tail is ``hint_every`` slots past the last hint
        this process read or wrote, or (``force``) after a release (the next writer, often
        a fresh process, starts from it); never on a timer alone (a low-rate writer pays
        ~1/hint_every request per entry for it; a claim is not forced: the holder's
        appends would pay for it).
        At most one write per ``hint_min_interval`` s, in the background."""
        with self.c.state:
            if self.known is None or self.hint_inflight:
                return
            slot = self.known[0]
            now = self.c.runtime.monotonic()
            stale = slot - self.hint_seen
            due = stale >= self.hint_every or (force and stale > 0)
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
        hint: dict[str, Any] = {"slot": slot}
        if self.c.ident is not None:
            hint["log"] = self.c.ident  # a copy of it on another log is ignored there
        data = json.dumps(hint, sort_keys=True).encode()
        try:  # a hint is never relied on: failures ignored, a hung store not waited for
            fanout.each_store(self.c.stores, lambda s: s.put(HINT_KEY, data, PutMode.OVERWRITE))
        finally:
            with self.c.state:
                self.hint_inflight = False

    def observe(self) -> int:
        """The current tail slot, learned with one read when it has not moved. When it
        moved, a watcher (a claimant, a lock waiter) has usually missed one record: on a
        store that probes, one round of the end check's reads right after it (the 4 slots
        after it missing: ``end_checked``) confirms the end before any search does (5
        requests instead of ~10); a store that lists strongly lists after it."""
        with self.c.state:
            known = self.known[0] if self.known else None
        if known is None:
            return self.discover()[0]
        got = self.cfg.fetch(known + 1)
        if got is None:
            return known
        self.learned(known + 1, got)
        if not self.lists_strongly():
            after = known + 2
            seen = self.exists_many([after, after + 1, after + 2, after + 3])
            if seen[after] is None:
                try:
                    if self.end_checked(after, seen) is None:
                        return known + 1
                except DamagedSlotError as exc:
                    self.found_hole(exc)
                    raise
        return self.discover(known + 1)[0]
