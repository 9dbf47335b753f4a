"""Regression tests for the round-2 reviewers' findings on the recipes (review 2: R2-1,
R2-2, R2-6, R2-7, R2-8; review 3 #3: huge ttls and bad waits). Deterministic: threads are
held at fixed points with events, clocks are virtual."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.errors import AmbiguousWriteError, ConfigError
from passivepaxos.lease import MAX_TTL, LeaseMeta, LeaseState, format_wall
from passivepaxos.log import Log
from passivepaxos.manifest import init_log, open_log
from passivepaxos.recipes.election import Election
from passivepaxos.recipes.kv import KV
from passivepaxos.recipes.lock import Locks, LockStatus
from passivepaxos.recipes.rsm import ResultCompactedError
from passivepaxos.recipes.tob import Broadcast
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import FaultPlan, FaultyBackend
from tests.clocked import clocked


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def _hold_in_catch_up(locks: Locks, thread_name: str) -> tuple[threading.Event, threading.Event]:
    """Make thread ``thread_name`` stop inside ``catch_up(through=...)``: after its entry
    landed, before its bookkeeping. Returns (inside, gate)."""
    real = locks.sm.catch_up
    inside, gate = threading.Event(), threading.Event()

    def slow(*a: Any, **k: Any) -> None:
        if threading.current_thread().name == thread_name and k.get("through") is not None:
            inside.set()
            gate.wait(10)
        real(*a, **k)

    locks.sm.catch_up = slow  # type: ignore[method-assign]
    return inside, gate


@pytest.mark.parametrize("op", ["refresh", "acquire"])
def test_review2_R2_1_refresh_racing_release_does_not_resurrect_validity(op: str) -> None:
    clock = Clock()
    url = f"memory://r21-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url, writer_id="H") as hl, Log.open(url, writer_id="T") as tl:
        h = Locks(hl, owner="H", clock=clock)
        t = Locks(tl, owner="T", clock=clock)
        assert h.acquire("job", 10) == 1
        inside, gate = _hold_in_catch_up(h, "A")
        res: dict[str, Any] = {}

        def a() -> None:
            res["r"] = h.refresh("job") if op == "refresh" else h.acquire("job", 10)

        th = threading.Thread(target=a, name="A")
        th.start()
        assert inside.wait(10)  # A's entry is in the log, A has not done its bookkeeping
        assert h.release("job") is True
        gate.set()
        th.join(10)
        assert not h.valid("job")
        assert t.acquire("job", 10) == 2
        clock.t = 1.0
        assert t.valid("job")
        assert not h.valid("job"), "both H and T consider themselves the holder"


def test_review2_R2_2_concurrent_refresh_keeps_the_cap_of_a_later_ambiguous_one() -> None:
    clock = Clock()
    url = f"memory://r22-{uuid.uuid4().hex[:8]}"
    init_log(url)
    _, man = open_log(url)
    faulty = FaultyBackend(open_backend(url), FaultPlan())
    quick = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, resolve_attempts=1)
    hl = Log(
        [Store(faulty, retry=quick, sleep=lambda _: None)],
        man.mode,
        writer_id="H",
        runtime=clocked(clock=clock),
        hint_every=10**9,
    )
    tl = Log.open(url, writer_id="T", runtime=clocked(clock=clock))
    h = Locks(hl, owner="H", clock=clock, retries=0)
    t = Locks(tl, owner="T", clock=clock)
    assert h.acquire("job", 100) == 1
    inside, gate = _hold_in_catch_up(h, "B")
    th = threading.Thread(target=lambda: h.refresh("job"), name="B")
    th.start()
    assert inside.wait(10)  # B's refresh (ttl 100) landed first
    clock.t = 1.0
    faulty.script("after")  # A's refresh (ttl 1) lands after it, its answer is lost
    faulty.plan = FaultPlan(before=1.0)  # and nothing can be read back
    with pytest.raises(AmbiguousWriteError):
        h.refresh("job", ttl=1)
    faulty.plan = FaultPlan()
    assert h.valid_until("job") == pytest.approx(1.75)
    gate.set()
    th.join(10)
    assert h.valid_until("job") == pytest.approx(1.75), "B's answer lifted A's cap"
    st = t.status("job")
    assert st.ttl == 1
    clock.t += 1.01
    assert t.acquire("job", 10) == 2
    assert t.valid("job") and not h.valid("job")
    hl.close()
    tl.close()


def _kv_trim_race(tmp_path: Path, run: Callable[[KV], Any]) -> Any:
    """A's command lands; before A applies it, B reads through it, snapshots and trims."""
    (tmp_path / "kv").mkdir()
    url = (tmp_path / "kv").as_uri()
    init_log(url)
    with Log.open(url, writer_id="A") as a, Log.open(url, writer_id="B") as b:
        kva, kvb = KV(a), KV(b)
        kva.put("x", b"0")
        for i in range(6):
            kvb.put(f"y{i}", b"0")
        real = kva.sm.catch_up

        def slow(*args: Any, **kw: Any) -> None:
            if kw.get("through") is not None:
                kvb.get("k")
                info = kvb.snapshot()
                b.trim(info.slot + 1)
            real(*args, **kw)

        kva.sm.catch_up = slow  # type: ignore[method-assign]
        out = run(kva)
        return out, KV(b).get("k")


