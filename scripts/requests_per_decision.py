"""Storage requests per consensus decision, counted at request level with ``CountingBackend``.

Every store is ``Store(CountingBackend(open_backend("memory://...")))``, so the counts
include the store's own read-backs and retries (none happen on a fault-free memory store).
Scenarios, per mode (``create``: passive Paxos, ``blocks``: Disk Paxos) and store count:

- ``first``: the first proposer of a fresh instance, uncontended;
- ``second``: another proposer after the instance is decided;
- ``learn``: ``driver.learn`` after the decision;
- ``leader``: a leader's ACCEPT (``lead=True``) on another fresh instance (ignored in
  blocks mode and on one store, where it is ``first``), and ``leader learn`` after it;
- ``race``: 3 proposers started together on threads, a fresh instance per run; the
  figure is the mean over runs of all requests the 3 proposers made (one decision).

Run from a checkout: ``python scripts/requests_per_decision.py [--runs 20] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passivepaxos.consensus import driver  # noqa: E402
from passivepaxos.store import Store  # noqa: E402
from passivepaxos.urls import open_backend  # noqa: E402
from passivepaxos.wrappers import CountingBackend  # noqa: E402

OPS = ["get", "put:create", "put:update", "put:overwrite", "list"]
MODES = ["create", "cas", "blocks"]
STORE_COUNTS = [1, 3, 5]
SCENARIOS = ["first", "second", "learn", "race"]
RACERS = 3


def make_stores(n: int) -> tuple[list[Store], list[CountingBackend]]:
    tag = uuid.uuid4().hex[:8]
    counters = [CountingBackend(open_backend(f"memory://rpd-{tag}-{i}")) for i in range(n)]
    return [Store(c) for c in counters], counters


def total(counters: list[CountingBackend]) -> Counter[str]:
    out: Counter[str] = Counter()
    for c in counters:
        out.update(c.counts)
    return out


def reset(counters: list[CountingBackend]) -> None:
    for c in counters:
        c.reset()


def sequential(mode: str, n: int, seed: int) -> dict[str, Counter[str]]:
    """first, second and learn on one fresh instance; leader and its learn on another."""
    stores, counters = make_stores(n)
    out: dict[str, Counter[str]] = {}
    rng = random.Random(seed)
    assert driver.propose(stores, "i", b"alpha", "p1", mode, rng=rng) == b"alpha"
    out["first"] = total(counters)
    reset(counters)
    assert driver.propose(stores, "i", b"beta", "p2", mode, rng=rng) == b"alpha"
    out["second"] = total(counters)
    reset(counters)
    assert driver.learn(stores, "i", mode) == b"alpha"
    out["learn"] = total(counters)
    reset(counters)
    # a leader's ACCEPT on a fresh instance (ignored in blocks mode and on one store)
    assert driver.propose(stores, "j", b"gamma", "p3", mode, rng=rng, lead=True) == b"gamma"
    out["leader"] = total(counters)
    reset(counters)
    assert driver.learn(stores, "j", mode) == b"gamma"
    out["leader learn"] = total(counters)
    return out


def race(mode: str, n: int, seed: int) -> Counter[str]:
    """RACERS proposers on threads, released together; all their requests."""
    stores, counters = make_stores(n)
    out: dict[int, bytes] = {}
    start = threading.Barrier(RACERS)

    def go(i: int) -> None:
        start.wait()
        out[i] = driver.propose(
            stores, "race", f"v{i}".encode(), f"p{i}", mode, rng=random.Random(seed * 100 + i)
        )

    threads = [threading.Thread(target=go, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(out) != RACERS or len(set(out.values())) != 1:
        raise SystemExit(f"race did not agree: {out}")
    return total(counters)


def measure(runs: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for mode in MODES:
        for n in STORE_COUNTS:
            seq = sequential(mode, n, seed=1)
            for sc in ("first", "second", "learn", "leader", "leader learn"):
                c = seq[sc]
                rows.append(
                    {
                        "mode": mode,
                        "stores": n,
                        "scenario": sc,
                        "runs": 1,
                        **{op: float(c.get(op, 0)) for op in OPS},
                        "total": float(sum(c.get(op, 0) for op in OPS)),
                        "min_total": None,
                        "max_total": None,
                    }
                )
            acc: Counter[str] = Counter()
            totals: list[int] = []
            for r in range(runs):
                c = race(mode, n, seed=r)
                acc.update(c)
                totals.append(sum(c.get(op, 0) for op in OPS))
            rows.append(
                {
                    "mode": mode,
                    "stores": n,
                    "scenario": "race",
                    "runs": runs,
                    **{op: acc.get(op, 0) / runs for op in OPS},
                    "total": sum(totals) / runs,
                    "min_total": min(totals),
                    "max_total": max(totals),
                }
            )
    return rows


def fmt(x: object) -> str:
    if x is None:
        return ""
    assert isinstance(x, int | float)
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def markdown(rows: list[dict[str, object]]) -> str:
    head = ["mode", "stores", "scenario", *OPS, "total", "race min..max"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rng = f"{r['min_total']}..{r['max_total']}" if r["min_total"] is not None else ""
        cells = [str(r["mode"]), str(r["stores"]), str(r["scenario"])]
        cells += [fmt(r[op]) for op in OPS] + [fmt(r["total"]), rng]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=20, help="contended runs per configuration")
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = ap.parse_args(argv)
    rows = measure(args.runs)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(markdown(rows))
        print(f"\nrace: mean over {args.runs} runs of all requests of {RACERS} proposers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
