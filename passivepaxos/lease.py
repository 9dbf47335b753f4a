"""The writer lease of a log (WALLE's ClaimWriter / WriterStatus / PutEntry): pure parts.

This module holds the lease *state machine* and the *clock arithmetic*; it does no I/O and
reads no clock (callers pass clock readings in), so every rule here is testable with
virtual clocks. :class:`passivepaxos.log.Log` wires it to storage.

Design
------
**The lease lives in the log.** A claim is an ordinary slot of the log whose record has
``epoch = previous epoch + 1``, ``writer = the claimant`` and a ``lease`` field
``{"op": "claim", "ttl": T, "wall": W}`` (``W``: the claimant's wall clock, for display
only). The epoch is the fencing token. Every later record of the holder carries that
epoch and ``{"op": "hold", ...}``; any record by the holder renews the lease (an idle
holder renews with an empty record). A record without a ``lease`` field is written
outside any lease (it keeps the last epoch; ``0`` on a log that never had a lease), and
``{"op": "release"}`` gives the lease up. So the lease state of the log after slot ``i``
is a function of record ``i`` alone (:meth:`LeaseState.of`): a reader learns it from the
tail it already discovers, never by scanning back.

**Writes are safe with arbitrarily wrong clocks.** Slots are decided by create-if-absent
(or consensus) and a record names its predecessor's hash, so there are no gaps and a
record can only land right after the record it was built on. The holder's next append
targets exactly the slot after the tail it knows, with a record saying "I, holder of
epoch E, continue after my own record". A claim by anyone else must take a slot too,
so whichever lands first wins that slot. If the holder loses its slot to a record that
is not its own, it learns it lost the lease (:class:`LeaseLostError` naming the new
holder and epoch) and that append is *not* acknowledged; its entries are not in the log
(the slot holds the winner's record) and it never retries them on a later slot. Hence a
stale holder (paused, partitioned, with a frozen or racing clock) never gets an
acknowledgement for an entry that readers will not see. No clock is involved.

**Non-holders do not commit behind the holder's back.** While the tail record says
someone else holds the lease, an ``append`` by anybody else raises
:class:`LeaseHeldError` (holder, epoch, expiry estimate) instead of writing.

**Expiry without trusting clocks across machines.** A non-holder may claim (or append)
only after it has seen the log's tail unchanged for a full TTL of its *own* elapsed
(monotonic) time: :class:`TailWatch` remembers when this process first learned the
current tail. The holder answers *lease reads* (the current head, no I/O) only while
``READ_FRACTION x TTL`` (0.75) of its own elapsed time has not passed since it *started*
its last successful write (:class:`HolderLease`), with two more rules, because a record
the holder sends may land although its answer is lost (an ambiguous write) and a
claimant then watches *that* record and counts *its* TTL:

- before sending a record with TTL ``T'`` (a renewal with a new TTL; ``0`` for a
  release), the window is lowered to ``now + 0.75 T'`` if that is earlier: the window is
  the minimum over every record sent or possibly sent since the last established one;
- while a record of its own is in flight, or its outcome is unknown after an error, no
  lease read is served at all (that record may be visible to readers already, and the
  head the holder knows would miss it); the next established write, or a read that
  reaches that slot, settles it.

Why that is enough: let the holder start sending the record a claimant watches (slot
``t``) at true time ``s``. The claimant's watch of tail ``t`` starts after it read record
``t``, so after ``s``; it waits that record's ``TTL`` on its clock, which runs at rate
``r_c`` (clock seconds per true second), so its claim lands at true time ``>= s + TTL /
r_c``. The holder stops serving lease reads at ``s + 0.75 TTL / r_h`` at the latest (a
record of ours after ``t`` would be the watched one instead). Every write by someone else
(the claim, and all that follow it) lands after the holder stopped answering iff ``TTL /
r_c >= 0.75 TTL / r_h``, i.e. ``r_c / r_h <= 1 / 0.75 = 4/3``: the claimant's clock may run
up to 33% faster than the holder's (any slower is fine), which covers a relative drift of
+/-25%. "Rate" includes stops: the holder's monotonic clock must keep counting while its
process is paused (it does for SIGSTOP and scheduling stalls; Linux's CLOCK_MONOTONIC does
not count a suspended machine). Outside that bound only lease reads can be stale (a
claimant whose clock runs 1.5x the holder's claims after 0.667 TTL of the holder's time
while the holder still answers until 0.75 TTL); writes and fencing stay exact because they
never consult a clock.

``expires`` (``wall + ttl`` of the tail record) is a wall-clock *estimate* for people; no
decision depends on it except one convenience: a non-holder's ``append`` waits out (with
the monotonic watch above) a lease whose estimate says it has expired, and refuses at
once one that looks live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# this module's errors live in passivepaxos.errors (re-exported here)
from passivepaxos.errors import (
    ConfigError,
    LeaseError,
    LeaseHeldError,
    LeaseLostError,
    format_seconds,
    format_wall,
)

__all__ = [
    "MAX_POLL",
    "MAX_TTL",
    "READ_FRACTION",
    "ClaimResult",
    "HolderLease",
    "LeaseError",
    "LeaseHeldError",
    "LeaseLostError",
    "LeaseMeta",
    "LeaseRead",
    "LeaseState",
    "TailWatch",
    "WriterStatus",
    "check_transition",
    "check_ttl",
    "check_wait",
    "format_seconds",
    "format_wall",
    "poll_pause",
]

READ_FRACTION = 0.75
OPS = ("claim", "hold", "release")


MAX_TTL = 86400.0
"""The longest lease or lock ttl this library sends (one day). The ttl is how long others
must wait after a holder crashes, so anything longer is almost surely a mistake (a typo,
or a unit mix-up), and a bound keeps ``wall + ttl`` and every wait computed from it an
ordinary number. Records written by other clients are still read whatever their ttl."""


def check_ttl(ttl: float, what: str = "--ttl") -> float:
    """``ttl`` if it is a number of seconds in ``(0, MAX_TTL]``; else ``ConfigError``."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
        raise ConfigError(
            f"{what} must be a number of seconds > 0 and at most {MAX_TTL:g} (one day), not {ttl!r}"
        )
    return float(ttl)


