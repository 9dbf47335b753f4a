"""The exception tree every layer raises, in one place, and the taxonomy callers branch on.

Callers branch on these classes (or on the two flags below), never on SDK exceptions, so the
protocol core behaves the same on S3, GCS, Dropbox, local disk and memory. This module
imports nothing from the library at run time (constructors take plain values or duck-typed
objects), so every module may import it without creating an import cycle::

    PassivePaxosError
    ├── ConfigError                 bad URL, unknown scheme, missing credentials, bad option
    ├── UnsupportedError            the store lacks a capability (names it)
    ├── StoreError                  anything a store said; carries .url and .key
    │   ├── NotFoundError           the object is missing where one was required (CAS, delete)
    │   ├── ContainerNotFoundError  the bucket / directory / folder itself does not exist
    │   ├── PermissionDeniedError   credentials rejected or action not allowed
    │   ├── ConflictError           a condition did not hold; .current is what is there now
    │   │   ├── AlreadyExistsError      create-if-absent lost: someone else's object is there
    │   │   └── PreconditionFailedError compare-and-swap lost: the version moved
    │   ├── InvalidObjectError      the bytes are not a valid passivepaxos object (checksum,
    │   │                           truncation, foreign or future format)
    │   ├── NotAMemberError         the store does not hold this log's manifest (lost its
    │   │                           state, or another log's): its answers are not counted
    │   ├── TransientError          worth retrying: throttling, 5xx, timeouts, connection loss
    │   │   ├── ThrottledError      the service asked us to slow down; .retry_after seconds
    │   │   └── StragglerError      a quorum went on without this store's answer
    │   ├── DeadlineExceededError   the operation's deadline passed (nothing left in doubt)
    │   └── AmbiguousWriteError     a conditional write whose outcome could not be established
    │       ├── DeadlineAmbiguousError  the deadline passed after a write was sent
    │       ├── OutcomeUnknownError        a proposal whose value may be accepted, unconfirmed
    │       ├── AppendOutcomeUnknownError  an append that may be decided; .token resumes it
    │       │   └── ForwardOutcomeUnknownError  a forwarded append's parcel may be folded
    │       ├── RetriedAmbiguousError      a retried recipe append stayed unclear; .max_slot
    │       ├── ResultCompactedError       a recipe entry landed, its answer was compacted away
    │       └── ResultUnreadError          a recipe entry landed, reading up to it failed
    ├── QuorumError                 no majority of stores answered
    ├── LockHeldError               (recipes) the lock is held by someone else
    ├── LockLostError               (recipes) our refresh/release was refused: taken over
    ├── StaleTokenError             (recipes) a fenced resource refused an old token
    ├── LeaseError                  (log) the writer lease: LeaseHeldError, LeaseLostError
    ├── TrimmedSlotError            (log) the slot was trimmed: nothing written
    ├── PipelineAbortedError        (log) an earlier pipelined append failed: not written
    ├── CompactedError              (log) entries compacted into application state
    └── TrimRefusedError            (log) a trim no snapshot covers

(and, under the classes they refine: DamagedSlotError and DamagedSnapshotError are
InvalidObjectErrors, MembershipConflictError a ConfigError, MembershipIncompleteError a
QuorumError)

The taxonomy: two class-level flags every error carries, so that a caller decides what to do
from the flag instead of from a list of classes (``is_retryable`` / ``is_outcome_unknown``
take any exception)::

    class                        retryable  outcome_unknown  what the caller does
    PassivePaxosError               no          no          (the defaults) report it
    ConfigError                     no          no          fix the input (CLI exit 2)
    UnsupportedError                no          no          another store or mode (exit 2)
    StoreError                      no          no          a definite failure (exit 1)
      NotFoundError                 no          no          as above
      ContainerNotFoundError        no          no          create the bucket / directory
      PermissionDeniedError         no          no          fix the credentials
      ConflictError                 no          no          lost a race: read .current
        AlreadyExistsError          no          no          as above
        PreconditionFailedError     no          no          as above
      InvalidObjectError            no          no          damage: never skipped
      NotAMemberError               no          no          re-add the store (membership)
      TransientError                yes         no          try again, with backoff
        ThrottledError              yes         no          try again after .retry_after
        StragglerError              yes         no          count the store as silent
      DeadlineExceededError         no          no          nothing in doubt; never retried
                                                            past the deadline (exit 1)
      AmbiguousWriteError           yes         yes         may have landed: retry only an
                                                            idempotent write (exit 3)
        DeadlineAmbiguousError      yes         yes         as above, under a new deadline
        OutcomeUnknownError         yes         yes         propose again: the decided
                                                            value is returned
        AppendOutcomeUnknownError   yes         yes         resume with .token, once
        ForwardOutcomeUnknownError  yes         yes         resume with .token (fwd:...), once
        RetriedAmbiguousError       yes         yes         the entry's request id makes
                                                            copies one; read to learn
        ResultCompactedError        no          yes         it landed: read current state
        ResultUnreadError           no          yes         it landed: read current state
    QuorumError                     yes         no          too few stores answered: retry
    LockHeldError                   no          no          held: acquire(wait=...) waits
    LockLostError                   no          no          our lock is gone: stop writing
    StaleTokenError                 no          no          a newer holder wrote: stop
    DamagedSlotError                no          no          (log) damage: never skipped
    DamagedSnapshotError            no          no          (log) damage: never skipped
    LeaseError                      no          no          (log) base of the lease errors
      LeaseHeldError                no          no          (log) wait .remaining or claim
      LeaseLostError                no          no          (log) not written: re-claim
    PipelineAbortedError            no          no          (log) not written: look at the
                                                            earlier failure, then append again
    TrimmedSlotError                no          no          (log) not written: stale view,
                                                            append again at the real tail
    CompactedError                  no          no          (log) load the snapshot's state
    TrimRefusedError                no          no          (log) snapshot first
    MembershipConflictError         no          no          (log) another change won
    MembershipIncompleteError       yes         no          (log) run the change again

``retryable``: the failure is not a verdict about the request; the same call again may
succeed. For an error whose outcome is unknown, retrying is safe only for a write that is
idempotent or carries its own request id (the recipes' entries do, an append resumes by
token). ``outcome_unknown``: a write may or may not have taken effect, and it may still take
effect later; it is never "not written". Classes moved here from other modules declare their
flags where they are defined; the defaults (no, no) hold otherwise.

A ``TransientError`` raised by a *conditional* write means "outcome unknown" at the backend
level; the store layer (``passivepaxos.store.Store``) turns that into a definite answer by
reading back the write id, or into ``AmbiguousWriteError`` when even that is impossible, so
above the store layer a ``TransientError`` from a conditional write leaves nothing in doubt
(one from a plain overwrite may have landed: a blind write, harmless to repeat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:  # for annotations only: no import at run time
    from passivepaxos.types import Version

__all__ = [
    "AlreadyExistsError",
    "AmbiguousWriteError",
    "AppendOutcomeUnknownError",
    "ConfigError",
    "ConflictError",
    "ContainerNotFoundError",
    "DeadlineAmbiguousError",
    "DeadlineExceededError",
    "ForwardOutcomeUnknownError",
    "InvalidObjectError",
    "LockHeldError",
    "LockLostError",
    "NotAMemberError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PassivePaxosError",
    "PermissionDeniedError",
    "PipelineAbortedError",
    "PreconditionFailedError",
    "QuorumError",
    "ResultCompactedError",
    "ResultUnreadError",
    "RetriedAmbiguousError",
    "StaleTokenError",
    "StoreError",
    "StragglerError",
    "ThrottledError",
    "TransientError",
    "UnsupportedError",
    "format_seconds",
    "is_outcome_unknown",
    "is_retryable",
]


def format_seconds(s: float) -> str:
    """A duration for messages: ``12.3s``; a huge one (a foreign record's ttl) stays short."""
    return f"{s:.1f}s" if abs(s) < 1e9 else f"{s:.3g}s"


def is_retryable(exc: BaseException) -> bool:
    """Whether trying the same call again may succeed (``PassivePaxosError.retryable``);
    ``False`` for anything this library did not raise on purpose."""
    return isinstance(exc, PassivePaxosError) and exc.retryable


def is_outcome_unknown(exc: BaseException) -> bool:
    """Whether a write may or may not have taken effect (``outcome_unknown``); ``False``
    for anything this library did not raise on purpose."""
    return isinstance(exc, PassivePaxosError) and exc.outcome_unknown


class PassivePaxosError(Exception):
    """Root of everything this library raises on purpose; its flags are the taxonomy (the
    module docstring's table): subclasses override them, callers branch on them."""

    retryable: ClassVar[bool] = False
    """Trying the same call again may succeed (the failure is no verdict on the request)."""
    outcome_unknown: ClassVar[bool] = False
    """A write may or may not have taken effect (and may still take effect later)."""


class ConfigError(PassivePaxosError, ValueError):
    """The caller asked for something malformed: a bad URL, option or argument."""


class UnsupportedError(PassivePaxosError):
    """The store cannot do what was asked; ``capability`` names what is missing."""

    def __init__(self, message: str, *, capability: str = "") -> None:
        super().__init__(message)
        self.capability = capability


class StoreError(PassivePaxosError):
    """Something a store said, with the URL and object key it concerns."""

    def __init__(self, message: str, *, url: str = "", key: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.key = key

    def __str__(self) -> str:
        msg = super().__str__()
        where = self.url
        if self.key is not None:
            where = f"{where.rstrip('/')}/{self.key}" if where else self.key
        return f"{where}: {msg}" if where and where not in msg else msg


class NotFoundError(StoreError):
    """The object is missing where one was required (compare-and-swap, conditional delete)."""


class ContainerNotFoundError(StoreError):
    """The bucket, directory or folder named by the URL does not exist."""


class PermissionDeniedError(StoreError):
    """The service refused the credentials or the action."""


class ConflictError(StoreError):
    """A write condition did not hold.

    ``current`` is what the key holds now as ``(data, version)``, read back by the store
    layer (``None`` when the key vanished meanwhile); callers that lost a race usually need
    the winner's value, so it costs them no extra request.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        key: str | None = None,
        current: tuple[bytes, Version] | None = None,
    ) -> None:
        super().__init__(message, url=url, key=key)
        self.current = current


class AlreadyExistsError(ConflictError):
    """A create-if-absent found someone else's object at the key."""


class PreconditionFailedError(ConflictError):
    """A compare-and-swap found a different version than the one expected."""


class InvalidObjectError(StoreError):
    """The bytes at a key are not a valid passivepaxos object (never silently skipped)."""


class NotAMemberError(StoreError):
    """The store does not hold the manifest with this log's identity: it was wiped or
    re-created empty (amnesia), or belongs to another log. Its answers never count toward a
    majority; it votes again only once re-added through a membership change."""


class TransientError(StoreError):
    """A failure worth retrying; for a conditional write it also means "outcome unknown"."""

    retryable = True


class ThrottledError(TransientError):
    """The service asked us to slow down."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        key: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, url=url, key=key)
        self.retry_after = retry_after


class StragglerError(TransientError):
    """A store had not answered when a majority had, plus a grace period; the request may
    still take effect. Quorum protocols count the store as silent for that step. It is the
    answer of one store to one step, never raised to a caller as an operation's outcome:
    the protocol decides from the majority whether the operation's outcome is known (an
    unknown one is an ``AmbiguousWriteError``), so its own ``outcome_unknown`` stays False."""


class AmbiguousWriteError(StoreError):
    """A conditional write may or may not have taken effect and reading back could not tell."""

    retryable = True
    outcome_unknown = True


class DeadlineExceededError(StoreError):
    """The operation's deadline (``passivepaxos.deadline``) passed before this request was
    sent or answered, and no write of the operation is in doubt: a plain failure. Not a
    ``TransientError``: nothing should retry past a deadline."""

    retryable = False


class DeadlineAmbiguousError(AmbiguousWriteError, DeadlineExceededError):
    """The deadline passed after a write of the operation had been sent and before its
    outcome was established: "outcome unknown". Retryable (as every ambiguous write) under a
    new deadline: a per-request deadline may pass while the operation's has not."""

    retryable = True
    outcome_unknown = True


class QuorumError(PassivePaxosError):
    """No majority of the stores of a quorum answered."""

    retryable = True


# -- the recipes' errors (passivepaxos.recipes re-exports them) ------------------------


class _Placed(Protocol):
    """Where an entry landed (``passivepaxos.log.Position``, duck-typed)."""

    @property
    def slot(self) -> int: ...
    @property
    def index(self) -> int: ...


class _Held(Protocol):
    """Who holds a lock now (``passivepaxos.recipes.lock.LockRecord``, duck-typed)."""

    @property
    def holder(self) -> str | None: ...
    @property
    def token(self) -> int: ...


class RetriedAmbiguousError(AmbiguousWriteError):
    """An attempt of a retried recipe append had an unknown outcome and the retries did not
    settle it: the entry may be in the log (maybe more than once; its request id makes the
    copies one). ``max_slot``: the highest slot a copy may occupy (``inf``: unknown)."""

    def __init__(
        self, message: str, *, max_slot: float, url: str = "", key: str | None = None
    ) -> None:
        super().__init__(message, url=url, key=key)
        self.max_slot = max_slot


class ResultCompactedError(AmbiguousWriteError):
    """Our entry landed at ``position``, but before this process applied it a snapshot
    covering it was restored (another process snapshotted and trimmed meanwhile): its
    effect is in the restored state, its answer (ok or refused) is not. Outcome unknown:
    read the current state to see what holds now. Not retryable: the entry is in the log,
    and sending the command again would apply it a second time."""

    retryable = False
    outcome_unknown = True

    def __init__(self, position: _Placed, url: str = "") -> None:
        super().__init__(
            f"outcome unknown: our entry landed at slot {position.slot} index "
            f"{position.index}, but a snapshot covering it was restored before we applied "
            "it, so its answer is not known here; read the current state",
            url=url,
        )
        self.position = position


class ResultUnreadError(AmbiguousWriteError):
    """Our entry is established at ``position``, but reading the log up to it failed
    (``cause``: an outage, the operation's deadline), so its answer (ok or refused) is not
    known here. Outcome unknown, never "not done": the entry is in the log and every replica
    applies it. Not retryable (sending the command again would apply it twice); read the
    current state to see what holds now."""

    retryable = False
    outcome_unknown = True

    def __init__(self, position: _Placed, cause: BaseException, url: str = "") -> None:
        super().__init__(
            f"outcome unknown: our entry landed at slot {position.slot} index "
            f"{position.index}, but reading the log up to it failed ({cause}); read the "
            "current state",
            url=url,
        )
        self.position = position


class LockHeldError(PassivePaxosError):
    """The lock is held by someone else (and could not be taken over in time). A verdict,
    not retryable: waiting for it is ``acquire(wait=...)``'s job."""

    def __init__(self, name: str, holder: str, token: int, remaining: float) -> None:
        super().__init__(
            f"lock {name!r} is held by {holder} (token {token}); it can be taken over only "
            f"after it stays unrefreshed for {format_seconds(remaining)} more of our own clock"
        )
        self.name, self.holder, self.token, self.remaining = name, holder, token, remaining


class LockLostError(PassivePaxosError):
    """Our refresh/release was refused: the lock was taken over (or released) meanwhile."""

    def __init__(self, name: str, token: int, now: _Held) -> None:
        who = "nobody" if now.holder is None else f"{now.holder} (token {now.token})"
        super().__init__(f"lock {name!r} with token {token} was lost: now held by {who}")
        self.name, self.token, self.holder = name, token, now.holder


class StaleTokenError(PassivePaxosError):
    """A fenced resource refused a request carrying a token lower than one it has seen, or
    the token it has seen last but from another owner."""

    def __init__(self, token: int, highest: int, *, used_by: str | None = None) -> None:
        if used_by is None:
            msg = f"stale fencing token {token}: token {highest} was already used"
        else:
            msg = f"fencing token {token} was already used by another owner ({used_by})"
        super().__init__(msg)
        self.token, self.highest = token, highest


class OutcomeUnknownError(AmbiguousWriteError):
    """A consensus proposal whose own value may have been accepted (an ACCEPT, or a Disk
    Paxos phase-2 block, carrying it was sent) could not establish the outcome: no majority
    answered afterwards. The value may be decided, or may be decided later by whoever
    finishes the instance; it is never "not written"."""


class AppendOutcomeUnknownError(AmbiguousWriteError):
    """An append whose record may have been decided at ``slot`` could not establish it.

    ``token`` (``"<slot>:<index>:<wid>"``) resumes it exactly once (one resume at a time):
    ``Log.append(values, resume=token)`` / ``passivepaxos append --resume TOKEN``. Exact
    because the record names its predecessor's hash and its slot, so it can only ever be
    decided at ``slot``: a resume first establishes that slot (proposing its own record
    there), and appends anew only once another record is decided there."""

    def __init__(
        self,
        message: str,
        *,
        slot: int,
        index: int,
        wid: str,
        url: str = "",
        key: str | None = None,
    ) -> None:
        super().__init__(message, url=url, key=key)
        self.slot, self.index, self.wid = slot, index, wid

    @property
    def token(self) -> str:
        return f"{self.slot}:{self.index}:{self.wid}"

    def at(self, index: int) -> AppendOutcomeUnknownError:
        """The same error for the caller whose values start at ``index`` of the batch."""
        token = f"{self.slot}:{index}:{self.wid}"
        out = AppendOutcomeUnknownError(
            PassivePaxosError.__str__(self).replace(self.token, token),
            slot=self.slot,
            index=index,
            wid=self.wid,
            url=self.url,
            key=self.key,
        )
        out.__cause__ = self.__cause__
        return out


class ForwardOutcomeUnknownError(AppendOutcomeUnknownError):
    """A forwarded append (``Log(forward=True)``) whose parcel exists, or may, and is not
    known to be in the log: anyone may still fold it. ``token`` is ``fwd:<base>.<fid>``;
    ``Log.append(values, resume=token)`` finishes it exactly once (docs/log.md,
    "Forwarding")."""

    def __init__(
        self, message: str, *, base: int, fid: str, url: str = "", key: str | None = None
    ) -> None:
        super().__init__(message, slot=base, index=0, wid=fid, url=url, key=key)
        self.base, self.fid = base, fid

    @property
    def token(self) -> str:
        return f"fwd:{self.base}.{self.fid}"

    def at(self, index: int) -> AppendOutcomeUnknownError:
        return self  # a parcel has one caller


# -- the log's errors (log, lease, snapshot/trim, membership) ------------------------------
# Defined here so that callers find every public error in one module; the modules that
# raise them re-export them under their old names. Constructors take plain values (or an
# object with the named attributes), so nothing here imports the rest of the library.

from typing import Protocol as _Protocol  # noqa: E402

__all__ += [
    "CompactedError",
    "DamagedSlotError",
    "DamagedSnapshotError",
    "LeaseError",
    "LeaseHeldError",
    "LeaseLostError",
    "MembershipConflictError",
    "MembershipIncompleteError",
    "TrimRefusedError",
    "TrimmedSlotError",
]


def format_wall(t: float | None) -> str:
    """``t`` (seconds since the epoch) as ISO-8601 UTC, or ``"-"``. Never raises: the value
    may come from a record another client wrote (any ttl), and display must not break a
    reader; a time no calendar date can show is written as seconds since the epoch."""
    if t is None:
        return "-"
    import datetime as _dt

    try:
        return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError, TypeError):
        return f"{t:.6g}s after 1970-01-01 (out of calendar range)"


