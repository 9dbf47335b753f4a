"""passivepaxos.aio: the asyncio face, on memory, file and moto (S3).

What is checked: many tasks appending and reading in one event loop (each value once, each
task's values in its order, readers see prefixes); the loop is never blocked by a call
(a request that can only finish once the loop runs again); cancellation before a call
starts, while its write is in flight (completed, in doubt, refused) and through
``asyncio.timeout``, each leaving the log as reported (``outcome_of``), resumable exactly
once; an acquired lock released again when its acquire was cancelled; the async follow
stops when left; and the linearizability checker over an async KV history.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from passivepaxos import aio
from passivepaxos.checker import KVModel, Recorder, check
from passivepaxos.errors import AppendOutcomeUnknownError, PassivePaxosError, TransientError
from passivepaxos.log import Log, Position
from passivepaxos.manifest import init_log
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import PutKind, PutMode, Version
from passivepaxos.urls import open_backend
from tests.conftest import get_harness

pytestmark = pytest.mark.asyncio
KINDS = ["memory", "file", "s3"]
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, resolve_attempts=4)


def _url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "memory":
        url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    elif kind == "file":
        (tmp_path / "log").mkdir()
        url = (tmp_path / "log").as_uri()
    else:
        url = get_harness(request, "s3").url()
    init_log(url)
    return url


class Gate:
    """A backend whose conditional creates of slot records wait for ``release`` (set from
    the test), then pass, land and lose the answer (``after``), or fail unapplied
    (``before``). Every other request passes straight through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = False
        self.mode = "pass"
        self.entered = threading.Event()
        self.release = threading.Event()
        self.gated = 0
        self.dark = False  # reads of log records fail (a read-back cannot tell)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str) -> Any:
        if self.dark and key.startswith("log/"):
            raise TransientError("gate: dark", url=self.url, key=key)
        return self.inner.get(key)

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        if self.armed and mode.kind is PutKind.CREATE and key.startswith("log/"):
            self.armed = False
            self.gated += 1
            self.entered.set()
            if not self.release.wait(20):
                raise AssertionError("the gate was never opened: the event loop was blocked")
            if self.mode == "before":
                raise TransientError("gate: refused before it was applied", url=self.url, key=key)
            version = self.inner.put(key, data, mode)
            if self.mode == "after":
                raise TransientError("gate: applied, answer lost", url=self.url, key=key)
            return version
        return self.inner.put(key, data, mode)


def _gated_log(url: str) -> tuple[Log, Gate]:
    gate = Gate(open_backend(url))
    return Log.open_on([Store(gate, retry=FAST)], url), gate  # type: ignore[arg-type]


async def _entered(gate: Gate) -> None:
    while not gate.entered.is_set():
        await asyncio.sleep(0.005)


def _values(log: Log) -> list[bytes]:
    return [e.value for e in log.read()]


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield _url(request.param, tmp_path, request)


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_tasks_append_and_read_concurrently(url: str) -> None:
    async with await aio.AsyncLog.open(url) as alog:
        seen: list[list[bytes]] = []

        async def writer(i: int) -> None:
            for j in range(5):
                await alog.append([f"{i}/{j}".encode()])

        async def reader() -> None:
            for _ in range(5):
                seen.append([e.value for e in await alog.read()])
                await asyncio.sleep(0)

        await asyncio.gather(*(writer(i) for i in range(8)), reader(), reader())
        final = [e.value for e in await alog.read()]
    assert sorted(final) == sorted(f"{i}/{j}".encode() for i in range(8) for j in range(5))
    for i in range(8):  # each task awaited its appends one after another: log order
        mine = [v for v in final if v.startswith(f"{i}/".encode())]
        assert mine == [f"{i}/{j}".encode() for j in range(5)]
    for got in seen:
        assert got == final[: len(got)]


async def test_the_event_loop_runs_while_a_request_is_in_flight() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    log, gate = _gated_log(url)
    gate.armed = True
    async with aio.AsyncLog(log) as alog:
        task = asyncio.create_task(alog.append([b"x"]))
        await asyncio.wait_for(_entered(gate), 10)  # the loop ran while the write waits
        gate.release.set()  # only the loop can open the gate: a blocked loop fails here
        assert await asyncio.wait_for(task, 10) == [0]


