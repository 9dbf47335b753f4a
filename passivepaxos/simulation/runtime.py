"""A deterministic scheduler over real threads, and the simulated :class:`Runtime`.

The library blocks, sleeps, reads clocks and starts concurrent work only through its
runtime (``passivepaxos.runtime``). Here every simulated thread is a real thread, but only
one of them runs at any moment: each waits on its own gate (a real lock the scheduler
owns) and runs only while it holds the *baton*. A thread gives the baton up only inside a
runtime call (a sleep, a lock/condition/event operation, a pool submit, a wait, a future's
result, a spawn, or an explicit :meth:`Scheduler.yield_point` that the simulated stores make
around each request). There the seeded RNG picks the next thread among the runnable ones;
when none is runnable the virtual clock jumps to the earliest timed wake-up; when nothing
can ever run again that is a deadlock, reported with every thread's stack.

So a run is a pure function of its seed: the same seed replays the same interleaving and
the same trace (:meth:`Scheduler.trace_hash`). Library code between two runtime calls runs
atomically, which is exactly the contract a plain ``threading.Lock`` relies on.

One :class:`SimRuntime` per simulated process, over one shared scheduler: its own clock
(``monotonic() = offset + t * (1 + drift)`` for global virtual time ``t``), its own RNG
stream derived from the seed (``token_bytes`` draws from it), and it can crash (its
threads die at their next switch) or pause (its threads are not scheduled for a while).

A watchdog on *real* time turns an accidental real block (code that bypassed the seam and
called ``time.sleep`` or waited on a ``threading.Event``) into an error naming the stuck
thread's stack instead of a hung test. This module and ``passivepaxos.runtime`` are the only
ones allowed real thread primitives and real clocks.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import random
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from passivepaxos.runtime import ConditionLike, EventLike, LockLike, Pool, Task

__all__ = [
    "Deadlock",
    "Livelock",
    "ProcessCrashed",
    "Scheduler",
    "SimFuture",
    "SimRuntime",
    "SimulationError",
    "WatchdogTimeout",
]

T = TypeVar("T")

WALL_EPOCH = 1_800_000_000.0
"""Wall clocks of simulated processes start here (plus their offset)."""


class SimulationError(Exception):
    """The simulation itself could not go on (not a protocol violation)."""


class Deadlock(SimulationError):
    """No simulated thread can ever run again, and the run is not over."""


class Livelock(SimulationError):
    """The step or virtual-time budget of the run ran out."""


class WatchdogTimeout(SimulationError):
    """A simulated thread blocked for real (the runtime seam was bypassed)."""


class ProcessCrashed(SimulationError):
    """Set on a future whose worker died with its process."""


class _Killed(BaseException):
    """Raised inside a thread of a crashed process (or at the end of a run) at its next
    switch; a BaseException so that library ``except Exception`` blocks do not eat it."""


@dataclass(eq=False)
class _Proc:
    name: str
    offset: float
    drift: float
    crashed: bool = False
    paused_until: float = 0.0


class _Carrier:
    """A real thread that runs simulated threads one after another (starting a real
    thread per simulated one, e.g. per quorum request, would dominate a run's cost).
    Idle carriers wait on their gate in a process-wide free list."""

    _free: ClassVar[list[_Carrier]] = []
    _free_lock: ClassVar[threading.Lock] = threading.Lock()
    _count: ClassVar[int] = 0
    KEEP: ClassVar[int] = 256  # idle carriers kept; more retire

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.job: (
            tuple[Scheduler, _Thread, Callable[..., Any], tuple[Any, ...], contextvars.Context]
            | None
        ) = None
        _Carrier._count += 1
        self.thread = threading.Thread(
            target=self._loop, name=f"sim-carrier-{_Carrier._count}", daemon=True
        )
        self.thread.start()

    @classmethod
    def _forget(cls) -> None:
        """In a forked child: the parent's idle carriers do not exist here."""
        cls._free = []
        cls._free_lock = threading.Lock()

    @classmethod
    def get(cls) -> _Carrier:
        with cls._free_lock:
            if cls._free:
                return cls._free.pop()
        return cls()

    def _loop(self) -> None:
        while True:
            self.gate.acquire()  # the first turn of the next simulated thread (or retire)
            job = self.job
            if job is None:
                return
            sched, t, fn, args, ctx = job
            sched._body(t, fn, args, ctx)
            self.job = None
            with _Carrier._free_lock:
                if len(_Carrier._free) >= _Carrier.KEEP:
                    return
                _Carrier._free.append(self)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Carrier._forget)


