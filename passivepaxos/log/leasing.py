"""The writer lease of one ``Log`` object: planning each record's lease field, waiting
out a lease that looks expired, and the holder's bookkeeping and lease reads.

The state machine and the clock arithmetic are :mod:`passivepaxos.lease` (pure); this
component applies them to the records the fenced writer sends and learns: it keeps the
``HolderLease`` while this object holds the lease (guarded by ``c.state``), refuses or
waits when someone else holds it, and serves a lease read only inside the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from passivepaxos import telemetry
from passivepaxos.errors import (
    ConfigError,
    LeaseHeldError,
    LeaseLostError,
    PassivePaxosError,
)
from passivepaxos.lease import EMPTY, HolderLease, LeaseMeta, LeaseRead, LeaseState, poll_pause
from passivepaxos.log.compaction import Compaction
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import tombstone_of
from passivepaxos.log.tail import Tail
from passivepaxos.snapshot import is_tombstone

__all__ = ["NotYet", "WriterLease"]


class NotYet(Exception):
    """claim_writer(wait=False): the lease is held; ``remaining`` seconds (own clock)."""

    def __init__(self, state: LeaseState, tail: int, remaining: float) -> None:
        super().__init__("not yet")
        self.state, self.tail, self.remaining = state, tail, remaining


class WriterLease:
    """This object's view of the writer lease and its own holding of it."""

    def __init__(
        self,
        c: LogContext,
        tail: Tail,
        snaps: Compaction,
        *,
        wait_expired_lease: bool,
        on_wait: Callable[[str | None, float], object] | None = None,
    ) -> None:
        self.c = c
        self.tail = tail
        self.snaps = snaps
        self.wait_expired_lease = wait_expired_lease
        # told (holder, seconds left) before an append waits out an expired lease or a
        # claim waits for the tail to stay unchanged (the CLI says so on stderr)
        self.on_wait = on_wait
        # a claim sent now marks its lease shared (Log.claim_writer(shared=True))
        self.claim_shared = False
        self.lease: HolderLease | None = None  # set while this object holds the lease

    def holding(self) -> HolderLease | None:
        with self.c.state:
            return self.lease

    def state_of(self, slot: int, data: bytes | None, *, fast: bool = True) -> LeaseState:
        if slot < 0 or data is None:
            return EMPTY
        with self.c.state:
            lease = self.lease
        if fast and lease is not None and lease.last_slot == slot:  # our own record: no parse
            return LeaseState(self.c.writer_id, lease.epoch, lease.ttl, lease.wall, lease.shared)
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
                telemetry.lease_lost("writer")
                raise LeaseLostError(self.c.url, tail + 1, state.holder, state, lease.epoch)
            meta = (
                LeaseMeta("release")
                if op == "release"
                else LeaseMeta(
                    "hold",
                    ttl if op == "claim" else lease.ttl,
                    self.c.runtime.wall(),
                    lease.shared or (op == "claim" and self.claim_shared),
                )
            )
            # The record may land even if we never learn it did, and a claimant may then
            # count its ttl: shrink the read window to it *before* sending, and serve no
            # lease read until its outcome is known (lease.HolderLease).
            with self.c.state:
                lease.sending(tail + 1, meta.ttl, self.c.runtime.monotonic())
                # a shared record may land unanswered, and another process of this
                # writer id may then write: no lease reads of this epoch from now on
                # (the third review's H1: an ambiguous shared renewal left them on)
                lease.shared = lease.shared or meta.shared
            return lease.epoch, meta
        if op == "release":  # pragma: no cover - release_writer checks first
            raise ConfigError("release: this process does not hold the writer lease")
        if op == "claim":
            plan: tuple[int, LeaseMeta | None] = (
                state.epoch + 1,
                LeaseMeta("claim", ttl, self.c.runtime.wall(), self.claim_shared),
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
        if self.on_wait is not None:
            self.on_wait(state.holder, remaining)
        self.wait_tail(tail, remaining, held_ttl)
        return None

    def wait_tail(self, tail: int, remaining: float, ttl: float) -> None:
        """Sleep until tail ``tail`` has been unchanged for ``ttl`` (own clock), polling it
        every ``ttl/10`` (``lease.poll_pause``: at most a second apart) so that a change
        restarts the wait promptly. No poll after the last sleep: the write that follows
        is a create of the next slot, which tells as much (a record there makes it lose,
        and the writer learns that record)."""
        while remaining > 0:
            pause = poll_pause(ttl)
            # at least 1 ms: a remainder of float dust (ttl minus elapsed rounding to a hair
            # above 0) must still move the clock, or plan and wait would spin on it
            # (simulator seed 12 of lease, a livelock)
            self.c.runtime.sleep(max(0.001, min(remaining, pause)))
            if remaining <= pause:
                return  # the ttl ran out (the caller plans again from the clock)
            if self.tail.observe() != tail:
                return
            with self.c.state:
                remaining = self.tail.watch.remaining(tail, ttl, self.c.runtime.monotonic())

    def adopt(self, tail: int, state: LeaseState) -> bool:
        """Take up the *shared* lease the record at ``tail`` gives our writer id (a new
        process of a named owner: ``writer claim --owner`` then ``append --owner``).
        Writes stay fenced by the log (a record lands only at the slot after the tail it
        was built on); a shared lease serves no lease reads, in any process, since two
        processes may write as its holder. ``False``: the lease is not ours, or not shared
        (a live library process's lease is never taken up behind its back: its lease
        reads would go stale, the outside review's H2)."""
        if state.holder != self.c.writer_id or state.ttl is None or not state.shared:
            return False
        with self.c.state:
            if self.lease is None or self.lease.epoch != state.epoch:
                self.lease = HolderLease(
                    state.epoch, state.ttl, tail, -math.inf, state.wall or 0.0, shared=True
                )
        return True

    def wrote(self, slot: int, epoch: int, meta: LeaseMeta | None, started: float) -> None:
        if meta is None:
            return
        with self.c.state:
            if meta.op == "claim":
                self.lease = HolderLease(
                    epoch, meta.ttl, slot, started, meta.wall, shared=meta.shared
                )
            elif meta.op == "release":
                self.lease = None
            elif self.lease is not None:
                self.lease.wrote(slot, started, meta.ttl, meta.wall)
                self.lease.shared = self.lease.shared or meta.shared  # a claim made it shared

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
                lease.shared = lease.shared or state.shared

    def earliest_send(self, started: float) -> float:
        """When the earliest send of ours that may have produced a record carrying our
        write id started: ``started``, or an earlier send still of unknown outcome."""
        with self.c.state:
            lease = self.lease
            return started if lease is None else min(started, lease.pending_since)

    def lease_read(self) -> LeaseRead | None:
        """What :meth:`passivepaxos.log.Log.lease_read` promises (its docstring is the normative text)."""
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
                lease.shared = lease.shared or state.shared
