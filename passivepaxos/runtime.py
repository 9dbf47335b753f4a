"""The one runtime seam: time, sleeping, randomness and concurrency, injected.

Every layer (``Store``, the consensus driver, ``Log``, the lease, membership, the recipes)
reads clocks, sleeps, draws random numbers and starts concurrent work only through a
:class:`Runtime` it was given. Production uses :data:`REAL` (the system clocks, threads, an
OS-seeded RNG); the whole-stack simulator gives each simulated process a runtime with a
virtual, drifting clock, a seeded RNG and a deterministic scheduler. The protocol code is
the same in both: that is the point of the seam (SlateDB and FoundationDB test this way).

Rules the library follows (``tests/test_runtime_seam.py`` enforces them):

- no ``time.time/monotonic/sleep``, ``random``, ``os.urandom``, ``threading.Thread``,
  ``threading.Event/Condition/RLock`` or executors outside this module;
- a plain ``threading.Lock`` only around a critical section that makes no runtime call
  (no sleep, no store request, no wait): the simulator switches processes only at runtime
  calls, so such a section can never be interrupted half-way by a simulated peer;
- every blocking wait (a future's result, a condition, an event, a lock that may be held
  across a store request) goes through the runtime's primitives.

A runtime is handed down, not looked up: a ``Store`` gets one when it is opened, a ``Log``
takes its stores' runtime unless given one, recipes use their log's.
"""

from __future__ import annotations

import contextvars
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as _futures_wait
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "REAL",
    "ConditionLike",
    "EventLike",
    "LockLike",
    "Pool",
    "RealRuntime",
    "Runtime",
    "Task",
]

T = TypeVar("T")


@runtime_checkable
class LockLike(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, t: Any, v: Any, tb: Any, /) -> Any: ...


@runtime_checkable
class ConditionLike(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, t: Any, v: Any, tb: Any, /) -> Any: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def notify(self, n: int = 1) -> None: ...
    def notify_all(self) -> None: ...


@runtime_checkable
class EventLike(Protocol):
    """What ``stop=`` parameters accept: a ``threading.Event`` or a runtime's event."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Task(Protocol):
    """A started concurrent activity (a thread in production)."""

    name: str

    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...


class Pool(Protocol):
    """A bounded set of workers; ``submit`` returns a ``concurrent.futures.Future`` whose
    blocking methods are safe under the runtime that made the pool."""

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]: ...
    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


class Runtime(Protocol):
    """Clocks, sleep, randomness and concurrency for one process.

    ``monotonic()`` measures durations (lease bounds, deadlines, backoff); ``wall()`` is
    only ever shown to people or written as a hint for them (expiry times), never trusted
    for safety. ``rng`` draws every protocol choice (backoff jitter, proposal numbers) and
    ``token_bytes`` every identifier (write ids, owners): in the simulator both come from
    the run's seed, so a run replays exactly."""

    rng: random.Random

    def monotonic(self) -> float: ...
    def wall(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def token_bytes(self, n: int = 16) -> bytes: ...
    def token_hex(self, n: int = 16) -> str: ...
    def spawn(self, fn: Callable[..., object], /, *args: Any, name: str) -> Task:
        """Start ``fn(*args)`` concurrently, as a daemon (a hung store call must hold
        neither the caller nor the interpreter at exit), in the caller's context
        variables (so an ambient deadline applies)."""
        ...

    def pool(self, max_workers: int, name: str) -> Pool: ...
    def lock(self) -> LockLike: ...
    def rlock(self) -> LockLike: ...
    def condition(self, lock: LockLike | None = None) -> ConditionLike: ...
    def event(self) -> EventLike: ...
    def wait(
        self,
        futures: Iterable[Future[Any]],
        timeout: float | None = None,
        return_when: str = ALL_COMPLETED,
    ) -> tuple[set[Future[Any]], set[Future[Any]]]:
        """``concurrent.futures.wait`` under this runtime."""
        ...


class _Thread:
    def __init__(self, thread: threading.Thread) -> None:
        self._thread = thread
        self.name = thread.name

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()


class _Executor:
    """A ``ThreadPoolExecutor`` whose workers run each call in the submitter's context
    (worker threads do not inherit context variables, and the ambient deadline is one)."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._ex = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        ctx = contextvars.copy_context()
        return self._ex.submit(ctx.run, fn, *args)

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        futs = [self.submit(fn, x) for x in items]
        return (f.result() for f in futs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._ex.shutdown(wait=wait, cancel_futures=cancel_futures)


class RealRuntime:
    """The production runtime: system clocks, OS threads, an RNG seeded from the OS."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def __repr__(self) -> str:
        return "RealRuntime()"

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def token_bytes(self, n: int = 16) -> bytes:
        return os.urandom(n)

    def token_hex(self, n: int = 16) -> str:
        return os.urandom(n).hex()

    def spawn(self, fn: Callable[..., object], /, *args: Any, name: str) -> Task:
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(fn, *args), name=name, daemon=True)
        t.start()
        return _Thread(t)

    def pool(self, max_workers: int, name: str) -> Pool:
        return _Executor(max_workers, name)

    def lock(self) -> LockLike:
        return threading.Lock()

    def rlock(self) -> LockLike:
        return threading.RLock()

    def condition(self, lock: LockLike | None = None) -> ConditionLike:
        return threading.Condition(lock)  # type: ignore[arg-type]

    def event(self) -> EventLike:
        return threading.Event()

    def wait(
        self,
        futures: Iterable[Future[Any]],
        timeout: float | None = None,
        return_when: str = ALL_COMPLETED,
    ) -> tuple[set[Future[Any]], set[Future[Any]]]:
        done, pending = _futures_wait(list(futures), timeout=timeout, return_when=return_when)
        return set(done), set(pending)


REAL: Runtime = RealRuntime()
"""The process-wide production runtime, used wherever none is given."""
