"""The writer lease from a shell (issue 13): `writer claim --owner` is useful afterwards
(later `append --owner`, `writer renew`, `writer release` act as the holder), waiting
commands say what they wait for, and `writer status` says how long a taker waits."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from passivepaxos.errors import LeaseHeldError
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from tests.test_cli import run


@pytest.fixture
def url(tmp_path: Path) -> str:
    d = tmp_path / "log"
    d.mkdir()
    u = f"file://{d}"
    assert run("init", u).returncode == 0
    return u


def test_claim_then_append_renew_release_as_the_named_owner(url: str) -> None:
    claim = run("writer", "claim", url, "--ttl", "30", "--owner", "cron", "--json")
    assert claim.returncode == 0, claim.stderr
    got = json.loads(claim.stdout)
    assert (got["granted"], got["holder"], got["owner"], got["epoch"]) == (True, "cron", "cron", 1)
    refused = run("append", url, "x")
    assert refused.returncode == 1 and "held by cron" in refused.stderr
    ok = run("append", url, "--owner", "cron", "y", "z")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["1", "1"]
    renew = run("writer", "renew", url, "--owner", "cron", "--json")
    assert renew.returncode == 0, renew.stderr
    r = json.loads(renew.stdout)
    assert (r["renewed"], r["holder"], r["epoch"], r["slot"]) == (True, "cron", 1, 2)
    other = run("writer", "renew", url, "--owner", "someone", "--json")
    assert other.returncode == 1 and "not held by someone (holder: cron)" in other.stderr
    assert json.loads(other.stdout)["renewed"] is False
    rel = run("writer", "release", url, "--owner", "cron", "--json")
    assert rel.returncode == 0 and json.loads(rel.stdout)["released"] is True
    again = run("writer", "release", url, "--owner", "cron")
    assert again.returncode == 1 and "not held by cron" in again.stderr
    assert run("append", url, "free").returncode == 0  # nobody holds it now


def test_renew_with_a_new_ttl_and_the_ttl_shown(url: str) -> None:
    assert run("writer", "claim", url, "--ttl", "30", "--owner", "o").returncode == 0
    r = run("writer", "renew", url, "--owner", "o", "--ttl", "60", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ttl"] == 60.0


def test_renew_and_release_need_an_owner(url: str) -> None:
    for op in ("renew", "release"):
        out = run("writer", op, url)
        assert out.returncode == 2 and "give --owner OWNER" in out.stderr


def test_a_claim_without_owner_says_which_owner_to_pass_and_a_waiting_claim_says_why(
    url: str,
) -> None:
    first = run("writer", "claim", url, "--ttl", "1")
    assert first.returncode == 0
    assert "pass --owner" in first.stderr
    second = run("writer", "claim", url, "--ttl", "1", "--owner", "b")
    assert second.returncode == 0, second.stderr
    assert "waiting for the writer lease" in second.stderr and "epoch 1" in second.stderr
    assert "claimed: b, epoch 2" in second.stdout


def test_writer_status_says_how_long_a_taker_waits(url: str) -> None:
    assert run("writer", "claim", url, "--ttl", "30", "--owner", "o").returncode == 0
    out = run("writer", "status", url)
    assert "a taker waits" in out.stdout and "30" in out.stdout


def test_adopt_writer_takes_up_only_our_own_lease() -> None:
    url = f"memory://adopt-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url, writer_id="cron") as a:
        assert not a.adopt_writer()  # nobody holds it
        assert a.claim_writer(30).granted
        with Log.open(url, writer_id="cron") as twin:
            assert not twin.adopt_writer()  # ours, but not shared: a live process's
        assert a.claim_writer(30, shared=True).granted  # renewed, now shared
    with Log.open(url, writer_id="other") as b:
        assert not b.adopt_writer()
        with pytest.raises(LeaseHeldError):
            b.append([b"x"])
    with Log.open(url, writer_id="cron") as c:
        assert c.adopt_writer()
        assert c.lease_read() is None  # a shared lease serves no lease reads
        assert c.append([b"y"]) == [2]
        assert c.lease_read() is None
        assert c.release_writer() == 3


def test_an_append_waiting_out_an_expired_lease_says_so(url: str) -> None:
    import time

    assert run("writer", "claim", url, "--ttl", "1", "--owner", "gone").returncode == 0
    time.sleep(1.2)  # the holder's wall-clock expiry passed; the tail must stay for a ttl
    out = run("append", url, "after")
    assert out.returncode == 0, out.stderr
    assert "the writer lease of gone looks expired; waiting up to" in out.stderr


def test_lock_status_says_when_a_holder_looks_expired(url: str) -> None:
    import time

    assert run("lock", "acquire", url, "job", "--ttl", "1").returncode == 0
    time.sleep(1.2)
    out = run("lock", "status", url, "job")
    assert "looks expired" in out.stdout and "a taker waits" in out.stdout


def test_a_live_library_holders_lease_is_never_taken_up_by_owner(url: str) -> None:
    """Outside review H2: `append --owner <a live library holder's writer id>` took its
    lease up; the holder's lease reads then answered a head that was no longer the head
    (KV lease reads would have been stale). Only a lease claimed shared (the CLI's) is
    taken up, and a shared lease serves no lease reads anywhere."""
    with Log.open(url) as holder:
        assert holder.claim_writer(30).granted
        holder.append([b"mine"])
        assert holder.lease_read() is not None
        intruder = run("append", url, "--owner", holder.writer_id, "intruder")
        assert intruder.returncode == 1 and "held by" in intruder.stderr
        read = holder.lease_read()
        assert read is not None and read.head == holder.head()


def test_a_shared_lease_serves_no_lease_reads() -> None:
    url = f"memory://shared-{uuid.uuid4().hex[:8]}"
    init_log(url)
    with Log.open(url, writer_id="cron") as a:
        assert a.claim_writer(30, shared=True).granted
        a.append([b"x"])
        assert a.lease_read() is None  # another process may write as "cron"
        with Log.open(url, writer_id="cron") as b:
            assert b.adopt_writer() and b.append([b"y"]) == [2]
            assert b.lease_read() is None
        assert a.append([b"z"]) == [3]  # the log decides each slot once


def test_on_s3_claim_then_append_as_the_owner(moto_server: object) -> None:
    from tests.test_cli_lockrun import _s3_log

    url, env = _s3_log(moto_server, "cli-writer")
    assert run("writer", "claim", url, "--owner", "cron", "--ttl", "30", env=env).returncode == 0
    refused = run("append", url, "x", "--json", env=env)
    assert refused.returncode == 1 and "error" in json.loads(refused.stdout)
    ok = run("append", url, "--owner", "cron", "y", env=env)
    assert ok.returncode == 0 and ok.stdout.split() == ["1"], ok.stderr
    assert run("writer", "release", url, "--owner", "cron", env=env).returncode == 0


def test_an_unanswered_shared_renewal_turns_lease_reads_off(tmp_path: Path) -> None:
    """The third review's H1: a holder renewed its unshared lease as shared; the record
    landed but its answer was lost. The holder's lease stayed unshared in memory, another
    process of the same writer id took the (now shared) lease up and appended, and the
    holder's lease_read() still answered the old head."""
    from passivepaxos.errors import AmbiguousWriteError, PassivePaxosError

    d = tmp_path / "h1"
    d.mkdir()
    url = d.as_uri()
    init_log(url)
    with Log.open(url, writer_id="W") as a:
        assert a.claim_writer(30).granted
        a.append([b"a"])
        assert a.lease_read() is not None
        cfg = a._writer.cfg
        decide = cfg.decide
        calls = [0]

        def answer_lost(*args: object, **kw: object) -> object:
            out = decide(*args, **kw)  # type: ignore[arg-type]
            calls[0] += 1
            if calls[0] == 1:
                raise AmbiguousWriteError("the answer was lost")
            return out

        cfg.decide = answer_lost  # type: ignore[method-assign,assignment]
        with pytest.raises(PassivePaxosError):
            a.claim_writer(30, shared=True)
        cfg.decide = decide  # type: ignore[method-assign]
        assert a.head() == 2
        assert a.lease_read() is None
        with Log.open(url, writer_id="W") as b:
            assert b.adopt_writer()
            assert b.append([b"b"]) == [3]
        assert a.lease_read() is None  # never the old head, 2


def test_a_path_meant_as_log_is_never_taken_for_data_with_passivepaxos_log(
    url: str, tmp_path: Path
) -> None:
    """The third review's P1: with PASSIVEPAXOS_LOG set, `append /some/path v` (a path
    without file://) appended '/some/path' and 'v' to the default log; now it is the
    usage error it is without the variable."""
    other = tmp_path / "other"
    other.mkdir()
    env = {"PASSIVEPAXOS_LOG": url}
    out = run("append", str(other), "v2", env=env)
    assert out.returncode == 2 and "is not a storage URL" in out.stderr
    put = run("kv", "put", str(other), "k", env=env)
    assert put.returncode == 2
    assert run("log", url).stdout == ""  # nothing written to the default log
    # a command's own --help after `--` is not ours
    done = run("lock", "run", "job", "--", "sh", "-c", "echo ran", "--help", env=env)
    assert done.returncode == 0 and done.stdout == "ran\n", done.stderr
