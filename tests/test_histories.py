"""Histories of the KV store and the locks, checked by ``passivepaxos.checker`` (issue 5
item 5): seeded runs with faults (``scripts/check_histories.py``), a planted bug the
pipeline must catch, and a real multi-process KV and lock run on moto_server."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from passivepaxos.checker import (
    Hold,
    KVModel,
    LockModel,
    Op,
    check,
    check_fencing,
    check_holders,
)
from passivepaxos.manifest import init_log
from passivepaxos.recipes.kv import KV
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