@dataclass(eq=False)
class _Thread:
    tid: int
    name: str
    proc: _Proc
    gate: threading.Lock = field(default_factory=threading.Lock)
    pred: Callable[[], bool] | None = None  # None: runnable (at a plain switch point)
    wake: float | None = None  # global virtual time of a timed wake-up
    killed: bool = False
    done: bool = False
    real: threading.Thread | None = None
    result: Any = None
    error: BaseException | None = None


def _never() -> bool:
    return False


class Scheduler:
    """Runs simulated threads one at a time, in an order drawn from ``seed``.

    ``switch`` is the probability that a non-blocking runtime call (a lock taken while
    free, an event set, a yield point) offers the baton to another thread; blocking calls
    always reschedule. ``max_steps`` and ``max_time`` (virtual seconds) bound a run
    (``Livelock`` past them); ``watchdog`` is the real time (seconds) without any switch
    after which the running thread is declared blocked for real."""

    def __init__(
        self,
        seed: int,
        *,
        switch: float = 1.0,
        max_steps: int = 2_000_000,
        max_time: float = 1e6,
        watchdog: float = 10.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(f"passivepaxos-sim:{seed}:scheduler")
        self.switch = switch
        self.max_steps = max_steps
        self.max_time = max_time
        self.watchdog = watchdog
        self.now = 0.0
        self.steps = 0
        self.trace: list[tuple[Any, ...]] = []
        self.errors: list[tuple[str, BaseException]] = []  # unhandled, in spawned threads
        self._threads: list[_Thread] = []  # live threads, in creation order
        self._procs: dict[str, _Proc] = {}
        self._tids = 0
        self._current: _Thread | None = None
        self._root: _Thread | None = None
        self._ctl = threading.Lock()  # the controller's gate: released when the run ends
        self._ctl.acquire()
        self._failure: SimulationError | None = None
        self._cleanup = False
        self._dead = False

    # -- processes -------------------------------------------------------------------------

    def process(self, name: str, *, offset: float = 0.0, drift: float = 0.0) -> SimRuntime:
        """A new simulated process and its runtime. ``drift`` > -1: its clocks run
        ``1 + drift`` times as fast as virtual time."""
        if name in self._procs:
            raise ValueError(f"process {name!r} exists")
        if drift <= -1.0:
            raise ValueError("drift must be > -1")
        p = _Proc(name, offset, drift)
        self._procs[name] = p
        return SimRuntime(self, p)

    def crash(self, name: str) -> None:
        """Crash a process: each of its threads dies at its next switch."""
        p = self._procs[name]
        if not p.crashed:
            p.crashed = True
            self.note("crash", name)

    def pause(self, name: str, seconds: float) -> None:
        """Do not schedule the process's threads for ``seconds`` of virtual time."""
        p = self._procs[name]
        p.paused_until = max(p.paused_until, self.now + max(0.0, seconds))
        self.note("pause", name, round(seconds, 9))

    # -- tracing ---------------------------------------------------------------------------

    def note(self, *event: Any) -> None:
        """Append an effect to the trace (stores note each request and its fate)."""
        self.trace.append(event)

    def trace_hash(self) -> str:
        h = hashlib.sha256()
        for e in self.trace:
            h.update(repr(e).encode())
            h.update(b"\n")
        return h.hexdigest()

    def format_trace(self) -> Iterator[str]:
        """One line per trace event: ``run <thread id>`` (a switch), ``t= <time>`` (the
        clock jumped), or an effect (``req <process> <store> <op> <key> <fate>``, ...)."""
        names: dict[int, str] = {}
        for e in self.trace:
            if e[0] == "spawn":
                names[e[1]] = e[2]
            if len(e) == 1:
                yield f"run {e[0]} {names.get(e[0], '')}"
            elif e[0] == "t":
                yield f"t= {e[1]}"
            else:
                yield " ".join(str(x) for x in e)

    # -- running ---------------------------------------------------------------------------

    def run(self, fn: Callable[..., T], /, *args: Any, process: SimRuntime | None = None) -> T:
        """Run ``fn(*args)`` as the root thread (of ``process``, else a process "main")
        until it returns; every thread still alive then is killed. Raises what the root
        raised, or the ``SimulationError`` that stopped the run."""
        if self._root is not None:
            raise RuntimeError("a Scheduler runs once")
        rt = process or self.process("main")
        root = self._new_thread(rt._proc, fn, args, "main", contextvars.copy_context())
        self._root = root
        self._current = root
        root.gate.release()
        last_steps, last_real = -1, time.monotonic()
        while not self._ctl.acquire(timeout=0.2):
            now = time.monotonic()
            if self.steps != last_steps:
                last_steps, last_real = self.steps, now
            elif now - last_real > self.watchdog:
                stuck = self._current
                self._failure = WatchdogTimeout(
                    f"no switch for {self.watchdog:g}s of real time: "
                    f"{stuck.name if stuck else '?'} blocked outside the runtime seam "
                    f"(a real sleep, lock or wait)\n{self._stack(stuck) if stuck else ''}"
                )
                if stuck is not None and stuck in self._threads:
                    stuck.killed = True
                    self._threads.remove(stuck)  # abandoned: it cannot be resumed
                break
        self._shutdown()
        if self._failure is not None:
            raise self._failure
        if root.error is not None:
            raise root.error
        result: T = root.result
        return result

    def _shutdown(self) -> None:
        """Kill every live thread, one at a time, and let it unwind."""
        self._cleanup = True
        while self._threads:
            t = self._threads[0]
            t.killed = True
            self._current = t
            t.gate.release()
            if not self._ctl.acquire(timeout=self.watchdog):
                self._threads.remove(t)
                if self._failure is None:
                    self._failure = WatchdogTimeout(
                        f"{t.name} did not unwind when killed\n{self._stack(t)}"
                    )
        self._dead = True
        self._current = None

    def _new_thread(
        self,
        proc: _Proc,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        name: str,
        ctx: contextvars.Context,
    ) -> _Thread:
        self._tids += 1
        t = _Thread(self._tids, name, proc)
        t.killed = self._cleanup
        carrier = _Carrier.get()
        t.gate = carrier.gate
        t.real = carrier.thread
        self._threads.append(t)
        self.note("spawn", t.tid, name)
        carrier.job = (self, t, fn, args, ctx)
        return t

    def _body(
        self, t: _Thread, fn: Callable[..., Any], args: tuple[Any, ...], ctx: contextvars.Context
    ) -> None:
        """A simulated thread's life, on its carrier, from its first turn."""
        try:
            if not (t.killed or t.proc.crashed or self._dead):
                t.result = ctx.run(fn, *args)
        except _Killed:
            pass
        except BaseException as exc:
            if not (t.killed or t.proc.crashed):  # a dying thread's unwinding errors are noise
                t.error = exc
                if t is not self._root:
                    self.errors.append((t.name, exc))
                    self.note("error", t.tid, type(exc).__name__)
        finally:
            t.done = True
            self._exit(t)

    def _exit(self, t: _Thread) -> None:
        """A thread ended: hand the baton on (or back to the controller)."""
        if t in self._threads:
            self._threads.remove(t)
        self.note("exit", t.tid)
        if self._cleanup or self._dead or t is self._root:
            self._ctl.release()
            return
        nxt = self._pick()
        if nxt is None:
            self._fail(Deadlock(self._deadlock_report()))
            return
        self._resume(nxt)

    # -- switching -------------------------------------------------------------------------

    def _me(self) -> _Thread:
        t = self._current
        if t is None or t.real is not threading.current_thread():
            raise SimulationError(
                f"runtime call from {threading.current_thread().name}, not a simulated thread"
            )
        return t

    def _ready_at(self, t: _Thread) -> float | None:
        if t.killed or t.proc.crashed:
            return self.now  # runs, to die
        if t.pred is None or t.pred():
            r = self.now
        elif t.wake is not None:
            r = t.wake
        else:
            return None
        return r if t.proc.paused_until <= r else t.proc.paused_until

    def _pick(self) -> _Thread | None:
        """The next thread to run, uniformly among the runnable ones (threads are tried
        in a random order, the first runnable one wins: a uniform choice that evaluates
        few wake-up conditions), advancing the clock if none can run now; None when none
        ever can."""
        while True:
            threads = self._threads
            n = len(threads)
            order = list(range(n))
            now = self.now
            soonest: float | None = None
            rng = self.rng
            for j in range(n):
                k = j + int(rng.random() * (n - j))
                order[j], order[k] = order[k], order[j]
                t = threads[order[j]]
                r = self._ready_at(t)
                if r is None:
                    continue
                if r <= now:
                    self.trace.append((t.tid,))
                    return t
                if soonest is None or r < soonest:
                    soonest = r
            if soonest is None:
                return None
            if soonest > self.max_time:
                self._failure = self._failure or Livelock(
                    f"virtual time budget ({self.max_time:g}s) exhausted"
                )
                return None
            self.now = soonest
            self.trace.append(("t", round(soonest, 9)))

    def _resume(self, t: _Thread) -> None:
        self._current = t
        t.gate.release()

    def _fail(self, failure: SimulationError) -> None:
        if self._failure is None:
            self._failure = failure
        self._ctl.release()

    def _reschedule(self, me: _Thread) -> None:
        """Give the baton to the thread the RNG picks (maybe ``me`` again) and return when
        ``me`` holds it again. Raises ``_Killed`` in a dying thread."""
        if me.killed or me.proc.crashed or self._dead:
            raise _Killed()
        self.steps += 1
        if self.steps > self.max_steps:
            self._fail(Livelock(f"step budget ({self.max_steps}) exhausted at t={self.now:g}"))
            self._park(me)
            raise _Killed()
        nxt = self._pick()
        if nxt is None:
            self._fail(self._failure or Deadlock(self._deadlock_report()))
            self._park(me)
            raise _Killed()
        if nxt is not me:
            self._resume(nxt)
            self._park(me)
        if me.killed or me.proc.crashed or self._dead:
            raise _Killed()

    def _park(self, me: _Thread) -> None:
        me.gate.acquire()
        if self._current is not me:  # pragma: no cover - a broken hand-over
            raise SimulationError(f"{me.name} resumed without the baton")

    def block(
        self, pred: Callable[[], bool], timeout: float | None = None, *, local: bool = True
    ) -> bool:
        """Wait until ``pred()`` holds or ``timeout`` passes (seconds of the calling
        process's clock, or of virtual time if not ``local``); True when it holds. Every
        wait in this module goes through here."""
        me = self._me()
        if me.killed or me.proc.crashed or self._dead:
            raise _Killed()
        if self.switch < 1.0 and pred() and self.rng.random() >= self.switch:
            return True
        me.pred = pred
        if timeout is None:
            me.wake = None
        else:
            me.wake = self.now + max(0.0, timeout) / (1.0 + me.proc.drift if local else 1.0)
        try:
            self._reschedule(me)
        finally:
            me.pred = None
            me.wake = None
        return pred()

    def yield_point(self) -> None:
        """Offer the baton to another runnable thread (a switch point)."""
        me = self._me()
        if self.switch < 1.0 and self.rng.random() >= self.switch:
            if me.killed or me.proc.crashed or self._dead:
                raise _Killed()
            return
        self._reschedule(me)

    def sleep(self, seconds: float, *, local: bool = True) -> None:
        """Sleep ``seconds`` of the calling process's clock (of virtual time if not
        ``local``: network latency is not subject to a process's drift)."""
        self.block(_never, max(0.0, seconds), local=local)

    def local_now(self) -> float:
        """The calling thread's process clock (``monotonic()`` of its runtime)."""
        p = self._me().proc
        return p.offset + self.now * (1.0 + p.drift)

    def current_process(self) -> str:
        """The name of the calling thread's process."""
        return self._me().proc.name

    def in_simulation(self) -> bool:
        """Whether the calling thread is a simulated thread of this scheduler."""
        t = self._current
        return t is not None and t.real is threading.current_thread()

    def dying(self) -> bool:
        t = self._current
        return t is not None and (t.killed or t.proc.crashed or self._dead)

    # -- reports ---------------------------------------------------------------------------

    def _stack(self, t: _Thread) -> str:
        frame = sys._current_frames().get(t.real.ident or -1) if t.real else None
        if frame is None:
            return f"  ({t.name}: no stack)"
        return "".join(traceback.format_stack(frame))

    def where(self, process: str) -> str:
        """The innermost library frames of each live thread of ``process`` (a report of
        where it is stuck)."""
        out = []
        for t in self._threads:
            if t.proc.name != process:
                continue
            frame = sys._current_frames().get(t.real.ident or -1) if t.real else None
            if frame is None:
                continue
            frames = [
                f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}"
                for f in traceback.extract_stack(frame)
                if "passivepaxos" in f.filename and "simulation" not in f.filename
            ]
            out.append(f"{t.name}: " + " > ".join(frames[-4:]))
        return "; ".join(out) or "(no live thread)"

    def _deadlock_report(self) -> str:
        lines = [f"deadlock at t={self.now:.6f}: no thread can ever run again"]
        for t in self._threads:
            lines.append(f"--- {t.name} (process {t.proc.name}):")
            if t is self._current:
                lines.append("".join(traceback.format_stack()))
            else:
                lines.append(self._stack(t))
        return "\n".join(lines)