def test_review2_R2_6_cas_covered_by_a_snapshot_is_outcome_unknown(tmp_path: Path) -> None:
    def run(kv: KV) -> Any:
        with pytest.raises(ResultCompactedError, match="outcome unknown") as info:
            kv.cas("k", None, b"A")
        return info.value

    err, value = _kv_trim_race(tmp_path, run)
    assert isinstance(err, AmbiguousWriteError)
    assert value == b"A"


def test_review2_R2_6_put_covered_by_a_snapshot_returns_its_position(tmp_path: Path) -> None:
    pos, value = _kv_trim_race(tmp_path, lambda kv: kv.put("k", b"A"))
    assert value == b"A"
    assert pos.slot >= 0


def test_review2_R2_6_lock_acquire_covered_by_a_snapshot_is_outcome_unknown() -> None:
    """Locks has no snapshot state of its own, so the cover is simulated: the catch-up
    returns without applying our entry (what a restore does)."""
    url = f"memory://r26-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url, writer_id="H") as hl:
        h = Locks(hl, owner="H")
        h.sm.catch_up = lambda *a, **k: None  # type: ignore[method-assign]
        with pytest.raises(ResultCompactedError):
            h.acquire("job", 10)
        assert not h.valid("job")


def test_review2_R2_7_same_msg_id_from_two_senders_both_delivered() -> None:
    url = f"memory://r27-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url) as a, Log.open(url) as b:
        ta, tb = Broadcast(a, sender="A"), Broadcast(b, sender="B")
        ta.broadcast(b"from A #1", msg_id="1")
        tb.broadcast(b"from B #1", msg_id="1")
        tb.broadcast(b"from B #1 again", msg_id="1")  # a retry copy: dropped
        got = [(d.sender, d.payload) for d in tb.deliver(follow=False)]
    assert got == [("A", b"from A #1"), ("B", b"from B #1")]


def test_review2_R2_8_campaign_twice_leaves_one_keepalive() -> None:
    url = f"memory://r28-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url, writer_id="A") as a:
        e = Election(a, "leader", ttl=0.3)
        e.campaign()
        first = e._keep
        e.campaign()
        assert first is not None and first._task is not None and not first._task.is_alive()
        second = e._keep
        e.resign()
        assert second is not None and second._task is not None
        assert not second._task.is_alive()
        n = sum(1 for _ in a.read(0))
        time.sleep(0.25)  # a leaked keepalive would refresh every 0.1 s
        assert sum(1 for _ in a.read(0)) == n


def test_review2_R2_8_keepalive_ends_when_the_lock_is_no_longer_held() -> None:
    url = f"memory://r28b-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url, writer_id="A") as a:
        e = Election(a, "leader", ttl=0.15)
        term = e.campaign()
        assert e._keep is not None
        th = e._keep._task
        e.locks.release("leader", term)  # behind the election's back
        assert th is not None
        th.join(2)
        assert not th.is_alive()
        assert not e.is_leader()


# -- review 3 #3: huge ttls, bad waits -------------------------------------------------


def test_review3_3_library_refuses_huge_ttls_and_bad_waits() -> None:
    url = f"memory://r33-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url, writer_id="A") as a:
        locks = Locks(a)
        for ttl in (1e308, MAX_TTL * 2, math.inf, math.nan, 0, -1):
            with pytest.raises(ConfigError, match="ttl"):
                locks.acquire("x", ttl)
            with pytest.raises(ConfigError, match="ttl"):
                a.claim_writer(ttl, wait=False)
        for wait in (math.nan, -1):
            with pytest.raises(ConfigError, match="wait"):
                locks.acquire("x", 10, wait=wait)
        assert locks.acquire("x", MAX_TTL) == 1
        with pytest.raises(ConfigError, match="ttl"):
            locks.refresh("x", ttl=1e308)
        assert sum(1 for _ in a.read(0)) == 1  # nothing refused was written


def test_review3_3_display_tolerates_any_stored_ttl() -> None:
    for t in (1e308, -1e308, math.inf, math.nan, 1.7e9 + 1e300):
        assert isinstance(format_wall(t), str)
    st = LeaseState.of("w", 1, LeaseMeta.from_json({"op": "claim", "ttl": 1e308, "wall": 1.7e9}))
    assert isinstance(format_wall(st.expires), str)
    ls = LockStatus("db", "h", 1, 1e308, None, 1.7e9 + 1e308, False)
    assert "out of calendar range" in str(ls.to_json()["expires"])
