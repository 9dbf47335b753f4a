"""Keep a lease-like grant alive in the background, and say at once when it is lost.

One loop for the three grants a long job holds (a lock, the writer lease, an election's
lock): it renews every ``every`` seconds, retries a failed renewal with the one backoff
policy, and declares the grant *lost* the moment either

- a renewal is refused for good (one of the ``fatal`` errors: the lock was taken over, the
  lease lost), or
- the grant's own validity ran out (``valid_until()``, on the holder's clock) before a
  renewal succeeded: a store outage, a stalled process. The validity is the holder's safe
  window (0.75 x ttl after the start of its last successful renewal; docs/log.md, the
  lock module), so a job stopped when it is lost stops before anyone can take over,
  within the drift bound those documents state. A grant its owner no longer holds
  (``valid_until()`` is ``-inf``: released behind the loop's back) is lost too.

A renewal attempt runs under a deadline that ends with the validity, so a hung request
cannot keep the loop from noticing. Lost is final: the loop stops, sets :attr:`KeepAlive.lost`
and calls ``on_lost(reason)`` once (from the keep-alive task). Time, sleeps, randomness and
the task come from the runtime (``passivepaxos.runtime``), so the simulator runs it too.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from types import TracebackType

from passivepaxos import telemetry
from passivepaxos.deadline import deadline
from passivepaxos.retry import Backoff
from passivepaxos.runtime import EventLike, Runtime, Task

__all__ = ["KeepAlive"]

# a failed renewal is tried again after a pause from this backoff, scaled by ``every``
_RETRY = (0.05, 0.5)
# the task that runs a KeepAlive's loop (a task never joins itself)
_running: contextvars.ContextVar[KeepAlive | None] = contextvars.ContextVar(
    "ppx_keepalive", default=None
)


class KeepAlive:
    """Renews a grant every ``every`` seconds until :meth:`stop`, or until it is lost.

    ``renew()`` renews once (raising on failure); ``valid_until()`` is when, on ``clock``
    (default the runtime's monotonic clock), the holder must stop acting as holder unless
    it renews; ``fatal``: the errors that mean the grant is gone for good. ``what`` names
    the grant in the loss reason ("lock 'nightly' (token 4)")."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        renew: Callable[[], object],
        valid_until: Callable[[], float],
        every: float,
        what: str,
        fatal: tuple[type[BaseException], ...] = (),
        on_lost: Callable[[str], object] | None = None,
        clock: Callable[[], float] | None = None,
        name: str = "ppx-keepalive",
    ) -> None:
        if not every > 0:
            raise ValueError(f"KeepAlive: every must be > 0 seconds, got {every!r}")
        self.runtime = runtime
        self._renew, self._valid_until = renew, valid_until
        self.every, self.what, self.fatal = every, what, fatal
        self.on_lost = on_lost
        self._clock = clock or runtime.monotonic
        self._name = name
        self._stop = runtime.event()
        self.lost: EventLike = runtime.event()  # set once the grant is lost
        self.reason: str | None = None  # why it was lost
        self.renewals = 0  # successful renewals (stats)
        self.last_error: BaseException | None = None  # the last failed renewal's error
        self._task: Task | None = None

    # -- the holder's side -----------------------------------------------------------------

    def start(self) -> KeepAlive:
        """Start the loop in a task of the runtime, outside the caller's context (a
        keep-alive outlives the call that starts it and must not inherit its deadline)."""
        if self._task is None:
            self._task = contextvars.Context().run(self.runtime.spawn, self._run, name=self._name)
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Stop renewing (the grant itself is left as it is: release it separately).
        ``wait``: also wait for a renewal in flight to end (an event loop passes False,
        then joins from a thread: the renewal may be a store request)."""
        self._stop.set()
        if wait and self._task is not None and _running.get() is not self:
            self._task.join()

    def valid(self) -> bool:
        """Whether the holder may still act as holder: not lost, and within its validity."""
        return not self.lost.is_set() and self._clock() < self._valid_until()

    def remaining(self) -> float:
        """Seconds of validity left on the holder's clock (``<= 0``: act no more)."""
        return 0.0 if self.lost.is_set() else self._valid_until() - self._clock()

    def __enter__(self) -> KeepAlive:
        return self.start()

    def __exit__(
        self,
        t: type[BaseException] | None,
        v: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        _running.set(self)
        backoff = Backoff(self.every * _RETRY[0], self.every * _RETRY[1], floor=0.5)
        failures = 0
        pause = self.every
        while True:
            left = self._valid_until() - self._clock()
            if left <= 0:
                self._lose(self._late(), "expired")
                return
            if self._stop.wait(min(pause, left)):
                return
            left = self._valid_until() - self._clock()
            if left <= 0:
                self._lose(self._late(), "expired")
                return
            try:
                # cut a renewal that would outlast the validity: the loss is then noticed
                # on time (the renewal's own bookkeeping treats its outcome as unknown)
                with deadline(left if math.isfinite(left) else None, clock=self._clock):
                    self._renew()
            except self.fatal as exc:
                self._lose(f"{self.what} was lost: {exc}", "refused")
                return
            except Exception as exc:  # any failure: retried until the validity ends
                # (an error outside the taxonomy, a bug, must not end the loop silently:
                # the grant would lapse with nobody told)
                self.last_error = exc
                pause = backoff.delay(failures, self.runtime.rng)
                failures += 1
            else:
                self.renewals += 1
                failures, pause = 0, self.every

    def _late(self) -> str:
        if self._valid_until() == -math.inf:  # the grant's own bookkeeping dropped it
            return f"{self.what} is no longer held (released or refused)"
        why = "" if self.last_error is None else f" (last error: {self.last_error})"
        return f"{self.what} could not be renewed in time{why}"

    def _lose(self, reason: str, why: str) -> None:
        if self._stop.is_set():
            return  # stopped meanwhile: the holder is done with it, nothing to report
        telemetry.keepalive_lost(self._name, why)
        self.reason = reason
        self.lost.set()
        if self.on_lost is not None:
            self.on_lost(reason)