# -- primitives ----------------------------------------------------------------------------


class SimLock:
    """A lock (``reentrant``: an RLock) whose waits are scheduler switches."""

    def __init__(self, sched: Scheduler, *, reentrant: bool = False) -> None:
        self._sched = sched
        self._reentrant = reentrant
        self._owner: _Thread | None = None
        self._count = 0

    def _free(self) -> bool:
        return self._owner is None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        s = self._sched
        me = s._me()
        if self._reentrant and self._owner is me:
            self._count += 1
            return True
        if not blocking:
            s.yield_point()
            if self._owner is not None:
                return False
        elif not s.block(self._free, None if timeout is None or timeout < 0 else timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    def release(self) -> None:
        s = self._sched
        if self._owner is None:
            if s.dying():
                return
            raise RuntimeError("release unlocked lock")
        if self._reentrant and self._owner is not s._current and not s.dying():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count <= 0:
            self._owner = None
            self._count = 0

    def locked(self) -> bool:
        return self._owner is not None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, t: Any, v: Any, tb: Any, /) -> None:
        self.release()

    def _is_owned(self) -> bool:
        return self._owner is self._sched._current

    def _release_save(self) -> int:
        n = self._count
        self._owner = None
        self._count = 0
        return n

    def _acquire_restore(self, n: int) -> None:
        me = self._sched._me()
        if not self._sched.dying():
            self._sched.block(self._free)
        self._owner = me
        self._count = n


