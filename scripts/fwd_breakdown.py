"""Where forwarding's requests go: K spawned processes forwarding (``Log(forward=True)``)
on a fresh file:// log, 10 ms added to every request, for S seconds; each request is
attributed to the innermost library methods on its stack, and the fold offsets (slot of
the record holding a parcel minus its base) are counted. Usage, from a checkout with its
venv: ``.venv/bin/python scripts/fwd_breakdown.py [K] [S]`` (default 16 processes, 8 s)."""

from __future__ import annotations

import collections
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, ROOT)
_OWN = ("passivepaxos/log/", "passivepaxos/manifest")
_PLUMBING = ("slots.py", "config.py", "context.py")


def _tag() -> str:
    names: list[str] = []
    for fr in reversed(traceback.extract_stack(limit=40)[:-3]):
        if any(o in fr.filename for o in _OWN) and not any(p in fr.filename for p in _PLUMBING):
            names.append(f"{os.path.basename(fr.filename)[:-3]}:{fr.name}")
            if len(names) == 3:
                break
    return " < ".join(names) or "?"


def worker(url: str, name: str, secs: float, q: Any, go: Any) -> None:
    sys.path.insert(0, ROOT)
    from passivepaxos import wrappers
    from passivepaxos.bench.workloads import _counted
    from passivepaxos.log import Log, forward
    from passivepaxos.store import Store

    tags: collections.Counter[tuple[str, str]] = collections.Counter()
    offsets: collections.Counter[int] = collections.Counter()
    count = wrappers.CountingBackend._count

    def counted(self: Any, op: str) -> None:
        tags[(op, _tag())] += 1
        count(self, op)

    wrappers.CountingBackend._count = counted  # type: ignore[method-assign]
    settle = forward.Forwarder.settle

    def settled(self: Any, base: int, fid: str, *a: Any) -> Any:
        got = settle(self, base, fid, *a)
        offsets[got[0].slot - base] += 1
        return got

    forward.Forwarder.settle = settled  # type: ignore[method-assign]
    log = Log([Store(_counted(url, 0.010))], "create", url=url, writer_id=name, forward=True)
    log.head()
    tags.clear()
    go.wait()
    n, stop = 0, time.perf_counter() + secs
    while time.perf_counter() < stop:
        log.append([f"{name}-{n}".encode().ljust(100, b".")])
        n += 1
    log.close()
    q.put((n, dict(tags), dict(offsets)))


def main() -> None:
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
    from passivepaxos.manifest import init_log

    url = Path(tempfile.mkdtemp(prefix="ppx-fwd-")).as_uri()
    init_log(url, "create")
    ctx = multiprocessing.get_context("spawn")
    q, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(url, f"w{j}", secs, q, go)) for j in range(k)]
    for p in procs:
        p.start()
    time.sleep(3)
    go.set()
    results = [q.get(timeout=200) for _ in procs]
    for p in procs:
        p.join()
    entries = sum(n for n, _, _ in results)
    total: collections.Counter[tuple[str, str]] = collections.Counter()
    offsets: collections.Counter[int] = collections.Counter()
    for _, t, o in results:
        total.update(t)
        offsets.update(o)
    print(
        f"{k} processes, {secs:g} s: {entries} entries, "
        f"{sum(total.values()) / entries:.2f} requests per entry"
    )
    print("fold offsets (slot - base: parcels):", dict(sorted(offsets.items())))
    for (op, tag), v in total.most_common(20):
        print(f"  {v / entries:6.3f}  {op:13s} {tag}")


if __name__ == "__main__":
    main()
