"""Issue 12: what waiting costs. A claimant waiting out a dead holder's writer lease, and a
lock waiter waiting out a dead holder's lock, spend a bounded number of requests per ttl
(about ten reads, whatever the ttl), and a warm status read is one request.

The clock is stepped by the sleeps (no real waiting), so the counts are exact.
"""

from __future__ import annotations

import collections
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from passivepaxos import Log
from passivepaxos.manifest import init_log
from passivepaxos.recipes.lock import Locks, Op, encode_op
from passivepaxos.urls import backend_module
from tests.clocked import Stepped

_memory = backend_module("memory")
_local = backend_module("local")


class Requests:
    """Requests to memory stores while ``on``, by operation."""

    def __init__(self) -> None:
        self.on = False
        self.counts: collections.Counter[str] = collections.Counter()

    def wrap(self, op: str, orig: Any) -> Any:
        def call(backend: Any, *a: Any, **kw: Any) -> Any:
            if self.on:
                self.counts[op] += 1
            return orig(backend, *a, **kw)

        return call

    def start(self) -> None:
        self.counts.clear()
        self.on = True

    def stop(self) -> dict[str, int]:
        self.on = False
        return dict(self.counts)


@pytest.fixture
def reqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Requests]:
    r = Requests()
    for cls in (_memory.MemoryBackend, _local.LocalBackend):
        for op in ("get", "put", "list", "delete"):
            monkeypatch.setattr(cls, op, r.wrap(op, getattr(cls, op)))
    yield r
    r.on = False


@contextlib.contextmanager
def _pair(url: str, live: str, watcher: str, clock: Stepped) -> Iterator[tuple[Log, Log]]:
    """A log on the real clock (``live``: the holder) and one on ``clock`` (the watcher)."""
    with Log.open(url, writer_id=live) as a, Log.open(url, writer_id=watcher, runtime=clock) as b:
        yield a, b


def _url(tmp: Path | None = None) -> str:
    url = f"memory://poll-{uuid.uuid4().hex[:10]}" if tmp is None else f"file://{tmp}"
    init_log(url)
    return url


@pytest.mark.parametrize(
    ("ttl", "probing", "want"),
    [
        # a listing store: one read sees the holder's last record and a LIST finds nothing
        # after it; reads a tenth of a ttl apart, at most a second (9 for a 1 s ttl, 59
        # for 60 s), watch it stay the tail for a ttl (none after the last pause: the
        # create that follows tells as much); one create claims: 12 requests for 1 s
        (1.0, False, {"get": 10, "list": 1, "put": 1}),
        (60.0, False, {"get": 60, "list": 1, "put": 1}),
        # file:// does not list strongly: the read that sees the holder's last record is
        # followed by one round of the end check's 4 reads (not a probe search), 9 polls
        # and the create: 15 requests
        (1.0, True, {"get": 14, "put": 1}),
    ],
)
def test_failover_costs_a_dozen_requests_after_the_holder_dies(
    reqs: Requests, tmp_path: Path, ttl: float, probing: bool, want: dict[str, int]
) -> None:
    url = _url(tmp_path if probing else None)
    with _pair(url, "h", "c", Stepped()) as (holder, claimant):
        holder.claim_writer(ttl)
        holder.append([b"a"])
        assert claimant.writer_status().holder == "h"  # the claimant has seen the tail
        holder.append([b"b"])  # the holder's last write; then it dies
        reqs.start()
        got = claimant.claim_writer(ttl)
        counts = reqs.stop()
    assert got.granted and got.epoch == 2 and got.slot == 3
    assert counts == want


def test_a_warm_writer_status_is_one_read(reqs: Requests) -> None:
    url = _url()
    with Log.open(url, writer_id="h") as holder, Log.open(url, writer_id="c") as other:
        holder.claim_writer(30)
        other.writer_status()
        reqs.start()
        st = other.writer_status()
        assert reqs.stop() == {"get": 1}
    assert st.holder == "h" and not st.mine


