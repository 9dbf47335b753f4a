"""``driver.propose`` / ``driver.learn`` over real stores (memory:// and file://)."""

from __future__ import annotations

import dataclasses
import random
import threading
import uuid
from pathlib import Path

import pytest

from passivepaxos.capabilities import Capabilities
from passivepaxos.consensus import core, driver
from passivepaxos.errors import QuorumError, UnsupportedError
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend, FaultPlan, FaultyBackend

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, resolve_attempts=2)
MODES = ["create", "cas", "blocks"]


def store(url: str) -> Store:
    return Store(open_backend(url), retry=FAST)


def three(tmp_path: Path, broken: int) -> list[Store]:
    """memory://, file://dir, file://dir with the last ``broken`` replaced by plain files."""
    urls = [f"memory://cons-{uuid.uuid4().hex[:8]}"]
    for i in range(2):
        d = tmp_path / f"s{i}"
        d.mkdir()
        urls.append(d.as_uri())
    for i in range(broken):
        plain = tmp_path / f"plain{i}"
        plain.write_text("not a directory")
        urls[-1 - i] = plain.as_uri()
    return [store(u) for u in urls]


@pytest.mark.parametrize("mode", MODES)
def test_decides_with_one_broken_store(tmp_path: Path, mode: str) -> None:
    stores = three(tmp_path, broken=1)
    assert driver.learn(stores, "i1", mode) is None
    assert driver.propose(stores, "i1", b"alpha", "p1", mode) == b"alpha"
    assert driver.propose(stores, "i1", b"beta", "p2", mode) == b"alpha"
    assert driver.learn(stores, "i1", mode) == b"alpha"


@pytest.mark.parametrize("mode", MODES)
def test_two_broken_stores_is_a_quorum_error(tmp_path: Path, mode: str) -> None:
    stores = three(tmp_path, broken=2)
    with pytest.raises(QuorumError) as info:
        driver.propose(stores, "i1", b"alpha", "p1", mode, sleep=lambda _: None)
    msg = str(info.value)
    assert (
        stores[1].url in msg
        and stores[2].url in msg
        and stores[0].url not in msg.split("unreachable:")[1]
    )


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_proposers_agree(tmp_path: Path, mode: str) -> None:
    stores = three(tmp_path, broken=0)
    out: dict[int, bytes] = {}

    def go(i: int) -> None:
        out[i] = driver.propose(
            stores, "race", f"v{i}".encode(), f"p{i}", mode, rng=random.Random(i)
        )

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out.values())) == 1 and len(out) == 4
    assert driver.learn(stores, "race", mode) == out[0]


def test_fast_path_is_one_create() -> None:
    counting = CountingBackend(open_backend(f"memory://fast-{uuid.uuid4().hex[:8]}"))
    s = Store(counting)
    assert driver.propose([s], "i", b"x", "p1") == b"x"
    assert dict(counting.counts) == {"put:create": 1}


@pytest.mark.parametrize(("n", "expected"), [(1, {"put:create": 1}), (3, None)])
def test_cas_uncontended_requests(n: int, expected: dict[str, int] | None) -> None:
    """1 store: the fast path, one create. n >= 3: n creates (PREPARE, creating each list
    object) with n marker reads in the same batch, n swaps (ACCEPT), n marker overwrites; a
    late proposer's phase 1 finds the DECIDED marker (n lost creates with their n
    read-backs, the PREPAREs appended on top, n marker reads) and returns it: no ACCEPT,
    no marker write."""
    counting = [
        CountingBackend(open_backend(f"memory://cas-{uuid.uuid4().hex[:8]}")) for _ in range(n)
    ]
    stores = [Store(c) for c in counting]

    def counts() -> dict[str, int]:
        out: dict[str, int] = {}
        for c in counting:
            for k, v in c.counts.items():
                out[k] = out.get(k, 0) + v
            c.reset()
        return out

    assert driver.propose(stores, "i", b"x", "p1", "cas") == b"x"
    assert counts() == (
        expected or {"put:create": n, "get": n, "put:update": n, "put:overwrite": n}
    )
    assert driver.propose(stores, "i", b"y", "p2", "cas") == b"x"
    if n > 1:
        assert counts() == {"put:create": n, "get": 2 * n, "put:update": n}


