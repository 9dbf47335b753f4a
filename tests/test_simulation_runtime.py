"""The deterministic scheduler: same seed, same interleaving; virtual time; drift;
deadlocks, crashes, pauses and real blocks reported, never hung."""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED
from typing import Any

import pytest

from passivepaxos.runtime import Runtime
from passivepaxos.simulation.runtime import (
    Deadlock,
    Livelock,
    ProcessCrashed,
    Scheduler,
    SimRuntime,
    WatchdogTimeout,
)


def toy(rt: Runtime, log: list[Any]) -> int:
    """A small threaded program using every primitive: workers contend for a lock, hand
    items over a condition, wait on events with timeouts, run on a pool and sleep."""
    lock = rt.lock()
    cond = rt.condition(rt.lock())
    items: list[int] = []
    stop = rt.event()
    counter = [0]

    def producer(n: int) -> None:
        for i in range(4):
            rt.sleep(rt.rng.uniform(0, 0.01))
            with cond:
                items.append(n * 10 + i)
                cond.notify()
            with lock:
                counter[0] += 1
                log.append(("p", n, i, round(rt.monotonic(), 9)))

    def consumer() -> None:
        got = 0
        while got < 8:
            with cond:
                while not items:
                    if not cond.wait(timeout=0.5):
                        log.append(("timeout", round(rt.monotonic(), 9)))
                log.append(("c", items.pop(0)))
                got += 1
        stop.set()

    pool = rt.pool(3, "toy")
    futs = [pool.submit(lambda x: x * x, k) for k in range(5)]
    tasks = [rt.spawn(producer, n, name=f"prod{n}") for n in range(2)]
    tasks.append(rt.spawn(consumer, name="cons"))
    assert stop.wait(timeout=100.0)
    for t in tasks:
        t.join()
    done, _ = rt.wait(futs)
    assert len(done) == 5
    log.append(("sq", sum(f.result() for f in futs)))
    pool.shutdown()
    return counter[0]


def run_toy(seed: int) -> tuple[str, list[Any]]:
    s = Scheduler(seed)
    log: list[Any] = []
    rt = s.process("p")
    assert s.run(toy, rt, log, process=rt) == 8
    return s.trace_hash(), log


def test_same_seed_same_trace_different_seeds_differ() -> None:
    a = run_toy(7)
    b = run_toy(7)
    assert a == b
    hashes = {run_toy(seed)[0] for seed in range(8)}
    assert len(hashes) == 8
    logs = {tuple(run_toy(seed)[1]) for seed in range(8)}
    assert len(logs) > 1  # the interleaving itself differs, not only the trace


def test_real_runtime_runs_the_toy_too() -> None:
    from passivepaxos.runtime import RealRuntime

    assert toy(RealRuntime(seed=1), []) == 8


def test_time_jumps_instead_of_passing() -> None:
    s = Scheduler(1)
    rt = s.process("p")

    def main() -> float:
        t0 = rt.monotonic()
        rt.sleep(3600.0)
        ev = rt.event()
        assert not ev.wait(timeout=60.0)
        return rt.monotonic() - t0

    start = time.monotonic()
    assert s.run(main, process=rt) == pytest.approx(3660.0)
    assert time.monotonic() - start < 5.0
    assert s.now == pytest.approx(3660.0)


def test_drift_and_offset() -> None:
    s = Scheduler(2)
    fast = s.process("fast", offset=100.0, drift=0.25)
    slow = s.process("slow", drift=-0.2)
    seen: dict[str, float] = {}

    def sleeper(rt: SimRuntime) -> None:
        t0 = rt.monotonic()
        rt.sleep(10.0)  # ten seconds of its own clock
        seen[rt.name] = rt.monotonic() - t0
        seen[rt.name + "@"] = s.now

    def main() -> None:
        a = fast.spawn(sleeper, fast, name="a")
        b = slow.spawn(sleeper, slow, name="b")
        a.join()
        b.join()

    s.run(main)
    assert seen["fast"] == pytest.approx(10.0)
    assert seen["slow"] == pytest.approx(10.0)
    assert seen["fast@"] == pytest.approx(8.0)  # its clock runs 25% fast
    assert seen["slow@"] == pytest.approx(12.5)
    assert fast.monotonic.__self__ is fast
    assert fast.wall() - slow.wall() == pytest.approx(100.0 + 12.5 * 0.25 + 12.5 * 0.2)


def test_deadlock_is_reported_with_stacks() -> None:
    s = Scheduler(3)
    rt = s.process("p")
    a, b = rt.lock(), rt.lock()

    def one() -> None:
        with a:
            rt.sleep(1)
            with b:
                pass

    def two() -> None:
        with b:
            rt.sleep(1)
            with a:
                pass

    def main() -> None:
        t1 = rt.spawn(one, name="one")
        t2 = rt.spawn(two, name="two")
        t1.join()
        t2.join()

    with pytest.raises(Deadlock) as err:
        s.run(main, process=rt)
    text = str(err.value)
    assert "--- one" in text and "--- two" in text and "in one" in text and "in two" in text