async def test_cancelled_before_it_started_nothing_ran() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    log, gate = _gated_log(url)
    gate.armed = True
    alog = aio.AsyncLog(log, offload=aio.Offload(log.runtime, max_workers=1))
    first = asyncio.create_task(alog.append([b"first"]))
    await _entered(gate)
    second = asyncio.create_task(alog.append([b"second"]))  # queued: the one worker is busy
    await asyncio.sleep(0.05)
    second.cancel()
    with pytest.raises(asyncio.CancelledError) as got:
        await second
    assert aio.outcome_of(got.value) is None  # withdrawn from the pool: it never started
    gate.release.set()
    assert await first == [0]
    assert _values(log) == [b"first"]
    await alog.close()


@pytest.mark.parametrize("url", KINDS, indirect=True)
@pytest.mark.parametrize("grace", [5.0, 0.0])
async def test_cancelled_while_its_write_is_in_flight_and_the_write_lands(
    grace: float, url: str
) -> None:
    log, gate = _gated_log(url)
    log.append([b"before"])
    gate.armed = True
    alog = aio.AsyncLog(log, offload=aio.Offload(log.runtime, cancel_grace=grace))
    task = asyncio.create_task(alog.append([b"x"]))
    await _entered(gate)
    task.cancel()
    asyncio.get_running_loop().call_later(0.1, gate.release.set)
    with pytest.raises(asyncio.CancelledError) as got:
        await task
    outcome = aio.outcome_of(got.value)
    assert outcome is not None and outcome.state == "done", outcome
    assert [p.slot for p in outcome.result] == [1]
    assert _values(log) == [b"before", b"x"]
    await alog.close()


@pytest.mark.parametrize("url", KINDS, indirect=True)
@pytest.mark.parametrize("mode", ["after", "before"])
async def test_cancelled_with_its_answer_lost_the_read_back_establishes_it(
    mode: str, url: str
) -> None:
    # the store call in flight finishes its resolution (read-back, identical resend):
    # stopping it there would turn an outcome it can establish into an unknown one
    log, gate = _gated_log(url)
    gate.mode = mode
    gate.armed = True
    alog = aio.AsyncLog(log, offload=aio.Offload(log.runtime, cancel_grace=0.0))
    task = asyncio.create_task(alog.append([b"x"]))
    await _entered(gate)
    task.cancel()
    await asyncio.sleep(0.05)  # the stop is requested before the answer comes back
    gate.release.set()
    with pytest.raises(asyncio.CancelledError) as got:
        await task
    outcome = aio.outcome_of(got.value)
    assert outcome is not None and outcome.state == "done", outcome
    assert outcome.result == [Position(0, 0)]
    assert _values(log) == [b"x"]
    await alog.close()


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_cancelled_with_its_write_in_doubt_is_unknown_and_resumes_once(url: str) -> None:
    log, gate = _gated_log(url)
    gate.mode = "after"
    gate.armed = True
    alog = aio.AsyncLog(log, offload=aio.Offload(log.runtime, cancel_grace=0.0))
    task = asyncio.create_task(alog.append([b"x"]))
    await _entered(gate)
    gate.dark = True  # the read-backs cannot tell either
    task.cancel()
    await asyncio.sleep(0.05)
    gate.release.set()
    with pytest.raises(asyncio.CancelledError) as got:
        await task
    outcome = aio.outcome_of(got.value)
    assert outcome is not None and outcome.state == "unknown", outcome
    assert isinstance(outcome.error, AppendOutcomeUnknownError)
    assert "outcome is unknown" in str(got.value)
    gate.dark = False
    # no call of it is still running: the resume finds what it left, exactly once
    assert await alog.append([b"x"], resume=outcome.error.token) == [0]
    assert _values(log) == [b"x"]
    await alog.close()


async def test_cancelled_while_waiting_for_a_held_lock_takes_nothing() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    async with await aio.AsyncLog.open(url) as alog:
        holder, waiter = aio.AsyncLocks(alog, owner="holder"), aio.AsyncLocks(alog, owner="w")
        token = await holder.acquire("job", 30)
        task = asyncio.create_task(waiter.acquire("job", 30, wait=60))
        await asyncio.sleep(0.3)  # waiting for the holder to release or lapse
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as got:
            await task
        assert time.monotonic() - started < 10  # stopped at its next look, not waited out
        outcome = aio.outcome_of(got.value)
        assert outcome is not None and outcome.state == "not-done", outcome
        status = await holder.status("job")
        assert (status.holder, status.token) == ("holder", token)
        assert await holder.refresh("job") == token  # nothing of the waiter came between


