"""The exception tree every backend maps its native errors onto, in one place per backend.

Callers branch on these classes, never on SDK exceptions, so the protocol core behaves the
same on S3, GCS, Dropbox, local disk and memory::

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
    │       └── AppendOutcomeUnknownError  an append that may be decided; .token resumes it
    └── QuorumError                 (later layers) no majority of stores answered

A ``TransientError`` raised by a *conditional* write means "outcome unknown" at the backend
level; the store layer (``passivepaxos.store.Store``) turns that into a definite answer by
reading back the write id, or into ``AmbiguousWriteError`` when even that is impossible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    "InvalidObjectError",
    "NotAMemberError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PassivePaxosError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "QuorumError",
    "StoreError",
    "StragglerError",
    "ThrottledError",
    "TransientError",
    "UnsupportedError",
]


class PassivePaxosError(Exception):
    """Root of everything this library raises on purpose."""


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
    still take effect. Quorum protocols count the store as silent for that step."""


class AmbiguousWriteError(StoreError):
    """A conditional write may or may not have taken effect and reading back could not tell."""


class DeadlineExceededError(StoreError):
    """The operation's deadline (``passivepaxos.deadline``) passed before this request was
    sent or answered, and no write of the operation is in doubt: a plain failure. Not a
    ``TransientError``: nothing should retry past a deadline."""


class DeadlineAmbiguousError(AmbiguousWriteError, DeadlineExceededError):
    """The deadline passed after a write of the operation had been sent and before its
    outcome was established: "outcome unknown"."""


class QuorumError(PassivePaxosError):
    """No majority of the stores of a quorum answered."""


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
