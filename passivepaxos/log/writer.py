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

from passivepaxos.errors import (
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    ConfigError,
    DamagedSlotError,
    LeaseHeldError,
    LeaseLostError,
    MembershipConflictError,
    PassivePaxosError,
    QuorumError,
    StoreError,
    TrimmedSlotError,
)
from passivepaxos.lease import EMPTY, HolderLease, LeaseMeta, LeaseRead, LeaseState
from passivepaxos.log.compaction import Compaction
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
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

__all__ = ["FencedWriter", "NotYet"]

# an append backs off after its first _BACKOFFS lost races, then races every slot (so it
# cannot be kept out forever by writers that keep winning); see commit
_BACKOFFS = 6


class NotYet(Exception):
    """claim_writer(wait=False): the lease is held; ``remaining`` seconds (own clock)."""

    def __init__(self, state: LeaseState, tail: int, remaining: float) -> None:
        super().__init__("not yet")
        self.state, self.tail, self.remaining = state, tail, remaining


class FencedWriter:
    """Writes slots; holds this object's writer lease (guarded by ``c.state``)."""

    def __init__(
        self,
        c: LogContext,
        cfg: ConfigView,
        tail: Tail,
        snaps: Compaction,
        *,
        backoff_max: float,
        wait_expired_lease: bool,
    ) -> None:
        self.c = c
        self.cfg = cfg
        self.tail = tail
        self.snaps = snaps
        # contention without a lease: a loser sleeps a random share of its last attempt's
        # time x 2^losses (at most backoff_max s), then jumps to the tail (see commit)
        self.backoff_max = backoff_max
        self.wait_expired_lease = wait_expired_lease
        self.lease: HolderLease | None = None  # set while this object holds the lease
        self.slot_writes = 0  # slot decisions attempted by this object (stats)

    def holding(self) -> HolderLease | None:
        with self.c.state:
            return self.lease

    def commit(
        self,
        entries: list[bytes],
        *,
        op: str | None = None,
        ttl: float = 0.0,
        wait: bool = True,
        config: ConfigChange | None = None,
        wid: str | None = None,
    ) -> int:
        """Write one slot holding ``entries``; return its number. Retries on the next slot
        after losing a race; a winner carrying our write id is our own earlier write.
        Writer lease (:mod:`passivepaxos.lease`): the holder writes only right after its own
        record and raises ``LeaseLostError`` (entries not written) when that slot goes to
        anyone else; others refuse, or wait out an apparently expired lease, while the tail
        says someone else holds it. ``op``: ``"claim"`` (ClaimWriter) or ``"release"``."""
        # 128 random bits, as uuid4 gave (minus 6 fixed ones); a resumed append reuses its id
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
                slot, prev, state = last + 1, chain_hash(found, last), self.state_of(last, found)
                continue
            plan = self.plan(slot - 1, state, op, ttl, wait)
            if plan is None:  # waited for a lease to expire: the tail may have moved
                slot, prev, state = self.tail_for_write()
                continue
            epoch, meta = plan
            rec = self.record(slot, prev, epoch, wid, entries, meta, config)
            self.slot_writes += 1
            started = self.c.runtime.monotonic()
            mine = rec.encode()
            try:
                decided = self.cfg.decide(slot, mine, frame_wid)
            except AmbiguousWriteError as exc:
                raise self.unknown(slot, wid, exc) from exc
            winner = self.race_result(slot, prev, decided, mine, wid, epoch, meta, started)
            if winner is None:
                return slot
            losses += 1
            quiet = self.backoff_max > 0 and op is None and config is None
            slot, prev, state = self.after_loss(slot, decided, winner, losses, started, quiet)

    def record(
        self,
        slot: int,
        prev: str,
        epoch: int,
        wid: str,
        entries: list[bytes],
        meta: LeaseMeta | None,
        config: ConfigChange | None,
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
            self.wrote(slot, epoch, meta, started)
            return None
        if is_tombstone(decided):
            self.stale_at_tombstone(slot, decided, wid)
            # our own write, landed then trimmed: maybe an earlier send's
            self.wrote(slot, epoch, meta, self.earliest_send(started))
            return None
        self.cfg.note(decided)
        winner = self.c.decode(decided, slot, prev)
        self.tail.learned(slot, decided, chained=True)
        if winner.wid == wid:  # our write id, other bytes: an earlier send landed
            self.wrote(slot, epoch, meta, self.earliest_send(started))
            return None
        won = winner.lease_state
        with self.c.state:
            lease = self.lease
            if lease is not None and (won.holder, won.epoch) != (self.c.writer_id, lease.epoch):
                self.lease = None
        if lease is not None and (won.holder, won.epoch) != (self.c.writer_id, lease.epoch):
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
            return last + 1, chain_hash(found, last), self.state_of(last, found)
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
            self.lease = None
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
        if known is None:
            last, data = self.tail.discover()
            known = (last, self.c.genesis if data is None else chain_hash(data, last))
            chained = False
            if last < 0:
                # The log looks empty: once per fresh process, list the snapshots (one
                # LIST): a snapshot means slot 0 was decided, so its name being free is a
                # deleted tombstone, and commit refuses to write there (finding 13).
                # Best effort: a writer not allowed to list is no worse off than before.
                with contextlib.suppress(StoreError, QuorumError):
                    self.snaps.slots()
        if known[0] >= 0 and data is not None and not chained:
            self.check_chained(known[0], data)
        prev = known[1] if known[0] >= 0 else self.c.genesis
        return known[0] + 1, prev, self.state_of(known[0], data)

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

    def state_of(self, slot: int, data: bytes | None, *, fast: bool = True) -> LeaseState:
        if slot < 0 or data is None:
            return EMPTY
        with self.c.state:
            lease = self.lease
        if fast and lease is not None and lease.last_slot == slot:  # our own record: no parse
            return LeaseState(self.c.writer_id, lease.epoch, lease.ttl, lease.wall)
        if is_tombstone(data):  # a trimmed tail keeps its lease state in the tombstone
            url, key = self.c.where(slot)
            t = tombstone_of(data, slot, url=url, key=key)
            self.snaps.saw(t.snap)
            return t.lease_state
        return self.c.decode(data, slot, None).lease_state

    def plan(
        self, tail: int, state: LeaseState, op: str | None, ttl: float, wait: bool
    ) -> tuple[int, LeaseMeta | None] | None:
        """(epoch, lease field) of the record to write after ``tail``; ``None`` after
        waiting (re-plan). Raises LeaseLostError / LeaseHeldError / NotYet."""
        with self.c.state:
            lease = self.lease
            lost = lease is not None and (state.holder, state.epoch) != (
                self.c.writer_id,
                lease.epoch,
            )
            if lost:
                self.lease = None
        if lease is not None:
            if lost:
                raise LeaseLostError(self.c.url, tail + 1, state.holder, state, lease.epoch)
            meta = (
                LeaseMeta("release")
                if op == "release"
                else LeaseMeta("hold", ttl if op == "claim" else lease.ttl, self.c.runtime.wall())
            )
            # The record may land even if we never learn it did, and a claimant may then
            # count its ttl: shrink the read window to it *before* sending, and serve no
            # lease read until its outcome is known (lease.HolderLease).
            with self.c.state:
                lease.sending(tail + 1, meta.ttl, self.c.runtime.monotonic())
            return lease.epoch, meta
        if op == "release":  # pragma: no cover - release_writer checks first
            raise ConfigError("release: this process does not hold the writer lease")
        if op == "claim":
            plan: tuple[int, LeaseMeta | None] = (
                state.epoch + 1,
                LeaseMeta("claim", ttl, self.c.runtime.wall()),
            )
        else:
            plan = (state.epoch, None)
        if state.holder is None:
            return plan
        held_ttl = state.ttl if state.ttl is not None else ttl
        with self.c.state:
            remaining = self.tail.watch.remaining(tail, held_ttl, self.c.runtime.monotonic())
        if remaining <= 0:  # the tail stayed unchanged for a full TTL of our own time
            return plan
        if op == "claim":
            if not wait:
                raise NotYet(state, tail, remaining)
        elif not (
            self.wait_expired_lease
            and state.expires is not None
            and self.c.runtime.wall() >= state.expires
        ):
            raise LeaseHeldError(self.c.url, state, remaining=remaining)
        self.wait_tail(tail, remaining, held_ttl)
        return None

    def wait_tail(self, tail: int, remaining: float, ttl: float) -> None:
        """Sleep until tail ``tail`` has been unchanged for ``ttl`` (own clock), polling it
        every ``ttl/10`` so that a change restarts the wait promptly."""
        poll = Backoff(max(0.002, ttl / 10), max(0.002, ttl / 10), floor=1.0)
        while remaining > 0:
            self.c.runtime.sleep(min(remaining, poll.delay(0, self.c.runtime.rng)))
            if self.tail.observe() != tail:
                return
            with self.c.state:
                remaining = self.tail.watch.remaining(tail, ttl, self.c.runtime.monotonic())

    def wrote(self, slot: int, epoch: int, meta: LeaseMeta | None, started: float) -> None:
        if meta is None:
            return
        with self.c.state:
            if meta.op == "claim":
                self.lease = HolderLease(epoch, meta.ttl, slot, started, meta.wall)
            elif meta.op == "release":
                self.lease = None
            elif self.lease is not None:
                self.lease.wrote(slot, started, meta.ttl, meta.wall)

    def found_own(self, slot: int, state: LeaseState) -> None:
        """A decided record at ``slot`` carries this append's write id, but it may be an
        earlier send's (it landed late), not the bytes just sent: a claimant may have
        watched it since *that* send. If it holds our lease, count the read window from
        the earliest send of ours whose outcome was still unknown, never later."""
        with self.c.state:
            lease = self.lease
            if lease is None or (state.holder, state.epoch) != (self.c.writer_id, lease.epoch):
                return
            if state.ttl is None:  # our release
                self.lease = None
                return
            if lease.pending is not None and slot >= lease.last_slot:
                lease.wrote(slot, lease.pending_since, state.ttl, state.wall or 0.0)

    def earliest_send(self, started: float) -> float:
        """When the earliest send of ours that may have produced a record carrying our
        write id started: ``started``, or an earlier send still of unknown outcome."""
        with self.c.state:
            lease = self.lease
            return started if lease is None else min(started, lease.pending_since)

    def lease_read(self) -> LeaseRead | None:
        """A lease read: the current head without I/O, served only by the holder, only
        while no record of its own is in flight or of unknown outcome (it may be visible
        to others already), and only while 0.75 x TTL of its own time has not passed since
        it started its last successful write (the TTL of the shortest record it has sent
        since, if lower); ``None`` otherwise (use :meth:`head`). A record of unknown
        outcome is resolved once this object learns its slot (a read that reaches it, or
        the next write)."""
        self.settle_pending()
        with self.c.state:
            lease = self.lease
            now = self.c.runtime.monotonic()
            if lease is None or not lease.can_read(now):
                return None
            if self.tail.known is None or self.tail.known[0] != lease.last_slot:
                return None  # we learned of someone else's record: not exclusive any more
            return LeaseRead(lease.last_slot, lease.epoch, lease.read_deadline() - now)

    def settle_pending(self) -> None:
        """If our last record of unknown outcome was for the tail we have learned since,
        and it is ours, take it as our last write (no I/O: the tail is already read)."""
        with self.c.state:
            lease, known, data = self.lease, self.tail.known, self.tail.known_data
            if lease is None or lease.pending is None or known is None or data is None:
                return
            slot = known[0]
            if slot != lease.pending:
                return
        try:
            state = self.state_of(slot, data, fast=False)
        except PassivePaxosError:  # unreadable: stay unsettled (lease reads refused)
            return
        if (state.holder, state.epoch) != (self.c.writer_id, lease.epoch) or state.ttl is None:
            return  # not ours (lost, or released): lease_read refuses; a write will tell
        with self.c.state:
            if self.lease is lease and lease.pending == slot:
                lease.settle(slot, state.ttl, state.wall or 0.0)
