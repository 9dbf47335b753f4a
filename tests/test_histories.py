"""Histories of the KV store and the locks, checked by ``passivepaxos.checker`` (issue 5
item 5): seeded runs with faults (``scripts/check_histories.py``), a planted bug the
pipeline must catch, and a real multi-process KV and lock run on moto_server."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from passivepaxos.checker import (
    Hold,
    KVModel,
    LockModel,
    Op,
    Recorder,
    check,
    check_fencing,
    check_holders,
)
from passivepaxos.errors import AmbiguousWriteError
from passivepaxos.log import Log
from passivepaxos.manifest import init_log, open_log
from passivepaxos.recipes.kv import KV
from passivepaxos.recipes.lock import Locks
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.wrappers import FaultPlan, FaultyBackend
from tests.clocked import NO_SLEEP
from tests.conftest import get_harness

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_histories", ROOT / "scripts" / "check_histories.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_histories"] = mod
    spec.loader.exec_module(mod)
    return mod


ch = _script()


def test_seeded_runs_with_faults_are_linearizable() -> None:
    cfg = ch.RunConfig(ops_per_client=8)
    runs = [ch.run_once(ch.run_seed(7, i), cfg) for i in range(40)]
    violations = [(r.seed, v) for r in runs for v in r.violations]
    assert violations == [], violations[0][1]
    assert sum(r.faults for r in runs) > 0
    assert sum(r.info for r in runs) > 0, "no info operation: the faults never reached a client"
    assert sum(r.lock_ops for r in runs) > 0 and sum(r.holds for r in runs) > 0
    assert all(r.kv_ops > 0 for r in runs)


class StaleGet(ch.KVClient):  # type: ignore[misc,name-defined]
    """A planted bug: ``get`` answers from a cache filled by the client's first read."""

    def __init__(self, kv: KV) -> None:
        super().__init__(kv)
        self.cache: dict[str, str | None] = {}

    def get(self, key: str) -> str | None:
        if key not in self.cache:
            self.cache[key] = super().get(key)
        return self.cache[key]


def test_planted_stale_read_is_caught() -> None:
    cfg = ch.RunConfig(ops_per_client=12, kv_keys=1, lock_share=0.0, plan=ch.FaultPlan())
    found: list[str] = []
    for i in range(10):
        r = ch.run_once(ch.run_seed(11, i), cfg, make_kv=StaleGet)
        found.extend(v for v in r.violations if v.startswith("kv not linearizable"))
        if found:
            break
    assert found, "a client serving stale cached reads was never caught"


LOCK_OPS = 12  # per process, on 2 lock names
LOCK_TTL = 1.0


def test_multi_process_kv_and_locks_on_moto(request: pytest.FixtureRequest) -> None:
    """Four OS processes do KV and lock operations on one log on moto_server (s3), each
    printing one JSON line per operation and per lock hold with time.time() as the shared
    clock (same host); the holds are defined as in ``scripts/check_histories.py``."""
    url = get_harness(request, "s3").url()
    init_log(url)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "histories_worker.py"),
                url,
                str(p),
                "14",
                str(LOCK_OPS),
                str(LOCK_TTL),
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    history: list[Op] = []
    lock_history: list[Op] = []
    holds: list[Hold] = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        for line in out.splitlines():
            d: dict[str, Any] = json.loads(line)
            if d["type"] == "hold":
                holds.append(Hold(d["name"], d["owner"], d["token"], d["start"], d["end"]))
                continue
            inp = tuple(d["input"]) if isinstance(d["input"], list) else d["input"]
            op = Op(
                d["process"],
                d["kind"],
                d["key"],
                inp,
                d["output"],
                d["status"],
                d["call"],
                d["ret"],
            )
            (history if d["type"] == "kv" else lock_history).append(op)
    assert len(history) == 4 * 14
    assert len(lock_history) == 4 * LOCK_OPS
    assert len({o.process for o in history}) == 4
    res = check(history, KVModel(), timeout=60)
    lock_res = check(lock_history, LockModel(expiring=True), timeout=60)
    fencing = check_fencing(lock_history)
    overlaps = check_holders(holds)
    granted = [o for o in lock_history if o.kind == "acquire" and isinstance(o.output, int)]
    refused = [o for o in lock_history if o.kind == "acquire" and o.output is None]
    info = sum(o.status == "info" for o in [*history, *lock_history])
    print(
        f"\nmoto multi-process: kv {res.ops} ops, {res.states_explored} states, "
        f"{res.seconds:.3f}s; locks {lock_res.ops} ops ({len(granted)} granted, "
        f"{len(refused)} refused, {len(lock_history) - len(granted) - len(refused)} "
        f"releases), {lock_res.states_explored} states, {lock_res.seconds:.3f}s; "
        f"{len(holds)} holds; {info} info; tokens "
        f"{sorted((o.key, o.output) for o in granted)}"
    )
    assert res.ok, res.describe()
    assert lock_res.ok, lock_res.describe()
    assert fencing == [], fencing[0]
    assert overlaps == [], overlaps[0]
    assert len(granted) >= 3 and len(holds) >= 3, (granted, holds)