class SimCondition:
    """A condition variable over a :class:`SimLock` (an RLock unless one is given)."""

    def __init__(self, sched: Scheduler, lock: LockLike | None = None) -> None:
        if lock is None:
            lock = SimLock(sched, reentrant=True)
        if not isinstance(lock, SimLock):
            raise TypeError("a simulated condition needs a simulated lock")
        self._sched = sched
        self._lock = lock
        self._waiters: deque[list[bool]] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, t: Any, v: Any, tb: Any, /) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        token = [False]
        self._waiters.append(token)
        saved = self._lock._release_save()
        try:
            return self._sched.block(lambda: token[0], timeout)
        finally:
            if not token[0]:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(token)
            self._lock._acquire_restore(saved)

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        end = None if timeout is None else self._sched.local_now() + timeout
        result = predicate()
        while not result:
            left = None
            if end is not None:
                left = end - self._sched.local_now()
                if left <= 0:
                    break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        if not self._lock._is_owned() and not self._sched.dying():
            raise RuntimeError("cannot notify on un-acquired lock")
        while n > 0 and self._waiters:
            self._waiters.popleft()[0] = True
            n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))


class SimEvent:
    def __init__(self, sched: Scheduler) -> None:
        self._sched = sched
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if not self._sched.dying() and self._sched.in_simulation():
            self._sched.yield_point()

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        return self._sched.block(self.is_set, timeout)


