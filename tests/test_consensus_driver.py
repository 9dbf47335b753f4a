"""``driver.propose`` / ``driver.learn`` over real stores (memory:// and file://)."""

from __future__ import annotations

import random
import threading
import uuid
from pathlib import Path

import pytest

from passivepaxos.consensus import driver
from passivepaxos.errors import QuorumError, UnsupportedError
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, resolve_attempts=2)
MODES = ["create", "blocks"]


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


def test_cas_mode_is_refused_clearly() -> None:
    with pytest.raises(UnsupportedError):
        driver.propose([store("memory://m")], "i", b"x", "p1", "cas")
