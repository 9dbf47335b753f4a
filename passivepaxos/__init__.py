"""passivepaxos: consensus, an ordered shared log, writer leases, locks and a key-value
store on storage you already have (S3, GCS, Dropbox, local disk), with no acceptor
processes.

The curated public API, importable from here (``from passivepaxos import Log``); each name
is imported on first use (PEP 562), so ``import passivepaxos`` (and the CLI's start) stays
cheap. Everything else lives in its module and may change without notice.

The log:

- ``Log``: an ordered shared log over one store or a quorum (``Log.open(url)``).
- ``Entry``: one entry read from a log (slot, index, value).
- ``Position``: where an entry lives (slot, index in the slot's batch).
- ``init_log``: create a log on one store or a quorum (idempotent).

Stores:

- ``Store``: one store behind its URL: framing, write ids, retries, ambiguity resolution.
- ``open_store``: the ``Store`` for a URL (``memory://``, ``file://``, ``s3://``, ...).

Recipes (docs/recipes.md):

- ``Broadcast``: total order broadcast on a log.
- ``StateMachine``: apply a log's entries in order, once each.
- ``KV``: a key-value store with compare-and-set on a log.
- ``Locks``: named locks with fencing tokens.
- ``FencedResource``: an example resource that refuses stale fencing tokens.
- ``Election``: leader election on a lock.

The runtime seam (docs/architecture.md):

- ``Runtime``: clocks, sleep, randomness and concurrency, injected into every layer.
- ``REAL``: the production runtime (real clocks and threads).

Errors (``passivepaxos.errors``; docs/architecture.md "Errors"):

- ``is_retryable``: whether trying the same call again may succeed.
- ``is_outcome_unknown``: whether a write may or may not have taken effect.
- ``PassivePaxosError``: root of everything the library raises on purpose.
- ``ConfigError``: a malformed URL, option or argument.
- ``UnsupportedError``: the store lacks a capability.
- ``StoreError``: something a store said (with its URL and key).
- ``NotFoundError``: the object is missing where one was required.
- ``ContainerNotFoundError``: the bucket, directory or folder does not exist.
- ``PermissionDeniedError``: the service refused the credentials or the action.
- ``ConflictError``: a write condition did not hold.
- ``AlreadyExistsError``: a create-if-absent found someone else's object.
- ``PreconditionFailedError``: a compare-and-swap found another version.
- ``InvalidObjectError``: the bytes at a key are not a valid passivepaxos object.
- ``NotAMemberError``: the store does not hold this log's manifest.
- ``TransientError``: a failure worth retrying.
- ``ThrottledError``: the service asked us to slow down.
- ``StragglerError``: a quorum went on without this store's answer.
- ``DeadlineExceededError``: the operation's deadline passed, nothing in doubt.
- ``AmbiguousWriteError``: a write whose outcome could not be established.
- ``DeadlineAmbiguousError``: the deadline passed after a write was sent.
- ``OutcomeUnknownError``: a proposal whose value may be accepted, unconfirmed.
- ``AppendOutcomeUnknownError``: an append that may be decided; its token resumes it.
  ``ForwardOutcomeUnknownError``: the same for a forwarded append (``Log(forward=True)``).
  ``PipelineAbortedError``: an ``append_async`` queued behind a failed one, not written.
- ``RetriedAmbiguousError``: a retried recipe append stayed unclear.
- ``ResultCompactedError``: a recipe entry landed, its answer was compacted away.
- ``ResultUnreadError``: a recipe entry landed, reading the log up to it failed.
- ``QuorumError``: no majority of the stores answered.
- ``LockHeldError``: the lock is held by someone else.
- ``LockLostError``: our refresh or release was refused: the lock was taken over.
- ``StaleTokenError``: a fenced resource refused an old fencing token.
- ``LeaseError``: the writer lease's errors.
- ``LeaseHeldError``: another writer holds the lease.
- ``LeaseLostError``: our writer lease was lost.
- ``DamagedSlotError``: a slot's record is damaged.
- ``DamagedSnapshotError``: a snapshot is damaged.
- ``CompactedError``: the entries asked for were compacted into a snapshot.
- ``TrimmedSlotError``: the slot was trimmed.
- ``TrimRefusedError``: a trim the log's snapshots do not cover.
- ``MembershipConflictError``: a membership change conflicts with another.
- ``MembershipIncompleteError``: a membership change did not complete.

And ``__version__``: the installed distribution's version.
"""

from __future__ import annotations

import importlib

