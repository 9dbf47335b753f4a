"""Backends that wrap backends: count requests, add latency, inject faults.

They sit *below* :class:`passivepaxos.store.Store`, at the request level, so that counts
include read-backs and retries and faults hit exactly where a real network would: before
the request reaches the service, or after it took effect but before the answer arrives.
All randomness comes from a seeded ``random.Random`` (an explicit ``seed``, so a fault
plan replays); time from a runtime's ``sleep`` (``passivepaxos.runtime``) or an injected
one. Their locks guard bookkeeping only: no request to the wrapped backend is made while
one is held (a hung request must not stall every other caller of the wrapper, and the
simulator may switch processes inside one).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from passivepaxos.capabilities import Capabilities
from passivepaxos.errors import ThrottledError, TransientError
from passivepaxos.runtime import REAL, Runtime
from passivepaxos.types import Backend, ObjectMeta, PutMode, Version

__all__ = ["CountingBackend", "FaultPlan", "FaultyBackend", "LatencyBackend"]


class _Wrapper:
    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def close(self) -> None:
        self.inner.close()


class CountingBackend(_Wrapper):
    """Counts requests per operation: ``get``, ``put:create``, ``put:update``,
    ``put:overwrite``, ``delete``, ``list`` (one per listing started, counted when
    ``list`` is called, however many of its pages the caller then consumes)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, op: str) -> None:
        with self._lock:
            self.counts[op] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    @property
    def writes(self) -> int:
        with self._lock:
            return sum(n for op, n in self.counts.items() if op.startswith(("put", "delete")))

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def snapshot(self) -> Counter[str]:
        """A copy of the counts, consistent while other threads keep counting."""
        with self._lock:
            return Counter(self.counts)

    def get(self, key: str) -> tuple[bytes, Version] | None:
        self._count("get")
        return self.inner.get(key)

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        self._count(f"put:{mode.kind.value}")
        return self.inner.put(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._count("delete")
        self.inner.delete(key, if_version)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        self._count("list")
        return self.inner.list(prefix, start_after)


class LatencyBackend(_Wrapper):
    """Adds one round trip (``rtt`` seconds, +/- ``jitter`` fraction, drawn from ``seed``)
    to every request, slept with ``sleep``, else ``runtime``'s (default the production one)."""

    def __init__(
        self,
        inner: Backend,
        rtt: float,
        *,
        jitter: float = 0.0,
        seed: int = 0,
        sleep: Callable[[float], None] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(inner)
        self.rtt = rtt
        self.jitter = jitter
        self._rng = random.Random(seed)
        self._sleep = sleep or (runtime or REAL).sleep
        self._lock = threading.Lock()  # the draw only; the sleep is outside it

    def _delay(self) -> None:
        with self._lock:
            f = 1.0 + self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 1.0
        self._sleep(self.rtt * f)

    def get(self, key: str) -> tuple[bytes, Version] | None:
        self._delay()
        return self.inner.get(key)

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        self._delay()
        return self.inner.put(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._delay()
        self.inner.delete(key, if_version)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        self._delay()
        return self.inner.list(prefix, start_after)


@dataclass
class FaultPlan:
    """Per-request probabilities. ``before``: fail without effect. ``after``: apply, then
    lose the answer. ``late``: lose the request now and apply it ``late_after`` requests
    later (a timed-out write that lands afterwards; its precondition is checked when it
    lands, as a real service would). ``throttle``: fail with ``ThrottledError``."""

    before: float = 0.0
    after: float = 0.0
    late: float = 0.0
    throttle: float = 0.0
    late_after: tuple[int, int] = (1, 5)
    writes_only: bool = False
    retry_after: float | None = None


@dataclass
class _Late:
    due: int
    key: str
    data: bytes
    mode: PutMode


@dataclass
class FaultLog:
    before: int = 0
    after: int = 0
    late: int = 0
    landed: int = 0
    throttled: int = 0
    late_pending: list[_Late] = field(default_factory=list)


class FaultyBackend(_Wrapper):
    """Injects faults from a seeded plan; ``log`` counts what it did. Deterministic for a
    given seed and request sequence (one thread, as in the simulator). Late writes that
    fall due are landed by the request that makes them due, before its own request and
    outside the lock."""

    def __init__(self, inner: Backend, plan: FaultPlan, *, seed: int = 0) -> None:
        super().__init__(inner)
        self.plan = plan
        self.log = FaultLog()
        self._rng = random.Random(seed)
        self._n = 0
        self._lock = threading.Lock()  # bookkeeping only: never held across a request
        self._script: list[str | None] = []
        self.enabled = True

    def script(self, *faults: str | None) -> None:
        """Queue exact faults for the next requests (``"before"``, ``"after"``, ``"late"``,
        ``"throttle"`` or ``None`` for a clean request); they take precedence over the plan."""
        with self._lock:
            self._script.extend(faults)

    def _take_due(self) -> list[_Late]:
        """The late writes due by now, removed from the pending list (call under the lock)."""
        pending = self.log.late_pending
        due = [w for w in pending if w.due <= self._n]
        self.log.late_pending = [w for w in pending if w.due > self._n]
        self.log.landed += len(due)
        return due

    def _land(self, due: list[_Late]) -> None:
        """Send late writes to the wrapped backend (without the lock held)."""
        for w in due:
            # a late write whose condition no longer holds has no effect, as on a real service
            with contextlib.suppress(Exception):
                self.inner.put(w.key, w.data, w.mode)

    def flush_late(self) -> None:
        """Land every pending late write now (end of a simulation run)."""
        with self._lock:
            self._n = 1 << 62
            due = self._take_due()
        self._land(due)

    def _roll(self, is_write: bool) -> str | None:
        with self._lock:
            self._n += 1
            due = self._take_due()
            fault = self._pick(is_write)
        self._land(due)
        return fault

    def _pick(self, is_write: bool) -> str | None:
        """This request's fault: the script's next, else the plan's (call under the lock)."""
        if self._script:
            return self._script.pop(0)
        if not self.enabled or (self.plan.writes_only and not is_write):
            return None
        r = self._rng.random()
        p = self.plan
        for name, prob in (
            ("throttle", p.throttle),
            ("before", p.before),
            ("after", p.after),
            ("late", p.late if is_write else 0.0),
        ):
            if r < prob:
                return name
            r -= prob
        return None

    def _fail_before(self, fault: str, key: str | None) -> None:
        if fault == "throttle":
            self.log.throttled += 1
            raise ThrottledError(
                "injected throttling", url=self.url, key=key, retry_after=self.plan.retry_after
            )
        self.log.before += 1
        raise TransientError(
            "injected failure before the request took effect", url=self.url, key=key
        )

    def _lost_answer(self, key: str | None) -> TransientError:
        self.log.after += 1
        return TransientError(
            "injected lost response (the request took effect)", url=self.url, key=key
        )

    def get(self, key: str) -> tuple[bytes, Version] | None:
        fault = self._roll(False)
        if fault in ("throttle", "before"):
            self._fail_before(fault, key)
        got = self.inner.get(key)
        if fault == "after":
            raise self._lost_answer(key)
        return got

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        fault = self._roll(True)
        if fault in ("throttle", "before"):
            self._fail_before(fault, key)
        if fault == "late":
            with self._lock:
                lo, hi = self.plan.late_after
                self.log.late += 1
                self.log.late_pending.append(
                    _Late(self._n + self._rng.randint(lo, hi), key, bytes(data), mode)
                )
            raise TransientError(
                "injected timeout (the write may land later)", url=self.url, key=key
            )
        try:
            version = self.inner.put(key, data, mode)
        except Exception:
            if fault == "after":  # the effect (a refusal) happened; the answer is lost
                raise self._lost_answer(key) from None
            raise
        if fault == "after":
            raise self._lost_answer(key)
        return version

    def delete(self, key: str, if_version: Version | None = None) -> None:
        fault = self._roll(True)
        if fault in ("throttle", "before", "late"):
            self._fail_before("before" if fault == "late" else fault, key)
        self.inner.delete(key, if_version)
        if fault == "after":
            raise self._lost_answer(key)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        fault = self._roll(False)
        if fault in ("throttle", "before"):
            self._fail_before(fault, None)
        items = list(self.inner.list(prefix, start_after))
        if fault == "after":
            raise self._lost_answer(None)
        return iter(items)
