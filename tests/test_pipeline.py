"""Issue 12: one producer with many appends in flight (``Log.append_async``).

The queued appends share slots (group commit), keep the order of the calls in the log,
complete their futures in that order, and stop behind a failure: the async appends
queued behind a failed one are not written."""

from __future__ import annotations

import threading
import time
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
        self.started = threading.Event()  # the first slot create is waiting for go
        self.creates = 0
        self.fail = 0

    def put(self, key: str, data: bytes, mode: Any) -> Any:
        if key.startswith("log/") and mode.kind is PutKind.CREATE:
            self.creates += 1
            if self.creates == 1:
                self.started.set()
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
        futs = [log.append_async([b"v00"])]
        assert gate.started.wait(10)  # its round is under way: the rest queue behind it
        futs += [log.append_async([b"v%02d" % i]) for i in range(1, 16)]
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
        assert gate.started.wait(10)  # its round is under way: the rest queue behind it
        behind = [log.append_async([b"b%d" % i]) for i in range(3)]
        gate.go.set()
        with pytest.raises(StoreError, match="injected"):
            first.result(10)
        for f in behind:
            with pytest.raises(PipelineAbortedError, match="earlier append_async") as err:
                f.result(10)
            assert isinstance(err.value.cause, StoreError)
        # the pipeline stays broken (a later value never goes in without the earlier one)
        # until the caller says it handled the failure
        with pytest.raises(PipelineAbortedError):
            log.append_async([b"too-soon"]).result(10)
        log.restart_pipeline()
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
            hit = log._tail.cached(slot)
            assert hit is not None
            wid = log._c.decode(hit[1], slot, None).wid
            raise log._writer.unknown(slot, wid, StoreError("no answer"))
        return slot

    log._batch.commit = commit
    with log:
        unsure = log.append_async([b"b"])
        assert gate.started.wait(10)
        behind = log.append_async([b"c"])
        gate.go.set()
        with pytest.raises(AppendOutcomeUnknownError) as err:
            unsure.result(10)
        with pytest.raises(PipelineAbortedError):
            behind.result(10)
        # as the docs say: resume the unknown one, then restart and append the rest
        assert log.append_positions([b"b"], resume=err.value.token)[0].slot == 0
        log.restart_pipeline()
        assert log.append_async([b"c"]).result(10)[0].slot == 1
    assert _values(url) == [b"b", b"c"]  # in call order, each once
    assert err.value.slot == 0


def test_not_with_forwarding_and_values_checked_first() -> None:
    url = _url()
    with Log.open(url, forward=True) as log, pytest.raises(ConfigError, match="forward"):
        log.append_async([b"x"])
    with Log.open(url) as log:
        with pytest.raises(TypeError, match="sequence of bytes"):
            log.append_async(b"x")
        assert log.append_async([]).result() == []


def test_append_async_after_close_is_refused_and_never_written() -> None:
    """Second review, B2: a value queued while close() ran was written although its
    caller was told "error"."""
    url = _url()
    log = Log.open(url)
    log.append_async([b"warm"]).result(10)
    log.close()
    with pytest.raises(ConfigError, match="closed"):
        log.append_async([b"late"])
    assert _values(url) == [b"warm"]


def test_a_waiting_appends_deadline_is_honoured() -> None:
    """Second review, B5: an append waiting for another thread's round (its create takes
    long) fails at its own deadline, not the round's end; nothing of it was sent."""
    from passivepaxos.deadline import deadline
    from passivepaxos.errors import DeadlineExceededError

    url = _url()
    log, gate = _gated(url)
    with log:
        first = log.append_async([b"a"])
        assert gate.started.wait(10)
        t0 = time.monotonic()
        with deadline(0.3), pytest.raises(DeadlineExceededError, match="nothing was written"):
            log.append([b"b"])
        assert time.monotonic() - t0 < 2
        gate.go.set()
        assert first.result(10)[0].slot == 0
    assert _values(url) == [b"a"]


def test_an_interrupt_in_a_shared_round_leaves_the_others_outcome_unknown() -> None:
    """Second review, B3: Ctrl-C while the leader's create is in flight: the other
    callers of the round are told "outcome unknown" (their values may be in the log),
    with tokens that resume them, not KeyboardInterrupt."""
    url = _url()
    log, gate = _gated(url)
    gate.go.set()
    real = Store.put

    fired: list[str] = []

    def put(self: Store, key: str, *a: Any, **kw: Any) -> Any:
        got = real(self, key, *a, **kw)
        if key.startswith("log/") and not fired:
            fired.append(key)
            raise KeyboardInterrupt  # after the create landed, before its answer is used
        return got

    with log:
        futs = [log.append_async([b"x%d" % i]) for i in range(3)]
        box: dict[str, BaseException] = {}

        def sync() -> None:
            try:
                log.append([b"lead"])
            except BaseException as exc:
                box["exc"] = exc

        Store.put = put  # type: ignore[method-assign]
        try:
            t = threading.Thread(target=sync)
            t.start()
            t.join(10)
            outcomes = [f.exception(10) for f in futs] + [box.get("exc")]
        finally:
            Store.put = real  # type: ignore[method-assign]
        # whichever thread led the round raised the interrupt (with a note naming the
        # record in doubt); every other caller is told "outcome unknown" (or, behind a
        # failure, "not written"), never KeyboardInterrupt
        interrupts = [e for e in outcomes if isinstance(e, KeyboardInterrupt)]
        assert len(interrupts) <= 1
        for e in interrupts:
            assert "may be in the log" in e.__notes__[0]
        others = [e for e in outcomes if e is not None and not isinstance(e, KeyboardInterrupt)]
        assert any(isinstance(e, AppendOutcomeUnknownError) for e in others), outcomes
        assert all(
            isinstance(e, (AppendOutcomeUnknownError, PipelineAbortedError)) for e in others
        ), outcomes
