"""Deadlines: how long an operation may take in total, honoured in one place (``Store``).

A hung endpoint must not hold a command for the SDK's read timeout times the retry
attempts. So every ``Store`` call checks one :class:`Deadline`: no attempt or read-back
starts after it, backoff sleeps are cut to it, and the backend's socket timeouts are
clipped to the time left (backends read that with :func:`request_timeout`). Nothing else
in the library needs to know about it.

Where a ``Store`` finds its deadline, the earliest of:

- ``Store(..., deadline=...)`` given explicitly;
- the :func:`deadline` block that was active *when the store was opened* (so the worker
  threads of a log, which do not inherit context variables, honour it too), while that
  block lasts;
- the :func:`deadline` block active in the calling thread;
- ``RetryPolicy.timeout``: a budget for each single ``Store`` call (its retries and
  read-backs included).

A deadline can bound a whole block (``total``) or each store call inside it
(``per_request``): the CLI uses the first for commands that do a bounded amount of work and
the second for those that wait or walk a whole log by design (``log --follow``, ...).

When time runs out the store raises ``DeadlineExceededError`` (a plain failure: nothing of
the operation is in doubt), or ``DeadlineAmbiguousError`` (an ``AmbiguousWriteError``)
while a write of the operation was sent and not answered, or after one took effect. A write
definitely refused (a lost create race, a failed precondition) is settled by that answer
and leaves nothing in doubt.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from passivepaxos.errors import ConfigError
from passivepaxos.runtime import REAL

__all__ = [
    "Deadline",
    "cancel_scope",
    "cancellable",
    "current",
    "deadline",
    "env_seconds",
    "request_budget",
    "request_timeout",
    "round_scope",
]


class Deadline:
    """A point in time by which an operation must end, and whether a
    write of that operation has been sent (which makes running out of time ambiguous).

    Times are seconds of ``clock`` (a runtime's ``monotonic``; the production clock unless
    given: a simulated process passes its own, virtual one). ``total`` bounds everything
    done under it; ``per_request`` bounds each ``Store`` call separately. Either may be
    ``None``. ``close()`` ends it: a store that captured it stops honouring it (a block's
    deadline must not outlive the block). A store measures its calls with its own
    runtime's clock and only asks a deadline how much time is :meth:`left`, so the two
    clocks never need to agree on an origin."""

    def __init__(
        self,
        total: float | None = None,
        *,
        per_request: float | None = None,
        clock: Callable[[], float] | None = None,
        parent: Deadline | None = None,
    ) -> None:
        for name, value in (("total", total), ("per_request", per_request)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"deadline {name} must be a positive number of seconds")
        self.total = total
        self.per_request = per_request
        self.clock: Callable[[], float] = clock or REAL.monotonic
        self.at = None if total is None else self.clock() + total
        self.closed = False
        # a scope nested in another (``cancellable``): ends no later than it, and what is
        # written under it counts for it too
        self.parent = parent
        if per_request is None and parent is not None:
            self.per_request = parent.per_request
        self.cancelled: str | None = None
        self.cancellable = False  # made by cancel_scope: round_scope() skips it
        # pure bookkeeping (no runtime call, no store call while held): a plain lock is safe
        self._lock = threading.Lock()
        self._pending = 0  # writes sent and not answered (yet)
        self._landed = False  # a write of the operation took effect

    def __repr__(self) -> str:
        return f"Deadline(total={self.total}, per_request={self.per_request})"

    def left(self) -> float | None:
        """Seconds of ``clock`` left before :attr:`at` (``None``: no total bound), or
        before the parent's end if that comes first."""
        own = None if self.at is None else self.at - self.clock()
        p = self.parent
        up = None if p is None or p.closed else p.left()
        if own is None or up is None:
            return up if own is None else own
        return min(own, up)

    def cancel(self, why: str = "cancellation") -> None:
        """End this deadline now: every ``Store`` call made under it from here on raises
        ``DeadlineExceededError``, or ``DeadlineAmbiguousError`` if a write of it is in
        doubt (``passivepaxos.aio`` stops a cancelled task's call this way)."""
        with self._lock:
            self.cancelled = why
            self.at = self.clock()

    def expired(self) -> bool:
        """Whether the total bound has passed."""
        left = self.left()
        return left is not None and left <= 0

    @property
    def wrote(self) -> bool:
        """Whether running out of time now leaves something of the operation in doubt: a
        write was sent and not answered, or one took effect. A write definitely refused
        (a lost race) leaves nothing behind and does not count."""
        with self._lock:
            return self._landed or self._pending > 0

    def note_write(self) -> None:
        """A write is being sent: in doubt until :meth:`settle_write` is told its answer."""
        with self._lock:
            self._pending += 1
        if self.parent is not None:
            self.parent.note_write()

    def settle_write(self, *, landed: bool) -> None:
        """The answer to a write noted with :meth:`note_write` arrived: it took effect
        (``landed``) or it was definitely refused. A write never answered is never settled."""
        with self._lock:
            self._pending = max(0, self._pending - 1)
            self._landed = self._landed or landed
        if self.parent is not None:
            self.parent.settle_write(landed=landed)

    def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        if self.cancelled is not None:
            return f"the {self.cancelled}"
        if self.total is None and self.parent is not None:
            return self.parent.describe()
        if self.total is not None:
            return f"the {self.total:g}s deadline"
        return f"the {self.per_request:g}s per-request deadline"


