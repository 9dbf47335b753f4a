"""passivepaxos's own benchmark workloads, each run against one ``Target`` (a store plus the
way its requests are counted and delayed).

Requests are counted where they leave the client: ``CountingBackend`` for memory:// and
file:// (with ``LatencyBackend`` adding the injected round trip), and the counting proxy in
front of moto_server for s3:// -- the same proxy the peers (``peers.py``) go through, so every
system is counted and delayed alike. Each workload returns a ``Result``.
"""

from __future__ import annotations

import collections
import contextlib
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from passivepaxos.bench import environ
from passivepaxos.errors import LeaseLostError
from passivepaxos.log import Log
from passivepaxos.log.tailcache import MemoryTailCache
from passivepaxos.manifest import init_log
from passivepaxos.runtime import RealRuntime
from passivepaxos.store import Store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend, LatencyBackend

__all__ = ["Result", "Target", "TargetSpec"]

# CountingBackend's operation names -> the billing classes of ``proxy.request_kind``
_KIND = {"get": "read", "list": "list", "delete": "delete"}


def _counted(url: str, rtt: float) -> CountingBackend:
    """The store of ``url`` with ``rtt`` added to each request (none at 0: the CPU cases
    measure the library, not a sleep(0) per request), counted."""
    raw = open_backend(url)
    return CountingBackend(LatencyBackend(raw, rtt) if rtt > 0 else raw)


