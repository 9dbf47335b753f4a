"""The JSON envelope every recipe puts in log entries: ``{"ppx": kind, <scope>: name, ...}``.

One place decides how a recipe's entries are told apart from anyone else's on a shared
log: an entry that is not JSON, or of another kind or scope, is simply not ours (``None``),
never an error, since many recipes and raw appenders may share one log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from passivepaxos.deadline import current as current_deadline
from passivepaxos.errors import (
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    PassivePaxosError,
    RetriedAmbiguousError,
)
from passivepaxos.retry import Backoff
from passivepaxos.runtime import REAL, Runtime

if TYPE_CHECKING:
    from passivepaxos.log import Log, Position

__all__ = [
    "RetriedAmbiguousError",
    "append_retrying",
    "decode_entry",
    "encode_entry",
    "retry_backoff",
    "runtime_of",
]


def runtime_of(log: object) -> Runtime:
    """The runtime a recipe on ``log`` takes its clocks, sleeps, RNG, tasks and locks from:
    the log's (``Log.runtime``), or the production runtime for a log-like without one.
    The one place recipes look it up."""
    rt: Runtime = getattr(log, "runtime", REAL)
    return rt


def retry_backoff(delay: float) -> Backoff:
    """The pauses between a recipe's append attempts: from ``delay`` doubling to
    ``8 x delay``, each drawn from the upper half of its ceiling (``floor=0.5``: clients
    that failed together fall out of step, yet each waits at least about ``delay`` for
    the store to recover). With the default five retries the expected total pause is
    about 17 x ``delay``, close to the linear schedule it replaces (15 x ``delay``)."""
    return Backoff(base=delay, cap=8 * delay, floor=0.5)


def encode_entry(kind: str, scope_field: str, scope: str, fields: dict[str, Any]) -> bytes:
    doc = {"ppx": kind, scope_field: scope, **fields}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_entry(value: bytes, kind: str, scope_field: str, scope: str) -> dict[str, Any] | None:
    """The entry's fields if it is a ``kind`` entry of ``scope``, else ``None``."""
    if not value.startswith(b"{"):
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("ppx") != kind or doc.get(scope_field) != scope:
        return None
    return doc


def _past_deadline() -> bool:
    """Whether the operation's deadline (``passivepaxos.deadline``) has passed."""
    d = current_deadline()
    return d is not None and d.expired()


def append_retrying(
    log: Log,
    data: bytes,
    *,
    retries: int,
    delay: float,
    sleep: Callable[[float], None] | None = None,
) -> Position:
    """Append one recipe entry, retrying an unclear or transient failure ``retries`` times
    (the entry carries its own request id, so a copy that landed twice is applied once),
    and never once the operation's deadline has passed.

    Once an attempt's outcome was unknown, every later failure, whatever it says (even a
    "not written" one such as ``LeaseLostError``), ends in ``AmbiguousWriteError``: the
    earlier attempt may have landed. A single unclear attempt is raised as is; after
    several, ``RetriedAmbiguousError`` keeps the first unclear error's message (its resume
    token, if any) and the last failure as its cause.

    Pauses: :func:`retry_backoff` of ``delay``, drawn from the log's runtime RNG and slept
    with ``sleep``, default the log's runtime's."""
    rt = runtime_of(log)
    pause = sleep or rt.sleep
    backoff = retry_backoff(delay)
    unclear: AmbiguousWriteError | None = None
    max_slot = -math.inf
    attempt = 0
    while True:
        try:
            (pos,) = log.append_positions([data])
            return pos
        except PassivePaxosError as exc:
            if isinstance(exc, AmbiguousWriteError):
                if unclear is None:
                    unclear = exc
                slot = exc.slot if isinstance(exc, AppendOutcomeUnknownError) else math.inf
                max_slot = max(max_slot, float(slot))
            attempt += 1
            if not exc.retryable or attempt > retries or _past_deadline():
                if unclear is None or unclear is exc:
                    raise
                raise RetriedAmbiguousError(
                    f"outcome unknown: an earlier attempt may have landed ({unclear}); "
                    f"the last attempt failed: {exc}",
                    max_slot=max_slot,
                    url=unclear.url,
                    key=unclear.key,
                ) from exc
            pause(backoff.delay(attempt - 1, rt.rng))