def test_cas_list_is_one_object_per_store_with_unique_ids(tmp_path: Path) -> None:
    stores = three(tmp_path, broken=0)
    assert driver.propose(stores, "one", b"alpha", "p1", "cas") == b"alpha"
    for s in stores:
        keys = sorted(m.key for m in s.list("one/"))
        assert keys == ["one/decided", "one/list"]
        got = s.get("one/list")
        assert got is not None
        raw = core.decode_cas_list(got[0])
        assert raw is not None and [e["k"] for e in raw] == ["P", "A"]
        assert len({e["u"] for e in raw}) == 2
    # no decided marker: learn replays the cas lists (exact)
    for s in stores:
        s.delete("one/decided")
    assert driver.learn(stores, "one", "cas") == b"alpha"


def test_cas_unclear_append_is_resolved_by_reading_the_list() -> None:
    """A swap whose answer is lost after it took effect: the proposer finds its own uid in
    the list and counts it, instead of appending again or giving up."""
    inner = [open_backend(f"memory://casamb-{uuid.uuid4().hex[:8]}") for _ in range(3)]
    faulty = [FaultyBackend(b, FaultPlan()) for b in inner]
    stores = [Store(f, retry=RetryPolicy(attempts=1, resolve_attempts=1)) for f in faulty]
    # store 0: the PREPARE create lands but its answer is lost, and the store's own
    # read-back fails too, so the core sees an unresolved ambiguity
    faulty[0].script("after", "before")
    assert driver.propose(stores, "amb", b"v", "p1", "cas", sleep=lambda _: None) == b"v"
    got = stores[0].get("amb/list")
    assert got is not None
    raw = core.decode_cas_list(got[0])
    assert raw is not None and [e["k"] for e in raw] == ["P", "A"]  # no duplicate PREPARE


def test_cas_mode_needs_cas_and_create() -> None:
    class NoCreate(Store):
        @property
        def capabilities(self) -> Capabilities:
            return dataclasses.replace(super().capabilities, create=False)

    s = NoCreate(open_backend(f"memory://nc-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(UnsupportedError) as info:
        driver.propose([s], "i", b"x", "p1", "cas")
    assert info.value.capability == "create-if-absent"


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_callers_reusing_a_proposer_id_still_agree(mode: str) -> None:
    """Two calls with the same id, stepped in lockstep: ballots must still be unique."""
    stores = [Store(open_backend(f"memory://{uuid.uuid4().hex}")) for _ in range(3)]
    names = [s.url for s in stores]
    gens = {
        "A": core.passive_proposer(names, "i", b"vA", "p", random.Random(1), mode=mode),
        "B": core.passive_proposer(names, "i", b"vB", "p", random.Random(2), mode=mode),
    }
    batches = {k: next(g) for k, g in gens.items()}
    decided: dict[str, bytes] = {}
    while batches:
        for k in list(batches):
            try:
                batches[k] = gens[k].send([driver.execute(stores, op, lambda _: None) for op in batches[k]])
            except StopIteration as stop:
                decided[k] = stop.value
                del batches[k]
    assert decided["A"] == decided["B"], decided


@pytest.mark.parametrize("mode", ["create", "cas", "blocks"])
def test_a_slow_minority_store_does_not_slow_decisions(mode: str) -> None:
    import time

    from passivepaxos.wrappers import LatencyBackend

    fast = [Store(open_backend(f"memory://{uuid.uuid4().hex}")) for _ in range(2)]
    slow = Store(LatencyBackend(open_backend(f"memory://{uuid.uuid4().hex}"), 1.5))
    stores = [fast[0], slow, fast[1]]
    start = time.monotonic()
    assert driver.propose(stores, "i", b"v", "p", mode) == b"v"
    took = time.monotonic() - start
    assert took < 1.5, f"decision waited for the slow store: {took:.2f}s"
    assert driver.propose(stores[::-1], "i", b"w", "q", mode) == b"v"
