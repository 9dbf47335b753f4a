"""The store layer's promise: never report a write outcome it has not established."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    PreconditionFailedError,
    TransientError,
)
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import ObjectMeta, PutMode, Version
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend, FaultPlan, FaultyBackend, LatencyBackend
from tests.conftest import fresh

FAST = RetryPolicy(attempts=5, base_delay=0.0, max_delay=0.0, resolve_attempts=5)


def faulty(seed: int = 0, **plan: float) -> tuple[Store, FaultyBackend]:
    fb = FaultyBackend(open_backend(f"memory://{fresh()}"), FaultPlan(**plan), seed=seed)  # type: ignore[arg-type]
    return Store(fb, retry=FAST, sleep=lambda s: None), fb


@pytest.mark.parametrize("fault", ["before", "after", "late", "throttle"])
def test_create_with_one_fault_is_resolved_to_success(fault: str) -> None:
    s, fb = faulty()
    fb.script(fault)
    v = s.put("slot/1", b"mine", PutMode.CREATE)
    fb.flush_late()
    assert s.get("slot/1") == (b"mine", v)


@pytest.mark.parametrize("fault", ["before", "after", "late"])
def test_update_with_one_fault_is_resolved_to_success(fault: str) -> None:
    s, fb = faulty()
    v1 = s.put("k", b"1", PutMode.CREATE)
    fb.script(fault)
    v2 = s.put("k", b"2", PutMode.update(v1))
    fb.flush_late()
    assert s.get("k") == (b"2", v2)


def test_late_write_never_lands_twice_or_over_a_newer_value() -> None:
    s, fb = faulty()
    v1 = s.put("k", b"1", PutMode.CREATE)
    fb.script("late")  # the first attempt is in flight; the store re-sends and wins
    v2 = s.put("k", b"2", PutMode.update(v1))
    v3 = s.put("k", b"3", PutMode.update(v2))
    fb.flush_late()  # the stale attempt lands now: its precondition (v1) no longer holds
    assert s.get("k") == (b"3", v3)


def test_unclear_update_then_someone_else_wins_is_ambiguous_not_failed() -> None:
    s, fb = faulty()
    other = Store(fb.inner)
    v1 = s.put("k", b"1", PutMode.CREATE)

    class Interleave(FaultyBackend):
        def put(self, key: str, data: bytes, mode: PutMode) -> Version:
            other.put("k", b"theirs", PutMode.update(v1))  # they win while we time out
            raise TransientError("timeout", url=self.url, key=key)

    s2 = Store(Interleave(fb.inner, FaultPlan()), retry=FAST, sleep=lambda s: None)
    with pytest.raises(AmbiguousWriteError, match="outcome unknown"):
        s2.put("k", b"mine", PutMode.update(v1))


class SdkRetries(FaultyBackend):
    """An SDK that retries internally: the first attempt lands, the retry reports a conflict."""

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        self.inner.put(key, data, mode)
        return self.inner.put(key, data, mode)


@pytest.mark.parametrize("kind", ["create", "update"])
def test_conflict_after_an_sdk_retry_is_our_own_success(kind: str) -> None:
    inner = open_backend(f"memory://{fresh()}")
    plain = Store(inner)
    mode = PutMode.CREATE
    if kind == "update":
        mode = PutMode.update(plain.put("k", b"0", PutMode.CREATE))
    s = Store(SdkRetries(inner, FaultPlan()), retry=FAST)
    v = s.put("k", b"mine", mode)
    assert plain.get("k") == (b"mine", v)


def test_real_conflicts_are_reported_with_the_winner() -> None:
    s, _ = faulty()
    s.put("k", b"theirs", PutMode.CREATE)
    with pytest.raises(AlreadyExistsError) as info:
        s.put("k", b"mine", PutMode.CREATE)
    assert info.value.current is not None and info.value.current[0] == b"theirs"
    stale = Version("memory", "0")
    with pytest.raises(PreconditionFailedError) as info2:
        s.put("k", b"mine", PutMode.update(stale))
    assert info2.value.current is not None and info2.value.current[0] == b"theirs"


def test_retries_are_bounded_and_honour_retry_after() -> None:
    slept: list[float] = []
    fb = FaultyBackend(open_backend(f"memory://{fresh()}"), FaultPlan(), seed=0)
    s = Store(
        fb, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01), sleep=slept.append
    )
    fb.plan.retry_after = 1.5
    fb.script("throttle", "throttle")
    s.put("k", b"v")
    assert slept[:2] == [1.5, 1.5]
    fb.script("before", "before", "before")
    with pytest.raises(TransientError):
        s.get("k")
    fb.plan.before = 1.0
    with pytest.raises(AmbiguousWriteError):
        s.put("k2", b"v", PutMode.CREATE)


def test_listing_resumes_after_a_transient_failure_without_repeats() -> None:
    inner = open_backend(f"memory://{fresh()}")
    plain = Store(inner)
    for i in range(50):
        plain.put(f"k{i:03d}", b"x")

    class Flaky(FaultyBackend):
        failed = False

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
            for n, meta in enumerate(self.inner.list(prefix, start_after)):
                if n == 20 and not self.failed:
                    self.failed = True
                    raise TransientError("connection reset mid-page")
                yield meta

    s = Store(Flaky(inner, FaultPlan()), retry=FAST, sleep=lambda s: None)
    assert [m.key for m in s.list()] == [f"k{i:03d}" for i in range(50)]


@pytest.mark.parametrize("seed", range(40))
def test_random_faults_never_produce_a_false_report(seed: int) -> None:
    """Jepsen-style: each create is :ok (must hold our value), :fail (must hold another's)
    or :info (ambiguous, either); checked after every late write has landed."""
    rng = random.Random(seed)
    inner = open_backend(f"memory://{fresh()}")
    fb = FaultyBackend(
        inner, FaultPlan(before=0.15, after=0.15, late=0.1, throttle=0.05), seed=seed
    )
    writers = [Store(fb, retry=FAST, sleep=lambda s: None, rng=random.Random(i)) for i in range(4)]
    outcomes: list[tuple[str, bytes, str]] = []
    for step in range(60):
        key = f"slot/{rng.randrange(15)}"
        w = rng.randrange(len(writers))
        value = f"w{w}-{step}".encode()
        try:
            writers[w].put(key, value, PutMode.CREATE)
            outcomes.append((key, value, "ok"))
        except AlreadyExistsError:
            outcomes.append((key, value, "fail"))
        except (AmbiguousWriteError, TransientError):
            outcomes.append((key, value, "info"))
    fb.flush_late()
    truth = Store(inner)
    for key, value, status in outcomes:
        got = truth.get(key)
        if status == "ok":
            assert got is not None and got[0] == value, (seed, key, value)
        elif status == "fail":
            assert got is not None and got[0] != value, (seed, key, value)


def test_counting_and_latency_wrappers() -> None:
    slept: list[float] = []
    counting = CountingBackend(
        LatencyBackend(
            open_backend(f"memory://{fresh()}"), 0.02, jitter=0.5, seed=3, sleep=slept.append
        )
    )
    s = Store(counting)
    v = s.put("a", b"1", PutMode.CREATE)
    s.put("a", b"2", PutMode.update(v))
    s.get("a")
    list(s.list())
    assert counting.counts == {"put:create": 1, "put:update": 1, "get": 1, "list": 1}
    assert counting.total == 4 and counting.writes == 2
    assert len(slept) == 4 and all(0.01 <= d <= 0.03 for d in slept)
