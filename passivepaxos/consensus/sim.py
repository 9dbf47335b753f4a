"""Deterministic simulator for the consensus core.

One thread, one seeded ``random.Random``, a virtual clock. N proposer generators are
interleaved *one storage operation at a time* by a seeded scheduler (operations of one
batch run in a random order, interleaved with other proposers'); every operation goes to
a memory backend wrapped in ``FaultyBackend`` (errors before the effect, errors after it,
writes landing late, throttling) inside a real ``Store`` whose sleeps are no-ops, so the
store's retry and ambiguity-resolution code is exercised too. On top, proposer<->store
links go down and up at random steps; a request on a down link is lost before or after
taking effect *above* the store, so the core itself sees unresolved ambiguity. Proposers crash (their
generator is dropped mid-batch) and pause at random steps.

At the end, late writes are flushed and the final storage state is checked:

- agreement: every proposer that returned returned the same value; for create and cas
  lists the set of values *chosen* in the final lists (majority-accepted at one ballot,
  computed by replay) has at most one element and contains it (cas lists must also be
  valid list objects in which no message uid occurs twice); every DECIDED marker agrees;
- validity: the decided value is one of the proposed values;
- termination: every proposer that neither crashed nor gave up decided;
- the read-only learner returns the decided value (for blocks: when a DECIDED marker
  exists; otherwise it may say ``None``, never something else).

Everything derives from the seed, so a failing seed replays exactly:
``python -m passivepaxos.consensus.sim --seed N --mode create --stores 3 --proposers 4``.
"""

from __future__ import annotations

import argparse
import itertools
import random
from dataclasses import dataclass, field

from passivepaxos import frame
from passivepaxos.consensus import core
from passivepaxos.consensus.driver import execute
from passivepaxos.errors import AmbiguousWriteError, QuorumError, TransientError
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import PutMode
from passivepaxos.urls import backend_module
from passivepaxos.wrappers import FaultPlan, FaultyBackend

__all__ = ["SimConfig", "SimResult", "main", "run"]

_names = itertools.count()


@dataclass(frozen=True)
class SimConfig:
    mode: str = "create"  # "create" or "cas" (passive Paxos), "blocks" (Disk Paxos)
    stores: int = 3
    proposers: int = 3
    fault_rate: float = 0.15  # per request, split over before/after/late/throttle
    crash: float = 0.002  # per scheduling step
    pause: float = 0.01  # per scheduling step
    partition: float = 0.02  # per step: flip one proposer<->store link down/up
    max_steps: int = 50_000
    fast: bool = True
    marker_loss: float = 0.3  # per proposer and store: its DECIDED marker never lands
    delay: float = 0.02  # per request: it takes effect, its answer comes late (a pause)
    readers: int = 2  # learners (finishing when they cannot tell) started during the run
    wipe: float = 0.3  # per run (3+ stores): at the first decision everyone else stops,
    # markers are copied, a store that accepted the value is emptied, late proposers run
    late: int = 2  # proposers started after the wipe, knowing nothing
    leads: int = 0  # the first proposers open with a leader's ACCEPT (core: "Leader's
    # accept"); more than one breaks its precondition (the simulator must then catch it)


@dataclass
class SimResult:
    seed: int
    config: SimConfig
    proposed: dict[str, bytes] = field(default_factory=dict)
    decided: dict[str, bytes] = field(default_factory=dict)
    crashed: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    chosen: set[bytes] = field(default_factory=set)
    learned: bytes | None = None
    read: dict[str, bytes | None] = field(default_factory=dict)  # reader -> its answer
    wiped: int | None = None  # the store emptied after the run, if any
    steps: int = 0
    ops: int = 0
    faults: int = 0
    violations: list[str] = field(default_factory=list)

    def describe(self) -> str:
        c = self.config
        return (
            f"seed={self.seed} mode={c.mode} stores={c.stores} proposers={c.proposers} "
            f"fault_rate={c.fault_rate}: {'; '.join(self.violations) or 'ok'} "
            f"(decided={self.decided}, chosen={self.chosen}, read={self.read}, "
            f"wiped={self.wiped}, crashed={self.crashed}, "
            f"gave_up={self.gave_up}, steps={self.steps}) -- replay with: python -m "
            f"passivepaxos.consensus.sim --seed {self.seed} --mode {c.mode} "
            f"--stores {c.stores} --proposers {c.proposers} --fault-rate {c.fault_rate} "
            f"--partition {c.partition}"
            + "".join(
                f" --{name.replace('_', '-')} {getattr(c, name)}"
                for name in ("marker_loss", "delay", "readers", "wipe", "late")
                if getattr(c, name) != getattr(SimConfig, name)
            )
            + "".join(f" --mutation {m}" for m in sorted(core.MUTATIONS))
        )


