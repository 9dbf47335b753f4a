"""Issue 12: one producer with many appends in flight (``Log.append_async``).

The queued appends share slots (group commit), keep the order of the calls in the log,
complete their futures in that order, and stop behind a failure: the async appends
queued behind a failed one are not written."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from passivepaxos import Log
from passivepaxos.errors import (
    AppendOutcomeUnknownError,
    ConfigError,
    PipelineAbortedError,
    StoreError,
)
from passivepaxos.manifest import init_log
from passivepaxos.store import Store
from passivepaxos.types import PutKind
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend


def _url() -> str:
    url = f"memory://pipe-{uuid.uuid4().hex[:10]}"
    init_log(url)
    return url


def _values(url: str) -> list[bytes]:
    with Log.open(url) as log:
        return [e.value for e in log.read(0)]


class Gate(CountingBackend):
    """Counts requests; the first slot create waits until ``go`` is set (so that the
    appends queue up behind it), and the ``fail``-th slot create raises ``StoreError``
    (nothing written)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.go = threading.Event()
        self.creates = 0
        self.fail = 0

    def put(self, key: str, data: bytes, mode: Any) -> Any:
        if key.startswith("log/") and mode.kind is PutKind.CREATE:
            self.creates += 1
            if self.creates == 1:
                assert self.go.wait(10)
            if self.creates == self.fail:
                raise StoreError("injected", url="memory://gate", key=key)
        return super().put(key, data, mode)


def _gated(url: str) -> tuple[Log, Gate]:
    gate = Gate(open_backend(url))
    log = Log([Store(gate)], "create", url=url, writer_id="pipe", backoff_max=0)
    log.head()
    gate.reset()
    return log, gate


def test_queued_appends_share_slots_in_call_order() -> None:
    url = _url()
    log, gate = _gated(url)
    with log:
        futs = [log.append_async([b"v%02d" % i]) for i in range(16)]
        gate.go.set()
        got = [f.result(10)[0] for f in futs]
    # the first slot holds v00 alone (its create was waiting); the 15 queued meanwhile
    # share the next one: 2 creates for 16 appends, in the order of the calls
    assert gate.counts["put:create"] == 2
    assert [(p.slot, p.index) for p in got] == [(0, 0)] + [(1, i) for i in range(15)]
    assert _values(url) == [b"v%02d" % i for i in range(16)]


def test_futures_complete_in_log_order() -> None:
    url = _url()
    log, gate = _gated(url)
    done: list[int] = []
    with log:
        futs = [log.append_async([b"%d" % i]) for i in range(40)]
        for i, f in enumerate(futs):
            f.add_done_callback(lambda _f, i=i: done.append(i))
        gate.go.set()
    assert done == sorted(done) and len(done) == 40  # close() waited for all of them


def test_appends_queued_behind_a_failure_are_not_written() -> None:
    url = _url()
    log, gate = _gated(url)
    gate.fail = 1  # the first slot's create fails: nothing written
    with log:
        first = log.append_async([b"a"])
        behind = [log.append_async([b"b%d" % i]) for i in range(3)]
        gate.go.set()
        with pytest.raises(StoreError, match="injected"):
            first.result(10)
        for f in behind:
            with pytest.raises(PipelineAbortedError, match="earlier append_async") as err:
                f.result(10)
            assert isinstance(err.value.cause, StoreError)
        # the next one starts afresh
        assert log.append_async([b"c"]).result(10)[0].slot == 0
    assert _values(url) == [b"c"]


def test_an_unknown_outcome_in_the_pipeline_resumes_and_aborts_the_rest() -> None:
    url = _url()
    log, gate = _gated(url)
    real = log._batch.commit
    calls = []

    def commit(entries: list[bytes]) -> int:
        slot = real(entries)  # it lands; the answer is lost
        calls.append(slot)
        if len(calls) == 1:
            raise log._writer.unknown(slot, "ab" * 16, StoreError("no answer"))
        return slot

    log._batch.commit = commit
    with log:
        unsure = log.append_async([b"b"])
        behind = log.append_async([b"c"])
        gate.go.set()
        with pytest.raises(AppendOutcomeUnknownError) as err:
            unsure.result(10)
        with pytest.raises(PipelineAbortedError):
            behind.result(10)
        assert log.append_async([b"d"]).result(10)[0].slot == 1
    assert _values(url) == [b"b", b"d"]  # c never written; b there once
    assert err.value.slot == 0


def test_not_with_forwarding_and_values_checked_first() -> None:
    url = _url()
    with Log.open(url, forward=True) as log, pytest.raises(ConfigError, match="forward"):
        log.append_async([b"x"])
    with Log.open(url) as log:
        with pytest.raises(TypeError, match="sequence of bytes"):
            log.append_async(b"x")
        assert log.append_async([]).result() == []
