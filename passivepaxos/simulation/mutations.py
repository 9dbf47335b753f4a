"""Planted bugs for measuring the simulator's power: each re-introduces one finding of
issue 10 by reverting its fix for the duration of a run (a monkeypatch, as a test fixture
would), or switches on one of the consensus core's planted bugs (``core.MUTATIONS``).

Nothing here is imported by the library; ``applied(name)`` patches and un-patches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from passivepaxos.consensus import core

__all__ = ["FINDINGS", "MUTATIONS", "applied"]


@contextlib.contextmanager
def _core(name: str) -> Iterator[None]:
    saved = set(core.MUTATIONS)
    core.MUTATIONS.add(name)
    try:
        yield
    finally:
        core.MUTATIONS.clear()
        core.MUTATIONS.update(saved)


@contextlib.contextmanager
def _patched(obj: Any, attr: str, new: Any) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, new)
    try:
        yield
    finally:
        setattr(obj, attr, old)


MUTATIONS: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager[None]]]] = {}
"""name -> (what the bug is, a context manager planting it)."""

FINDINGS: dict[int, str] = {}
"""issue 10 finding -> the mutation that re-introduces it."""


def _register(
    name: str,
    what: str,
    plant: Callable[[], contextlib.AbstractContextManager[None]],
    finding: int | None = None,
) -> None:
    MUTATIONS[name] = (what, plant)
    if finding is not None:
        FINDINGS[finding] = name


for _m, _what in (
    ("accept_without_majority", "a proposer decides on one acceptor"),
    ("replay_ignores_higher_ballot", "an ACCEPT is accepted below the promise"),
    ("ambiguous_as_failed", "an unclear ACCEPT is retried with another value"),
    ("ignore_accepted_value", "phase 2 ignores what phase 1 reported"),
    ("disk_ignores_higher_mbal", "Disk Paxos never aborts"),
    ("cas_blind_write", "cas lists overwritten instead of swapped"),
):
    _register(f"core:{_m}", _what, lambda m=_m: _core(m))  # type: ignore[misc]

_register(
    "finding1",
    "proposers ignore DECIDED markers (issue 10 finding 1: core ignore_markers)",
    lambda: _core("ignore_markers"),
    1,
)
_register(
    "finding3",
    "the learner reads 'could not tell' as 'undecided' (issue 10 finding 3: core unknown_as_undecided)",
    lambda: _core("unknown_as_undecided"),
    3,
)


# -- issue 10's findings, each by reverting its fix for the run ------------------------------


@contextlib.contextmanager
def _finding2() -> Iterator[None]:
    """open_log accepts a URL list that is only part of a configuration (a client naming
    one store of a 3-store log runs the one-store protocol on it)."""
    from passivepaxos import manifest

    def same_list(given: tuple[str, ...], listed: tuple[str, ...]) -> bool:
        return set(given) <= set(listed)

    with _patched(manifest, "_same_list", same_list):
        yield


@contextlib.contextmanager
def _finding4() -> Iterator[None]:
    """The holder keeps its old lease-read window when it sends a renewal (shorter TTL
    included) whose answer may be lost: no cap, nothing pending."""
    from passivepaxos.lease import HolderLease

    def sending(self: HolderLease, slot: int, ttl: float, now: float) -> None:
        return None

    with _patched(HolderLease, "sending", sending):
        yield


@contextlib.contextmanager
def _finding5() -> Iterator[None]:
    """A lease read ignores the holder's own record in flight (or of unknown outcome)."""
    from passivepaxos.lease import READ_FRACTION, HolderLease

    def can_read(self: HolderLease, now: float) -> bool:
        return now < min(self.write_started + READ_FRACTION * self.ttl, self.cap)

    with _patched(HolderLease, "can_read", can_read):
        yield