def check_wait(wait: float, what: str = "--wait", *, forever: bool = False) -> float:
    """``wait`` if it is a number of seconds ``>= 0`` (finite unless ``forever``: ``inf``
    then means "wait as long as it takes"); else ``ConfigError``."""
    ok = isinstance(wait, int | float) and not isinstance(wait, bool) and wait >= 0
    if not ok or (not forever and not math.isfinite(wait)):
        kind = "number" if forever else "finite number"
        raise ConfigError(f"{what} must be a {kind} of seconds >= 0, not {wait!r}")
    return float(wait)


# -- what a record says ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseMeta:
    """The optional ``lease`` field of a slot record."""

    op: str  # "claim" | "hold" | "release"
    ttl: float = 0.0
    wall: float = 0.0
    # a lease a named owner's later processes may take up (the CLI's claims): nobody
    # serves lease reads under it, since another process may write as its holder
    shared: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.op == "release":
            return {"op": "release"}
        out: dict[str, Any] = {"op": self.op, "ttl": self.ttl, "wall": self.wall}
        if self.shared:  # only then: records of unshared leases stay byte for byte
            out["shared"] = True
        return out

    @classmethod
    def from_json(cls, obj: Any) -> LeaseMeta:
        """Parse and validate; raises ``ValueError`` on anything malformed."""
        if not isinstance(obj, dict):
            raise ValueError("lease field is not an object")
        op = obj.get("op")
        if op not in OPS:
            raise ValueError(f"unknown lease op {op!r}")
        if op == "release":
            return cls("release")
        ttl, wall = obj.get("ttl"), obj.get("wall")
        for name, v in (("ttl", ttl), ("wall", wall)):
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"lease {name} is not a number")
        assert isinstance(ttl, int | float) and isinstance(wall, int | float)
        if ttl <= 0:
            raise ValueError("lease ttl must be > 0")
        shared = obj.get("shared", False)
        if not isinstance(shared, bool):
            raise ValueError("lease shared is not a boolean")
        return cls(str(op), float(ttl), float(wall), shared)


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The lease state of a log after some slot: a function of that slot's record."""

    holder: str | None  # None: nobody holds a lease
    epoch: int  # the last epoch claimed (0: never)
    ttl: float | None = None
    wall: float | None = None  # the holder's wall clock at its last record (display)
    shared: bool = False  # LeaseMeta.shared of the holder's last record

    @classmethod
    def of(cls, writer: str, epoch: int, meta: LeaseMeta | None) -> LeaseState:
        if meta is None or meta.op == "release":
            return cls(None, epoch)
        return cls(writer, epoch, meta.ttl, meta.wall, meta.shared)

    @property
    def expires(self) -> float | None:
        """Wall-clock estimate of the expiry (the holder's clock + ttl); display only."""
        if self.holder is None or self.ttl is None or self.wall is None:
            return None
        return self.wall + self.ttl


EMPTY = LeaseState(None, 0)


def check_transition(
    prev: LeaseState, writer: str, epoch: int, meta: LeaseMeta | None
) -> str | None:
    """Why a record (``writer``, ``epoch``, ``meta``) may not follow state ``prev``, or
    ``None`` if it may. Writers only ever build records that pass this."""
    if meta is not None and meta.op == "claim":
        if epoch != prev.epoch + 1:
            return f"claim of epoch {epoch} after epoch {prev.epoch}"
        return None
    if epoch != prev.epoch:
        return f"epoch {epoch} after epoch {prev.epoch}"
    if meta is not None and prev.holder != writer:
        return f"{meta.op} by {writer} who does not hold epoch {epoch}"
    return None


# -- this process as holder --------------------------------------------------------------


