"""Benchmark of the shared log and its writer lease (a script, not a timed test).

Measures, on in-memory stores wrapped in ``CountingBackend`` (requests counted at the
request level, read-backs and retries included) and ``LatencyBackend`` (one injected round
trip of ``--rtt`` seconds per request):

1. storage requests per committed entry: a lease holder, a long-lived appender without a
   lease, a fresh process per append (CLI-like: finds the tail first), and 4 contending
   appenders without a lease (one entry per append, so entries = slots); tail-hint
   overwrites are counted apart;
2. append latency p50/p99 in round trips (latency / rtt) for the same cases;
3. throughput with 1/4/16 appender threads sharing one Log object (group commit);
4. failover: a holder stops without releasing; a waiting claimant's time from the start of
   the holder's last write to its own granted claim (real time, ttl ``--ttl``), on
   memory:// and file://.

Run from a checkout: ``python scripts/bench_log.py [--rtt 0.01] [--n 200] [--ttl 0.5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passivepaxos.urls import use_source_backends  # noqa: E402

use_source_backends()

from passivepaxos.log import Log  # noqa: E402
from passivepaxos.manifest import init_log  # noqa: E402
from passivepaxos.store import Store  # noqa: E402
from passivepaxos.urls import open_backend  # noqa: E402
from passivepaxos.wrappers import CountingBackend, LatencyBackend  # noqa: E402


def fresh_url() -> str:
    url = f"memory://bench-{uuid.uuid4().hex[:10]}"
    init_log(url)
    return url


def make(url: str, rtt: float, name: str, counting: CountingBackend | None = None) -> Log:
    backend = counting or CountingBackend(LatencyBackend(open_backend(url), rtt))
    return Log([Store(backend)], "create", url=url, writer_id=name)


def backend(url: str, rtt: float) -> CountingBackend:
    return CountingBackend(LatencyBackend(open_backend(url), rtt))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


Case = tuple[str, Counter[str], int, list[float]]


def timed(fn: Callable[[], object], lat: list[float]) -> None:
    t = time.perf_counter()
    fn()
    lat.append(time.perf_counter() - t)


def case_holder(n: int, rtt: float) -> Case:
    url = fresh_url()
    c = backend(url, rtt)
    lat: list[float] = []
    with make(url, rtt, "holder", c) as log:
        log.claim_writer(60)
        c.reset()
        for i in range(n):
            timed(lambda i=i: log.append([f"e{i}".encode()]), lat)
        counts = Counter(c.counts)
    return "lease holder", counts, n, lat


def case_plain(n: int, rtt: float) -> Case:
    url = fresh_url()
    c = backend(url, rtt)
    lat: list[float] = []
    with make(url, rtt, "plain", c) as log:
        log.append([b"warm-up"])
        c.reset()
        for i in range(n):
            timed(lambda i=i: log.append([f"e{i}".encode()]), lat)
        counts = Counter(c.counts)
    return "no lease, long-lived appender", counts, n, lat


def case_fresh(n: int, rtt: float) -> Case:
    url = fresh_url()
    c = backend(url, rtt)
    lat: list[float] = []
    with make(url, rtt, "seed", c) as log:
        for i in range(40):  # a log that is not empty (tail discovery has work to do)
            log.append([f"s{i}".encode()])
    c.reset()
    for i in range(n):

        def one(i: int = i) -> None:
            with make(url, rtt, f"p{i}", c) as log:
                log.append([f"e{i}".encode()])

        timed(one, lat)
    return "no lease, fresh process per append", Counter(c.counts), n, lat


def case_contended(n: int, rtt: float, k: int = 4) -> Case:
    url = fresh_url()
    c = backend(url, rtt)
    lat: list[float] = []
    lock = threading.Lock()
    logs = [make(url, rtt, f"w{j}", c) for j in range(k)]
    logs[0].append([b"warm-up"])
    for log in logs[1:]:
        log.head()
    c.reset()
    barrier = threading.Barrier(k)

    def run(j: int) -> None:
        barrier.wait()
        mine: list[float] = []
        for i in range(n // k):
            timed(lambda i=i: logs[j].append([f"w{j}-{i}".encode()]), mine)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run, args=(j,)) for j in range(k)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for log in logs:
        log.close()
    return f"no lease, {k} contending appenders", Counter(c.counts), k * (n // k), lat


def requests_and_latency(n: int, rtt: float) -> None:
    print(f"## Requests per committed entry and latency (rtt {rtt * 1000:g} ms, {n} appends)\n")
    print("| case | requests/entry | creates | gets | hint overwrites | p50 (RTT) | p99 (RTT) |")
    print("|---|---|---|---|---|---|---|")
    for fn in (case_holder, case_plain, case_fresh, case_contended):
        name, counts, entries, lat = fn(n, rtt)
        hints = counts.pop("put:overwrite", 0)
        total = sum(counts.values())
        print(
            f"| {name} | {total / entries:.2f} | {counts['put:create'] / entries:.2f} | "
            f"{counts['get'] / entries:.2f} | {hints} | {pct(lat, 0.5) / rtt:.2f} | "
            f"{pct(lat, 0.99) / rtt:.2f} |"
        )
    print(
        "\nrequests/entry excludes the tail-hint overwrites (counted apart: at most one per "
        "32 slots, at most one per second per process).\n"
    )


def throughput(rtt: float, seconds: float) -> None:
    print(f"## Throughput, one Log object, group commit (rtt {rtt * 1000:g} ms, {seconds:g} s)\n")
    print("| appender threads | lease | entries/s | entries per slot | requests per entry |")
    print("|---|---|---|---|---|")
    for lease in (True, False):
        for threads in (1, 4, 16):
            url = fresh_url()
            c = backend(url, rtt)
            with make(url, rtt, "tp", c) as log:
                if lease:
                    log.claim_writer(60)
                else:
                    log.append([b"warm-up"])
                c.reset()
                start_slots = log.slot_writes
                stop = time.monotonic() + seconds
                count = [0] * threads

                def run(j: int, stop: float = stop, count: list[int] = count) -> None:
                    while time.monotonic() < stop:
                        log.append([b"x" * 100])
                        count[j] += 1

                ths = [threading.Thread(target=run, args=(j,)) for j in range(threads)]
                t0 = time.monotonic()
                for th in ths:
                    th.start()
                for th in ths:
                    th.join()
                elapsed = time.monotonic() - t0
                slots = log.slot_writes - start_slots
                total = sum(count)
                reqs = sum(n for op, n in c.counts.items() if op != "put:overwrite")
            print(
                f"| {threads} | {'holder' if lease else 'none'} | {total / elapsed:.0f} | "
                f"{total / max(1, slots):.1f} | {reqs / max(1, total):.2f} |"
            )
    print()


def failover(ttl: float, runs: int) -> None:
    print(f"## Failover (ttl {ttl:g} s, real time, {runs} runs per store)\n")
    print("| store | min (s) | median (s) | max (s) |")
    print("|---|---|---|---|")
    for kind in ("memory", "file"):
        times: list[float] = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as d:
                url = fresh_url() if kind == "memory" else Path(d).as_uri()
                if kind == "file":
                    init_log(url)
                with Log.open(url, writer_id="h") as h, Log.open(url, writer_id="c") as c:
                    h.claim_writer(ttl)
                    got: dict[str, float] = {}

                    def claim(c: Log = c, got: dict[str, float] = got) -> None:
                        c.claim_writer(ttl)
                        got["at"] = time.monotonic()

                    th = threading.Thread(target=claim)
                    th.start()
                    last = 0.0
                    for i in range(10):
                        last = time.monotonic()
                        h.append([f"h{i}".encode()])
                        time.sleep(0.02)
                    th.join()
                    times.append(got["at"] - last)
        print(
            f"| {kind}:// | {min(times):.3f} | {statistics.median(times):.3f} | {max(times):.3f} |"
        )
    print(
        "\nFailover = from the start of the holder's last successful write to the claimant's "
        "granted claim: the claimant learns that write within one poll (every TTL/10), "
        "waits a TTL of its own clock from then, and claims with one create.\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtt", type=float, default=0.01, help="injected round trip (s)")
    ap.add_argument("--n", type=int, default=200, help="appends per request/latency case")
    ap.add_argument("--seconds", type=float, default=2.0, help="per throughput case")
    ap.add_argument("--ttl", type=float, default=0.5, help="lease ttl for failover (s)")
    ap.add_argument("--runs", type=int, default=5, help="failover runs per store")
    args = ap.parse_args()
    requests_and_latency(args.n, args.rtt)
    throughput(args.rtt, args.seconds)
    failover(args.ttl, args.runs)


if __name__ == "__main__":
    main()
