"""Locks with fencing tokens and leader election (recipes.lock, recipes.election): on
memory and file:// with threads; a second acquirer does not get a held lock; expiry is
decided in log order (a refresh that lands first defeats a takeover); a FencedResource
rejects the stale holder's token after expiry + takeover; the ``passivepaxos lock`` CLI;
the requests per acquire."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.errors import AmbiguousWriteError
from passivepaxos.log import Log, Position
from passivepaxos.manifest import init_log, open_log
from passivepaxos.recipes.election import Election
from passivepaxos.recipes.lock import (
    FencedResource,
    LockHeldError,
    LockLostError,
    Locks,
    LockState,
    Op,
    StaleTokenError,
)
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend, FaultPlan, FaultyBackend
from tests.clocked import NO_SLEEP
from tests.conftest import CliRun
from tests.test_cli import ROOT
from tests.test_cli import run as cli_run


def _url(kind: str, tmp_path: Path) -> str:
    url = f"memory://lock-{uuid.uuid4().hex[:8]}" if kind == "memory" else tmp_path.as_uri()
    init_log(url)
    return url


def test_rules_in_log_order() -> None:
    st = LockState()

    def op(kind: str, owner: str, over: Position | None = None, token: int | None = None) -> Op:
        return Op(kind, "L", owner, 1.0, over, token, 0.0, uuid.uuid4().hex)

    assert st.apply(op("acquire", "a"), Position(0, 0)) is True
    assert st.get("L").token == 1
    assert st.apply(op("acquire", "b"), Position(1, 0)) is False  # held, no takeover
    assert st.apply(op("acquire", "b", over=Position(0, 0)), Position(2, 0)) is True
    assert st.get("L").holder == "b" and st.get("L").token == 2
    assert st.apply(op("refresh", "a", token=1), Position(3, 0)) is False  # lost
    assert st.apply(op("refresh", "b", token=2), Position(4, 0)) is True
    # a takeover naming the old renewal loses to the refresh that landed before it
    assert st.apply(op("acquire", "c", over=Position(2, 0)), Position(5, 0)) is False
    assert st.apply(op("release", "b", token=2), Position(6, 0)) is True
    assert st.apply(op("acquire", "c"), Position(7, 0)) is True
    assert st.get("L").token == 3  # strictly increasing across holders
    dup = op("release", "c")
    assert st.apply(dup, Position(8, 0)) is True
    assert st.apply(dup, Position(9, 0)) is None  # a retried request: ignored


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_mutual_exclusion_with_threads(kind: str, tmp_path: Path) -> None:
    url = _url(kind, tmp_path)
    logs = [Log.open(url) for _ in range(4)]
    try:
        inside: list[int] = []
        tokens: list[int] = []
        overlap = threading.Event()

        def worker(i: int) -> None:
            locks = Locks(logs[i], owner=f"p{i}", poll=0.01)
            for _ in range(3):
                with locks.hold("L", 5.0, wait=30.0) as token:
                    inside.append(i)
                    if len(inside) > 1:
                        overlap.set()
                    tokens.append(token)
                    time.sleep(0.01)
                    inside.remove(i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not overlap.is_set()
        assert tokens == list(range(1, 13))  # strictly increasing, one per grant
        st = Locks(logs[0]).status("L")
        assert st.holder is None and st.token == 12
    finally:
        for lg in logs:
            lg.close()


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_second_acquirer_refused_then_takes_over_after_expiry(kind: str, tmp_path: Path) -> None:
    url = _url(kind, tmp_path)
    with Log.open(url) as la, Log.open(url) as lb:
        a, b = Locks(la, owner="A"), Locks(lb, owner="B", poll=0.01)
        resource = FencedResource()
        ta = a.acquire("db", 0.3)
        assert ta == 1 and a.valid("db")
        resource.write(ta, b"from A")
        t0 = time.monotonic()  # before B first observes the lock
        with pytest.raises(LockHeldError) as held:
            b.acquire("db", 0.3)
        assert held.value.holder == "A" and held.value.token == 1
        assert b.status("db").holder == "A" and a.status("db").mine
        # A stops refreshing (paused). B takes over once it saw no refresh for 0.3 s.
        tb = b.acquire("db", 0.3, wait=5.0)
        assert time.monotonic() - t0 >= 0.3 * 0.9
        assert tb == 2 > ta
        assert not a.valid("db")  # A's own clock says its belief ended (0.75 x ttl)
        resource.write(tb, b"from B")
        with pytest.raises(StaleTokenError):
            resource.write(ta, b"stale A")  # the paused holder wakes up: fenced
        with pytest.raises(LockLostError):
            a.refresh("db")
        assert resource.writes == [(1, b"from A"), (2, b"from B")]
        assert a.release("db", ta) is False  # not ours any more
        assert b.release("db") is True
        assert a.acquire("db", 1.0) == 3


def test_refresh_keeps_the_lock() -> None:
    url = _url("memory", Path())
    with Log.open(url) as la, Log.open(url) as lb:
        a, b = Locks(la, owner="A"), Locks(lb, owner="B", poll=0.01)
        with a.hold("x", 0.6) as token:  # refreshed every 0.2 s in the background
            with pytest.raises(LockHeldError):
                b.acquire("x", 0.6, wait=1.0)
            assert a.valid("x") and a.token("x") == token
        assert b.acquire("x", 0.3) == token + 1  # released on exit: no wait


def test_election() -> None:
    url = _url("memory", Path())
    with Log.open(url) as l1, Log.open(url) as l2, Log.open(url) as l3:
        e1 = Election(l1, "leader", ttl=0.6, candidate="n1")
        e2 = Election(l2, "leader", ttl=0.6, candidate="n2")
        stop = threading.Event()
        seen: list[tuple[str | None, int]] = []
        watcher = Election(l3, "leader", ttl=0.3, candidate="w")

        def observe() -> None:
            for change in watcher.observe(stop=stop):
                seen.append(change)

        t = threading.Thread(target=observe)
        t.start()
        assert e1.campaign() == 1 and e1.is_leader()
        got: list[int] = []
        c2 = threading.Thread(target=lambda: got.append(e2.campaign(timeout=10)))
        c2.start()
        time.sleep(0.8)
        assert not got and e1.is_leader()  # e1 keeps refreshing: e2 waits
        assert e2.leader().holder == "n1"
        e1.resign()
        c2.join(10)
        assert got == [2] and e2.is_leader()
        e2.resign()
        deadline = time.monotonic() + 5
        while len(seen) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        t.join(5)
        assert seen == [("n1", 1), (None, 1), ("n2", 2), (None, 2)]


def test_requests_per_acquire() -> None:
    url = _url("memory", Path())
    _, manifest = open_log(url)
    counting = CountingBackend(open_log(url)[0][0].backend)
    with Log([Store(counting)], manifest.mode, hint_every=10**9) as log:
        locks = Locks(log, owner="me")
        locks.release("warm")
        n = 10
        counting.reset()
        for i in range(n):
            locks.acquire(f"L{i}", 10.0)
        per_acquire = counting.total / n
        detail = {k: v / n for k, v in counting.counts.items()}
        counting.reset()
        for i in range(n):
            locks.release(f"L{i}")
        per_release = counting.total / n
    print(json.dumps({"per_acquire": per_acquire, "detail": detail, "per_release": per_release}))
    # one create, and one linearizable status read (one GET of the slot after the tail, +
    # a probe past the end on this Log's first read); a release is its create (before:
    # 8.9 and 6.0, docs/recipes.md)
    assert detail.get("put:create") == 1.0
    assert per_acquire <= 2.1 and per_release == 1.0


def test_cli(cli_log: tuple[str, CliRun]) -> None:
    log, run = cli_log

    code, out, _ = run("lock", "acquire", log, "job", "--ttl", "30", "--owner", "A", "--json")
    assert code == 0
    got = json.loads(out)
    assert got["acquired"] is True and got["token"] == 1 and got["holder"] == "A"
    code, out, err = run("lock", "acquire", log, "job", "--owner", "B")
    assert code == 1 and out == "" and "held by A" in err and len(err.splitlines()) == 1
    code, out, _ = run("lock", "acquire", log, "job", "--owner", "B", "--json")
    assert code == 1 and json.loads(out)["holder"] == "A"
    code, out, _ = run("lock", "status", log, "job", "--json")
    st = json.loads(out)
    assert code == 0 and st["holder"] == "A" and st["token"] == 1 and st["held"] is True
    assert run("lock", "release", log, "job", "--owner", "B")[0] == 1
    code, out, _ = run("lock", "release", log, "job", "--owner", "A", "--json")
    assert code == 0 and json.loads(out)["released"] is True
    code, out, _ = run("lock", "status", log, "job")
    assert out.strip() == "job: free (last token 1)"
    code, out, _ = run("lock", "acquire", log, "job", "--owner", "B", "--json")
    assert code == 0 and json.loads(out)["token"] == 2
    # a short-lived holder that never refreshes is taken over with --wait
    assert run("lock", "acquire", log, "short", "--ttl", "0.2", "--owner", "A")[0] == 0
    code, out, _ = run(
        "lock", "acquire", log, "short", "--ttl", "5", "--owner", "B", "--wait", "3", "--json"
    )
    assert code == 0 and json.loads(out)["token"] == 2


# -- finding 7: an ambiguous refresh with a shorter ttl ---------------------------------------


class Clock:
    """Virtual monotonic time shared by the processes of a test (perfect clocks)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_finding_7_ambiguous_shorter_refresh_leaves_validity_at_the_minimum() -> None:
    """Finding 7: H holds with ttl 100 and refreshes with ttl 0.3; the refresh lands but its
    answer is lost. T sees the 0.3 s refresh, waits 0.3 s and takes over with token 2. H
    must not believe it still holds the lock (it did: valid() stayed true with token 1)."""
    url = _url("memory", Path())
    clock = Clock()
    _, manifest = open_log(url)
    faulty = FaultyBackend(open_backend(url), FaultPlan())
    quick = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, resolve_attempts=1)
    hl = Log([Store(faulty, retry=quick, sleep=lambda _: None)], manifest.mode, runtime=NO_SLEEP)
    with hl, Log.open(url) as tl:
        h = Locks(hl, owner="H", clock=clock, retries=0)
        t = Locks(tl, owner="T", clock=clock)
        resource = FencedResource()
        assert h.acquire("L", 100.0) == 1
        resource.write(1, b"H")
        clock.t = 1.0
        assert h.valid("L")
        faulty.script("after")  # the refresh lands; its answer is lost ...
        faulty.plan = FaultPlan(before=1.0)  # ... and nothing can be read back
        with pytest.raises(AmbiguousWriteError):
            h.refresh("L", ttl=0.3)
        faulty.plan = FaultPlan()
        clock.t = 1.0 + 0.75 * 0.3 - 1e-6
        assert h.valid("L")  # inside the window the shorter ttl allows (perfect clocks)
        with pytest.raises(LockHeldError):
            t.acquire("L", 1.0)  # T first sees the 0.3 s refresh now
        clock.t = 1.0 + 0.75 * 0.3
        assert not h.valid("L")
        clock.t += 0.3
        assert t.acquire("L", 1.0) == 2
        assert not h.valid("L")  # never two believers with perfect clocks
        resource.write(2, b"T")
        with pytest.raises(StaleTokenError):
            resource.write(1, b"H again")
        with pytest.raises(LockLostError):
            h.refresh("L")