@contextlib.contextmanager
def _finding6() -> Iterator[None]:
    """An append whose outcome is unknown is reported as a plain QuorumError ("no
    majority answered": read as not written)."""
    from passivepaxos.errors import AppendOutcomeUnknownError, QuorumError
    from passivepaxos.log import Log

    real = Log.append_positions

    def append_positions(self: Log, values: Any, *, resume: str | None = None) -> Any:
        try:
            return real(self, values, resume=resume)
        except AppendOutcomeUnknownError as exc:
            raise QuorumError(f"no majority of stores answered: {exc}") from None

    with _patched(Log, "append_positions", append_positions):
        yield


@contextlib.contextmanager
def _finding7() -> Iterator[None]:
    """A lock holder's validity ignores the ttl of an acquire/refresh it sends (so an
    ambiguous refresh with a shorter ttl leaves it believing for the old ttl)."""
    from passivepaxos.recipes.lock import Locks

    real = Locks._sending

    def sending(self: Locks, name: str, ttl: float) -> int:
        return real(self, name, float("inf"))

    with _patched(Locks, "_sending", sending):
        yield


@contextlib.contextmanager
def _finding9() -> Iterator[None]:
    """A store that lost its state (wiped: no manifest) still votes as a member."""
    from passivepaxos.manifest import MemberStore

    def check(self: MemberStore) -> None:
        return None

    with _patched(MemberStore, "_check", check):
        yield


