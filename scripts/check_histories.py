"""Seeded runs of the KV store and the locks on a faulty log, checked for linearizability.

Each run (``--seed S`` + run number) builds a log on a quorum of memory stores, every
store seen by every client through its own ``FaultyBackend`` (faults on ~10% of requests:
before / after / late / throttle, seeded by the run's seed) inside a ``Store`` with a fast
``RetryPolicy``. Up to 8 client threads, each with its own ``Log``, ``KV`` and ``Locks``
objects (so its own replica), perform random KV operations (put / get / delete / cas on
1-3 keys) and lock operations (acquire / refresh / release with a small ttl), recorded
with ``checker.Recorder`` on one shared monotonic clock (true time). Then:

- ``check(kv_history, KVModel())``;
- ``check(lock_history, LockModel(expiring=True))``, ``check_fencing`` and
  ``check_holders`` (a hold runs from the acquire's return until the holder stops
  believing it holds the lock: the release call or, if earlier, the end of
  ``Locks.valid()``, i.e. 0.75 x ttl after the start of its last successful
  acquire / refresh, or earlier after a refresh with a shorter ttl whose outcome is
  unknown; after such an ``info`` refresh the client acts on until ``valid()`` ends).

Status rules: ``ok`` when the call returned (a cas that did not swap is ``ok`` with
output False; a refused acquire, ``LockHeldError``, is ``ok`` with output None; a refresh
refused with ``LockLostError`` is ``ok`` with output False); ``fail`` only for a definite
refusal that changed nothing (``ConfigError``); every other exception (AmbiguousWriteError,
TransientError, QuorumError, ...) is ``info``: it may or may not have happened. After an
``info`` lock operation the client continues under a fresh owner id (a restarted client),
since its old owner may still hold the lock; an ``info`` refresh keeps that lock's hold
until its ``valid()`` ends (the ambiguous-shorter-refresh shape of issue 10, finding 7:
``RunConfig.refresh_ttl`` makes refreshes shorter than acquires).

Threads make a run's interleaving depend on the OS scheduler: the seed fixes the faults
plan, the operation mix and the values, not the exact interleaving.

    python scripts/check_histories.py --runs 1000 --seed 1 [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from passivepaxos.checker import (  # noqa: E402
    Hold,
    KVModel,
    LockModel,
    Op,
    Recorder,
    check,
    check_fencing,
    check_holders,
)
from passivepaxos.errors import ConfigError  # noqa: E402
from passivepaxos.log import Log  # noqa: E402
from passivepaxos.manifest import init_log, open_log  # noqa: E402
from passivepaxos.recipes.kv import KV  # noqa: E402
from passivepaxos.recipes.lock import LockHeldError, LockLostError, Locks  # noqa: E402
from passivepaxos.store import RetryPolicy, Store  # noqa: E402
from passivepaxos.wrappers import CountingBackend, FaultPlan, FaultyBackend  # noqa: E402

# few retries on purpose: unclear outcomes must reach the clients (info operations)
FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.005, resolve_attempts=2)
# ~10% of requests: throttle 2%, before 3%, after 3%, late 2% (writes only)
PLAN = FaultPlan(before=0.03, after=0.03, late=0.02, throttle=0.02, late_after=(1, 4))


@dataclass
class RunConfig:
    clients: int = 8
    ops_per_client: int = 12
    stores: int = 1
    kv_keys: int = 3  # up to this many keys per run (1..kv_keys)
    locks: int = 1
    lock_share: float = 0.35  # fraction of operations that are lock operations
    ttl: tuple[float, float] = (0.02, 0.06)
    # refresh ttls (None: drawn like acquire ttls); shorter ones exercise finding 7
    refresh_ttl: tuple[float, float] | None = None
    plan: FaultPlan = field(default_factory=lambda: PLAN)


@dataclass
class RunResult:
    seed: int
    kv_ops: int = 0
    kv_info: int = 0
    kv_fail: int = 0
    lock_ops: int = 0
    lock_info: int = 0
    lock_fail: int = 0
    holds: int = 0
    faults: int = 0
    states: int = 0
    checker_seconds: float = 0.0
    run_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    kv_history: list[Op] = field(default_factory=list, repr=False)
    lock_history: list[Op] = field(default_factory=list, repr=False)

    @property
    def ops(self) -> int:
        return self.kv_ops + self.lock_ops

    @property
    def info(self) -> int:
        return self.kv_info + self.lock_info

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("kv_history")
        d.pop("lock_history")
        d["ops"], d["info"] = self.ops, self.info
        return d


class KVClient:
    """What a client thread calls for KV operations; tests wrap it to plant bugs."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def put(self, key: str, value: str) -> None:
        self.kv.put(key, value.encode())

    def get(self, key: str) -> str | None:
        got = self.kv.get(key)
        return None if got is None else got.decode()

    def delete(self, key: str) -> bool:
        return self.kv.delete(key)

    def cas(self, key: str, expected: str | None, new: str) -> bool:
        exp = None if expected is None else expected.encode()
        return self.kv.cas(key, exp, new.encode()).ok


