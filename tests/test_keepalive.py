"""The keep-alive helper (issue 13): locks, the writer lease and elections renew in the
background and say at once, once, when the grant is lost or could not be renewed in time."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from passivepaxos.errors import ConfigError
from passivepaxos.keepalive import KeepAlive
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from passivepaxos.recipes.election import Election
from passivepaxos.recipes.lock import LockHeldError, Locks
from passivepaxos.runtime import REAL


def _url() -> str:
    url = f"memory://ka-{uuid.uuid4().hex[:8]}"
    init_log(url)
    return url


class Lost:
    """An ``on_lost`` callback that records its calls."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.called = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.called.set()


def test_a_kept_lock_outlives_its_ttl_and_others_stay_out() -> None:
    url = _url()
    with Log.open(url, writer_id="A") as a, Log.open(url, writer_id="B") as b:
        locks, other = Locks(a), Locks(b)
        token = locks.acquire("job", 0.3)
        lost = Lost()
        with locks.keep_alive("job", on_lost=lost) as ka:
            time.sleep(1.0)  # more than three ttls
            assert ka.valid() and locks.valid("job") and ka.renewals >= 4
            with pytest.raises(LockHeldError):
                other.acquire("job", 0.3)
        assert not lost.called.is_set() and ka.reason is None
        assert locks.release("job", token)


def test_a_lock_not_renewed_in_time_is_lost_at_its_validity() -> None:
    url = _url()
    with Log.open(url, writer_id="A") as a:
        locks = Locks(a)
        locks.acquire("job", 0.4)
        lost = Lost()
        started = time.monotonic()
        ka = locks.keep_alive("job", every=60.0, on_lost=lost)  # never renews in time
        try:
            assert lost.called.wait(2.0)
            # 0.75 x ttl after the acquire started: not before, and promptly
            assert 0.2 <= time.monotonic() - started < 0.6
            assert not ka.valid() and ka.lost.is_set()
            assert lost.reasons == ["lock 'job' (token 1) could not be renewed in time"]
        finally:
            ka.stop()


def test_a_lock_taken_over_while_the_renewer_stalled_is_reported_lost() -> None:
    url = _url()
    with Log.open(url, writer_id="A") as a, Log.open(url, writer_id="B") as b:
        frozen = [0.0]  # A's clock stands still: only the takeover can end its hold
        locks = Locks(a, clock=lambda: frozen[0])
        gate, stalled = threading.Event(), threading.Event()
        refresh = locks.refresh

        def stalling_refresh(name: str, ttl: float | None = None) -> int:
            stalled.set()
            gate.wait()  # the renewer stalls here (a SIGSTOP, a long GC pause)
            return refresh(name, ttl)

        locks.refresh = stalling_refresh  # type: ignore[method-assign]
        locks.acquire("job", 0.3)
        lost = Lost()
        with locks.keep_alive("job", every=0.05, on_lost=lost):
            assert stalled.wait(2.0)
            assert Locks(b).acquire("job", 0.3, wait=5.0) == 2  # taken over after a ttl
            gate.set()
            assert lost.called.wait(5.0)
        assert len(lost.reasons) == 1
        assert lost.reasons[0].startswith("lock 'job' (token 1) was lost: ")
        assert "token 2" in lost.reasons[0]


def test_keep_alive_needs_the_lock_held() -> None:
    with Log.open(_url(), writer_id="A") as a, pytest.raises(ConfigError, match="does not hold"):
        Locks(a).keep_alive("job")


def test_a_stopped_keepalive_reports_nothing_and_renews_no_more() -> None:
    url = _url()
    with Log.open(url, writer_id="A") as a:
        locks = Locks(a)
        locks.acquire("job", 0.3)
        lost = Lost()
        ka = locks.keep_alive("job", on_lost=lost)
        time.sleep(0.25)
        ka.stop()
        n = ka.renewals
        time.sleep(0.5)
        assert ka.renewals == n and not lost.called.is_set()


def test_the_writer_lease_kept_alive_and_lost() -> None:
    url = _url()
    with Log.open(url, writer_id="A") as a, Log.open(url, writer_id="B") as b:
        with pytest.raises(ConfigError, match="does not hold"):
            a.keep_writer()
        assert a.claim_writer(0.3).granted
        lost = Lost()
        with a.keep_writer(on_lost=lost) as ka:
            time.sleep(1.0)
            assert ka.valid() and ka.renewals >= 4
            assert not b.claim_writer(0.3, wait=False).granted
        assert not lost.called.is_set()
        # not renewed: lost at the holder's window (0.75 x ttl), then B takes over
        with a.keep_writer(every=60.0, on_lost=lost) as ka:
            assert lost.called.wait(2.0)
            assert "could not be renewed in time" in lost.reasons[0]
            assert "epoch 1" in lost.reasons[0]
            assert a.lease_read() is None  # the log's own read window agrees
        assert b.claim_writer(0.3).granted


def test_an_election_calls_on_lost_when_its_term_is_taken() -> None:
    url = _url()
    with Log.open(url, writer_id="A") as a:
        lost = Lost()
        e = Election(a, "leader", ttl=0.3, on_lost=lost)
        term = e.campaign()
        time.sleep(0.5)
        assert e.is_leader() and not lost.called.is_set()
        e.locks.release("leader", term)  # behind the election's back
        assert lost.called.wait(2.0)
        assert not e.is_leader() and e.lost.is_set()
        assert lost.reasons == ["lock 'leader' (token 1) is no longer held (released or refused)"]


def test_a_failing_renewal_is_retried_until_the_validity_ends() -> None:
    from passivepaxos.errors import PassivePaxosError

    calls: list[float] = []
    until = time.monotonic() + 0.5

    def renew() -> None:
        calls.append(time.monotonic())
        raise PassivePaxosError("store down")

    lost = Lost()
    with KeepAlive(
        REAL, renew=renew, valid_until=lambda: until, every=0.1, what="grant", on_lost=lost
    ):
        assert lost.called.wait(2.0)
    assert time.monotonic() >= until
    assert len(calls) >= 3  # retried with the backoff, not once per `every` only
    assert lost.reasons == ["grant could not be renewed in time (last error: store down)"]


def test_an_error_outside_the_taxonomy_is_retried_and_the_loss_still_reported() -> None:
    """Review finding 4: an OSError from a renewal killed the loop silently (no loss
    reported, ever)."""
    until = time.monotonic() + 0.4

    def renew() -> None:
        raise OSError("disk gone")

    lost = Lost()
    with KeepAlive(
        REAL, renew=renew, valid_until=lambda: until, every=0.1, what="grant", on_lost=lost
    ):
        assert lost.called.wait(2.0)
    assert lost.reasons == ["grant could not be renewed in time (last error: disk gone)"]
