"""The runtime seam, checked by running the stack: nothing reaches ``REAL`` when a runtime is given.

``tests/test_runtime_seam.py`` reads the source; this runs it. Every method of
:data:`passivepaxos.runtime.REAL` (clocks, sleep, ids, tasks, pools, locks, conditions,
events, waits, and its RNG's draws) is replaced by a spy for the duration of a scenario;
the scenario runs Logs, the lease, KV, Locks, Election, Broadcast, snapshots, trim and
membership changes on a *recording* runtime of its own (a private ``RealRuntime``
underneath, so real threads still work). Any call on ``REAL`` made in the scenario's
context (its threads and tasks inherit it) is a place where an object dropped the runtime
it was handed and fell back to the production one: under the simulator that is a real
thread, clock or blocking wait inside a virtual run (review 11 found four).
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from passivepaxos import membership
from passivepaxos.deadline import deadline
from passivepaxos.errors import LockHeldError, PassivePaxosError
from passivepaxos.log import Log
from passivepaxos.manifest import init_log, open_log
from passivepaxos.recipes.election import Election
from passivepaxos.recipes.kv import KV
from passivepaxos.recipes.lock import FencedResource, Locks
from passivepaxos.recipes.tob import Broadcast
from passivepaxos.runtime import (
    ALL_COMPLETED,
    REAL,
    ConditionLike,
    EventLike,
    LockLike,
    Pool,
    RealRuntime,
    Task,
)
from passivepaxos.store import RetryPolicy, Store, open_store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import FaultPlan, FaultyBackend

ROOT = Path(__file__).resolve().parent.parent
_LIB = (str(ROOT / "passivepaxos"), str(ROOT / "backends"))
_SEAM = str(ROOT / "passivepaxos" / "runtime.py")

RUNTIME_METHODS = (
    "monotonic",
    "wall",
    "sleep",
    "token_bytes",
    "token_hex",
    "spawn",
    "pool",
    "lock",
    "rlock",
    "condition",
    "event",
    "wait",
)
RNG_METHODS = (
    "random",
    "getrandbits",
    "uniform",
    "randint",
    "randrange",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "randbytes",
    "gauss",
    "normalvariate",
    "expovariate",
    "triangular",
    "betavariate",
)

# set by a scenario: a REAL call in this context (the scenario's thread and every task or
# pool job started from it, which run in a copy of it) is a bypass
_watching: contextvars.ContextVar[bool] = contextvars.ContextVar("seam_watching", default=False)


def _site() -> str:
    """The library frame nearest the call (the one that chose REAL), with its caller."""
    frames = [
        f
        for f in reversed(traceback.extract_stack()[:-3])
        if f.filename.startswith(_LIB) and f.filename != _SEAM
    ]
    return " < ".join(
        f"{Path(f.filename).relative_to(ROOT)}:{f.lineno} {f.name}" for f in frames[:3]
    )


class RealSpy:
    """While installed, every call on REAL (and REAL.rng) in a watched context is counted
    by (method, library call site); ``strict`` raises instead (the traceback then points
    at the cause)."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.calls: Counter[tuple[str, str]] = Counter()
        self._mu = threading.Lock()

    def _hit(self, what: str) -> None:
        if not _watching.get():
            return
        site = _site()
        with self._mu:
            self.calls[(what, site)] += 1
        if self.strict:
            raise AssertionError(f"{what} called on the production runtime at {site}")

    def _wrap(self, owner: Any, name: str, label: str) -> Callable[..., Any]:
        orig = getattr(owner, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            self._hit(label)
            return orig(*args, **kwargs)

        return spy

    @contextlib.contextmanager
    def installed(self) -> Iterator[RealSpy]:
        patched: list[tuple[Any, str]] = []
        for name in RUNTIME_METHODS:
            setattr(REAL, name, self._wrap(REAL, name, f"REAL.{name}"))
            patched.append((REAL, name))
        for name in RNG_METHODS:
            setattr(REAL.rng, name, self._wrap(REAL.rng, name, f"REAL.rng.{name}"))
            patched.append((REAL.rng, name))
        result = Future.result
        spy = self

        def blocking_result(fut: Future[Any], timeout: float | None = None) -> Any:
            # a plain future (a DaemonPool's) blocked on before it is done is a real wait
            # the simulator cannot schedule: wait for it through the runtime first
            if not fut.done() and not getattr(fut, _FROM_POOL, False):
                spy._hit("Future.result() on an unfinished future, not through the runtime")
            return result(fut, timeout)

        Future.result = blocking_result  # type: ignore[method-assign, assignment]
        try:
            yield self
        finally:
            Future.result = result  # type: ignore[method-assign]
            for owner, name in patched:
                delattr(owner, name)  # the class's method shows through again

    def report(self) -> str:
        return "\n".join(
            f"{n:5d} {what} <- {site}" for (what, site), n in sorted(self.calls.items())
        )


_FROM_POOL = "_seam_test_from_runtime_pool"


class _TaggingPool:
    """A runtime pool whose futures say so: the runtime's own futures may be blocked on
    (the contract: the simulator's futures cooperate)."""

    def __init__(self, inner: Pool) -> None:
        self._inner = inner

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        fut = self._inner.submit(fn, *args)
        setattr(fut, _FROM_POOL, True)
        return fut

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        futs = [self.submit(fn, x) for x in items]
        return (f.result() for f in futs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait, cancel_futures=cancel_futures)


class RecordingRuntime:
    """A runtime of its own: a private ``RealRuntime`` underneath (not REAL), a seeded RNG,
    and a count of what it was asked, so a test can also see that the work came here."""

    def __init__(self, name: str, seed: int = 1) -> None:
        self.name = name
        self._base = RealRuntime(seed)
        self.rng: random.Random = self._base.rng
        self.used: Counter[str] = Counter()
        self._mu = threading.Lock()

    def __repr__(self) -> str:
        return f"RecordingRuntime({self.name})"

    def _note(self, what: str) -> None:
        with self._mu:
            self.used[what] += 1

    def monotonic(self) -> float:
        self._note("monotonic")
        return self._base.monotonic()

    def wall(self) -> float:
        self._note("wall")
        return self._base.wall()

    def sleep(self, seconds: float) -> None:
        self._note("sleep")
        self._base.sleep(seconds)

    def token_bytes(self, n: int = 16) -> bytes:
        self._note("token_bytes")
        return self._base.token_bytes(n)

    def token_hex(self, n: int = 16) -> str:
        self._note("token_hex")
        return self._base.token_hex(n)

    def spawn(self, fn: Callable[..., object], /, *args: Any, name: str) -> Task:
        self._note("spawn")
        return self._base.spawn(fn, *args, name=name)

    def pool(self, max_workers: int, name: str) -> Pool:
        self._note("pool")
        return _TaggingPool(self._base.pool(max_workers, name))

    def lock(self) -> LockLike:
        self._note("lock")
        return self._base.lock()

    def rlock(self) -> LockLike:
        self._note("rlock")
        return self._base.rlock()

    def condition(self, lock: LockLike | None = None) -> ConditionLike:
        self._note("condition")
        return self._base.condition(lock)

    def event(self) -> EventLike:
        self._note("event")
        return self._base.event()

    def wait(
        self,
        futures: Iterable[Future[Any]],
        timeout: float | None = None,
        return_when: str = ALL_COMPLETED,
    ) -> tuple[set[Future[Any]], set[Future[Any]]]:
        self._note("wait")
        return self._base.wait(futures, timeout, return_when)


def _watched(fn: Callable[[], None], *, under_deadline: RecordingRuntime | None = None) -> RealSpy:
    """Run ``fn`` with REAL spied on, in a watched context (optionally inside a deadline
    on ``under_deadline``'s clock); the spy's record."""
    spy = RealSpy()

    def body() -> None:
        _watching.set(True)
        if under_deadline is None:
            fn()
        else:
            with deadline(60.0, clock=under_deadline.monotonic):
                fn()

    with spy.installed():
        contextvars.copy_context().run(body)
    return spy


def _urls(k: int) -> str:
    tag = uuid.uuid4().hex[:8]
    return ",".join(f"memory://dyn-{tag}-{i}" for i in range(k))


def _assert_clean(spy: RealSpy) -> None:
    assert not spy.calls, "the production runtime was used under a given runtime:\n" + spy.report()


# -- scenarios ---------------------------------------------------------------------------------


def _log_scenario(log: Log, rt: RecordingRuntime, *, trim: bool) -> None:
    """Appends (one, several, concurrent: group commit), read, follow, head, verify, a
    snapshot, trim (one store), the writer lease and an unknown resume id."""
    log.append([b"a"])
    log.append([b"b", b"c"])
    errors: list[BaseException] = []

    def appender(i: int) -> None:
        try:
            log.append([f"g{i}".encode()])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    tasks = [rt.spawn(appender, i, name=f"appender-{i}") for i in range(4)]
    for t in tasks:
        t.join()
    assert not errors, errors
    entries = list(log.read(0))
    assert [e.value for e in entries[:3]] == [b"a", b"b", b"c"]
    assert len(entries) == 7
    stop = rt.event()
    got: list[bytes] = []
    for e in log.follow(0, stop=stop, poll_min=0.01, poll_max=0.05):
        got.append(e.value)
        if len(got) == 3:
            break
    assert got == [b"a", b"b", b"c"]
    assert log.head() >= 1
    assert log.verify().ok
    info = log.snapshot(b"state")
    assert info.slot >= 0
    if trim:
        log.trim(info.slot)
    assert log.claim_writer(5.0).granted
    log.append([b"held"])
    assert log.lease_read() is not None
    log.writer_status()
    log.release_writer()
    # resuming an append nobody made: its slot gets this record (or, taken, a new one)
    pos = log.append_positions([b"d"], resume=f"{log.head()}:0:{rt.token_hex(16)}")
    assert [e.value for e in log.read(pos[0].slot)][-1] == b"d"
    # a second writer waits out a lease its holder left behind (the wait for an expired
    # lease: the runtime's clock and sleeps), then appends as the holder
    assert log.claim_writer(0.3).granted
    with Log(log.stores, log.mode, runtime=rt, writer_id="W-next") as other:
        assert other.claim_writer(1.0).granted
        other.append([b"taken over"])
        other.release_writer()


def _recipes_scenario(log: Log, rt: RecordingRuntime) -> None:
    kv = KV(log)
    kv.put("a", b"1")
    assert kv.get("a") == b"1"
    assert kv.cas("a", b"1", b"2").ok
    log.claim_writer(5.0)
    assert kv.get("a") == b"2"  # a lease read while the lease is held
    log.release_writer()
    assert kv.delete("a")
    assert kv.get("a", consistent=False) is None

    locks = Locks(log, owner="A")
    res = FencedResource()
    token = locks.acquire("L", ttl=5.0)
    res.write(token, b"x", owner=locks.owner)
    locks.refresh("L")
    rival = Locks(log, owner="B", poll=0.02)
    with pytest.raises(LockHeldError):  # a waiting acquire polls on the runtime
        rival.acquire("L", ttl=5.0, wait=0.1)
    assert locks.release("L", token)
    # the keepalive task refreshes every 0.2 s; whether the lock is still valid after the
    # pause depends on the machine's load, not on the seam: not asserted here
    with locks.hold("H", ttl=0.6) as t2:
        rt.sleep(0.5)
        res.write(t2, b"y", owner=locks.owner)

    el = Election(log, "E", ttl=0.6, candidate="C")
    el.campaign(timeout=5.0)
    rt.sleep(0.3)  # its keepalive runs
    el.is_leader()
    el.resign()
    stop = rt.event()
    seen = []
    for leader, term in el.observe(stop=stop):  # type: ignore[arg-type]
        seen.append((leader, term))
        break
    assert seen

    b = Broadcast(log, sender="S")
    b.broadcast(b"m1")
    b.broadcast(b"m2", msg_id="id2")
    msgs = [d.payload for d in b.deliver(follow=False)]
    assert msgs == [b"m1", b"m2"]


MODES = ("create", "cas", "blocks")


@pytest.mark.parametrize("under_deadline", [False, True], ids=["plain", "deadline"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_a_log_given_a_runtime_never_uses_real(mode: str, k: int, under_deadline: bool) -> None:
    rt = RecordingRuntime("rt")
    url = _urls(k)

    def scenario() -> None:
        init_log(url, mode, rt)
        with Log.open(url, runtime=rt, writer_id="W") as log:
            assert log.runtime is rt and all(s.runtime is rt for s in log.stores)
            _log_scenario(log, rt, trim=(k == 1 and mode == "create"))
        # a Log made from stores opened on the same runtime
        stores = [open_store(u, runtime=rt) for u in url.split(",")]
        with Log(stores, mode, runtime=rt, writer_id="W2") as log2:
            log2.append([b"again"])

    _assert_clean(_watched(scenario, under_deadline=rt if under_deadline else None))
    assert rt.used["monotonic"] and rt.used["token_bytes"]
    if k > 1:
        assert rt.used["spawn"] and rt.used["wait"]


@pytest.mark.parametrize("under_deadline", [False, True], ids=["plain", "deadline"])
@pytest.mark.parametrize("k", [1, 3])
def test_recipes_on_a_log_with_a_runtime_never_use_real(k: int, under_deadline: bool) -> None:
    rt = RecordingRuntime("rt")
    url = _urls(k)

    def scenario() -> None:
        init_log(url, "auto", rt)
        with Log.open(url, runtime=rt, writer_id="R") as log:
            _recipes_scenario(log, rt)

    _assert_clean(_watched(scenario, under_deadline=rt if under_deadline else None))
    assert rt.used["spawn"] and rt.used["event"]


@pytest.mark.parametrize("under_deadline", [False, True], ids=["plain", "deadline"])
def test_membership_with_a_runtime_never_uses_real(under_deadline: bool) -> None:
    rt = RecordingRuntime("rt")
    url = _urls(3)
    extra = _urls(1)

    def scenario() -> None:
        init_log(url, "auto", rt)
        with Log.open(url, runtime=rt, writer_id="M") as log:
            log.append([b"1"])
        membership.add_store(url, extra, runtime=rt)
        after_add = url + "," + extra
        members = membership.list_members(after_add, runtime=rt)
        assert extra in members["stores"]
        first = url.split(",")[0]
        membership.remove_store(after_add, first, runtime=rt)
        rest = ",".join(u for u in after_add.split(",") if u != first)
        with Log.open(rest, runtime=rt, writer_id="M") as log:
            log.append([b"2"])
            assert [e.value for e in log.read(0)][-1] == b"2"

    _assert_clean(_watched(scenario, under_deadline=rt if under_deadline else None))


@pytest.mark.parametrize("mode", MODES)
def test_a_log_on_faulty_stores_with_a_runtime_never_uses_real(mode: str) -> None:
    """Store retries, lost answers, stragglers and the writer's backoff: the paths a
    fault-free run never takes."""
    rt = RecordingRuntime("rt", seed=3)
    url = _urls(3)

    def scenario() -> None:
        init_log(url, mode, rt)
        plan = FaultPlan(before=0.1, after=0.05, throttle=0.05)
        stores = [
            Store(
                FaultyBackend(open_backend(u), plan, seed=i),
                retry=RetryPolicy(attempts=8, base_delay=0.001, max_delay=0.01),
                runtime=rt,
            )
            for i, u in enumerate(url.split(","))
        ]
        _, manifest = open_log(url, runtime=rt)
        with Log.from_manifest(stores, manifest, runtime=rt, writer_id="F") as log:
            for i in range(6):
                with contextlib.suppress(PassivePaxosError):  # faults may exhaust retries
                    log.append([f"f{i}".encode()])
            with contextlib.suppress(PassivePaxosError):
                list(log.read(0))

    _assert_clean(_watched(scenario))
    assert rt.used["sleep"]  # some retry paused, on this runtime


@pytest.mark.parametrize("k", [1, 3])
def test_a_log_on_another_runtime_than_its_stores(k: int) -> None:
    """``Log(stores, runtime=rt)`` with the stores opened on another runtime (what tests
    with a virtual clock do): store requests, membership checks and quorum batches run on
    the stores' runtime, the log's own clocks, pools, locks and backoff on the log's, and
    neither falls back to REAL."""
    on_stores = RecordingRuntime("stores")
    on_log = RecordingRuntime("log", seed=2)
    url = _urls(k)

    def scenario() -> None:
        init_log(url, "auto", on_stores)
        stores, manifest = open_log(url, runtime=on_stores)
        with Log.from_manifest(stores, manifest, runtime=on_log, writer_id="X") as log:
            assert log.runtime is on_log
            log.append([b"1"])
            log.claim_writer(5.0)
            log.append([b"2"])
            assert log.lease_read() is not None
            log.release_writer()
            assert [e.value for e in log.read(0)] == [b"1", b"2"]
            assert log.verify().ok
            kv = KV(log)
            kv.put("k", b"v")
            assert kv.get("k") == b"v"
            kv.snapshot()

    _assert_clean(_watched(scenario))
    # the stores' requests (write ids, their deadline windows) ran on their runtime
    assert on_stores.used["token_bytes"] and on_stores.used["monotonic"]
    # the log's own pool, group commit and lease clock ran on its runtime
    assert on_log.used["pool"] and on_log.used["monotonic"] and on_log.used["condition"]
    if k > 1:
        assert on_stores.used["spawn"]  # quorum batches: tasks of the stores' runtime


def test_stores_a_log_opens_itself_run_on_its_stores_runtime() -> None:
    """A membership change makes the log open a store (the one added, and every store
    named by a change when a reader walks them): it joins quorums with the log's other
    stores, so it runs on their runtime, not on the log's (one store set, one runtime)."""
    on_stores = RecordingRuntime("stores")
    on_log = RecordingRuntime("log", seed=2)
    url = _urls(3)
    extra = _urls(1)

    def scenario() -> None:
        init_log(url, "auto", on_stores)
        stores, manifest = open_log(url, runtime=on_stores)
        with Log.from_manifest(stores, manifest, runtime=on_log, writer_id="X") as log:
            log.append([b"1"])
            membership.change(log, "add", extra)
            log.append([b"2"])
            assert {s.url for s in log.stores} == {*url.split(","), extra}
            assert all(s.runtime is on_stores for s in log.known_stores())
        stores, manifest = open_log(url, runtime=on_stores)
        with Log.from_manifest(stores, manifest, runtime=on_log, writer_id="Y") as reader:
            assert [e.value for e in reader.read(0)] == [b"1", b"2"]
            assert all(s.runtime is on_stores for s in reader.known_stores())

    _assert_clean(_watched(scenario))


def test_the_spy_sees_a_bypass() -> None:
    """The harness itself: a call on REAL in the watched context is reported with its
    site, one outside it (another test's thread) is not."""
    spy = RealSpy()
    with spy.installed():
        REAL.monotonic()  # not watched
        contextvars.copy_context().run(
            lambda: (_watching.set(True), REAL.monotonic(), REAL.rng.random())
        )
    assert sorted(what for what, _ in spy.calls) == ["REAL.monotonic", "REAL.rng.random"]
    # uninstalled: REAL is back to its own methods
    assert "monotonic" not in vars(REAL) and "random" not in vars(REAL.rng)
    with spy.installed():
        store = open_store(_urls(1))  # no runtime given: the production one
        contextvars.copy_context().run(lambda: (_watching.set(True), store.put("k", b"v")))
    assert any(what == "REAL.token_bytes" for what, _ in spy.calls)