def billing_kinds(counts: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for op, n in counts.items():
        out[_KIND.get(op, "write")] += n
    return out


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``xs``; 0.0 for no samples."""
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


@dataclass
class Result:
    """One measured case. ``ops`` operations (appends, puts...) in ``wall`` seconds;
    ``requests`` by billing class (write, list, read, delete) for those operations only."""

    system: str
    store: str
    case: str
    ops: int
    wall: float
    latencies: list[float] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    entries: int | None = None  # entries committed, when it differs from ops (batches)
    cpu: float | None = None  # client CPU seconds, for the CPU-bound cases
    hint_writes: int = 0  # of the write requests, tail-hint overwrites (a reader aid)
    rtt: float = 0.0
    note: str = ""
    timeline: list[int] | None = None  # entries acknowledged in each second of the run
    # (those in flight at the stop and acknowledged after it are not in it: the note)
    acks: list[int] | None = None  # acknowledged entries of each process (contended cases)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.wall if self.wall > 0 else 0.0

    @property
    def requests_per_op(self) -> float:
        return sum(self.requests.values()) / self.ops if self.ops else 0.0

    def to_json(self) -> dict[str, Any]:
        lat = self.latencies
        out: dict[str, Any] = {
            "system": self.system,
            "store": self.store,
            "case": self.case,
            "ops": self.ops,
            "wall_s": round(self.wall, 4),
            "ops_per_s": round(self.ops_per_s, 2),
            "requests": dict(self.requests),
            "requests_per_op": round(self.requests_per_op, 3),
            "hint_writes": self.hint_writes,
            "p50_ms": round(pct(lat, 0.5) * 1000, 3) if lat else None,
            "p99_ms": round(pct(lat, 0.99) * 1000, 3) if lat else None,
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None,
            "rtt_ms": round(self.rtt * 1000, 3),
            "note": self.note,
        }
        if self.entries is not None:
            out["entries"] = self.entries
            out["entries_per_s"] = round(self.entries / self.wall, 1) if self.wall else 0.0
        if self.cpu is not None:
            out["cpu_s"] = round(self.cpu, 4)
            out["entries_per_cpu_s"] = round((self.entries or self.ops) / self.cpu, 1)
        if self.rtt > 0 and lat:
            out["p50_rtt"] = round(pct(lat, 0.5) / self.rtt, 3)
            out["p99_rtt"] = round(pct(lat, 0.99) / self.rtt, 3)
        if self.timeline is not None:
            out["entries_per_second"] = self.timeline
        if self.acks is not None:
            out["acks_per_process"] = self.acks
        return out


# stores reached over HTTP through the counting proxy (a real SDK, a local server)
PROXIED = ("s3", "azure")


@dataclass(frozen=True)
class TargetSpec:
    """What a worker process needs to reach a target: picklable."""

    kind: str  # memory | file | s3 | azure
    url: str
    rtt: float
    env: tuple[tuple[str, str], ...] = ()


class Target:
    """One store under test. ``log()`` opens a Log whose requests are counted and delayed;
    ``counts()``/``reset()`` read and clear the counter for this target."""

    def __init__(self, kind: str, rtt: float, *, s3: Any = None) -> None:
        self.kind = kind
        self.rtt = rtt
        self.s3 = s3  # an S3Env for kind == "s3", an AzureEnv for "azure"
        self._counter: CountingBackend | None = None
        self._tmp: str | None = None
        self.url = ""

    def fresh(self) -> str:
        """A new, initialized, empty log on this target; later ``log()`` calls open it."""
        if self.kind == "memory":
            self.url = f"memory://bench-{uuid.uuid4().hex[:10]}"
        elif self.kind == "file":
            path = os.path.join(self.scratch(), uuid.uuid4().hex[:10])
            os.makedirs(path)
            self.url = f"file://{path}"
        else:
            self.url = self.remote_url(uuid.uuid4().hex[:10])
        with self.environment():
            init_log(self.url)
        if self.s3 is None:
            self._counter = _counted(self.url, self.rtt)
        self.reset()
        return self.url

    def remote_url(self, prefix: str) -> str:
        """A location on this target's server (s3: the bucket, azure: the container)."""
        scheme = {"s3": "s3", "azure": "az"}[self.kind]
        return f"{scheme}://{self.s3.bucket}/{prefix}"

    def scratch(self) -> str:
        """This target's temporary directory (made on first use, removed by ``close``):
        file:// logs, and the local stores of a mixed quorum on s3."""
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="ppx-bench-")
        return self._tmp

    def spec(self) -> TargetSpec:
        env = tuple(self.s3.env.items()) if self.s3 is not None else ()
        return TargetSpec(self.kind, self.url, self.rtt, env)

    def environment(self) -> contextlib.AbstractContextManager[None]:
        """The SDK environment (endpoint = the counting proxy) while opening s3 logs."""
        return environ(self.s3.env) if self.s3 is not None else contextlib.nullcontext()

    def log(self, writer_id: str, **kwargs: Any) -> Log:
        if self._counter is None:
            with self.environment():
                return Log.open(self.url, writer_id=writer_id, **kwargs)
        return Log([Store(self._counter)], "create", url=self.url, writer_id=writer_id, **kwargs)

    def opened(self, writer_id: str, **kwargs: Any) -> Log:
        """``Log.open`` as a new process does it (the manifest, and the tail hint beside
        it), on this target's counted and delayed store."""
        if self._counter is None:
            with self.environment():
                return Log.open(self.url, writer_id=writer_id, **kwargs)
        return Log.open_on([Store(self._counter)], self.url, writer_id=writer_id, **kwargs)

    def counts(self) -> Counter[str]:
        if self._counter is None:
            counts: Counter[str] = self.s3.proxy.counts()
            return counts
        return billing_kinds(self._counter.snapshot())

    def hint_writes(self) -> int:
        """Tail-hint overwrites among the counted writes (the only overwrites a log does
        outside trim and snapshots)."""
        if self._counter is None:
            return sum(
                1 for m, p in list(self.s3.proxy.requests) if "tail-hint" in p and m == "PUT"
            )
        return self._counter.snapshot()["put:overwrite"]

    def reset(self) -> None:
        if self._counter is not None:
            self._counter.reset()
        elif self.s3 is not None:
            self.s3.proxy.reset()

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _loop(n: int, op: Callable[[int], object]) -> tuple[float, list[float]]:
    """Run ``op(i)`` for i < n; (total wall seconds, per-call latencies)."""
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        op(i)
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - t0, lat


def _result(t: Target, case: str, ops: int, wall: float, lat: list[float], **kw: Any) -> Result:
    return Result(
        "passivepaxos",
        t.kind,
        case,
        ops,
        wall,
        lat,
        t.counts(),
        rtt=t.rtt,
        hint_writes=t.hint_writes(),
        **kw,
    )


# -- single process ---------------------------------------------------------------------------


def append_holder(t: Target, n: int) -> Result:
    """A lease holder appending one 100-byte entry per call: the WALLE fast path."""
    t.fresh()
    with t.log("holder") as log:
        log.claim_writer(300)
        t.reset()
        wall, lat = _loop(n, lambda i: log.append([b"%07d" % i + b"x" * 93]))
        return _result(t, "append (lease holder)", n, wall, lat)


def pipelined_case(depth: int) -> str:
    """The case name of ``pipelined(t, depth, ...)`` (the report looks cases up by it)."""
    return f"append_async, one producer, depth {depth}"