_ambient: ContextVar[Deadline | None] = ContextVar("passivepaxos_deadline", default=None)
_budget: ContextVar[float | None] = ContextVar("passivepaxos_request_budget", default=None)


def current() -> Deadline | None:
    """The deadline of the innermost :func:`deadline` block of this thread, if any."""
    got = _ambient.get()
    return None if got is None or got.closed else got


@contextlib.contextmanager
def deadline(
    total: float | None = None,
    *,
    per_request: float | None = None,
    clock: Callable[[], float] | None = None,
) -> Iterator[Deadline | None]:
    """Run a block under a deadline (``None`` for both: no deadline, a no-op). Stores opened
    inside the block keep honouring it from any thread until the block ends. ``clock``: as
    for :class:`Deadline` (a simulated process passes its runtime's ``monotonic``)."""
    if total is None and per_request is None:
        yield None
        return
    d = Deadline(total, per_request=per_request, clock=clock)
    token = _ambient.set(d)
    try:
        yield d
    finally:
        d.close()
        _ambient.reset(token)


def cancel_scope(clock: Callable[[], float] | None = None) -> Deadline:
    """A deadline that only :meth:`Deadline.cancel` ends, inside the :func:`deadline`
    block in force here (which still applies); enter it with :func:`cancellable`."""
    d = Deadline(None, clock=clock, parent=current())
    d.cancellable = True
    return d


@contextlib.contextmanager
def cancellable(d: Deadline) -> Iterator[Deadline]:
    """Run a block under ``d`` (from :func:`cancel_scope`, made where the call was
    submitted, so that a cancel that comes before the block starts still counts): a
    caller in another thread can stop the block's store calls at their next request."""
    token = _ambient.set(d)
    try:
        yield d
    finally:
        d.close()
        _ambient.reset(token)


class _RoundScope(Deadline):
    """The deadline of a group-commit round carrying several callers' values: the
    leader's deadline without its cancellable scopes, ended early only once every
    caller of the round has been cancelled (one task's cancel never stops the others'
    appends; a round nobody waits for any more stops)."""

    def __init__(self, members: list[Deadline | None], parent: Deadline | None) -> None:
        super().__init__(None, parent=parent)
        self.members = members

    def _abandoned(self) -> bool:
        return bool(self.members) and all(
            m is not None and m.cancelled is not None for m in self.members
        )

    def left(self) -> float | None:
        return 0.0 if self._abandoned() else super().left()

    def describe(self) -> str:
        if self._abandoned():
            return "cancellation of every task awaiting the round"
        return super().describe() if self.parent is not None else "the round"


@contextlib.contextmanager
def round_scope(members: list[Deadline | None]) -> Iterator[None]:
    """Run a group-commit round under :class:`_RoundScope`: the deadline in force minus
    its cancellable scopes, plus the rule that the round stops once all ``members``
    (each caller's deadline when it queued) are cancelled."""
    d = current()
    while d is not None and d.cancellable:
        d = d.parent if d.parent is not None and not d.parent.closed else None
    token = _ambient.set(_RoundScope(members, d))
    try:
        yield
    finally:
        _ambient.reset(token)


@contextlib.contextmanager
def request_budget(seconds: float | None) -> Iterator[None]:
    """Set by ``Store`` around each backend request: the seconds left for it."""
    token = _budget.set(seconds)
    try:
        yield
    finally:
        _budget.reset(token)


def env_seconds(name: str, default: float) -> float:
    """A backend's configured timeout from environment variable ``name`` (``default`` when
    unset): a positive, finite number of seconds, else ``ConfigError`` naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name}={raw!r} is not a positive number of seconds")
    return value


def request_timeout(default: float) -> float:
    """A backend's socket timeout for the request being made now: its configured
    ``default``, cut to the time the current deadline leaves (never below 1 ms)."""
    left = _budget.get()
    if left is None:
        return default
    return max(0.001, min(default, left))