@dataclass
class _Proc:
    pid: str
    gen: core.Proc[bytes | None]
    batch: list[core.Op]
    results: list[object]
    todo: list[int]
    wake: float = 0.0
    reader: bool = False
    acked_before: tuple[str, ...] = ()  # readers: proposers that had returned at start
    host: str = ""  # readers: the proposer whose links it shares


def _noop(_: float) -> None:
    return None


def run(seed: int, config: SimConfig) -> SimResult:
    """One simulation run; ``result.violations`` is empty when every check passed."""
    rng = random.Random(seed)
    res = SimResult(seed, config)
    memory = backend_module("memory")
    run_id = next(_names)
    names = [f"sim{run_id}-{i}" for i in range(config.stores)]
    f = config.fault_rate / 4
    plan = FaultPlan(before=f, after=f, late=f, throttle=f, late_after=(1, 8))
    faulty = [
        FaultyBackend(memory.MemoryBackend(name), plan, seed=rng.getrandbits(32)) for name in names
    ]
    retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, resolve_attempts=2)
    stores = [
        Store(fb, retry=retry, sleep=_noop, rng=random.Random(rng.getrandbits(32))) for fb in faulty
    ]
    urls = [s.url for s in stores]
    instance = "inst"
    try:
        procs = [
            _proposer(rng, res, config, urls, instance, f"p{i}") for i in range(config.proposers)
        ]
        readers = [(f"r{i}", rng.uniform(0.0, 0.4)) for i in range(config.readers)]
        wipe = config.stores >= 3 and rng.random() < config.wipe
        _simulate(rng, res, config, stores, urls, instance, procs, readers, stop=wipe)
        if wipe and res.decided:
            # finding 1's schedule: a membership removal copies the decided value's marker
            # to a majority of the stores that stay; the removed store, one that accepted
            # the value, is deleted and recreated empty (as a file:// root or an S3 prefix
            # can be); stale proposers then run on the old set, cut off from the other
            # stores that accepted it, so only the markers carry the decision to them
            _flush(faulty)
            value = next(iter(res.decided.values()))
            holders = _holders(faulty, instance, config.mode, value)
            res.wiped = rng.choice(holders or list(range(config.stores)))
            keep = [i for i in range(config.stores) if i != res.wiped]
            majority = config.stores // 2 + 1
            marker = frame.pack(
                core.Msg("D", core.ZERO, value).encode(), rng.getrandbits(128).to_bytes(16, "big")
            )
            for i in rng.sample(keep, majority):
                faulty[i].inner.put(core.decided_key(instance), marker, PutMode.OVERWRITE)
            gone = faulty[res.wiped].inner
            for meta in list(gone.list("")):
                gone.delete(meta.key)
            others = [i for i in holders if i != res.wiped]
            cut = rng.sample(others, min(len(others), config.stores - majority))
            late = [
                _proposer(rng, res, config, urls, instance, f"q{i}") for i in range(config.late)
            ]
            down = {(q.pid, i) for q in late for i in cut}
            _simulate(rng, res, config, stores, urls, instance, late, [], down=down)
        _flush(faulty)
        for fb in faulty:
            res.faults += fb.log.before + fb.log.after + fb.log.late + fb.log.throttled
            fb.enabled = False
        _check(res, config, faulty, stores, urls, instance)
    finally:
        for name in names:
            memory.reset(name)
    return res


def _flush(faulty: list[FaultyBackend]) -> None:
    for fb in faulty:
        fb.flush_late()