@dataclass
class HolderLease:
    """What the holder knows: its epoch, ttl, its last slot and when it *started* the last
    successful write (its own monotonic clock).

    Every record the holder *sends* may land, even when its answer never comes back, and
    a claimant may then count the ``ttl`` *that* record carries. So before sending a record
    with ttl ``T`` (``0`` for a release) the holder lowers ``cap`` to ``now + 0.75 T``:
    the read window is the minimum over every record it has sent or may have sent since its
    last established write. While a sent record's outcome is unknown (``pending``: the
    highest slot sent to; in flight, or ambiguous after an error) no lease read is served:
    that record may already be visible to others."""

    epoch: int
    ttl: float
    last_slot: int
    write_started: float
    wall: float = 0.0  # wall clock written into the last record (display only)
    cap: float = math.inf  # read-window bound from records sent but not established
    pending: int | None = None  # highest slot of a record sent whose outcome is unknown
    pending_since: float = math.inf  # when the first such send started (own clock)
    shared: bool = False  # LeaseMeta.shared: no lease reads (others may write as holder)

    def read_deadline(self) -> float:
        return min(self.write_started + READ_FRACTION * self.ttl, self.cap)

    def can_read(self, now: float) -> bool:
        """Lease reads are served while no record of ours is in flight or unresolved and
        ``now < min(write_started + 0.75 ttl, cap)``."""
        return not self.shared and self.pending is None and now < self.read_deadline()

    def sending(self, slot: int, ttl: float, now: float) -> None:
        """About to send a record for ``slot`` carrying ``ttl`` (``0``: a release); call
        *before* the request leaves, with ``now`` read before it."""
        self.cap = min(self.cap, now + READ_FRACTION * ttl)
        self.pending = slot if self.pending is None else max(self.pending, slot)
        self.pending_since = min(self.pending_since, now)

    def wrote(
        self, slot: int, started: float, ttl: float | None = None, wall: float | None = None
    ) -> None:
        """Our record at ``slot`` (send started at ``started``) is established: every slot
        before it is decided, so no earlier record of ours can land any more and a claimant
        must watch ``slot`` or a later record."""
        self.last_slot = slot
        self.write_started = max(self.write_started, started)
        if ttl is not None:
            self.ttl = ttl
        if wall is not None:
            self.wall = wall
        if self.pending is None or slot >= self.pending:
            self.cap, self.pending, self.pending_since = math.inf, None, math.inf

    def settle(self, slot: int, ttl: float, wall: float) -> None:
        """``slot`` (the highest we sent to) turned out to hold our own ``hold`` record,
        learned by a read: it was sent no earlier than ``pending_since``."""
        assert self.pending == slot
        self.wrote(slot, self.pending_since, ttl, wall)


@dataclass(frozen=True)
class LeaseRead:
    """A lease read's answer: the head slot, served without I/O; ``valid_for``: seconds of
    the holder's own clock left in the read window."""

    head: int
    epoch: int
    valid_for: float


# -- a non-holder watching the tail -------------------------------------------------------


MAX_POLL = 1.0  # seconds: the longest pause of a claimant or lock waiter between looks


def poll_pause(ttl: float) -> float:
    """How long a claimant or a lock waiter pauses between looks at a holder with ``ttl``:
    a tenth of it (about ten reads per ttl), at least 2 ms, and at most ``MAX_POLL`` (a
    release, or the end of the caller's wait, is noticed within a second whatever the
    holder's ttl; a ttl written by another client, 1e13 or inf, never asks for a sleep
    the platform cannot do)."""
    if math.isnan(ttl):
        return MAX_POLL
    return min(MAX_POLL, max(0.002, ttl / 10))


@dataclass
class TailWatch:
    """When this process first learned the current tail (its own monotonic clock)."""

    slot: int = -2
    since: float = 0.0

    def saw(self, slot: int, now: float) -> None:
        if slot != self.slot:
            self.slot, self.since = slot, now

    def remaining(self, slot: int, ttl: float, now: float) -> float:
        """Seconds (own clock) until tail ``slot`` has been unchanged for ``ttl``;
        ``ttl`` when this is not the tail being watched."""
        if slot != self.slot:
            return ttl
        return max(0.0, ttl - (now - self.since))


# -- results and errors ------------------------------------------------------------------


@dataclass(frozen=True)
class WriterStatus:
    """WriterStatus: who holds the lease, until about when, and whether we do."""

    holder: str | None
    epoch: int
    ttl: float | None
    expires: float | None  # wall-clock ESTIMATE (the holder's clock at its last record + ttl)
    mine: bool
    head: int

    def to_json(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "epoch": self.epoch,
            "ttl": self.ttl,
            "expires": format_wall(self.expires) if self.expires is not None else None,
            "expires_is_estimate": True,
            "mine": self.mine,
            "head": self.head if self.head >= 0 else None,
        }


@dataclass(frozen=True)
class ClaimResult:
    """ClaimWriter's answer. ``granted`` False ("not yet") only with ``wait=False``:
    ``remaining`` says how long (own clock) the current tail must stay unchanged first."""

    granted: bool
    holder: str | None
    epoch: int
    ttl: float | None
    expires: float | None
    slot: int  # the claim's slot when granted, else the tail watched
    remaining: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "holder": self.holder,
            "mine": self.granted,
            "epoch": self.epoch,
            "ttl": self.ttl,
            "expires": format_wall(self.expires) if self.expires is not None else None,
            "slot": self.slot,
            "remaining": round(self.remaining, 3),
        }