def pipelined(t: Target, depth: int, n: int) -> Result:
    """One producer, one 100-byte entry per call, keeping ``depth`` appends in flight
    (``Log.append_async``; it waits for the oldest future when it has ``depth``): entries
    per second and requests per entry; latency is each entry's call to its ack."""
    t.fresh()
    with t.log("producer") as log:
        log.head()
        t.reset()
        lat: list[float] = []
        inflight: collections.deque[tuple[float, Any]] = collections.deque()

        def settle() -> None:
            sent, fut = inflight.popleft()
            fut.result()
            lat.append(time.perf_counter() - sent)

        t0 = time.perf_counter()
        for i in range(n):
            inflight.append((time.perf_counter(), log.append_async([b"%07d" % i + b"x" * 93])))
            if len(inflight) >= depth:
                settle()
        while inflight:
            settle()
        wall = time.perf_counter() - t0
        return _result(t, pipelined_case(depth), n, wall, lat)


def quorum_case(k: int, kinds: str) -> str:
    """The case name of ``quorum_holder`` (the report looks cases up by it)."""
    return f"append (lease holder, {k}-store quorum: {kinds})"


def quorum_holder(t: Target, k: int, n: int, *, mixed: bool = False) -> Result:
    """A lease holder on a ``k``-store quorum (create mode) of ``t``'s kind appending one
    100-byte entry per call, each store adding the round trip; ``mixed``: ``k - 1`` local
    directories and this s3 or azure target (the multi-cloud case). Requests per slot count
    every store's (the proxy's for s3 and azure)."""
    t.fresh()  # the s3/azure store's log, and the temp dir
    tag = uuid.uuid4().hex[:8]
    if t.kind == "memory":
        locals_ = [f"memory://bench-q{tag}-{i}" for i in range(k)]
    else:
        locals_ = []
        for i in range(k - 1 if mixed else k):
            path = os.path.join(t.scratch(), f"q{tag}-{i}")
            os.makedirs(path)
            locals_.append(f"file://{path}")
    urls = locals_ + ([t.remote_url(f"q{tag}")] if mixed else [])
    url = ",".join(urls)
    with t.environment():
        init_log(url)
        counters = [_counted(u, t.rtt) for u in locals_]
        stores = [Store(c) for c in counters]
        if mixed:
            from passivepaxos.store import open_store

            stores.append(open_store(urls[-1]))
    kinds = ",".join(u.split(":", 1)[0] for u in urls)
    with Log.open_on(stores, url, writer_id="holder") as log:
        log.claim_writer(300)
        for c in counters:
            c.reset()
        t.reset()
        wall, lat = _loop(n, lambda i: log.append([b"%07d" % i + b"x" * 93]))
        counts: Counter[str] = Counter()
        for c in counters:
            counts.update(billing_kinds(c.snapshot()))
        if mixed:
            counts.update(t.counts())
    return Result("passivepaxos", t.kind, quorum_case(k, kinds), n, wall, lat, counts, rtt=t.rtt)


def append_fresh(t: Target, n: int) -> Result:
    """A new Log object per append, as one CLI call or one Lambda invocation does: it must
    find the tail first (hint object + probing)."""
    t.fresh()
    with t.log("seed") as seed:
        for i in range(40):  # a log with history, so tail discovery has work to do
            seed.append([f"s{i}".encode()])
    t.reset()

    def one(i: int) -> None:
        with t.log(f"p{i}") as log:
            log.append([b"%07d" % i + b"x" * 93])

    wall, lat = _loop(n, one)
    return _result(t, "append (fresh process)", n, wall, lat)


def _point_hint(t: Target, slot: int) -> None:
    """Make the tail hint name ``slot``: the hint lag of the fresh-process cases."""
    with t.opened("hinter", hint_every=10**9) as h:  # opened: the hint names the log
        h._tail.write_hint(slot)


def fresh_case(lag: int) -> str:
    return f"append (fresh process, hint {lag} behind)"


