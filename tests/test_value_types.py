"""Issue 10 (smaller findings): a value of the wrong type is a ``TypeError`` naming what is
expected, raised before any request; on d26dea1 ``bytes(v)`` turned ``b"xyz"`` into three
entries of 120/121/122 NUL bytes and ``KV.put("k", 5)`` into five NUL bytes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from passivepaxos.consensus.driver import propose
from passivepaxos.log import Log
from passivepaxos.manifest import init_log, open_log
from passivepaxos.recipes.kv import KV
from passivepaxos.recipes.lock import Locks
from passivepaxos.recipes.tob import Broadcast
from passivepaxos.store import Store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend


@pytest.fixture
def counted() -> Iterator[tuple[Log, CountingBackend]]:
    url = f"memory://types-{uuid.uuid4().hex[:10]}"
    init_log(url)
    counting = CountingBackend(open_backend(url))
    _, manifest = open_log(url)
    with Log([Store(counting)], manifest.mode, hint_every=10**9) as log:
        yield log, counting


def _refused(log: Log, counting: CountingBackend, call: Callable[[], Any], needle: str) -> None:
    counting.reset()
    with pytest.raises(TypeError, match=needle):
        call()
    assert counting.total == 0, counting.snapshot()  # not a single request
    assert [e.value for e in log.read()] == []


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        (b"xyz", r"values must be a sequence of bytes values.*not a single bytes"),
        ("xyz", "not a single str"),
        (bytearray(b"xy"), "not a single bytearray"),
        ([5], r"entry 0 of values must be bytes.*not int"),
        ([b"ok", "text"], r"entry 1 of values must be bytes.*not str: encode text first"),
        ([None], r"entry 0 of values must be bytes.*not NoneType"),
        (7, "values must be a sequence of bytes values, not int"),
    ],
)
def test_log_append_wrong_types(
    counted: tuple[Log, CountingBackend], values: Any, needle: str
) -> None:
    log, counting = counted
    _refused(log, counting, lambda: log.append(values), needle)


def test_log_append_bytes_like_still_works(counted: tuple[Log, CountingBackend]) -> None:
    log, _ = counted
    assert log.append([b"a", bytearray(b"b"), memoryview(b"c")]) == [0, 0, 0]  # type: ignore[list-item]
    assert [e.value for e in log.read()] == [b"a", b"b", b"c"]


def test_kv_wrong_types(counted: tuple[Log, CountingBackend]) -> None:
    log, counting = counted
    kv = KV(log)
    _refused(log, counting, lambda: kv.put("k", 5), "the value must be bytes.*not int")  # type: ignore[arg-type]
    _refused(log, counting, lambda: kv.put("k", "v"), "not str: encode text first")  # type: ignore[arg-type]
    _refused(log, counting, lambda: kv.put(5, b"v"), "a key must be a str, not int")  # type: ignore[arg-type]
    _refused(log, counting, lambda: kv.cas("k", 3, b"v"), "the expected value must be bytes")  # type: ignore[arg-type]
    _refused(log, counting, lambda: kv.cas("k", None, 3), "the value must be bytes")  # type: ignore[arg-type]
    kv.put("k", bytearray(b"v"))  # type: ignore[arg-type]
    assert kv.get("k") == b"v"


def test_broadcast_and_lock_wrong_types(counted: tuple[Log, CountingBackend]) -> None:
    log, counting = counted
    tob = Broadcast(log)
    _refused(log, counting, lambda: tob.broadcast(5), "msg must be bytes.*not int")  # type: ignore[arg-type]
    _refused(log, counting, lambda: tob.broadcast(b"m", msg_id=7), "msg_id must be a str")  # type: ignore[arg-type]
    locks = Locks(log, owner="me")
    counting.reset()
    with pytest.raises(TypeError, match="a lock name must be a str, not int"):
        locks.acquire(5, 1.0)  # type: ignore[arg-type]
    assert counting.writes == 0  # (it reads the lock's state first; it writes nothing)


def test_snapshot_state_and_propose_wrong_types(counted: tuple[Log, CountingBackend]) -> None:
    log, counting = counted
    log.append([b"a"])
    counting.reset()
    with pytest.raises(TypeError, match=r"state must be bytes.*not int"):
        log.snapshot(5)  # type: ignore[arg-type]
    assert counting.writes == 0
    counting.reset()
    with pytest.raises(TypeError, match=r"value must be bytes.*not str"):
        propose(log.stores, "inst", "text", "me")  # type: ignore[arg-type]
    assert counting.total == 0


def test_fenced_resource_refuses_an_int_and_keeps_its_state() -> None:
    """``FencedResource.write(1, 5)`` stored five NUL bytes (``bytes(int)``)."""
    from passivepaxos.recipes.lock import FencedResource

    res = FencedResource()
    with pytest.raises(TypeError, match="bytes"):
        res.write(1, 5)  # type: ignore[arg-type]
    assert (res.highest, res.writes) == (0, [])