KVFactory = Callable[[KV], KVClient]


class _Sim:
    """One run's shared objects: the memory backends and the faulty views of them."""

    def __init__(self, seed: int, cfg: RunConfig) -> None:
        self.seed = seed
        self.cfg = cfg
        tag = uuid.uuid4().hex[:10]
        self.url = ",".join(f"memory://hist-{tag}-{i}" for i in range(cfg.stores))
        init_log(self.url)
        self.faulty: list[FaultyBackend] = []
        self.counting: list[CountingBackend] = []
        self._mu = threading.Lock()
        self._n = 0

    def open_log(self, client: int) -> Log:
        stores, manifest = open_log(self.url)
        wrapped: list[Store] = []
        with self._mu:
            for i, s in enumerate(stores):
                self._n += 1
                rng_seed = hash((self.seed, client, i, self._n)) & 0xFFFFFFFF
                counting = CountingBackend(s.backend)
                fb = FaultyBackend(counting, self.cfg.plan, seed=rng_seed)
                self.faulty.append(fb)
                self.counting.append(counting)
                wrapped.append(Store(fb, retry=FAST, rng=random.Random(rng_seed)))
        return Log(wrapped, manifest.mode, url=self.url, writer_id=f"c{client}-{self._n}")

    def flush(self) -> int:
        for fb in self.faulty:
            with contextlib.suppress(Exception):
                fb.flush_late()
        return sum(
            fb.log.before + fb.log.after + fb.log.late + fb.log.throttled for fb in self.faulty
        )