class SimFuture(Future[T]):
    """A future whose blocking methods wait cooperatively (scheduler switches)."""

    def __init__(self, sched: Scheduler) -> None:
        super().__init__()
        self._sched = sched

    def result(self, timeout: float | None = None) -> T:
        self._sched.block(self.done, timeout)
        return super().result(timeout=0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._sched.block(self.done, timeout)
        return super().exception(timeout=0)


class SimTask:
    def __init__(self, sched: Scheduler, name: str) -> None:
        self._sched = sched
        self.name = name
        self._thread: _Thread | None = None

    def join(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            self._sched.block(lambda: t.done, timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and not self._thread.done


class SimPool:
    """A pool whose workers are simulated threads of one process, started as needed."""

    def __init__(self, sched: Scheduler, proc: _Proc, max_workers: int, name: str) -> None:
        self._sched = sched
        self._proc = proc
        self._max = max(1, max_workers)
        self._name = name
        self._queue: deque[
            tuple[SimFuture[Any], contextvars.Context, Callable[..., Any], tuple[Any, ...]]
        ] = deque()
        self._workers: list[_Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        s = self._sched
        fut: SimFuture[T] = SimFuture(s)
        self._queue.append((fut, contextvars.copy_context(), fn, args))
        if self._idle < len(self._queue) and len(self._workers) < self._max:
            n = len(self._workers)
            w = s._new_thread(
                self._proc, self._work, (), f"{self._name}-{n}", contextvars.Context()
            )
            self._workers.append(w)
        if not s.dying():
            s.yield_point()
        return fut

    def _has_work(self) -> bool:
        return bool(self._queue) or self._closed

    def _work(self) -> None:
        s = self._sched
        while True:
            self._idle += 1
            try:
                s.block(self._has_work)
            finally:
                self._idle -= 1
            if not self._queue:
                return
            fut, ctx, fn, args = self._queue.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                value = ctx.run(fn, *args)
            except _Killed:
                fut.set_exception(ProcessCrashed(f"process {self._proc.name} crashed"))
                raise
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        futs = [self.submit(fn, x) for x in items]
        return (f.result() for f in futs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            while self._queue:
                self._queue.popleft()[0].cancel()
        if wait and not self._sched.dying():
            workers = list(self._workers)
            self._sched.block(lambda: all(w.done for w in workers))


class SimRuntime:
    """The :class:`passivepaxos.runtime.Runtime` of one simulated process."""

    def __init__(self, sched: Scheduler, proc: _Proc) -> None:
        self.scheduler = sched
        self._proc = proc
        self.name = proc.name
        self.rng = random.Random(f"passivepaxos-sim:{sched.seed}:{proc.name}")

    def __repr__(self) -> str:
        return f"SimRuntime({self.name!r})"

    # clocks
    @property
    def drift(self) -> float:
        return self._proc.drift

    def monotonic(self) -> float:
        return self._proc.offset + self.scheduler.now * (1.0 + self._proc.drift)

    def wall(self) -> float:
        return WALL_EPOCH + self.monotonic()

    def sleep(self, seconds: float) -> None:
        self.scheduler.sleep(seconds)

    # randomness
    def token_bytes(self, n: int = 16) -> bytes:
        return self.rng.getrandbits(8 * n).to_bytes(n, "big") if n > 0 else b""

    def token_hex(self, n: int = 16) -> str:
        return self.token_bytes(n).hex()

    # concurrency
    def spawn(self, fn: Callable[..., object], /, *args: Any, name: str) -> Task:
        s = self.scheduler
        task = SimTask(s, name)
        task._thread = s._new_thread(self._proc, fn, args, name, contextvars.copy_context())
        if s.in_simulation() and not s.dying():
            s.yield_point()
        return task

    def pool(self, max_workers: int, name: str) -> Pool:
        return SimPool(self.scheduler, self._proc, max_workers, name)

    def lock(self) -> LockLike:
        return SimLock(self.scheduler)

    def rlock(self) -> LockLike:
        return SimLock(self.scheduler, reentrant=True)

    def condition(self, lock: LockLike | None = None) -> ConditionLike:
        return SimCondition(self.scheduler, lock)

    def event(self) -> EventLike:
        return SimEvent(self.scheduler)

    def wait(
        self,
        futures: Iterable[Future[Any]],
        timeout: float | None = None,
        return_when: str = ALL_COMPLETED,
    ) -> tuple[set[Future[Any]], set[Future[Any]]]:
        fs = list(futures)

        def ready() -> bool:
            if return_when == FIRST_COMPLETED:
                return any(f.done() for f in fs)
            if return_when == FIRST_EXCEPTION:
                return all(f.done() for f in fs) or any(
                    f.done() and not f.cancelled() and Future.exception(f, 0) is not None
                    for f in fs
                )
            return all(f.done() for f in fs)

        self.scheduler.block(ready, timeout)
        done = {f for f in fs if f.done()}
        return done, set(fs) - done

    # faults
    def yield_point(self) -> None:
        self.scheduler.yield_point()

    def crash(self) -> None:
        self.scheduler.crash(self.name)

    def pause(self, seconds: float) -> None:
        self.scheduler.pause(self.name, seconds)

    @property
    def crashed(self) -> bool:
        return self._proc.crashed