class DamagedSlotError(InvalidObjectError):
    """A slot's record is invalid; ``slot`` and ``reason`` say which and why."""

    def __init__(self, slot: int, reason: str, *, url: str = "", key: str | None = None) -> None:
        super().__init__(f"slot {slot} is damaged: {reason}", url=url, key=key)
        self.slot = slot
        self.reason = reason


class DamagedSnapshotError(InvalidObjectError):
    """A snapshot object is invalid (never skipped: the newest one is what readers use)."""

    def __init__(self, slot: int, reason: str, *, url: str = "", key: str | None = None) -> None:
        super().__init__(f"snapshot at slot {slot} is damaged: {reason}", url=url, key=key)
        self.slot = slot
        self.reason = reason


class PipelineAbortedError(PassivePaxosError):
    """``Log.append_async``: an append queued behind one that failed was not written (so
    that the log never holds a later value of the pipeline without an earlier one);
    ``cause`` is that earlier failure."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class TrimmedSlotError(PassivePaxosError):
    """Slot ``slot`` was trimmed (its entries live in the snapshot at ``snapshot``)."""

    def __init__(self, slot: int, snapshot: int, url: str = "") -> None:
        where = f"{url}: " if url else ""
        super().__init__(
            f"{where}slot {slot} was trimmed (snapshot at {snapshot}); your view of the log "
            "is stale: nothing was written, retry to append at the real tail"
        )
        self.slot = slot
        self.snapshot = snapshot


class CompactedError(PassivePaxosError):
    """Entries were compacted into application state: they cannot be read as entries."""

    def __init__(self, from_slot: int, snapshot: int, url: str = "") -> None:
        where = f"{url}: " if url else ""
        super().__init__(
            f"{where}the entries of slots 0..{snapshot} were compacted into application state "
            f"(snapshot at slot {snapshot}); cannot read from slot {from_slot}: load the "
            f"state with Log.newest_snapshot() and read from slot {snapshot + 1}"
        )
        self.from_slot = from_slot
        self.snapshot = snapshot


class TrimRefusedError(PassivePaxosError):
    """``trim`` would lose data (no snapshot covers the slots) or makes no sense."""


class _LeaseView(_Protocol):
    """What the lease errors read of a lease state (``passivepaxos.lease.LeaseState``)."""

    @property
    def holder(self) -> str | None: ...
    @property
    def epoch(self) -> int: ...
    @property
    def expires(self) -> float | None: ...


class LeaseError(PassivePaxosError):
    """Base of the lease errors; ``holder``/``epoch`` describe the lease now in force."""

    def __init__(self, message: str, *, holder: str | None, epoch: int) -> None:
        super().__init__(message)
        self.holder = holder
        self.epoch = epoch


class LeaseHeldError(LeaseError):
    """Someone else holds a live writer lease: this append was refused (nothing written)."""

    def __init__(self, log: str, state: _LeaseView, *, remaining: float | None = None) -> None:
        wait = (
            ""
            if remaining is None
            else f"; it can be taken over after {format_seconds(remaining)} more"
        )
        msg = (
            f"{log}: the writer lease is held by {state.holder} (epoch {state.epoch}), "
            f"expires about {format_wall(state.expires)} (estimate from its clock){wait}; "
            "appends by others are refused while it is live"
        )
        super().__init__(msg, holder=state.holder, epoch=state.epoch)
        self.expires = state.expires
        self.remaining = remaining


class LeaseLostError(LeaseError):
    """The holder lost its lease: the slot it needed holds someone else's record. The
    entries of the failed append were NOT written and will never appear."""

    def __init__(
        self, log: str, slot: int, by: str | None, state: _LeaseView, my_epoch: int
    ) -> None:
        if state.holder is not None:
            now = f"now held by {state.holder} (epoch {state.epoch})"
        else:
            who = f"{by}'s" if by else "another writer's"
            now = f"ended by {who} record (epoch {state.epoch}, no holder now)"
        super().__init__(
            f"{log}: writer lease of epoch {my_epoch} lost at slot {slot}: {now}; "
            "the entries were not appended",
            holder=state.holder,
            epoch=state.epoch,
        )
        self.slot = slot
        self.by = by


class MembershipConflictError(ConfigError):
    """The configuration changed under a membership change (another change won)."""


class MembershipIncompleteError(QuorumError):
    """A removal was committed (the store is no longer a member) but its DECIDED markers
    are not yet on a majority of the remaining stores: the removed store must not be
    deleted yet; running the same ``members remove`` again finishes the copy."""

    def __init__(self, message: str, *, slot: int) -> None:
        super().__init__(message)
        self.slot = slot
