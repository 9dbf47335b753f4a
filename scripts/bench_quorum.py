"""The lease holder on 3- and 5-store quorums alone (the bench's ``quorum_holder`` case),
without the other 17 minutes of ``scripts/bench.py``: requests per slot and p50 latency
in round trips, on memory:// and file:// stores with an injected round trip.

``.venv/bin/python scripts/bench_quorum.py [--n 50] [--rtt-ms 10]``
"""

from __future__ import annotations

import argparse

from passivepaxos.bench import workloads as w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50, help="appends per case")
    ap.add_argument("--rtt-ms", type=float, default=10.0)
    args = ap.parse_args()
    rtt = args.rtt_ms / 1000
    for kind in ("memory", "file"):
        t = w.Target(kind, rtt)
        try:
            for k in (3, 5):
                r = w.quorum_holder(t, k, args.n)
                p50 = w.pct(r.latencies, 0.5)  # the bench report's quantile
                print(
                    f"{kind}, {k} stores: {r.requests_per_op:.2f} requests per slot "
                    f"{dict(sorted(r.requests.items()))} over {r.ops} appends; "
                    f"p50 {p50 * 1000:.1f} ms = {p50 / rtt:.2f} round trips"
                )
        finally:
            t.close()


if __name__ == "__main__":
    main()