def test_crash_kills_a_process_at_its_next_switch() -> None:
    s = Scheduler(4)
    victim = s.process("victim")
    main_rt = s.process("main")
    ticks: list[float] = []
    cleaned: list[bool] = []

    def ticker() -> None:
        try:
            while True:
                victim.sleep(1.0)
                ticks.append(s.now)
        finally:
            cleaned.append(True)

    def main() -> None:
        pool = victim.pool(1, "vp")
        fut = pool.submit(victim.sleep, 100.0)
        task = victim.spawn(ticker, name="ticker")
        main_rt.sleep(5.5)
        victim.crash()
        task.join()
        assert isinstance(fut.exception(), ProcessCrashed)
        main_rt.sleep(10)

    s.run(main, process=main_rt)
    assert len(ticks) == 5 and cleaned == [True]
    assert victim.crashed


def test_pause_holds_a_process_back() -> None:
    s = Scheduler(5)
    p = s.process("p")
    main_rt = s.process("main")
    seen: list[float] = []

    def worker() -> None:
        for _ in range(3):
            p.sleep(1.0)
            seen.append(s.now)

    def main() -> None:
        t = p.spawn(worker, name="w")
        main_rt.sleep(1.5)
        p.pause(10.0)
        t.join()

    s.run(main, process=main_rt)
    assert seen[0] == pytest.approx(1.0)
    assert seen[1] == pytest.approx(11.5)  # due at 2.0, held until the pause ended
    assert seen[2] == pytest.approx(12.5)


def test_first_completed_and_timeouts() -> None:
    s = Scheduler(6)
    rt = s.process("p")

    def main() -> tuple[int, int]:
        pool = rt.pool(2, "w")
        slow = pool.submit(rt.sleep, 50.0)
        fast = pool.submit(rt.sleep, 1.0)
        done, pending = rt.wait([slow, fast], return_when=FIRST_COMPLETED)
        assert done == {fast} and pending == {slow}
        with pytest.raises(TimeoutError):
            slow.result(timeout=2.0)
        done, pending = rt.wait([slow], timeout=0.5)
        return len(done), len(pending)

    assert s.run(main, process=rt) == (0, 1)
    assert s.now == pytest.approx(3.5)


def test_rlock_and_condition_wait_for() -> None:
    s = Scheduler(7)
    rt = s.process("p")

    def main() -> bool:
        r = rt.rlock()
        with r, r:
            pass
        cond = rt.condition()
        box: list[int] = []

        def put() -> None:
            rt.sleep(2.0)
            with cond:
                box.append(1)
                cond.notify_all()

        rt.spawn(put, name="put")
        with cond:
            got = cond.wait_for(lambda: bool(box), timeout=5.0)  # type: ignore[attr-defined]
        return bool(got)

    assert s.run(main, process=rt)


def test_livelock_budget() -> None:
    s = Scheduler(8, max_steps=1000)
    rt = s.process("p")
    lock = rt.lock()

    def spin() -> None:
        while True:
            with lock:
                pass

    with pytest.raises(Livelock):
        s.run(spin, process=rt)


def test_watchdog_names_a_real_block() -> None:
    s = Scheduler(9, watchdog=0.5)
    rt = s.process("p")
    gate = threading.Event()

    def bypass() -> None:
        rt.sleep(1.0)
        gate.wait(5.0)  # a real wait: the seam was bypassed

    with pytest.raises(WatchdogTimeout) as err:
        s.run(bypass, process=rt)
    gate.set()
    assert "bypass" in str(err.value)


def test_root_error_propagates_and_threads_are_reaped() -> None:
    """Every simulated thread is killed and unwound at the end of a run, and its real
    thread (a carrier) goes back idle to be reused: runs do not accumulate threads."""

    def once(seed: int) -> Scheduler:
        s = Scheduler(seed)
        rt = s.process("p")

        def main() -> None:
            for i in range(5):
                rt.spawn(rt.event().wait, name=f"idle{i}")
            rt.sleep(1)
            raise KeyError("boom")

        with pytest.raises(KeyError):
            s.run(main, process=rt)
        return s

    first = once(10)
    time.sleep(0.05)  # the last carriers park themselves
    after_first = threading.active_count()
    for seed in range(11, 16):
        s = once(seed)
        assert not s._threads  # every simulated thread ended
        time.sleep(0.02)
    time.sleep(0.05)
    assert threading.active_count() <= after_first  # the carriers were reused
    assert not first._threads


def test_tokens_come_from_the_seed() -> None:
    def ids(seed: int) -> list[str]:
        s = Scheduler(seed)
        rt = s.process("p")
        return s.run(lambda: [rt.token_hex(8) for _ in range(3)], process=rt)

    assert ids(1) == ids(1) != ids(2)
