"""The asyncio face: the log, the recipes and ``propose`` as coroutines.

There is one implementation of each protocol, the synchronous one; this module runs its
calls in a bounded pool of the runtime's threads (``max_workers``, default 16), so a
coroutine never blocks the event loop and the simulator's schedules cover what it runs.
No native async SDK is used, on purpose and for every backend (docs/async.md says why):
the store layer's ambiguity resolution (write ids, read-backs, deadlines) and the
protocols above it exist once, and an async SDK would need a second copy of them;
aiobotocore also pins botocore to one release, which conflicts with boto3's.

Cancellation never leaves a call half-done behind the caller's back, and is never
swallowed. When the task awaiting a call is cancelled:

- a call that has not started in the pool is withdrawn: nothing of it ran;
- a call that started is given ``cancel_grace`` seconds (default 5; 0 for reads, lock
  acquires and campaigns) to finish, then stopped at its next store request (its
  ``deadline.cancel_scope``, made before the call was submitted), and waited for;
  then ``asyncio.CancelledError`` propagates, caused by a :class:`CancelledCall` that says what the call had done: ``"not-done"`` (it failed or stopped with nothing
  in doubt), ``"done"`` (it completed: ``result`` holds what it returned; an acquired
  lock is released again, ``"undone"``) or ``"unknown"`` (``error`` is the
  outcome-unknown error, e.g. an ``AppendOutcomeUnknownError`` whose ``token`` resumes
  the append exactly once). :func:`outcome_of` finds it from the ``CancelledError``, or
  from the ``TimeoutError`` of an ``asyncio.timeout`` block around the call.

A group-commit round that carries other tasks' values runs without the cancelled
caller's cancellable deadline (``deadline.round_scope``): one task's cancel never stops
another's append; a task whose values a round took waits for that round's answer. A
quorum call may leave a request to a slow minority store in flight (docs/async.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

from passivepaxos import deadline as deadlines
from passivepaxos.capabilities import ListMode
from passivepaxos.consensus import driver
from passivepaxos.errors import (
    ConfigError,
    DeadlineExceededError,
    PassivePaxosError,
    is_outcome_unknown,
)
from passivepaxos.lease import ClaimResult, WriterStatus
from passivepaxos.log.facade import Log
from passivepaxos.log.record import Entry, Position
from passivepaxos.recipes.election import Election
from passivepaxos.recipes.kv import KV, CasResult
from passivepaxos.recipes.lock import Locks, LockStatus
from passivepaxos.recipes.tob import Broadcast
from passivepaxos.runtime import REAL, Pool, Runtime
from passivepaxos.store import Store

__all__ = [
    "AsyncBroadcast",
    "AsyncElection",
    "AsyncKV",
    "AsyncLocks",
    "AsyncLog",
    "CancelledCall",
    "Offload",
    "outcome_of",
    "propose",
]

T = TypeVar("T")
State = Literal["not-done", "done", "undone", "unknown"]


class CancelledCall(Exception):
    """What a call whose task was cancelled had done when it stopped (module docstring):
    the ``__cause__`` of the ``CancelledError`` the call raises."""

    def __init__(
        self, what: str, state: State, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        self.what, self.state, self.result, self.error = what, state, result, error
        said = {
            "not-done": "nothing of it took effect",
            "done": "it had completed",
            "undone": "it had completed and was undone",
            "unknown": "its outcome is unknown",
        }[state]
        tail = f": {error}" if error is not None and state == "unknown" else ""
        super().__init__(f"{what} cancelled; {said}{tail}")


def outcome_of(exc: BaseException) -> CancelledCall | None:
    """The :class:`CancelledCall` behind ``exc`` (a ``CancelledError`` raised by a call of
    this module, or the ``TimeoutError`` of an ``asyncio.timeout`` block it ended), or
    ``None`` when ``exc`` did not come from a cancelled call that had started."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, CancelledCall):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class Offload:
    """The bounded pool the coroutines of this module run their calls in, and the rules
    above for a cancelled one. One per :class:`AsyncLog` unless shared (pass one to
    several); ``runtime`` supplies the threads (its ``pool`` must return
    ``concurrent.futures.Future`` objects, as :data:`~passivepaxos.runtime.REAL`'s does)."""

    def __init__(
        self, runtime: Runtime = REAL, *, max_workers: int = 16, cancel_grace: float = 5.0
    ) -> None:
        if not (isinstance(max_workers, int) and max_workers >= 1):
            raise ConfigError(f"max_workers must be an integer >= 1, not {max_workers!r}")
        if not cancel_grace >= 0:
            raise ConfigError(f"cancel_grace must be seconds >= 0, not {cancel_grace!r}")
        self.runtime = runtime
        self.max_workers = max_workers
        self.cancel_grace = cancel_grace
        self._pool: Pool | None = None

    def _get_pool(self) -> Pool:
        if self._pool is None:
            self._pool = self.runtime.pool(self.max_workers, "ppx-aio")
        return self._pool

    async def call(
        self,
        what: str,
        fn: Callable[..., T],
        /,
        *args: Any,
        grace: float | None = None,
        undo: Callable[[T], object] | None = None,
        **kwargs: Any,
    ) -> T:
        """``fn(*args, **kwargs)`` in the pool; cancelled, as the module docstring says.
        ``grace``: seconds a started call may finish after a cancel (default
        ``cancel_grace``; reads pass 0); ``undo(result)``: run (in the pool) when the call
        completed although its task was cancelled (a lock acquired for nobody)."""
        # made here, before the pool may start it: a cancel that comes before the call
        # starts still stops it (run() then finds it cancelled)
        scope = deadlines.cancel_scope(self.runtime.monotonic)

        def run() -> T:
            with deadlines.cancellable(scope):
                if scope.cancelled is not None:
                    raise DeadlineExceededError(f"{what}: cancelled before it started")
                return fn(*args, **kwargs)

        fut: Future[T] = self._get_pool().submit(run)
        waiting = asyncio.wrap_future(fut)
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            if fut.cancel():  # never started: nothing of it ran
                raise
            cause = await self._stop(
                what, waiting, scope, self.cancel_grace if grace is None else grace, undo
            )
            raise asyncio.CancelledError(str(cause)) from cause

    async def finish(self, what: str, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` in the pool, seen through to its end: a cancel meanwhile (the
        exit of a ``hold`` being cancelled again) is raised only once it is done."""
        running = asyncio.wrap_future(self._get_pool().submit(fn, *args))
        cancelled = False
        while not running.done():
            try:
                await asyncio.wait({running})
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError(f"{what}: cancelled; it was completed first")
        return running.result()

    @staticmethod
    async def _settled(waiting: asyncio.Future[Any], timeout: float | None = None) -> None:
        """Wait for ``waiting`` (up to ``timeout``); further cancels of the task only make
        this stop sooner, never leave the call running behind the caller."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({waiting}, timeout=timeout)

    async def _stop(
        self,
        what: str,
        waiting: asyncio.Future[T],
        scope: deadlines.Deadline,
        grace: float,
        undo: Callable[[T], object] | None,
    ) -> CancelledCall:
        """Let a started call finish for ``grace`` seconds, then stop it at its next store
        request; wait for it and say what it did."""
        if grace > 0:
            await self._settled(waiting, grace)
        while not waiting.done():
            scope.cancel("cancellation of the task awaiting it")
            await self._settled(waiting)
        exc = waiting.exception()
        if exc is None:
            result = waiting.result()
            if undo is None:
                return CancelledCall(what, "done", result=result)
            undoing = asyncio.wrap_future(self._get_pool().submit(undo, result))
            while not undoing.done():
                await self._settled(undoing)
            err = undoing.exception()
            if err is not None:  # the undo failed: what it left is unknown
                return CancelledCall(what, "unknown", result=result, error=err)
            return CancelledCall(what, "undone", result=result)
        if is_outcome_unknown(exc):
            return CancelledCall(what, "unknown", error=exc)
        return CancelledCall(what, "not-done", error=exc)

    async def iterate(
        self, what: str, make: Callable[[Any], Iterator[T]], *, buffer: int = 64
    ) -> AsyncIterator[T]:
        """The items of the blocking iterator ``make(stop)`` (``stop``: a runtime event
        it must honour, e.g. ``Log.follow``'s) as an async iterator, produced in a
        runtime task with at most ``buffer`` items queued; closing or cancelling the
        async iterator sets ``stop`` and stops the task's store calls."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=buffer)
        stop = self.runtime.event()
        scope = deadlines.cancel_scope(self.runtime.monotonic)

        def send(item: tuple[str, Any]) -> None:
            while not stop.is_set():
                put = queue.put(item)
                try:
                    fut = asyncio.run_coroutine_threadsafe(put, loop)
                except RuntimeError:  # the loop is closed: nobody consumes any more
                    put.close()
                    stop.set()
                    return
                try:
                    fut.result(timeout=0.5)
                    return
                except TimeoutError:
                    fut.cancel()

        def produce() -> None:
            with deadlines.cancellable(scope):
                try:
                    for item in make(stop):
                        send(("item", item))
                        if stop.is_set():
                            return
                except BaseException as exc:  # handed to the consumer, raised there
                    send(("error", exc))
                    return
            send(("end", None))

        task = self.runtime.spawn(produce, name=f"ppx-aio-{what}")
        try:
            while True:
                kind, value = await queue.get()
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            stop.set()
            scope.cancel(f"close of {what}")
            while not queue.empty():  # unblock a producer waiting for room
                queue.get_nowait()
            del task


async def _read(off: Offload, what: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    return await off.call(what, fn, *args, grace=0.0, **kw)


class AsyncLog:
    """A :class:`~passivepaxos.Log` as coroutines (``AsyncLog.open(url)``, or
    ``AsyncLog(log)``); ``log`` is the synchronous object, shared with the recipes'
    async faces. ``async with`` closes it."""

    def __init__(self, log: Log, *, offload: Offload | None = None) -> None:
        self.log = log
        self.offload = offload or Offload(log.runtime)

    @classmethod
    async def open(
        cls,
        log_url: str,
        *,
        max_workers: int = 16,
        cancel_grace: float = 5.0,
        **kwargs: Any,
    ) -> AsyncLog:
        """``Log.open(log_url, **kwargs)`` in the pool (it reads the manifest)."""
        off = Offload(
            kwargs.get("runtime") or REAL, max_workers=max_workers, cancel_grace=cancel_grace
        )
        log = await _read(off, "open", Log.open, log_url, **kwargs)
        return cls(log, offload=off)

    async def __aenter__(self) -> AsyncLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return self.log.url

    async def close(self) -> None:
        """Close the log (queued ``append_async`` calls finish first)."""
        await self.offload.call("close", self.log.close)

    async def head(self) -> int:
        return await _read(self.offload, "head", self.log.head)

    async def append(self, values: Sequence[bytes], *, resume: str | None = None) -> list[int]:
        """``Log.append``: one slot number per value; cancelled: the module docstring."""
        got = await self.append_positions(values, resume=resume)
        return [p.slot for p in got]

    async def append_positions(
        self, values: Sequence[bytes], *, resume: str | None = None
    ) -> list[Position]:
        vals = Log._values(values)  # TypeError here, before anything is queued
        return await self.offload.call("append", self.log.append_positions, vals, resume=resume)

    async def read(
        self, from_slot: int = 0, limit: int | None = None, *, to_slot: int | None = None
    ) -> list[Entry]:
        """``Log.read``, collected into a list (bound it with ``limit`` or ``to_slot``)."""

        def collect() -> list[Entry]:
            return list(self.log.read(from_slot, limit, to_slot=to_slot))

        return await _read(self.offload, "read", collect)

    def follow(
        self, from_slot: int = 0, *, poll_min: float = 0.05, poll_max: float = 2.0
    ) -> AsyncIterator[Entry]:
        """``Log.follow`` as an async iterator; leave it (``break``, cancel) to stop."""
        return self.offload.iterate(
            "follow",
            lambda stop: self.log.follow(
                from_slot, poll_min=poll_min, poll_max=poll_max, stop=stop
            ),
        )

    async def claim_writer(
        self, ttl: float, *, wait: bool = True, shared: bool = False
    ) -> ClaimResult:
        return await self.offload.call(
            "claim_writer", self.log.claim_writer, ttl, wait=wait, shared=shared
        )

    async def renew(self) -> int:
        return await self.offload.call("renew", self.log.renew)

    async def release_writer(self) -> int | None:
        return await self.offload.call("release_writer", self.log.release_writer)

    async def writer_status(self) -> WriterStatus:
        return await _read(self.offload, "writer_status", self.log.writer_status)


class AsyncKV:
    """:class:`~passivepaxos.KV` as coroutines, on an :class:`AsyncLog`."""

    def __init__(self, alog: AsyncLog, **kwargs: Any) -> None:
        self.alog = alog
        self.kv = KV(alog.log, **kwargs)
        self._off = alog.offload

    async def put(self, key: str, value: bytes) -> Position:
        return await self._off.call("kv put", self.kv.put, key, value)

    async def delete(self, key: str) -> bool:
        return await self._off.call("kv delete", self.kv.delete, key)

    async def cas(self, key: str, expected: bytes | None, new: bytes | None) -> CasResult:
        return await self._off.call("kv cas", self.kv.cas, key, expected, new)

    async def get(self, key: str, *, consistent: bool = True) -> bytes | None:
        return await _read(self._off, "kv get", self.kv.get, key, consistent=consistent)

    async def list(self, prefix: str = "", *, consistent: bool = True) -> list[tuple[str, bytes]]:
        return await _read(self._off, "kv list", self.kv.list, prefix, consistent=consistent)


class AsyncLocks:
    """:class:`~passivepaxos.Locks` as coroutines. An ``acquire`` whose task is cancelled
    after it got the lock releases it again (``"undone"``), as ``asyncio.Lock`` does."""

    def __init__(self, alog: AsyncLog, **kwargs: Any) -> None:
        self.alog = alog
        self.locks = Locks(alog.log, **kwargs)
        self._off = alog.offload

    async def acquire(self, name: str, ttl: float, *, wait: float = 0.0) -> int:
        def undo(token: int) -> object:
            return self.locks.release(name, token)

        # a waiting acquire only reads until it takes the lock: stopped at once
        return await self._off.call(
            f"acquire of lock {name!r}",
            self.locks.acquire,
            name,
            ttl,
            wait=wait,
            grace=0.0,
            undo=undo,
        )

    async def refresh(self, name: str, ttl: float | None = None) -> int:
        return await self._off.call(f"refresh of lock {name!r}", self.locks.refresh, name, ttl)

    async def release(self, name: str, token: int | None = None) -> bool:
        return await self._off.call(f"release of lock {name!r}", self.locks.release, name, token)

    async def status(self, name: str) -> LockStatus:
        return await _read(self._off, "lock status", self.locks.status, name)

    def valid(self, name: str) -> bool:
        """Whether we hold ``name`` by our own clock (no request: never blocks)."""
        return self.locks.valid(name)

    @contextlib.asynccontextmanager
    async def hold(
        self,
        name: str,
        ttl: float,
        *,
        wait: float = 0.0,
        on_lost: Callable[[str], object] | None = None,
    ) -> AsyncIterator[int]:
        """``async with locks.hold(name, ttl) as token:`` acquire, keep alive in a
        runtime task (``on_lost`` as for ``Locks.keep_alive``), release on exit."""
        token = await self.acquire(name, ttl, wait=wait)
        ka = self.locks.keep_alive(name, on_lost=on_lost)
        try:
            yield token
        finally:
            # stop renewing now, on the loop (no wait); join the renewal that may be in
            # flight and release in the pool, through any further cancel
            ka.stop(wait=False)

            def end() -> None:
                ka.stop()
                with contextlib.suppress(PassivePaxosError):
                    self.locks.release(name, token)

            await self._off.finish(f"release of lock {name!r}", end)


class AsyncElection:
    """:class:`~passivepaxos.Election` as coroutines."""

    def __init__(self, alog: AsyncLog, name: str, *, ttl: float, **kwargs: Any) -> None:
        self.alog = alog
        self.election = Election(alog.log, name, ttl=ttl, **kwargs)
        self._off = alog.offload

    async def campaign(self, timeout: float = float("inf")) -> int:
        """Become the leader (waiting up to ``timeout`` seconds); return the term. A
        campaign cancelled after it won resigns again (``"undone"``)."""

        def undo(term: int) -> object:
            self.election.resign()
            return term

        return await self._off.call(
            f"campaign for {self.election.name!r}",
            self.election.campaign,
            timeout,
            grace=0.0,
            undo=undo,
        )

    def is_leader(self) -> bool:
        return self.election.is_leader()

    async def resign(self) -> None:
        await self._off.call("resign", self.election.resign)

    async def leader(self) -> LockStatus:
        return await _read(self._off, "leader", self.election.leader)


class AsyncBroadcast:
    """:class:`~passivepaxos.Broadcast` as coroutines."""

    def __init__(self, alog: AsyncLog, **kwargs: Any) -> None:
        self.alog = alog
        self.tob = Broadcast(alog.log, **kwargs)
        self._off = alog.offload

    async def broadcast(self, msg: bytes, *, msg_id: str | None = None) -> Position:
        return await self._off.call("broadcast", self.tob.broadcast, msg, msg_id=msg_id)


_default: Offload | None = None


async def propose(
    stores: Sequence[Store],
    instance: str,
    value: bytes,
    proposer_id: str,
    mode: ListMode | str = ListMode.CREATE,
    *,
    offload: Offload | None = None,
) -> bytes:
    """``consensus.driver.propose`` as a coroutine: the decided value of ``instance``
    (maybe another proposer's). Cancelled after it sent its value: ``"unknown"`` or
    ``"done"`` (module docstring); ``OutcomeUnknownError`` as for the sync call."""
    global _default
    if offload is None:
        if _default is None:
            _default = Offload()
        offload = _default
    return await offload.call(
        f"propose for {instance!r}", driver.propose, stores, instance, value, proposer_id, mode
    )