# -- issue 10, finding 7: an ambiguous refresh with a shorter ttl, then takeovers ------------


def _shorter_refresh_run(seed: int, *, planted: bool = False) -> list[str]:
    """A holder acquires with a long ttl and refreshes with a short one; the refresh lands
    but its answer is lost and nothing can be read back (outcome unknown); the holder acts
    on while ``valid()`` says so. Three takers poll, take over, work a little and release.
    Returns the violations of the holds (no overlap), the lock history (linearizable,
    expiring) and fencing. ``planted``: the holder's validity ignores the ttl of the
    refresh in flight (the bug of finding 7), which the checks must catch."""
    rng = random.Random(seed)
    url = f"memory://hist-short-{uuid.uuid4().hex[:10]}"
    init_log(url)
    stores, manifest = open_log(url)
    faulty = FaultyBackend(stores[0].backend, FaultPlan(), seed=seed)
    quick = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, resolve_attempts=1)
    rec = Recorder(time.monotonic)
    holds: list[Hold] = []
    mu = threading.Lock()
    ttl, short = rng.uniform(3.0, 5.0), rng.uniform(0.1, 0.25)
    with Log([Store(faulty, retry=quick)], manifest.mode, runtime=NO_SLEEP) as hlog:
        h = Locks(hlog, owner="H", retries=0)
        if planted:  # the bookkeeping goes on, but an entry in flight never caps validity
            real_sending = h._sending
            h._sending = lambda name, ttl: real_sending(name, float("inf"))  # type: ignore[method-assign]
        hop = rec.invoke("H", "acquire", "L", "H")
        token = h.acquire("L", ttl)
        begun = rec.ok(hop, token).ret
        assert begun is not None
        start = threading.Barrier(4)

        def taker(i: int) -> None:
            trng = random.Random(seed * 10 + i)
            with Log.open(url) as log:
                t = Locks(log, owner=f"T{i}", poll=0.005)
                t.status("L")  # watch H's acquire from now
                start.wait()
                op = rec.invoke(i, "acquire", "L", t.owner)
                try:
                    tok = t.acquire("L", 1.0, wait=30.0)
                except Exception:
                    rec.info(op)
                    return
                ret = rec.ok(op, tok).ret
                assert ret is not None
                time.sleep(trng.uniform(0.0, 0.02))
                now = time.monotonic()
                with mu:
                    holds.append(
                        Hold("L", t.owner, tok, ret, max(ret, min(now, t.valid_until("L"))))
                    )
                op = rec.invoke(i, "release", "L", (t.owner, tok))
                rec.ok(op, t.release("L", tok))

        threads = [threading.Thread(target=taker, args=(i,)) for i in range(3)]
        for th in threads:
            th.start()
        start.wait()
        time.sleep(rng.uniform(0.0, 0.05))
        faulty.script("after")  # the refresh lands; its answer is lost ...
        faulty.plan = FaultPlan(before=1.0)  # ... and nothing can be read back
        op = rec.invoke("H", "refresh", "L", ("H", token))
        try:
            h.refresh("L", short)
        except AmbiguousWriteError:
            rec.info(op)
        faulty.plan = FaultPlan()
        end = h.valid_until("L")  # H acts on until valid() turns false
        holds.append(Hold("L", "H", token, begun, max(begun, end)))
        for th in threads:
            th.join(60)
    history = rec.close()
    res = check(history, LockModel(expiring=True), timeout=30)
    out = [str(v) for v in check_holders(holds)] + [str(v) for v in check_fencing(history)]
    if not res.ok:
        out.append(res.describe())
    grants = [o for o in history if o.kind == "acquire" and isinstance(o.output, int)]
    assert len(grants) == 4, history  # H and every taker got the lock once
    return out


def test_ambiguous_shorter_refresh_then_takeovers_never_overlap() -> None:
    for seed in range(3):
        assert _shorter_refresh_run(seed) == [], seed


def test_planted_validity_ignoring_the_refresh_in_flight_is_caught() -> None:
    found = _shorter_refresh_run(0, planted=True)
    assert any("holders overlap" in v for v in found), found