def _proposer(
    rng: random.Random, res: SimResult, config: SimConfig, urls: list[str], instance: str, pid: str
) -> _Proc:
    value = f"v{pid}-{rng.getrandbits(16)}".encode()
    res.proposed[pid] = value
    prng = random.Random(rng.getrandbits(32))
    gen: core.Proc[bytes]
    if config.mode in ("create", "cas"):
        gen = core.passive_proposer(
            urls,
            instance,
            value,
            pid,
            prng,
            fast=config.fast,
            max_unreachable_rounds=20,
            mode=config.mode,
            lead=pid in {f"p{i}" for i in range(config.leads)},
        )
    else:
        gen = core.disk_proposer(urls, instance, value, pid, prng, max_unreachable_rounds=20)
    return _Proc(pid, gen, [], [], [])


def _reader(
    urls: list[str], instance: str, mode: str, pid: str, rng: random.Random
) -> core.Proc[bytes | None]:
    """A linearizable read: the learner, and when it cannot tell, a finisher."""
    got = yield from core.learner(urls, instance, mode)
    if got.state == core.DECIDED:
        return got.value
    if got.state == core.UNDECIDED:
        return None
    return (yield from core.finisher(urls, instance, mode, pid, rng, max_unreachable_rounds=20))


def _simulate(
    rng: random.Random,
    res: SimResult,
    config: SimConfig,
    stores: list[Store],
    urls: list[str],
    instance: str,
    procs: list[_Proc],
    readers: list[tuple[str, float]],
    *,
    down: set[tuple[str, int]] | None = None,
    stop: bool = False,
) -> None:
    """Interleave ``procs`` and ``readers`` (started at their times) one operation at a
    time. ``stop``: at the first decision every other process stops for good (a crash;
    finding 1's stale writers are fresh proposers started afterwards)."""

    def advance(p: _Proc, results: list[object] | None) -> bool:
        """Feed results, fetch the next batch; False when the process finished."""
        try:
            batch = next(p.gen) if results is None else p.gen.send(results)
        except StopIteration as stop:
            if p.reader:
                res.read[p.pid] = stop.value
                if stop.value is None and p.acked_before:
                    res.violations.append(
                        f"linearizability: reader {p.pid} found the instance undecided "
                        f"after {list(p.acked_before)} had returned"
                    )
            else:
                res.decided[p.pid] = stop.value
            return False
        except (QuorumError, AmbiguousWriteError):  # "outcome unknown" is giving up too
            res.gave_up.append(p.pid)
            return False
        p.batch, p.results, p.todo = batch, [None] * len(batch), list(range(len(batch)))
        return True

    clock = 0.0
    down = set() if down is None else down
    marker_fate: dict[tuple[str, int], bool] = {}
    waiting = sorted(readers, key=lambda r: r[1])
    active = [p for p in procs if advance(p, None)]
    pids = [p.pid for p in procs]
    while (active or waiting) and res.steps < config.max_steps:
        res.steps += 1
        clock += 0.001
        while waiting and (waiting[0][1] <= clock or not active):
            if int(waiting[0][0][1:]) % 2 and not res.decided and active:
                break  # an odd reader starts only after a proposer returned
            rid, _ = waiting.pop(0)
            gen = _reader(urls, instance, config.mode, rid, random.Random(rng.getrandbits(32)))
            # a reader runs next to a proposer: it shares that proposer's links
            host = pids[int(rid[1:]) % len(pids)] if pids else ""
            r = _Proc(rid, gen, [], [], [], reader=True, acked_before=tuple(sorted(res.decided)))
            r.host = host
            if advance(r, None):
                active.append(r)
        if not active:
            continue
        ready = [p for p in active if p.wake <= clock]
        if not ready:
            clock = min(p.wake for p in active)
            continue
        p = rng.choice(ready)
        if rng.random() < config.partition:
            link = (rng.choice(pids), rng.randrange(config.stores))
            down ^= {link}
        roll = rng.random()
        proposers = sum(not q.reader for q in active)  # the last proposer never crashes
        if roll < config.crash and proposers > 1 and not p.reader:
            active.remove(p)
            res.crashed.append(p.pid)
            continue
        if roll < config.crash + config.pause:
            p.wake = clock + rng.uniform(0.0, 0.3)
            continue
        i = p.todo.pop(rng.randrange(len(p.todo)))
        op = p.batch[i]
        if isinstance(op, core.Sleep):
            p.wake = max(p.wake, clock + op.seconds)
        else:
            res.ops += 1
            lost_marker = False
            if isinstance(op, core.Put) and op.key == core.decided_key(instance):
                link = (p.pid, op.store)  # lost once: lost on every retry of this writer
                if link not in marker_fate:
                    marker_fate[link] = rng.random() < config.marker_loss
                lost_marker = marker_fate[link]
            if (p.host or p.pid, op.store) in down:
                # a partitioned link: the request is lost before or after taking effect
                if rng.random() < 0.5:
                    execute(stores, op, _noop)
                p.results[i] = TransientError("partitioned (sim)", url=urls[op.store])
            elif lost_marker:  # the marker write is lost on its way: it never lands
                p.results[i] = TransientError("marker lost (sim)", url=urls[op.store])
            else:
                p.results[i] = execute(stores, op, _noop)
                if rng.random() < config.delay:  # the answer comes late: others run first
                    p.wake = clock + rng.uniform(0.0, 0.3)
        if not p.todo and not advance(p, p.results):
            active.remove(p)
            if stop and res.decided:
                res.crashed.extend(q.pid for q in active)
                active, waiting = [], []
    if active or waiting:
        res.violations.append(
            f"no termination after {res.steps} steps: {[p.pid for p in active]} undecided"
        )