def _client(
    sim: _Sim,
    cid: int,
    rng: random.Random,
    keys: list[str],
    lock_names: list[str],
    kv_rec: Recorder,
    lock_rec: Recorder,
    holds: list[Hold],
    mu: threading.Lock,
    make_kv: KVFactory,
    start: threading.Barrier,
) -> None:
    cfg = sim.cfg
    logs: list[Log] = []

    def fresh_locks() -> Locks:
        log = sim.open_log(cid)
        logs.append(log)
        return Locks(log, owner=f"o{cid}-{len(logs)}-{uuid.uuid4().hex[:4]}", poll=0.005, retries=1)

    kv_log = sim.open_log(cid)
    logs.append(kv_log)
    kv = make_kv(KV(kv_log, retries=1, retry_delay=0.002))
    locks = fresh_locks()
    held: dict[str, tuple[int, float, float]] = {}  # name -> (token, hold start, ttl)
    written: list[str] = []
    n = 0
    clock = kv_rec.clock
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait(timeout=10)
    try:
        for _ in range(cfg.ops_per_client):
            if lock_names and rng.random() < cfg.lock_share:
                name = rng.choice(lock_names)
                ttl = rng.uniform(*cfg.ttl)
                if name in held:
                    token, begun, _ = held[name]
                    # "work" under the lock, sometimes past its validity
                    time.sleep(rng.choice([0.0, 0.0, 0.005, ttl * 0.5, ttl * 1.2]))
                    kind = "refresh" if rng.random() < 0.3 else "release"
                    now = clock()
                    valid_until = _valid_until(locks, name)
                    if kind == "release" or valid_until <= now:
                        kind = "release"
                        with mu:
                            holds.append(_hold(name, locks.owner, token, begun, now, valid_until))
                        del held[name]
                    owner = locks.owner
                    h = lock_rec.invoke(cid, kind, name, (owner, token))
                    try:
                        if kind == "release":
                            out: Any = locks.release(name, token)
                        else:
                            rttl = rng.uniform(*cfg.refresh_ttl) if cfg.refresh_ttl else ttl
                            locks.refresh(name, rttl)
                            out = True
                    except ConfigError:
                        lock_rec.fail(h)
                        continue
                    except Exception as exc:
                        if isinstance(exc, LockLostError):
                            lock_rec.ok(h, False)
                        else:
                            lock_rec.info(h)
                        if name in held:
                            if isinstance(exc, LockLostError):  # lost: the belief ends here
                                end = min(now, valid_until)
                            else:
                                # outcome unknown (maybe landed with its shorter ttl): the
                                # client acts on as long as valid() says so (issue 10,
                                # finding 7), then continues as a new owner
                                end = _valid_until(locks, name)
                            with mu:
                                holds.append(_hold(name, owner, token, begun, end, end))
                            del held[name]
                        if not isinstance(exc, LockLostError):
                            # our old owner may still hold locks: continue as a new client
                            for other, (tok, beg, _) in held.items():
                                end = min(now, _valid_until(locks, other))
                                with mu:
                                    holds.append(_hold(other, owner, tok, beg, end, end))
                            held.clear()
                            locks = fresh_locks()
                        continue
                    lock_rec.ok(h, out)
                else:
                    h = lock_rec.invoke(cid, "acquire", name, locks.owner)
                    try:
                        token = locks.acquire(name, ttl)
                    except LockHeldError:
                        lock_rec.ok(h, None)
                        continue
                    except ConfigError:
                        lock_rec.fail(h)
                        continue
                    except Exception:
                        lock_rec.info(h)
                        now = clock()
                        for other, (tok, beg, _) in held.items():
                            end = min(now, _valid_until(locks, other))
                            with mu:
                                holds.append(_hold(other, locks.owner, tok, beg, end, end))
                        held.clear()
                        locks = fresh_locks()
                        continue
                    op = lock_rec.ok(h, token)
                    assert op.ret is not None
                    held[name] = (token, op.ret, ttl)
                continue
            key = rng.choice(keys)
            r = rng.random()
            n += 1
            value = f"v{cid}.{n}"
            if r < 0.3:
                h = kv_rec.invoke(cid, "put", key, value)
                call: Callable[[], Any] = functools.partial(kv.put, key, value)
                written.append(value)
            elif r < 0.6:
                h = kv_rec.invoke(cid, "get", key)
                call = functools.partial(kv.get, key)
            elif r < 0.7:
                h = kv_rec.invoke(cid, "delete", key)
                call = functools.partial(kv.delete, key)
            else:
                pool = [None, *written[-3:]]
                expected = rng.choice(pool) if rng.random() < 0.6 else None
                h = kv_rec.invoke(cid, "cas", key, (expected, value))
                call = functools.partial(kv.cas, key, expected, value)
                written.append(value)
            try:
                out = call()
            except ConfigError:
                kv_rec.fail(h)
                continue
            except Exception:
                kv_rec.info(h)
                continue
            kv_rec.ok(h, out)
    finally:
        now = clock()
        for name, (token, begun, _) in held.items():
            with mu:
                holds.append(_hold(name, locks.owner, token, begun, now, _valid_until(locks, name)))
        for log in logs:
            with contextlib.suppress(Exception):
                log.close()


def _hold(name: str, owner: str, token: int, start: float, now: float, valid: float) -> Hold:
    """The hold from ``start`` (the acquire's return) until ``now`` or the end of validity,
    whichever is first (empty when validity ended before the acquire returned)."""
    return Hold(name, owner, token, start, max(start, min(now, valid)))


def _valid_until(locks: Locks, name: str) -> float:
    """The end of ``locks.valid(name)``: 0.75 x ttl after the last successful write began,
    or earlier after an acquire/refresh with a shorter ttl whose outcome is unknown."""
    return locks.valid_until(name)