# ``typing`` is not imported at run time: it would be most of this module's import time
# (type checkers read the block below as true, as they do for typing.TYPE_CHECKING)
TYPE_CHECKING = False
if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports
    from typing import Any

    from passivepaxos.errors import (
        AlreadyExistsError,
        AmbiguousWriteError,
        AppendOutcomeUnknownError,
        ConfigError,
        ConflictError,
        ContainerNotFoundError,
        DeadlineAmbiguousError,
        DeadlineExceededError,
        ForwardOutcomeUnknownError,
        InvalidObjectError,
        LockHeldError,
        LockLostError,
        NotAMemberError,
        NotFoundError,
        OutcomeUnknownError,
        PassivePaxosError,
        PermissionDeniedError,
        PipelineAbortedError,
        PreconditionFailedError,
        QuorumError,
        ResultCompactedError,
        ResultUnreadError,
        RetriedAmbiguousError,
        StaleTokenError,
        StoreError,
        StragglerError,
        ThrottledError,
        TransientError,
        UnsupportedError,
        is_outcome_unknown,
        is_retryable,
    )
    from passivepaxos.lease import LeaseError, LeaseHeldError, LeaseLostError
    from passivepaxos.log import DamagedSlotError, Entry, Log, Position
    from passivepaxos.manifest import init_log
    from passivepaxos.membership import MembershipConflictError, MembershipIncompleteError
    from passivepaxos.recipes.election import Election
    from passivepaxos.recipes.kv import KV
    from passivepaxos.recipes.lock import FencedResource, Locks
    from passivepaxos.recipes.rsm import StateMachine
    from passivepaxos.recipes.tob import Broadcast
    from passivepaxos.runtime import REAL, Runtime
    from passivepaxos.snapshot import (
        CompactedError,
        DamagedSnapshotError,
        TrimmedSlotError,
        TrimRefusedError,
    )
    from passivepaxos.store import Store, open_store

__all__ = [
    "KV",
    "REAL",
    "AlreadyExistsError",
    "AmbiguousWriteError",
    "AppendOutcomeUnknownError",
    "Broadcast",
    "CompactedError",
    "ConfigError",
    "ConflictError",
    "ContainerNotFoundError",
    "DamagedSlotError",
    "DamagedSnapshotError",
    "DeadlineAmbiguousError",
    "DeadlineExceededError",
    "Election",
    "Entry",
    "FencedResource",
    "ForwardOutcomeUnknownError",
    "InvalidObjectError",
    "LeaseError",
    "LeaseHeldError",
    "LeaseLostError",
    "LockHeldError",
    "LockLostError",
    "Locks",
    "Log",
    "MembershipConflictError",
    "MembershipIncompleteError",
    "NotAMemberError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PassivePaxosError",
    "PermissionDeniedError",
    "PipelineAbortedError",
    "Position",
    "PreconditionFailedError",
    "QuorumError",
    "ResultCompactedError",
    "ResultUnreadError",
    "RetriedAmbiguousError",
    "Runtime",
    "StaleTokenError",
    "StateMachine",
    "Store",
    "StoreError",
    "StragglerError",
    "ThrottledError",
    "TransientError",
    "TrimRefusedError",
    "TrimmedSlotError",
    "UnsupportedError",
    "__version__",
    "init_log",
    "is_outcome_unknown",
    "is_retryable",
    "open_store",
]

# public name -> the module that defines it; every other name of __all__ but __version__
# lives in passivepaxos.errors. The log cluster's errors are named where they are defined
# today (those modules keep re-exporting them once they move to errors.py).
_HOME: dict[str, str] = {
    **dict.fromkeys(("LeaseError", "LeaseHeldError", "LeaseLostError"), "passivepaxos.lease"),
    **dict.fromkeys(("DamagedSlotError", "Entry", "Log", "Position"), "passivepaxos.log"),
    **dict.fromkeys(
        ("CompactedError", "DamagedSnapshotError", "TrimRefusedError", "TrimmedSlotError"),
        "passivepaxos.snapshot",
    ),
    **dict.fromkeys(
        ("MembershipConflictError", "MembershipIncompleteError"), "passivepaxos.membership"
    ),
    "init_log": "passivepaxos.manifest",
    "Store": "passivepaxos.store",
    "open_store": "passivepaxos.store",
    "REAL": "passivepaxos.runtime",
    "Runtime": "passivepaxos.runtime",
    "Broadcast": "passivepaxos.recipes.tob",
    "StateMachine": "passivepaxos.recipes.rsm",
    "KV": "passivepaxos.recipes.kv",
    "Locks": "passivepaxos.recipes.lock",
    "FencedResource": "passivepaxos.recipes.lock",
    "Election": "passivepaxos.recipes.election",
}


def _version() -> str:
    """The installed distribution's version; in a source checkout that is not installed,
    ``pyproject.toml``'s; else ``0+unknown`` (never an import error)."""
    from importlib import metadata
    from pathlib import Path

    try:
        return metadata.version("passivepaxos")
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "passivepaxos" and isinstance(project.get("version"), str):
            return str(project["version"])
    except (OSError, ValueError):
        pass
    return "0+unknown"


def __getattr__(name: str) -> Any:
    """PEP 562: import a public name's module on first use, then keep the name here."""
    if name == "__version__":
        value: Any = _version()
    elif name in __all__:
        module = importlib.import_module(_HOME.get(name, "passivepaxos.errors"))
        value = getattr(module, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
