"""A test runtime: the production runtime with the clocks and the sleep replaced.

Tests that used to hand a ``Log`` ``clock=`` / ``sleep=`` / ``wall=`` functions (virtual
time, no real pauses) give it ``runtime=clocked(...)`` instead: everything else (threads,
pools, locks, the RNG, ids) is delegated to :data:`passivepaxos.runtime.REAL`, so only
time is virtual. Not the simulator: threads still interleave freely here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from passivepaxos.runtime import (
    ALL_COMPLETED,
    REAL,
    ConditionLike,
    EventLike,
    LockLike,
    Pool,
    Runtime,
    Task,
)


class Clocked:
    """:class:`~passivepaxos.runtime.Runtime` delegating to ``base`` except ``monotonic``
    (``clock``), ``sleep`` and ``wall`` when given."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        wall: Callable[[], float] | None = None,
        base: Runtime = REAL,
    ) -> None:
        self._clock = clock or base.monotonic
        self._sleep = sleep or base.sleep
        self._wall = wall or base.wall
        self._base = base
        self.rng: random.Random = base.rng

    def monotonic(self) -> float:
        return self._clock()

    def wall(self) -> float:
        return self._wall()

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)

    def token_bytes(self, n: int = 16) -> bytes:
        return self._base.token_bytes(n)

    def token_hex(self, n: int = 16) -> str:
        return self._base.token_hex(n)

    def spawn(self, fn: Callable[..., object], /, *args: Any, name: str) -> Task:
        return self._base.spawn(fn, *args, name=name)

    def pool(self, max_workers: int, name: str) -> Pool:
        return self._base.pool(max_workers, name)

    def lock(self) -> LockLike:
        return self._base.lock()

    def rlock(self) -> LockLike:
        return self._base.rlock()

    def condition(self, lock: LockLike | None = None) -> ConditionLike:
        return self._base.condition(lock)

    def event(self) -> EventLike:
        return self._base.event()

    def wait(
        self,
        futures: Iterable[Future[Any]],
        timeout: float | None = None,
        return_when: str = ALL_COMPLETED,
    ) -> tuple[set[Future[Any]], set[Future[Any]]]:
        return self._base.wait(futures, timeout, return_when)


def clocked(
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
    wall: Callable[[], float] | None = None,
) -> Runtime:
    """The production runtime with these clocks / this sleep (``None``: the real one)."""
    return Clocked(clock=clock, sleep=sleep, wall=wall)


NO_SLEEP: Runtime = clocked(sleep=lambda _: None)
"""Real clocks, but pauses cost nothing (what ``sleep=lambda _: None`` used to give)."""


class Stepped(Clocked):
    """Virtual time that moves only when someone sleeps (``t``, both clocks) or a test
    moves it (``t += ...``); everything else is the production runtime. ``on_sleep``: a
    hook run after each sleep, with the number of sleeps so far (a test acts "meanwhile")."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(clock=lambda: self.t, sleep=self._step, wall=lambda: self.t)
        self.t = start
        self.sleeps = 0
        self.on_sleep: Callable[[int], None] | None = None

    def _step(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        self.sleeps += 1
        if self.on_sleep is not None:
            self.on_sleep(self.sleeps)