@pytest.mark.parametrize(("ttl", "looks"), [(1.0, 10), (60.0, 60)])
def test_a_lock_waiter_reads_ten_times_per_ttl_at_most_once_a_second(
    reqs: Requests, ttl: float, looks: int
) -> None:
    url = _url()
    clock = Stepped()
    with _pair(url, "a", "b", clock) as (la, lb):
        a, b = Locks(la, owner="A"), Locks(lb, owner="B")
        assert a.acquire("job", ttl) == 1  # and A dies holding it
        assert b.status("job").holder == "A"
        reqs.start()
        st = b.status("job")
        assert reqs.stop() == {"get": 1}  # a warm status read: one request
        assert st.holder == "A"
        reqs.start()
        token = b.acquire("job", ttl, wait=float("inf"))
        counts = reqs.stop()
    assert token == 2
    # the first look and more a tenth of a ttl apart, at most a second (10 for a 1 s ttl,
    # 60 for 60 s), then the takeover's create (its outcome is read from the create
    # itself: it was the tail)
    assert counts == {"get": 1 + looks, "put": 1}


@pytest.mark.parametrize("ttl", [1e13, float("inf")])
def test_a_foreign_huge_ttl_is_waited_out_a_second_at_a_time(ttl: float) -> None:
    """Another client's lock entry may carry any ttl (we never send one above MAX_TTL): a
    waiter still looks once a second, so it sees the release within a second (review:
    a tenth of 1e13 s was slept, and a real sleep that long raised OverflowError)."""
    url = _url()
    clock = Stepped()
    with _pair(url, "f", "b", clock) as (lf, lb):

        def op(kind: str, token: int | None) -> bytes:
            return encode_op("locks", Op(kind, "job", "F", ttl, None, token, 0.0, kind))

        lf.append([op("acquire", None)])
        b = Locks(lb, owner="B")
        assert b.status("job").holder == "F"
        clock.on_sleep = lambda n: lf.append([op("release", 1)]) if n == 3 else None
        start = clock.t
        assert b.acquire("job", 10, wait=float("inf")) == 2
    assert clock.sleeps == 3 and clock.t - start == 3.0  # three pauses of a second


def test_an_explicit_lock_poll_is_kept_and_checked() -> None:
    url = _url()
    with Log.open(url, writer_id="a") as log:
        assert Locks(log, poll=0.01).poll == 0.01
        assert Locks(log).poll is None
        for bad in (0, -1.0, float("nan")):
            with pytest.raises(Exception, match="poll must be a positive number"):
                Locks(log, poll=bad)


def test_a_holder_writing_during_the_last_pause_is_not_claimed_over() -> None:
    """No poll follows the claimant's last pause: the create of the next slot is the check.
    A holder that renews in that pause wins the slot; the claimant learns its record from
    the lost create and waits a whole ttl again from there."""
    url = _url()
    clock = Stepped()
    ttl = 1.0
    with _pair(url, "h", "c", clock) as (holder, claimant):
        holder.claim_writer(ttl)
        assert claimant.writer_status().holder == "h"
        # the claimant's last pause: the holder renews meanwhile
        clock.on_sleep = lambda n: holder.renew() if n == 10 else None
        start = clock.t
        got = claimant.claim_writer(ttl)
        assert got.granted and got.slot == 2 and got.epoch == 2  # after the renewal at 1
        assert clock.t - start >= 2 * ttl  # a full ttl again from the renewal it learned
    with Log.open(url, writer_id="r") as reader:
        st = reader.writer_status()
        assert (st.holder, st.epoch, st.head) == ("c", 2, 2)


def test_the_pause_between_looks_is_a_tenth_of_the_ttl_within_2_ms_and_a_second() -> None:
    from passivepaxos.lease import MAX_POLL, poll_pause

    assert MAX_POLL == 1.0
    assert poll_pause(1.0) == pytest.approx(0.1)
    assert poll_pause(0.001) == 0.002
    for huge in (60.0, 86400.0, 1e13, float("inf"), float("nan")):
        assert poll_pause(huge) == 1.0