@contextlib.contextmanager
def _finding11() -> Iterator[None]:
    """Tail discovery stops at the first missing slot it narrows to, without checking that
    the slots after it are missing too: landing on a deleted middle slot, append fills it."""
    from passivepaxos.log.tail import _PROBES, Tail

    def discover(self: Tail, start: int | None = None) -> tuple[int, bytes | None]:
        with self.c.state:
            known = self.known[0] if self.known else -1
        guess = max(known, self.read_hint() if start is None else start)
        lo, lo_data = -1, None
        hi: int | None = None
        hit = self.cached(known) if known >= 0 else None
        if hit is not None:
            lo, lo_data = known, hit[1]
        if guess > lo:
            got = self.exists(guess)
            if got is None:
                hi = guess
            else:
                lo, lo_data = guess, got
        base = 1
        while hi is None:
            found = self.exists_many([lo + base * (1 << k) for k in range(_PROBES)])
            lo, lo_data, hi = self.narrow(found, lo, lo_data, None)
            base <<= _PROBES
        while hi - lo > 1:
            gap = hi - lo
            points = sorted({lo + (gap * k) // (_PROBES + 1) for k in range(1, _PROBES + 1)})
            found = self.exists_many([p for p in points if lo < p < hi])
            lo, lo_data, narrowed = self.narrow(found, lo, lo_data, hi)
            hi = hi if narrowed is None else narrowed
        if lo >= 0 and lo_data is not None:
            self.learned(lo, lo_data)
        return lo, lo_data

    with _patched(Tail, "discover", discover):
        yield


@contextlib.contextmanager
def _list_hole() -> Iterator[None]:
    """Listing discovery takes the first hole in the listing for the end of the log (the
    slots after it ignored): landing on a deleted middle slot, append fills it."""
    from passivepaxos.log.record import slot_instance
    from passivepaxos.log.tail import _SLOT_KEY, Tail

    def listed_slots(self: Tail, guess: int, *, held: int | None = None) -> list[int] | None:
        slots: list[int] = []
        after = slot_instance(guess - 1) if guess > 0 else None
        for meta in self.c.stores[0].list("log/", start_after=after):
            m = _SLOT_KEY.fullmatch(meta.key)
            if m is None:
                continue
            if int(m.group(1)) != guess + len(slots):
                return slots or None
            slots.append(int(m.group(1)))
        return slots

    with _patched(Tail, "listed_slots", listed_slots):
        yield


@contextlib.contextmanager
def _finding11b() -> Iterator[None]:
    """The writer builds on the tail discovery found without checking that it chains to
    its predecessor (a record copied from another log is appended to)."""
    from passivepaxos.log.writer import FencedWriter

    def check_chained(self: FencedWriter, slot: int, data: bytes) -> None:
        self.tail.learned(slot, data, chained=True)

    with _patched(FencedWriter, "check_chained", check_chained):
        yield


@contextlib.contextmanager
def _finding13() -> Iterator[None]:
    """verify parses only the first tombstone and jumps to the snapshot's anchor (a
    deleted or damaged tombstone after the first one goes unnoticed)."""
    from passivepaxos.log.verify import Verifier, VerifyReport
    from passivepaxos.snapshot import SnapshotInfo, is_tombstone

    def verify_tombstones(
        self: Verifier,
        start: int,
        prev: str,
        snap: SnapshotInfo | None,
        report: VerifyReport,
        progress: Any,
    ) -> tuple[int, str, SnapshotInfo | None]:
        data = self.cfg.fetch(start)
        if data is None or not is_tombstone(data):
            return start, prev, snap
        snap = snap or self.snaps.newest()
        if snap is None or snap.slot < start:
            return start, prev, snap
        report.trimmed = True
        report.slots = snap.slot + 1
        report.entries += 0 if snap.slots is None else sum(len(e) for e in snap.slots)
        return snap.slot + 1, snap.hash, snap

    with _patched(Verifier, "verify_tombstones", verify_tombstones):
        yield


@contextlib.contextmanager
def _finding13b() -> Iterator[None]:
    """A writer forgets the snapshots it has seen, so it writes at or below one without
    reading the slot first (a deleted tombstone's hole is filled and acknowledged)."""
    from passivepaxos.log.compaction import Compaction

    def saw(self: Compaction, slot: int) -> None:
        return None

    with _patched(Compaction, "saw", saw):
        yield


_register("finding2", "open_log accepts part of a configuration (issue 10 finding 2)", _finding2, 2)
_register(
    "finding4",
    "an ambiguous renewal keeps the old lease-read window (issue 10 finding 4)",
    _finding4,
    4,
)
_register(
    "finding5",
    "a lease read ignores the holder's own record in flight (issue 10 finding 5)",
    _finding5,
    5,
)
_register(
    "finding6",
    "an append of unknown outcome reported as QuorumError (issue 10 finding 6)",
    _finding6,
    6,
)
_register(
    "finding7",
    "lock validity ignores the ttl of a refresh in flight (issue 10 finding 7)",
    _finding7,
    7,
)
_register("finding9", "a wiped store votes as a member (issue 10 finding 9)", _finding9, 9)
_register(
    "finding11",
    "tail discovery fills a deleted middle slot (issue 10 finding 11: no check past the gap)",
    _finding11,
    11,
)
_register(
    "list_hole",
    "listing tail discovery stops at a hole as if the log ended there (issue 12: the LIST "
    "path's gap check)",
    _list_hole,
)
_register(
    "finding11b",
    "a writer builds on a foreign record found as the tail (issue 10 finding 11: no chain check)",
    _finding11b,
)
_register(
    "finding13",
    "verify checks only the first tombstone (issue 10 finding 13)",
    _finding13,
    13,
)
_register(
    "finding13b",
    "a writer forgets the snapshots it saw and writes into a deleted tombstone's hole "
    "(issue 10 finding 13)",
    _finding13b,
)


@contextlib.contextmanager
def _fold_twice() -> Iterator[None]:
    """A fold takes a parcel without reading the records since its base (the at-most-once
    rule of forwarding dropped: a parcel folded by two writers is in the log twice)."""
    from passivepaxos.log.forward import Forwarder

    with _patched(Forwarder, "absent", lambda self, fid, base, slot, window=None: True):
        yield


@contextlib.contextmanager
def _ack_unfolded() -> Iterator[None]:
    """A producer takes the slot its own fold wrote for its acknowledgement whether or not
    its parcel made it into that record (a holder folded it elsewhere, or not at all)."""
    from passivepaxos.log.forward import Forwarder
    from passivepaxos.log.record import Position

    real = Forwarder.fold_myself

    def fold_myself(self: Any, fid: str, base: int, lead: Any) -> Any:
        got = real(self, fid, base, lead)
        if got is None:
            with self.c.state:
                known = self.tail.known
            return None if known is None else Position(known[0], 0)
        return got

    with _patched(Forwarder, "fold_myself", fold_myself):
        yield


@contextlib.contextmanager
def _peek_trusts_slot() -> Iterator[None]:
    """A producer's first look takes the slot where its parcels usually land for its
    acknowledgement whenever a record is there, without checking that the record names
    its parcel."""
    from passivepaxos.log.forward import Forwarder
    from passivepaxos.log.record import Position

    real = Forwarder.peek

    def peek(self: Any, slot: int, fid: str) -> Any:
        got = real(self, slot, fid)
        if got is None and self.record(slot) is not None:
            return Position(slot, 0)
        return got

    with _patched(Forwarder, "peek", peek):
        yield


@contextlib.contextmanager
def _pipeline_lifo() -> Iterator[None]:
    """Group commit takes the newest queued append first (a queue served out of order:
    a pipeline's later value can be decided in an earlier slot)."""
    from passivepaxos.log.batch import GroupCommit

    real = GroupCommit.lead_round

    def lead_round(self: Any) -> None:
        with self.lock:
            self.queue.reverse()
        real(self)

    with _patched(GroupCommit, "lead_round", lead_round):
        yield


@contextlib.contextmanager
def _pipeline_unbroken() -> Iterator[None]:
    """A failed round aborts nothing: the async appends behind it are written (second
    outside review of issue 12, B1)."""
    from passivepaxos.log.batch import GroupCommit

    with _patched(GroupCommit, "abort_piped", lambda self, exc: None):
        yield


@contextlib.contextmanager
def _lead_always() -> Iterator[None]:
    """The holder leads every slot it proposes, a retry of the same slot included, not
    only the one after its own record (issue 12: the leader's precondition)."""
    from passivepaxos.log.writer import FencedWriter

    def always(self: FencedWriter, slot: int) -> bool:
        return self.leasing.holding() is not None

    with _patched(FencedWriter, "take_lead", always):
        yield


_register(
    "lead_always",
    "the lease holder opens every slot it proposes with a leader's ACCEPT, retries "
    "included (issue 12: one leader per slot)",
    _lead_always,
)
_register(
    "pipeline_unbroken",
    "a failed append_async breaks nothing: later values go in without it (issue 12)",
    _pipeline_unbroken,
)
_register(
    "pipeline_lifo",
    "group commit serves the newest queued append first (issue 12: pipelining's order)",
    _pipeline_lifo,
)
_register(
    "fold_twice",
    "forwarding folds a parcel without checking the records since its base (issue 12)",
    _fold_twice,
)
_register(
    "peek_trusts_slot",
    "a forwarding producer's first look acknowledges at the slot it guessed whether or "
    "not the record there names its parcel (issue 12)",
    _peek_trusts_slot,
)
_register(
    "ack_unfolded",
    "a forwarding producer is acknowledged at the tail whether or not its parcel is there "
    "(issue 12)",
    _ack_unfolded,
)



@contextlib.contextmanager
def _waiter_withdraws() -> Iterator[None]:
    """A group-commit waiter whose deadline passes withdraws (``nothing was written``)
    even when a round already took its values (issue 14's review: they then land)."""
    from passivepaxos.log import batch

    never = property(lambda self: False, lambda self, value: None)
    with _patched(batch.Pending, "taken", never):
        yield


_register(
    "waiter_withdraws",
    "a group-commit waiter out of time reports its values not written although a round "
    "in flight carries them (issue 14 review)",
    _waiter_withdraws,
)

@contextlib.contextmanager
def applied(name: str | None) -> Iterator[None]:
    """Plant mutation ``name`` (None: nothing) for the duration of the block."""
    if name is None:
        yield
        return
    if name not in MUTATIONS:
        raise KeyError(f"unknown mutation {name!r}; known: {', '.join(sorted(MUTATIONS))}")
    with MUTATIONS[name][1]():
        yield