def test_finding_7_shorter_refresh_shortens_validity_before_it_is_sent() -> None:
    """While a refresh with a shorter ttl is in flight, validity already follows it; a
    refresh that succeeds later (with a longer ttl) restores the window it establishes."""
    url = _url("memory", Path())
    clock = Clock()
    with Log.open(url) as log:
        h = Locks(log, owner="H", clock=clock)
        h.acquire("L", 100.0)
        seen: list[bool] = []
        real_submit = h._submit

        def spy(*args: Any) -> Any:
            clock.t += 1.0  # 1 s into the send, before the answer
            seen.append(h.valid("L"))
            return real_submit(*args)

        h._submit = spy  # type: ignore[method-assign]
        clock.t = 10.0
        h.refresh("L", ttl=1.0)
        assert seen == [False]  # sent at 10 s with ttl 1: over at 10.75 s, not at 75 s
        clock.t = 20.0
        h.refresh("L", ttl=100.0)
        assert h.valid("L")


# -- finding 8: lock owners are unique unless named ------------------------------------------


def test_finding_8_unnamed_owners_are_unique_per_object() -> None:
    """Two Locks / Election objects on one Log without an explicit owner are two holders:
    the second is refused (it used to renew the first's grant and get token 1 too)."""
    url = _url("memory", Path())
    with Log.open(url) as log:
        a, b = Locks(log), Locks(log)
        assert a.owner != b.owner
        assert a.acquire("job", 30.0) == 1
        with pytest.raises(LockHeldError) as held:
            b.acquire("job", 30.0)
        assert held.value.holder == a.owner and held.value.token == 1
        named = Locks(log, owner=a.owner)  # naming the same owner: the same holder, renews
        assert named.acquire("job", 30.0) == 1
        e1, e2 = Election(log, "leader", ttl=30.0), Election(log, "leader", ttl=30.0)
        assert e1.candidate != e2.candidate
        assert e1.campaign() == 1
        try:
            with pytest.raises(LockHeldError):
                e2.campaign(timeout=0)
            assert e1.is_leader() and not e2.is_leader()
        finally:
            e1.resign()
    res = FencedResource()
    res.write(1, b"a", owner="A")
    res.write(1, b"a again", owner="A")
    with pytest.raises(StaleTokenError, match="another owner"):
        res.write(1, b"b", owner="B")  # an equal token from a different owner
    res.write(2, b"b", owner="B")
    with pytest.raises(StaleTokenError):
        res.write(1, b"a late", owner="A")