def append_fresh_lag(t: Target, lag: int, n: int) -> Result:
    """A new ``Log.open`` per append (a CLI call, a Lambda invocation), the tail hint
    ``lag`` slots behind the tail before each one: manifest and hint, tail discovery, the
    create. Requests and latency of the ``n`` appends only (the hint is reset between)."""
    t.fresh()
    with t.log("seed", hint_every=10**9) as seed:
        for i in range(lag + 40):  # the hinted slot is never slot 0 (listed from the start)
            seed.append([f"s{i}".encode()])
        tail = seed.head()
    counts: Counter[str] = Counter()
    hints = 0
    lat: list[float] = []
    for i in range(n):
        _point_hint(t, tail - lag)
        t.reset()
        t0 = time.perf_counter()
        with t.opened(f"p{i}") as log:
            tail = log.append([b"%07d" % i + b"x" * 93])[0]
        lat.append(time.perf_counter() - t0)
        counts += t.counts()
        hints += t.hint_writes()
    return Result(
        "passivepaxos",
        t.kind,
        fresh_case(lag),
        n,
        sum(lat),
        lat,
        counts,
        rtt=t.rtt,
        hint_writes=hints,
        note="requests: manifest + hint, LIST (or probes), the tail and its predecessor, create",
    )


def append_warm(t: Target, n: int) -> Result:
    """A new ``Log.open`` per append on a warm machine (``tail_cache``: a reused Lambda
    container, the next CLI call): manifest and create when nobody else wrote."""
    t.fresh()
    cache = MemoryTailCache()
    with t.opened("w-cold", tail_cache=cache) as log:
        for i in range(40):
            log.append([f"s{i}".encode()])
    t.reset()

    def one(i: int) -> None:
        with t.opened(f"w{i}", tail_cache=cache) as log:
            log.append([b"%07d" % i + b"x" * 93])

    wall, lat = _loop(n, one)
    return _result(t, "append (warm start, tail cache)", n, wall, lat)


