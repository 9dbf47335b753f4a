"""A recipe command whose entry is established but whose catch-up read then fails (an
outage, the operation's deadline) was reported as a plain failure ("no majority of stores
answered": not done) although every replica applies it. Found by the whole-stack
simulator (``python -m passivepaxos.simulation --seed 101 --profile lease``: a KV put
reported failed, then read back by everyone). Now: a put is done; anything else is
``ResultUnreadError`` (outcome unknown)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from passivepaxos.errors import QuorumError, ResultUnreadError, is_outcome_unknown
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from passivepaxos.recipes.kv import KV
from passivepaxos.recipes.lock import Locks


@pytest.fixture
def log() -> Iterator[Log]:
    url = f"memory://unread-{uuid.uuid4().hex[:10]}"
    init_log(url)
    with Log.open(url) as lg:
        yield lg


def _fail_after_append(sm: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catch-up through our own entry fails; every other read works."""
    real = sm.catch_up  # type: ignore[attr-defined]

    def catch_up(*args: object, through: object = None, **kwargs: object) -> object:
        if through is not None:
            raise QuorumError("cannot read slot 0: no majority of stores answered (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(sm, "catch_up", catch_up)


def test_put_whose_catch_up_fails_is_done(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    kv = KV(log, lease_reads=False)
    _fail_after_append(kv.sm, monkeypatch)
    pos = kv.put("k", b"v")  # before: QuorumError, read as "not written"
    monkeypatch.undo()
    assert [e.slot for e in log.read(0)] == [pos.slot]
    assert KV(log, lease_reads=False).get("k") == b"v"


def test_cas_whose_catch_up_fails_is_outcome_unknown(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = KV(log, lease_reads=False)
    _fail_after_append(kv.sm, monkeypatch)
    with pytest.raises(ResultUnreadError) as err:
        kv.cas("k", None, b"v")
    assert is_outcome_unknown(err.value) and err.value.position.slot == 0
    monkeypatch.undo()
    assert KV(log, lease_reads=False).get("k") == b"v"  # it took effect


def test_lock_acquire_whose_catch_up_fails_is_outcome_unknown(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    locks = Locks(log, owner="a")
    _fail_after_append(locks.sm, monkeypatch)
    with pytest.raises(ResultUnreadError):
        locks.acquire("L", 10.0)
    monkeypatch.undo()
    assert Locks(log, owner="b").status("L").holder == "a"