def _check(
    res: SimResult,
    config: SimConfig,
    faulty: list[FaultyBackend],
    stores: list[Store],
    urls: list[str],
    instance: str,
) -> None:
    values = set(res.decided.values())
    if len(values) > 1:
        res.violations.append(f"agreement: proposers decided {sorted(values)}")
    for v in values:
        if v not in res.proposed.values():
            res.violations.append(f"validity: {v!r} was never proposed")
    read = {v for v in res.read.values() if v is not None}
    if len(read | values) > 1:
        res.violations.append(f"agreement: readers read {sorted(read)} vs decided {sorted(values)}")
    markers: set[bytes] = set()
    for fb in faulty:
        got = fb.inner.get(core.decided_key(instance))
        if got is not None:
            m = core.decode_msg(frame.unpack(got[0]).payload)
            if m is not None and m.value is not None:
                markers.add(m.value)
    if len(markers | values) > 1:
        res.violations.append(f"agreement: markers {sorted(markers)} vs decided {sorted(values)}")
    if config.mode in ("create", "cas"):
        lists = (
            _create_lists(faulty, instance)
            if config.mode == "create"
            else _cas_lists(res, faulty, instance)
        )
        res.chosen = {v for _, v in core.chosen(lists, config.stores)}
        if len(res.chosen | markers) > 1:
            res.violations.append(
                f"agreement: the lists chose {sorted(res.chosen)}, markers {sorted(markers)}"
            )
        # an emptied store may have held part of the choosing majority: the markers copied
        # before it was emptied are then what carries the decision
        if values and not values <= res.chosen and (res.wiped is None or not values <= markers):
            res.violations.append(f"decided {sorted(values)} but lists chose {sorted(res.chosen)}")
    ans = _drive(core.learner(urls, instance, config.mode), stores)
    res.learned = ans.value
    # create and cas lists are learned exactly (replay); blocks through a DECIDED marker,
    # or else "unknown" (then the finisher below must find the value)
    if ans.state == core.DECIDED and values and res.learned not in values:
        res.violations.append(f"learn() returned {res.learned!r}, decided {sorted(values)}")
    if ans.state == core.UNDECIDED and values:
        res.violations.append(f"learn() said undecided, decided {sorted(values)}")
    if ans.state == core.UNKNOWN and values and (config.mode != "blocks" or markers):
        res.violations.append(f"learn() could not tell, decided {sorted(values)}")
    if res.learned is not None and res.learned not in res.proposed.values():
        res.violations.append(f"validity: learn() returned unproposed {res.learned!r}")
    if ans.state == core.UNKNOWN:
        done = _drive(core.finisher(urls, instance, config.mode, "fin", random.Random(0)), stores)
        if values and done not in values:
            res.violations.append(f"finish() returned {done!r}, decided {sorted(values)}")
        if done is not None and done not in res.proposed.values():
            res.violations.append(f"validity: finish() returned unproposed {done!r}")