class _Stepped(RealRuntime):
    """The production runtime with a monotonic clock the caller moves (a low-rate writer's
    hours, run in a moment: only the clock-driven choices see the time)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def holder_low_rate(t: Target, n: int, every: float = 5.0) -> Result:
    """A lease holder appending once every ``every`` seconds (its clock stepped, not
    slept): requests per entry, the hint included (never written on a timer alone)."""
    t.fresh()
    clock = _Stepped()
    with t.opened("slow", runtime=clock) as log:
        log.claim_writer(3600)
        t.reset()

        def one(i: int) -> None:
            clock.now += every
            log.append([b"%07d" % i + b"x" * 93])

        wall, lat = _loop(n, one)
    return _result(t, f"append (lease holder, one per {every:g} s)", n, wall, lat)


CLI_CASE = "CLI append (new process)"
PLAIN_CASE = "one put_object script (new process)"
_PLAIN = (
    "import sys, boto3\n"
    "boto3.client('s3').put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=b'x' * 100)\n"
)


def _bytecode() -> None:
    """Compile the package's bytecode, as ``pip install`` does (boto3's is compiled): a
    checkout run with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module
    from source in each CLI process (~45 ms here), which no installed CLI pays."""
    import compileall

    import passivepaxos

    for where in passivepaxos.__path__:
        with contextlib.suppress(OSError):  # read-only: pip compiled it at install
            compileall.compile_dir(where, quiet=1)


def cli_wall(t: Target, n: int) -> list[Result]:
    """``passivepaxos append s3://...`` as a new process, beside a plain Python script doing
    one boto3 ``put_object`` (the least a process that writes to S3 pays: interpreter,
    boto3 import, client, one request), alternating, through the same proxy: the wall
    time of each process, and its requests."""
    if t.kind != "s3":
        raise ValueError("the CLI case runs on s3 only")
    _bytecode()
    t.fresh()
    with t.opened("seed") as seed:  # a log with history, its hint where writers left it
        for i in range(40):
            seed.append([f"s{i}".encode()])
    env = {**os.environ, **t.s3.env}
    bucket = t.url.split("/")[2]
    runs: dict[str, tuple[list[float], Counter[str]]] = {
        CLI_CASE: ([], Counter()),
        PLAIN_CASE: ([], Counter()),
    }
    for i in range(n):
        for case, cmd in (
            (PLAIN_CASE, [sys.executable, "-c", _PLAIN, bucket, f"plain/{i}"]),
            (CLI_CASE, [sys.executable, "-m", "passivepaxos", "append", t.url, f"v{i:07d}"]),
        ):
            t.reset()
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
            runs[case][0].append(time.perf_counter() - t0)
            runs[case][1].update(t.counts())
    out = []
    for case, (lat, counts) in runs.items():
        system = "passivepaxos" if case == CLI_CASE else "boto3"
        out.append(Result(system, "s3", case, n, sum(lat), lat, counts, rtt=t.rtt))
    return out


def kv_cases(t: Target, n: int) -> list[Result]:
    """KV put (durable when it returns), get by lease read, get through the log."""
    from passivepaxos.recipes.kv import KV

    t.fresh()
    out: list[Result] = []
    with t.log("kv") as log:
        log.claim_writer(300)
        kv = KV(log)
        t.reset()
        wall, lat = _loop(n, lambda i: kv.put(f"k{i % 100}", b"v" * 100))
        out.append(_result(t, "kv put", n, wall, lat))
        for via_lease in (True, False):
            kv.lease_reads = via_lease
            t.reset()
            wall, lat = _loop(n, lambda i: kv.get(f"k{i % 100}"))
            name = "kv get (lease read)" if via_lease else "kv get (through the log)"
            out.append(_result(t, name, n, wall, lat))
    return out


def lock_cycle(t: Target, n: int) -> Result:
    """Acquire then release one lock: one op = the pair."""
    from passivepaxos.recipes.lock import Locks

    t.fresh()
    with t.log("locker") as log:
        locks = Locks(log)
        locks.acquire("warm", 30)
        locks.release("warm")
        t.reset()

        def cycle(i: int) -> None:
            locks.acquire(f"job-{i % 10}", 30)
            locks.release(f"job-{i % 10}")

        wall, lat = _loop(n, cycle)
        return _result(t, "lock acquire+release", n, wall, lat)


def catch_up(t: Target, entries: int, per_slot: int) -> list[Result]:
    """A lease holder writes ``entries`` in appends of ``per_slot``; then a new reader
    reads them all (hash chain and checksums verified, as every read does)."""
    t.fresh()
    out: list[Result] = []
    value = b"y" * 100
    with t.log("bulk") as log:
        log.claim_writer(600)
        t.reset()
        t0 = time.perf_counter()
        for _ in range(entries // per_slot):
            log.append([value] * per_slot)
        wall = time.perf_counter() - t0
        out.append(
            _result(
                t, f"bulk append ({per_slot}/slot)", entries // per_slot, wall, [], entries=entries
            )
        )
    t.reset()
    t0 = time.perf_counter()
    with t.log("reader") as reader:
        got = sum(1 for _ in reader.read())
    wall = time.perf_counter() - t0
    if got != entries:
        raise AssertionError(f"catch-up read {got} entries, expected {entries}")
    out.append(
        _result(
            t, f"catch-up read ({per_slot}/slot)", entries // per_slot, wall, [], entries=entries
        )
    )
    return out


def cpu_throughput(batch: int, entries: int) -> Result:
    """Client CPU per entry on memory:// (no injected latency): the library's own cost."""
    t = Target("memory", 0.0)
    t.fresh()
    with t.log("cpu") as log:
        log.claim_writer(300)
        vals = [b"z" * 100] * batch
        t.reset()
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(entries // batch):
            log.append(vals)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        n = entries // batch
        return _result(t, f"cpu: append {batch}/call", n, wall, [], entries=n * batch, cpu=cpu)


def group_commit(t: Target, threads: int, seconds: float) -> Result:
    """``threads`` threads appending one entry each call through one Log: group commit
    batches what queues up behind a slot write."""
    t.fresh()
    with t.log("gc") as log:
        log.claim_writer(300)
        t.reset()
        lat: list[float] = []
        mu = threading.Lock()
        stop = time.monotonic() + seconds

        def run() -> None:
            mine: list[float] = []
            while time.monotonic() < stop:
                t1 = time.perf_counter()
                log.append([b"g" * 100])
                mine.append(time.perf_counter() - t1)
            with mu:
                lat.extend(mine)

        ths = [threading.Thread(target=run) for _ in range(threads)]
        t0 = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        wall = time.perf_counter() - t0
        r = _result(t, f"group commit, {threads} threads", len(lat), wall, lat)
        r.entries = len(lat)
        return r


def failover(t: Target, ttl: float) -> Result:
    """A holder stops without releasing; the time from the start of its last successful
    write to a waiting claimant's granted claim (``ops`` = 1, ``wall`` = that time), and
    the claimant's requests from then on (the holder's, and what the claimant spent while
    the holder was alive, are not counted). A holder stalled past its ttl on a loaded
    machine loses the lease early: then the time counts from its last write that landed,
    and the note says so."""
    t.fresh()
    with t.log("h") as h, t.log("c") as c:
        h.claim_writer(ttl)
        got: dict[str, float] = {}

        def claim() -> None:
            c.claim_writer(ttl)
            got["at"] = time.perf_counter()

        th = threading.Thread(target=claim)
        th.start()
        last = time.perf_counter()
        note = ""
        for i in range(10):
            started = time.perf_counter()
            try:
                h.append([f"h{i}".encode()])
            except LeaseLostError:
                note = f"the holder stalled: lease lost at its append {i}"
                break
            last = started
            if i == 9:  # the holder's last write: it dies now
                t.reset()
            time.sleep(ttl / 25)
        th.join()
        took = got["at"] - last
        return _result(t, f"failover (ttl {ttl:g} s)", 1, took, [took], note=note)


def lock_takeover(t: Target, ttl: float) -> Result:
    """A lock holder dies; a waiter already waiting takes the lock over once it stayed
    unrefreshed for the ttl: its requests from the holder's last write to the grant
    (``ops`` = 1, ``wall`` = that time). About ten reads per ttl up to a 10 s ttl, one a
    second beyond (``lease.poll_pause``)."""
    from passivepaxos.recipes.lock import Locks

    t.fresh()
    with t.log("a") as la, t.log("b") as lb:
        Locks(la, owner="A").acquire("job", ttl)
        waiter = Locks(lb, owner="B")
        waiter.status("job")  # already watching when the holder dies
        t.reset()
        t0 = time.perf_counter()
        waiter.acquire("job", ttl, wait=float("inf"))
        took = time.perf_counter() - t0
        return _result(t, f"lock takeover (ttl {ttl:g} s)", 1, took, [took])


# -- several OS processes ---------------------------------------------------------------------


def _appender(
    spec: TargetSpec, name: str, seconds: float, ready: Any, go: Any, q: Any, forward: bool
) -> None:
    """One contending appender process: appends one entry per call for ``seconds``."""
    os.environ.update(dict(spec.env))
    counter: CountingBackend | None = None
    if spec.kind in PROXIED:
        log = Log.open(spec.url, writer_id=name, forward=forward)
    else:
        counter = _counted(spec.url, spec.rtt)
        log = Log([Store(counter)], "create", url=spec.url, writer_id=name, forward=forward)
    log.head()  # find the tail before the clock starts, like a warm worker
    if counter is not None:
        counter.reset()
    ready.put(name)
    go.wait()
    lat: list[float] = []
    acked: list[float] = []  # when each append returned, seconds after the start
    start = time.perf_counter()
    stop = start + seconds
    while (t1 := time.perf_counter()) < stop:
        log.append([f"{name}-{len(lat):07d}".encode().ljust(100, b".")])
        t2 = time.perf_counter()
        lat.append(t2 - t1)
        acked.append(t2 - start)
    log.close()
    q.put((name, lat, dict(billing_kinds(counter.snapshot())) if counter else None, acked))


def contended_case(processes: int, forward: bool = False) -> str:
    """The case name of ``contended(t, processes, ...)`` (the report looks cases up by it)."""
    return f"contended append, {processes} processes" + (", forwarding" if forward else "")


def contended(t: Target, processes: int, seconds: float, *, forward: bool = False) -> Result:
    """``processes`` OS processes appending concurrently without a lease (closed loop, one
    entry per call): aggregate committed entries/s, requests/entry, fairness. ``forward``:
    each ``Log`` forwards under contention (passivepaxos.log.forward)."""
    if t.kind == "memory":
        raise ValueError("memory:// lives in one process: contended appenders need file or s3")
    t.fresh()
    ctx = multiprocessing.get_context("spawn")
    ready, q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_appender, args=(t.spec(), f"w{j}", seconds, ready, go, q, forward))
        for j in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        t.reset()
        go.set()
        results = [q.get(timeout=120 + seconds) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    lat = [x for _, lats, _, _ in results for x in lats]
    per = sorted(len(lats) for _, lats, _, _ in results)
    timeline = [0] * max(1, math.ceil(seconds))
    late = 0  # appends in flight at the stop, acknowledged after it
    for _, _, _, acked in results:
        for at in acked:
            if at >= seconds:
                late += 1
            else:
                timeline[int(at)] += 1
    counts: Counter[str] = Counter()
    if t.kind in PROXIED:
        counts = t.counts()
    else:
        for _, _, c, _ in results:
            counts.update(c or {})
    return Result(
        "passivepaxos",
        t.kind,
        contended_case(processes, forward),
        len(lat),
        seconds,
        lat,
        counts,
        entries=len(lat),
        rtt=t.rtt,
        note=f"acks per process min {per[0]} / max {per[-1]}; {late} acked after the end",
        timeline=timeline,
        acks=per,
    )