def _acquire_twice_at_once(log: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Two ``passivepaxos lock acquire LOG job --json`` processes started together."""
    cmd = [sys.executable, "-m", "passivepaxos", "lock", "acquire", log, "job", "--json"]
    procs = [
        subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outs.append({"code": p.returncode, **json.loads(out), "err": err})
    return outs


def _check_one_winner(outs: list[dict[str, Any]]) -> None:
    won = [o for o in outs if o["acquired"]]
    lost = [o for o in outs if not o["acquired"]]
    assert len(won) == 1 and len(lost) == 1, outs
    (w,), (lo,) = won, lost
    assert w["code"] == 0 and w["token"] == 1 and w["mine"] is True and w["holder"] == w["owner"]
    assert lo["code"] == 1 and lo["token"] is None and lo["mine"] is False
    assert lo["holder"] == w["owner"] != lo["owner"] and lo["holder_token"] == 1
    assert "held by" in lo["err"] and len(lo["err"].splitlines()) == 1


def test_finding_8_cli_concurrent_acquires_on_one_host(tmp_path: Path) -> None:
    """Finding 8: two concurrent ``lock acquire`` processes on one host without --owner:
    exactly one gets the lock (both printed acquired, token 1 before); the refused one's
    JSON carries no token of its own."""
    log = tmp_path.as_uri()
    assert cli_run("init", log).returncode == 0
    _check_one_winner(_acquire_twice_at_once(log))
    rel = cli_run("lock", "release", log, "job")
    assert rel.returncode == 2 and "--owner" in rel.stderr and len(rel.stderr.splitlines()) == 1


def test_finding_8_cli_concurrent_acquires_on_s3(moto_server: Any) -> None:
    bucket = f"lock-{uuid.uuid4().hex[:10]}"
    moto_server.client().create_bucket(Bucket=bucket)
    log = f"s3://{bucket}/locks"
    init = cli_run("init", log, env=moto_server.env())
    assert init.returncode == 0, init.stderr
    outs = _acquire_twice_at_once(log, moto_server.env())
    _check_one_winner(outs)
    owner = next(o["owner"] for o in outs if o["acquired"])
    again = cli_run(
        "lock", "acquire", log, "job", "--owner", owner, "--json", env=moto_server.env()
    )
    assert again.returncode == 0 and json.loads(again.stdout)["token"] == 1  # renews
    rel = cli_run("lock", "release", log, "job", "--owner", owner, env=moto_server.env())
    assert rel.returncode == 0, rel.stderr