def run_once(
    seed: int,
    cfg: RunConfig | None = None,
    *,
    make_kv: KVFactory = KVClient,
    check_timeout: float = 60.0,
) -> RunResult:
    cfg = cfg or RunConfig()
    t0 = time.monotonic()
    rng = random.Random(seed)
    sim = _Sim(seed, cfg)
    keys = [f"k{i}" for i in range(rng.randint(1, cfg.kv_keys))]
    lock_names = [f"L{i}" for i in range(cfg.locks)]
    clients = rng.randint(max(2, cfg.clients // 2), cfg.clients)
    kv_rec = Recorder(time.monotonic)
    lock_rec = Recorder(time.monotonic)
    holds: list[Hold] = []
    mu = threading.Lock()
    barrier = threading.Barrier(clients)
    threads = [
        threading.Thread(
            target=_client,
            args=(
                sim,
                c,
                random.Random(rng.random()),
                keys,
                lock_names,
                kv_rec,
                lock_rec,
                holds,
                mu,
                make_kv,
                barrier,
            ),
            daemon=True,
        )
        for c in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    faults = sim.flush()
    kv_hist = kv_rec.close()
    lock_hist = lock_rec.close()
    res = RunResult(seed, faults=faults, holds=len(holds))
    res.kv_history, res.lock_history = kv_hist, lock_hist
    res.kv_ops = len(kv_hist)
    res.kv_info = sum(o.status == "info" for o in kv_hist)
    res.kv_fail = sum(o.status == "fail" for o in kv_hist)
    res.lock_ops = len(lock_hist)
    res.lock_info = sum(o.status == "info" for o in lock_hist)
    res.lock_fail = sum(o.status == "fail" for o in lock_hist)
    kv_res = check(kv_hist, KVModel(), timeout=check_timeout)
    lock_res = check(lock_hist, LockModel(expiring=True), timeout=check_timeout)
    fencing = check_fencing(lock_hist)
    overlaps = check_holders(holds)
    res.states = kv_res.states_explored + lock_res.states_explored
    res.checker_seconds = kv_res.seconds + lock_res.seconds
    if not kv_res.ok:
        res.violations.append(f"kv {kv_res.verdict}: " + kv_res.describe())
    if not lock_res.ok:
        res.violations.append(f"lock {lock_res.verdict}: " + lock_res.describe())
    res.violations.extend(str(v) for v in fencing)
    res.violations.extend(str(v) for v in overlaps)
    res.run_seconds = time.monotonic() - t0
    return res


@dataclass
class Totals:
    runs: int = 0
    ops: int = 0
    kv_ops: int = 0
    lock_ops: int = 0
    info: int = 0
    fail: int = 0
    holds: int = 0
    faults: int = 0
    states: int = 0
    checker_seconds: float = 0.0
    max_checker_seconds: float = 0.0
    max_ops: int = 0
    wall_seconds: float = 0.0
    violations: int = 0
    violating_seeds: list[int] = field(default_factory=list)

    def add(self, r: RunResult) -> None:
        self.runs += 1
        self.ops += r.ops
        self.kv_ops += r.kv_ops
        self.lock_ops += r.lock_ops
        self.info += r.info
        self.fail += r.kv_fail + r.lock_fail
        self.holds += r.holds
        self.faults += r.faults
        self.states += r.states
        self.checker_seconds += r.checker_seconds
        self.max_checker_seconds = max(self.max_checker_seconds, r.checker_seconds)
        self.max_ops = max(self.max_ops, r.ops)
        if r.violations:
            self.violations += len(r.violations)
            self.violating_seeds.append(r.seed)


def run_seed(base: int, i: int) -> int:
    return base * 1_000_003 + i


def iter_runs(runs: int, seed: int, cfg: RunConfig | None = None) -> Iterator[RunResult]:
    for i in range(runs):
        yield run_once(run_seed(seed, i), cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON line per run, then totals")
    ap.add_argument("--replay", type=int, help="run only this run seed (printed on violations)")
    ap.add_argument("--ops", type=int, default=RunConfig.ops_per_client, help="ops per client")
    ap.add_argument("--clients", type=int, default=RunConfig.clients)
    ap.add_argument("--stores", type=int, default=RunConfig.stores, help="memory stores")
    args = ap.parse_args(argv)
    cfg = RunConfig(clients=min(8, args.clients), ops_per_client=args.ops, stores=args.stores)
    seeds = (
        [args.replay]
        if args.replay is not None
        else [run_seed(args.seed, i) for i in range(args.runs)]
    )
    tot = Totals()
    t0 = time.monotonic()
    for s in seeds:
        r = run_once(s, cfg)
        tot.add(r)
        if args.json:
            print(json.dumps(r.summary()), flush=True)
        elif r.violations or args.replay is not None:
            print(
                f"run seed={s}: ops={r.ops} (kv {r.kv_ops}, lock {r.lock_ops}) info={r.info} "
                f"faults={r.faults} states={r.states} checker={r.checker_seconds:.3f}s "
                f"violations={len(r.violations)}",
                flush=True,
            )
        for v in r.violations:
            print(f"VIOLATION seed={s} (replay: --replay {s}):\n{v}", file=sys.stderr, flush=True)
    tot.wall_seconds = time.monotonic() - t0
    if args.json:
        print(json.dumps({"totals": asdict(tot)}))
    else:
        print(
            f"runs={tot.runs} ops={tot.ops} (kv {tot.kv_ops}, lock {tot.lock_ops}, max/run "
            f"{tot.max_ops}) info={tot.info} fail={tot.fail} holds={tot.holds} "
            f"faults_injected={tot.faults} states={tot.states} "
            f"checker={tot.checker_seconds:.2f}s (max/run {tot.max_checker_seconds:.3f}s) "
            f"wall={tot.wall_seconds:.1f}s violations={tot.violations} "
            f"seeds={tot.violating_seeds}"
        )
    return 1 if tot.violations else 0


if __name__ == "__main__":
    sys.exit(main())