def _holders(faulty: list[FaultyBackend], instance: str, mode: str, value: bytes) -> list[int]:
    """The stores whose list accepted ``value`` (blocks: that hold a block with it)."""
    out = []
    for i, fb in enumerate(faulty):
        if mode == "blocks":
            found = False
            for meta in fb.inner.list(core.blocks_prefix(instance)):
                got = fb.inner.get(meta.key)
                b = None if got is None else core.decode_block(frame.unpack(got[0]).payload)
                found = found or (b is not None and b.inp == value)
        else:
            lists = (
                _create_lists([fb], instance)
                if mode == "create"
                else [[core.msg_from_obj(e) for e in _cas_raw(fb, instance)]]
            )
            found = any(v == value for _, v in core.accepted_pairs(lists[0]))
        if found:
            out.append(i)
    return out


def _cas_raw(fb: FaultyBackend, instance: str) -> list[object]:
    got = fb.inner.get(core.list_key(instance))
    raw = None if got is None else core.decode_cas_list(frame.unpack(got[0]).payload)
    return raw or []


def _create_lists(faulty: list[FaultyBackend], instance: str) -> list[list[core.Msg | None]]:
    lists: list[list[core.Msg | None]] = []
    for fb in faulty:
        entries: list[core.Msg | None] = []
        while (got := fb.inner.get(core.slot_key(instance, len(entries)))) is not None:
            entries.append(core.decode_msg(frame.unpack(got[0]).payload))
        lists.append(entries)
    return lists


def _cas_lists(
    res: SimResult, faulty: list[FaultyBackend], instance: str
) -> list[list[core.Msg | None]]:
    """The final cas lists; also checks that each is a valid list object and that no
    append landed twice (every message's uid occurs once: an unclear append is resolved,
    never re-sent where an earlier copy could still land)."""
    lists: list[list[core.Msg | None]] = []
    for i, fb in enumerate(faulty):
        got = fb.inner.get(core.list_key(instance))
        raw = [] if got is None else core.decode_cas_list(frame.unpack(got[0]).payload)
        if raw is None:
            res.violations.append(f"store {i}: {core.list_key(instance)} is not a cas list")
            raw = []
        entries = [core.msg_from_obj(e) for e in raw]
        uids = [m.uid for m in entries if m is not None]
        if None in uids or len(set(uids)) != len(uids):
            res.violations.append(f"store {i}: a cas list entry without a unique uid")
        lists.append(entries)
    return lists


def _drive(gen: core.Proc[core.R], stores: list[Store]) -> core.R:
    """Run a generator to completion sequentially, in this thread."""
    try:
        batch = next(gen)
        while True:
            batch = gen.send([execute(stores, op, _noop) for op in batch])
    except StopIteration as stop:
        result: core.R = stop.value
        return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--mode", choices=["create", "cas", "blocks"], default="create")
    ap.add_argument("--stores", type=int, default=3)
    ap.add_argument("--proposers", type=int, default=3)
    ap.add_argument("--fault-rate", type=float, default=0.15)
    ap.add_argument("--partition", type=float, default=SimConfig.partition)
    ap.add_argument("--marker-loss", type=float, default=SimConfig.marker_loss)
    ap.add_argument("--delay", type=float, default=SimConfig.delay)
    ap.add_argument("--readers", type=int, default=SimConfig.readers)
    ap.add_argument("--wipe", type=float, default=SimConfig.wipe)
    ap.add_argument("--late", type=int, default=SimConfig.late)
    ap.add_argument("--leads", type=int, default=SimConfig.leads)
    ap.add_argument("--mutation", action="append", default=[], help="plant a bug (tests)")
    args = ap.parse_args(argv)
    cfg = SimConfig(
        args.mode,
        args.stores,
        args.proposers,
        args.fault_rate,
        partition=args.partition,
        marker_loss=args.marker_loss,
        delay=args.delay,
        readers=args.readers,
        wipe=args.wipe,
        late=args.late,
        leads=args.leads,
    )
    saved = set(core.MUTATIONS)
    core.MUTATIONS.update(args.mutation)
    try:
        result = run(args.seed, cfg)
    finally:
        core.MUTATIONS.clear()
        core.MUTATIONS.update(saved)
    print(result.describe())
    return 1 if result.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