async def test_asyncio_timeout_keeps_the_outcome() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    log, gate = _gated_log(url)
    gate.mode = "after"
    gate.armed = True
    alog = aio.AsyncLog(log, offload=aio.Offload(log.runtime, cancel_grace=0.0))
    asyncio.get_running_loop().call_later(0.3, gate.release.set)
    with pytest.raises(TimeoutError) as got:
        async with asyncio.timeout(0.1):
            await alog.append([b"x"])
    outcome = aio.outcome_of(got.value)  # TimeoutError from CancelledError from the outcome
    assert outcome is not None and outcome.state == "done", outcome  # read back: it landed
    assert outcome.result == [Position(0, 0)] and _values(log) == [b"x"]
    await alog.close()


async def test_cancelled_acquire_that_got_the_lock_releases_it() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    log, gate = _gated_log(url)
    alog = aio.AsyncLog(log)
    locks = aio.AsyncLocks(alog, owner="me")
    gate.armed = True
    task = asyncio.create_task(locks.acquire("job", 30))
    await _entered(gate)
    task.cancel()
    gate.release.set()
    with pytest.raises(asyncio.CancelledError) as got:
        await task
    outcome = aio.outcome_of(got.value)
    assert outcome is not None and outcome.state == "undone", outcome
    status = await locks.status("job")
    assert status.holder is None  # nobody holds a lock its acquirer never learned of
    other = aio.AsyncLocks(alog, owner="other")
    assert await other.acquire("job", 30) > outcome.result
    await alog.close()


async def test_lock_hold_and_election() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    async with await aio.AsyncLog.open(url) as alog:
        a, b = aio.AsyncLocks(alog, owner="a"), aio.AsyncLocks(alog, owner="b")
        async with a.hold("l", 10) as token:
            assert a.valid("l")
            with pytest.raises(PassivePaxosError, match="held by"):
                await b.acquire("l", 10)
        assert await b.acquire("l", 10) > token
        e = aio.AsyncElection(alog, "lead", ttl=10, candidate="c1")
        term = await e.campaign(timeout=1)
        assert e.is_leader() and (await e.leader()).holder == "c1" and term >= 1
        await e.resign()
        assert (await e.leader()).holder is None


async def test_follow_yields_new_entries_and_stops_when_left() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    async with await aio.AsyncLog.open(url) as alog:
        await alog.append([b"a"])
        got: list[bytes] = []

        async def follow() -> None:
            async for e in alog.follow(poll_min=0.01, poll_max=0.05):
                got.append(e.value)
                if len(got) == 3:
                    break

        task = asyncio.create_task(follow())
        await alog.append([b"b"])
        await alog.append([b"c"])
        await asyncio.wait_for(task, 10)
        assert got == [b"a", b"b", b"c"]

        # a follow cancelled while it waits for entries ends cleanly
        waiting = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_async_kv_history_is_linearizable(url: str) -> None:
    rec = Recorder(time.monotonic)
    rng = random.Random(7)
    async with await aio.AsyncLog.open(url) as alog:

        async def client(p: int) -> None:
            kv = aio.AsyncKV(alog)  # one state machine per client, as separate processes
            for n in range(8):
                key = rng.choice(["a", "b"])
                kind = rng.choice(["put", "get", "cas"])
                if kind == "put":
                    value = f"{p}.{n}".encode()
                    h = rec.invoke(p, "put", key, value)
                    await kv.put(key, value)
                    rec.ok(h)
                elif kind == "get":
                    h = rec.invoke(p, "get", key)
                    rec.ok(h, await kv.get(key))
                else:
                    expected = rng.choice([None, b"0.0", f"{p}.{n - 1}".encode()])
                    new = f"{p}.{n}".encode()
                    h = rec.invoke(p, "cas", key, (expected, new))
                    rec.ok(h, (await kv.cas(key, expected, new)).ok)

        await asyncio.gather(*(client(p) for p in range(5)))
    history = rec.close()
    assert len(history) == 40
    result = check(history, KVModel(), timeout=60)
    assert result.ok, result


async def test_propose_tasks_agree() -> None:
    from passivepaxos.store import open_store

    urls = [f"memory://aio-p{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    stores = [open_store(u) for u in urls]
    got = await asyncio.gather(
        *(aio.propose(stores, "i1", f"v{n}".encode(), f"p{n}") for n in range(6))
    )
    assert len(set(got)) == 1 and got[0] in {f"v{n}".encode() for n in range(6)}


async def test_bad_arguments_are_refused_before_anything_runs() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:8]}"
    init_log(url)
    async with await aio.AsyncLog.open(url) as alog:
        with pytest.raises(TypeError, match="sequence of bytes"):
            await alog.append(b"not a list")  # type: ignore[arg-type]
        assert await alog.head() == -1
    with pytest.raises(PassivePaxosError, match="max_workers"):
        aio.Offload(max_workers=0)
