"""The fenced writer: one record into the next free slot, under the writer lease.

``commit`` builds a record after the tail it knows (its slot, its predecessor's hash, the
configuration's ``conf``), decides it, and on a lost race learns the winner and retries
on the next slot (a winner carrying our write id is our own earlier write). It plans
each record's lease field (:mod:`passivepaxos.lease`): a holder writes only right after
its own record and raises ``LeaseLostError`` when the slot goes to anyone else; others
refuse (``LeaseHeldError``) or wait out a lease whose tail stayed unchanged for its TTL of
their own time. Without a lease a loser backs off (``retry.Backoff``, the runtime's RNG)
and jumps to where the winner should be. It never writes at or below a snapshot it has
seen unless the slot is there, and never reports an append "not written" when it may
have been decided (``AppendOutcomeUnknownError``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from passivepaxos import telemetry
from passivepaxos.errors import (
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    DamagedSlotError,
    LeaseHeldError,
    LeaseLostError,
    MembershipConflictError,
    PassivePaxosError,
    QuorumError,
    StoreError,
    TrimmedSlotError,
)
from passivepaxos.lease import LeaseMeta, LeaseState
from passivepaxos.log.compaction import Compaction
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.leasing import NotYet, WriterLease
from passivepaxos.log.record import (
    Record,
    chain_hash,
    record_hash,
    tombstone_of,
    why_unknown,
)
from passivepaxos.log.tail import Tail
from passivepaxos.membership_data import ConfigChange
from passivepaxos.retry import Backoff
from passivepaxos.snapshot import is_tombstone

__all__ = ["FencedWriter", "Fold", "NothingToWrite", "RaceLost"]

# what a forward-mode commit adds to the record it proposes at a slot: the parcels' entries
# and their (fid, count) pairs (passivepaxos.log.forward)
Fold = Callable[[int], tuple[list[bytes], tuple[tuple[str, int], ...]]]


class RaceLost(Exception):  # control flow, never reaches a caller
    """``commit(lose_limit=n)``: the slot went to another record ``n`` times; nothing of
    this call was decided (each lost slot holds the winner's record)."""


class NothingToWrite(Exception):  # control flow, never reaches a caller
    """A fold found nothing to add and the call has no entries of its own: no record."""


# an append backs off after its first _BACKOFFS lost races, then races every slot (so it
# cannot be kept out forever by writers that keep winning); see commit
_BACKOFFS = 6


class FencedWriter:
    """Writes slots, each record's lease field planned by the writer lease."""

    def __init__(
        self,
        c: LogContext,
        cfg: ConfigView,
        tail: Tail,
        snaps: Compaction,
        leasing: WriterLease,
        *,
        backoff_max: float,
    ) -> None:
        self.c = c
        self.cfg = cfg
        self.tail = tail
        self.snaps = snaps
        self.leasing = leasing
        # contention without a lease: a loser sleeps a random share of its last attempt's
        # time x 2^losses (at most backoff_max s), then jumps to the tail (see commit)
        self.backoff_max = backoff_max
        self.slot_writes = 0  # slot decisions attempted by this object (stats)
        # (slot, write id) of the record being sent and not yet settled: what an interrupt
        # (Ctrl-C) inside commit leaves in doubt (see in_doubt)
        self.sending: tuple[int, str] | None = None
        # the slot this object leads (consensus core: "Leader's accept"): the one after a
        # record it decided with its own fresh bytes; taken at most once (take_lead)
        self.lead: int | None = None
        self.lead_lock = c.runtime.lock()

    def commit(
        self,
        entries: list[bytes],
        *,
        op: str | None = None,
        ttl: float = 0.0,
        wait: bool = True,
        config: ConfigChange | None = None,
        wid: str | None = None,
        fold: Fold | None = None,
        lose_limit: int = 0,
    ) -> int:
        """Write one slot holding ``entries``; return its number. Retries on the next slot
        after losing a race; a winner carrying our write id is our own earlier write.
        Writer lease (:mod:`passivepaxos.lease`): the holder writes only right after its own
        record and raises ``LeaseLostError`` (entries not written) when that slot goes to
        anyone else; others refuse, or wait out an apparently expired lease, while the tail
        says someone else holds it. ``op``: ``"claim"`` (ClaimWriter) or ``"release"``.
        ``fold``: called before each attempt with its slot, adds forwarded parcels to the
        record (may raise ``NothingToWrite``); ``lose_limit``: raise ``RaceLost`` after
        losing that many slots (0: never)."""
        # 128 random bits, as uuid4 gave (minus 6 fixed ones); a resumed append reuses its id
        fresh = wid is None  # only a record whose id we drew can make us a slot's leader
        wid = wid or self.c.runtime.token_hex(16)
        frame_wid = self.c.runtime.token_bytes(16)
        slot, prev, state = self.tail_for_write()
        losses = 0
        while True:
            with self.c.state:
                seen = self.snaps.seen
            if slot <= seen:
                # Our view of the tail is older than a snapshot we know of (slot 0..seen
                # were all decided), or the tail we found is inside the trimmed prefix:
                # never write there (one GET, only on this path; see below_snapshot).
                if self.below_snapshot(slot, seen, wid) is not None:
                    return slot  # our own earlier attempt, landed and then trimmed
                last, found = self.tail.discover(slot)
                assert found is not None  # slot exists (below_snapshot checked it)
                # found by discovery, not read in order: never build on a record copied
                # from another log (simulation seed 12431 of damage: acknowledged after
                # one, never read)
                self.check_chained(last, found)
                self.check_anchor(last, found, seen)
                slot, prev, state = (
                    last + 1,
                    chain_hash(found, last),
                    self.leasing.state_of(last, found),
                )
                continue
            self.tail.check_hole(slot)
            try:
                plan = self.leasing.plan(slot - 1, state, op, ttl, wait)
            except (LeaseHeldError, NotYet):
                if self.tail.take_cached():  # a cached tail's lease: look at the log first
                    slot, prev, state = self.tail_for_write()
                    continue
                raise
            if plan is None:  # waited for a lease to expire: the tail may have moved
                slot, prev, state = self.tail_for_write()
                continue
            epoch, meta = plan
            extra, fwd = fold(slot) if fold is not None else ([], ())
            rec = self.record(slot, prev, epoch, wid, entries + extra, meta, config, fwd)
            self.slot_writes += 1
            started = self.c.runtime.monotonic()
            mine = rec.encode()
            stale = False
            with self.in_flight(slot, wid):
                try:
                    decided = self.cfg.decide(slot, mine, frame_wid, lead=self.take_lead(slot))
                except AmbiguousWriteError as exc:
                    raise self.unknown(slot, wid, exc) from exc
                try:
                    winner = self.race_result(slot, prev, decided, mine, wid, epoch, meta, started)
                except (TrimmedSlotError, DamagedSlotError):
                    # from a cached tail: trimmed since, or the winner does not chain to
                    # it (the store was rolled back below it and written again:
                    # re-review finding C)
                    if not self.tail.take_cached():
                        raise
                    stale = True
            if stale:
                slot, prev, state = self.tail_for_write()
                continue
            if winner is None:
                if fresh and meta is not None and meta.op != "release" and decided == mine:
                    # a record of our lease (claim or hold) with our own bytes: we lead the
                    # next slot (no lock taken otherwise: the simulator's schedules of
                    # runs without a lease stay those of before the leader existed)
                    with self.lead_lock:
                        self.lead = slot + 1
                self.tail.confirmed()
                return slot
            telemetry.slot_lost(self.c.url)
            if self.tail.take_cached():
                # Lost right after a cached tail: others wrote since this machine's last
                # visit. Find the tail afresh (hint, LIST, snapshots when it looks empty
                # or trimmed) instead of walking from a view of unknown age: it may be
                # behind a snapshot or a hole this object never saw (review finding).
                slot, prev, state = self.tail_for_write()
                continue
            losses += 1
            if losses == lose_limit:
                raise RaceLost(slot)
            quiet = self.backoff_max > 0 and op is None and config is None
            slot, prev, state = self.after_loss(slot, decided, winner, losses, started, quiet)

    def take_lead(self, slot: int) -> bool:
        """Whether to open ``slot`` with a leader's ACCEPT (one request per store on a
        quorum, no PREPARE, no marker write). The consensus core needs *at most one*
        process ever to do so per slot; ours is the author of the record before it: this
        object decided slot ``slot - 1`` with the exact bytes it built, under a write id
        it drew itself (128 random bits, so no other process built those bytes; a resumed
        append's id was not drawn here and makes no leader). Taken once: a retry of the
        slot, and every later slot, runs ordinary rounds until this object decides a
        record again. Only the writer lease's holder leads: a leader's next accept goes
        out while a loser is still learning the slot it lost, so a writer without a lease
        that keeps appending would keep everyone else out (others are refused anyway
        while a lease is held; a membership change waits for it)."""
        if self.lead is None:
            return False
        with self.lead_lock:
            mine, self.lead = self.lead == slot, None
        return mine and self.leasing.holding() is not None

    @contextlib.contextmanager
    def in_flight(self, slot: int, wid: str) -> Iterator[None]:
        """Remember the record being sent to ``slot`` until its race is read: an
        interrupt (a ``BaseException``, not an ``Exception``) leaves it remembered for
        :meth:`in_doubt`; an answer or an error clears it."""
        self.sending = (slot, wid)
        try:
            yield
        except Exception:
            self.sending = None
            raise
        self.sending = None

    def in_doubt(self) -> AppendOutcomeUnknownError | None:
        """After an interrupt inside ``commit``: the record it may have sent, as an
        unknown outcome (``None``: nothing in flight). Clears it."""
        got, self.sending = self.sending, None
        if got is None:
            return None
        return self.unknown(got[0], got[1], PassivePaxosError("interrupted while sending"))

    def record(
        self,
        slot: int,
        prev: str,
        epoch: int,
        wid: str,
        entries: list[bytes],
        meta: LeaseMeta | None,
        config: ConfigChange | None,
        fwd: tuple[tuple[str, int], ...] = (),
    ) -> Record:
        """The record to propose at ``slot``, in the configuration in effect there; a
        membership change whose ``from`` is no longer that configuration is refused."""
        current, conf = self.cfg.config_at(slot)
        if config is not None and config.from_ != current:
            raise MembershipConflictError(
                f"{self.c.url}: the stores changed meanwhile (now {','.join(current)}): "
                "another membership change was committed first; one change at a time"
            )
        return Record(
            slot,
            prev,
            self.c.writer_id,
            epoch,
            wid,
            tuple(entries),
            lease=meta,
            config=config,
            conf=conf,
            fwd=fwd,
        )

    def race_result(
        self,
        slot: int,
        prev: str,
        decided: bytes,
        mine: bytes,
        wid: str,
        epoch: int,
        meta: LeaseMeta | None,
        started: float,
    ) -> Record | None:
        """What was decided at ``slot`` after we proposed ``mine`` there: ``None`` when it
        is this append (our bytes, or an earlier send of ours: same write id, maybe
        trimmed since), else the winner's record. A holder that lost raises
        ``LeaseLostError`` (its entries were not written)."""
        if decided is mine or decided == mine:
            # our own bytes were decided: nothing to parse (we built them), no race
            self.cfg.note(decided)
            self.tail.learned(slot, decided, record_hash(decided), chained=True)
            self.leasing.wrote(slot, epoch, meta, started)
            return None
        if is_tombstone(decided):
            self.stale_at_tombstone(slot, decided, wid)
            # our own write, landed then trimmed: maybe an earlier send's
            self.leasing.wrote(slot, epoch, meta, self.leasing.earliest_send(started))
            return None
        self.cfg.note(decided)
        winner = self.c.decode(decided, slot, prev)
        self.tail.learned(slot, decided, chained=True)
        if winner.wid == wid:  # our write id, other bytes: an earlier send landed
            self.leasing.wrote(slot, epoch, meta, self.leasing.earliest_send(started))
            return None
        won = winner.lease_state
        with self.c.state:
            lease = self.leasing.lease
            if lease is not None and (won.holder, won.epoch) != (self.c.writer_id, lease.epoch):
                self.leasing.lease = None
        if lease is not None and (won.holder, won.epoch) != (self.c.writer_id, lease.epoch):
            telemetry.lease_lost("writer")
            raise LeaseLostError(self.c.url, slot, winner.writer, won, lease.epoch)
        return winner

    def after_loss(
        self,
        slot: int,
        decided: bytes,
        winner: Record,
        losses: int,
        started: float,
        quiet: bool,
    ) -> tuple[int, str, LeaseState]:
        """Where to try next after losing ``slot`` to ``winner`` (``losses`` so far):
        (slot, its ``prev``, the lease state after its predecessor). ``quiet``: a plain
        append without a lease, which backs off during its first losses."""
        if quiet and losses <= _BACKOFFS:
            # Contention: racing again at once for the next slot loses again to the
            # winner, who learns its own hash one round trip earlier; every loss costs
            # a create and a read. Back off (randomized, exponential in the losses of
            # this append) and then jump to the tail, so the slots go to one writer at
            # a time and the losers spend few requests meanwhile.
            took = max(self.c.runtime.monotonic() - started, 1e-4)
            pause = Backoff(took, self.backoff_max, floor=0.5).delay(
                min(losses, 8), self.c.runtime.rng
            )
            self.c.runtime.sleep(pause)
            # The winner went on at about one slot per attempt time: read the slot it
            # should have reached and try right after it (one GET; a wrong guess costs
            # one lost race, cheaper than searching for the exact tail every time).
            guess = slot + max(1, int(pause / took))
            got = self.tail.exists(guess)
            if got is not None:
                self.tail.learned(guess, got)
                jump: tuple[int, bytes | None] = (guess, got)
            else:
                jump = self.tail.discover(slot)
        elif losses % 4 == 0:  # far behind: jump to the tail instead of walking to it
            jump = self.tail.discover(slot)
        else:
            jump = (slot, None)
        last, found = jump
        if found is not None and last > slot:
            self.check_chained(last, found)
            return last + 1, chain_hash(found, last), self.leasing.state_of(last, found)
        return slot + 1, record_hash(decided), winner.lease_state

    def below_snapshot(self, slot: int, seen: int, wid: str) -> int | None:
        """``commit`` is about to write ``slot`` although a snapshot at slot ``seen >=
        slot`` exists. Read the slot: a record (our view was stale: the caller jumps to the
        tail) returns ``None``; a tombstone is ``stale_at_tombstone`` (raises
        ``TrimmedSlotError``, or returns ``slot`` when it was our own write); a missing
        slot is damage (a deleted tombstone or record): ``DamagedSlotError``, nothing
        written, since a record created there would be acknowledged and never read."""
        data = self.cfg.fetch(slot)
        if data is None:
            url, key = self.c.where(slot)
            raise DamagedSlotError(
                slot,
                f"missing below the snapshot at slot {seen} (a trimmed slot's tombstone, or "
                "a record, was deleted): nothing was written; tombstones must never be "
                "deleted (run `passivepaxos verify`)",
                url=url,
                key=key,
            )
        if is_tombstone(data):
            self.stale_at_tombstone(slot, data, wid)
            return slot
        self.tail.learned(slot, data)
        return None

    def stale_at_tombstone(self, slot: int, data: bytes, wid: str) -> None:
        """Our create of ``slot`` found a tombstone: the slot was decided long ago and then
        trimmed. Return only if the trimmed record was our own (an earlier ambiguous attempt
        of this very append, its entries are in the snapshot); otherwise forget the stale
        view of the tail (and any lease) and raise ``TrimmedSlotError``: never acknowledged."""
        url, key = self.c.where(slot)
        t = tombstone_of(data, slot, url=url, key=key)
        self.snaps.saw(t.snap)
        if t.wid == wid:
            return
        with self.c.state:
            self.tail.forget()
            self.leasing.lease = None
            self.snaps.listing = None
        raise TrimmedSlotError(slot, t.snap, self.c.url)

    def unknown(
        self, slot: int, wid: str, cause: PassivePaxosError, *, index: int = 0
    ) -> AppendOutcomeUnknownError:
        """The record aimed at ``slot`` may be decided there (its ACCEPT or create may have
        landed) and it could not be established: never "not written" (``QuorumError``)."""
        url, key = self.c.where(slot)
        return AppendOutcomeUnknownError(
            f"append outcome unknown: the entries may be in the log at slot {slot} "
            f"({why_unknown(cause)}); resume with token {slot}:{index}:{wid}",
            slot=slot,
            index=index,
            wid=wid,
            url=url,
            key=key,
        )

    def tail_for_write(self) -> tuple[int, str, LeaseState]:
        """(next slot, its ``prev`` hash, lease state after the tail) from what we know;
        discovers the tail only when nothing is known."""
        with self.c.state:
            known, data, chained = self.tail.known, self.tail.known_data, self.tail.known_chained
        discovered = known is None
        if known is None:
            last, data = self.tail.discover()
            known = (last, self.c.genesis if data is None else chain_hash(data, last))
            with self.c.state:  # discovery may have checked its chain (the slot before it)
                now = self.tail.known
                chained = now is not None and now[0] == last and self.tail.known_chained
            if last < 0 or (data is not None and is_tombstone(data)):
                # The log looks empty, or its tail is a tombstone: once per fresh process,
                # list the snapshots (one LIST). A snapshot means slot 0 was decided, so its
                # name being free is a deleted tombstone; a tombstone tail names the
                # snapshot it was trimmed against, but a later trim against a newer one
                # may have tombstoned the slots after it, and a free name there is a
                # deleted tombstone too. Commit refuses to write there (finding 13).
                # Best effort: a writer not allowed to list is no worse off than before.
                with contextlib.suppress(StoreError, QuorumError):
                    self.snaps.slots()
        if known[0] >= 0 and data is not None and not chained:
            self.check_chained(known[0], data)
            with self.c.state:
                seen = self.snaps.seen
            self.check_anchor(known[0], data, seen)  # a tail at or below a known snapshot
        if discovered and known[0] - self.tail.hint_seen >= self.tail.hint_every:
            # a hint far behind the tail just found is rewritten now, in the background
            # beside the create, not after the batch: a fresh process's close waits for
            # it, one round trip more (the same write, earlier). Looked at without the
            # lock (an int; maybe_write_hint decides under it): a lock taken on every
            # discovery would move the simulator's schedules for nothing
            self.tail.maybe_write_hint()
        prev = known[1] if known[0] >= 0 else self.c.genesis
        return known[0] + 1, prev, self.leasing.state_of(known[0], data)

    def check_anchor(self, last: int, data: bytes, seen: int) -> None:
        """The tail discovery found after a view older than the snapshot at slot ``seen``
        must be at or past it, and at ``seen`` it must be the record the snapshot anchors:
        otherwise a hole below the snapshot was filled (a stale writer in a deleted
        tombstone's hole, docs/log.md) and building on that record would acknowledge
        entries no reader reaches (readers go from the snapshot's anchor: simulator seed
        7311 of damage). One GET of the snapshot, only on this path."""
        if last > seen:
            return
        url, key = self.c.where(last)
        with self.c.state:  # the view is damaged: the next write discovers again
            self.tail.forget()
        if last < seen:
            raise DamagedSlotError(
                last + 1,
                f"missing below the snapshot at slot {seen}: nothing was written",
                url=url,
                key=key,
            )
        if chain_hash(data, last) != self.snaps.load(seen).hash:
            raise DamagedSlotError(
                last,
                f"its record is not the one the snapshot at slot {seen} anchors (a hole "
                "below the snapshot was filled): nothing was written; run `passivepaxos "
                "verify`",
                url=url,
                key=key,
            )

    def check_chained(self, slot: int, data: bytes) -> None:
        """Before building on record ``data`` of ``slot`` (found by discovery, not read in
        order): check that it names its predecessor's hash (the chain start for slot 0), so
        a record copied from another log or rewritten is never appended to (an entry acked
        there could never be read). Costs one read of slot ``slot - 1`` unless held.
        Raises ``DamagedSlotError`` naming the slot."""
        if is_tombstone(data):
            return
        if slot == 0:
            prev = self.c.genesis
        else:
            hit = self.tail.cached(slot - 1)
            if hit is not None:
                prev = hit[0]
            else:
                before = self.predecessor(
                    slot, f"missing while slot {slot} exists (a gap in the log)"
                )
                prev = chain_hash(before, slot - 1)
        self.c.decode(data, slot, prev)
        self.tail.learned(slot, data, chained=True)

    def predecessor(self, slot: int, missing: str) -> bytes:
        """The stored record of slot ``slot - 1``, which must exist for ``slot`` to be
        built on or checked; ``DamagedSlotError`` (reason ``missing``) naming it if not."""
        before = self.cfg.fetch(slot - 1)
        if before is None:
            url, key = self.c.where(slot - 1)
            raise DamagedSlotError(slot - 1, missing, url=url, key=key)
        return before
