"""`elect campaign|observe|resign|status` and `kv watch` through the real CLI (issue 13),
with `--json` streaming one object per event."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import next_line
from tests.test_cli import run
from tests.test_cli_lockrun import _log, _spawn


def _line(p: subprocess.Popen[str], timeout: float = 20.0) -> str:
    """The next stdout line of ``p``, with its newline (fails after ``timeout``)."""
    return next_line(p, timeout) + "\n"


def test_campaign_leads_until_sigterm_then_resigns_and_another_takes_over(tmp_path: Path) -> None:
    url = _log(tmp_path)
    w1 = _spawn("elect", "campaign", url, "sched", "--ttl", "5", "--candidate", "w1", "--json")
    first = json.loads(_line(w1))
    assert first == {"name": "sched", "holder": "w1", "token": 1, "mine": True}
    status = json.loads(run("elect", "status", url, "sched", "--json").stdout)
    assert (status["holder"], status["token"]) == ("w1", 1)
    w2 = _spawn("elect", "campaign", url, "sched", "--ttl", "5", "--candidate", "w2")
    time.sleep(1.5)
    assert w2.poll() is None  # waits while w1 leads
    w1.send_signal(signal.SIGTERM)
    _, err = w1.communicate(timeout=20)
    assert w1.returncode == 0 and "resigned sched (term 1)" in err
    assert _line(w2).strip() == "sched: leader w2, term 2"
    assert w2.stderr is not None
    w2.send_signal(signal.SIGINT)
    assert w2.wait(20) == 0
    assert "waiting to lead 'sched': w1 leads (term 1)" in w2.stderr.read()


def test_campaign_exits_75_when_its_term_is_lost(tmp_path: Path) -> None:
    url = _log(tmp_path)
    w1 = _spawn("elect", "campaign", url, "sched", "--ttl", "5", "--candidate", "w1")
    assert _line(w1).startswith("sched: leader w1")
    resign = run("elect", "resign", url, "sched", "--candidate", "w1", "--json")
    assert resign.returncode == 0 and json.loads(resign.stdout)["resigned"] is True
    _, err = w1.communicate(timeout=20)
    assert w1.returncode == 75 and "term 1 of 'sched' lost" in err


def test_observe_prints_the_leader_now_then_every_change(tmp_path: Path) -> None:
    url = _log(tmp_path)
    w1 = _spawn("elect", "campaign", url, "sched", "--ttl", "5", "--candidate", "w1")
    _line(w1)
    obs = _spawn("elect", "observe", url, "sched", "--json")
    try:
        now = json.loads(_line(obs))
        assert {k: now[k] for k in ("name", "holder", "token", "mine")} == {
            "name": "sched",
            "holder": "w1",
            "token": 1,
            "mine": False,
        }
        assert now["expires"]  # the holder's estimate, as lock status gives it
        w1.send_signal(signal.SIGTERM)
        assert w1.wait(20) == 0
        assert json.loads(_line(obs))["holder"] is None
        w2 = _spawn("elect", "campaign", url, "sched", "--candidate", "w2")
        _line(w2)
        got = json.loads(_line(obs))
        assert (got["holder"], got["token"]) == ("w2", 2)
        w2.send_signal(signal.SIGTERM)
        assert w2.wait(20) == 0
    finally:
        obs.kill()
        obs.wait()


def test_a_campaign_that_may_not_wait_is_refused_and_resign_needs_the_candidate(
    tmp_path: Path,
) -> None:
    url = _log(tmp_path)
    w1 = _spawn("elect", "campaign", url, "sched", "--candidate", "w1")
    _line(w1)
    try:
        out = run("elect", "campaign", url, "sched", "--wait", "0")
        assert out.returncode == 1 and "held by w1" in out.stderr
        assert run("elect", "resign", url, "sched").returncode == 2
        other = run("elect", "resign", url, "sched", "--candidate", "w9")
        assert other.returncode == 1 and "w9 does not lead 'sched'" in other.stderr
        assert run("elect", "status", url, "").returncode == 2
    finally:
        w1.send_signal(signal.SIGTERM)
        w1.wait(20)


@pytest.mark.parametrize("as_json", [True, False])
def test_kv_watch_streams_new_changes_and_replays_with_from(tmp_path: Path, as_json: bool) -> None:
    url = _log(tmp_path)
    assert run("kv", "put", url, "app/a", "1").returncode == 0  # before the watch: not shown
    flag = ["--json"] if as_json else []
    w = _spawn("kv", "watch", url, "app/", *flag)
    try:
        time.sleep(1.5)
        assert run("kv", "put", url, "app/b", "two\nlines").returncode == 0
        assert run("kv", "put", url, "other", "x").returncode == 0  # not under the prefix
        assert run("kv", "del", url, "app/a").returncode == 0
        first, second = _line(w), _line(w)
    finally:
        w.kill()
        w.wait()
    if as_json:
        a, b = json.loads(first), json.loads(second)
        assert (a["op"], a["key"], a["value"], a["slot"]) == ("put", "app/b", "two\nlines", 1)
        assert (b["op"], b["key"], b["value"]) == ("del", "app/a", None)
    else:
        assert first == "put\tapp/b\ttwo\\nlines\n"  # one line per change, escaped
        assert second == "del\tapp/a\t\n"
    replay = _spawn("kv", "watch", url, "app/", "--from", "0", "--json")
    try:
        assert json.loads(_line(replay))["key"] == "app/a"
    finally:
        replay.kill()
        replay.wait()


@pytest.mark.parametrize(
    "args",
    [
        ("log", "{url}", "--limit", "-1"),
        ("log", "{url}", "--from", "-1"),
        ("lock", "acquire", "{url}", "x", "--wait", "-5"),
        ("kv", "watch", "{url}", "--from", "x"),
    ],
)
def test_bad_numbers_are_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = _log(tmp_path)
    out = run(*(a.format(url=url) for a in args))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("passivepaxos")


def test_long_running_commands_outlive_the_command_timeout(tmp_path: Path) -> None:
    """The outside review's H1: campaign, observe and kv watch got the 30 s total
    deadline of a bounded command; campaign then exited 75 (its term 'lost') and the
    watchers 1. With --timeout 2 the old code ended all three within 2 s."""
    url = _log(tmp_path)
    leader = _spawn("--timeout", "2", "elect", "campaign", url, "sched", "--candidate", "w1")
    obs = _spawn("--timeout", "2", "elect", "observe", url, "never-used")
    watch = _spawn("--timeout", "2", "kv", "watch", url)
    try:
        assert _line(leader).startswith("sched: leader w1")
        assert _line(obs).strip() == "never-used: no leader"
        time.sleep(4.0)
        assert (leader.poll(), obs.poll(), watch.poll()) == (None, None, None)
        # the review's H3: a never-used name's changes were never printed
        assert run("lock", "acquire", url, "never-used", "--owner", "x").returncode == 0
        assert _line(obs).strip() == "never-used: leader x, term 1"
        assert run("kv", "put", url, "k", "v").returncode == 0
        assert _line(watch).startswith("put\tk\tv")
        leader.send_signal(signal.SIGTERM)
        assert leader.wait(20) == 0
    finally:
        for p in (leader, obs, watch):
            p.kill()
            p.wait()


def test_names_with_newlines_print_on_one_line(tmp_path: Path) -> None:
    """The outside review's M4: a holder named 'evil\\nn1: free' printed a second line
    that a script reading `lock status` would take for the answer."""
    url = _log(tmp_path)
    assert run("lock", "acquire", url, "n1", "--owner", "evil\nn1: free").returncode == 0
    out = run("lock", "status", url, "n1").stdout
    assert len(out.splitlines()) == 1 and "evil\\nn1: free" in out


def test_passivepaxos_log_with_optional_positionals(tmp_path: Path) -> None:
    """The outside review's M1: with PASSIVEPAXOS_LOG set, `kv cas K E N` and `kv list P`
    took their first word for LOG."""
    url = _log(tmp_path)
    env = {"PASSIVEPAXOS_LOG": url}
    assert run("kv", "put", "k1", "v1", env=env).returncode == 0
    cas = run("kv", "cas", "k1", "v1", "v2", "--json", env=env)
    assert cas.returncode == 0 and json.loads(cas.stdout)["current"] == "v2"
    assert run("kv", "cas", "k2", "--absent", "n", env=env).returncode == 0
    listed = run("kv", "list", "k1", "--json", env=env)
    assert [json.loads(x)["key"] for x in listed.stdout.splitlines()] == ["k1"]


def test_on_s3_campaign_status_and_kv_watch(moto_server: object) -> None:
    from tests.test_cli_lockrun import _s3_log

    url, env = _s3_log(moto_server, "cli-elect")
    leader = _spawn("elect", "campaign", url, "sched", "--candidate", "w1", "--json", env=env)
    watch = _spawn("kv", "watch", url, "--json", env=env)
    try:
        assert json.loads(_line(leader))["token"] == 1
        status = json.loads(run("elect", "status", url, "sched", "--json", env=env).stdout)
        assert (status["holder"], status["token"]) == ("w1", 1)
        time.sleep(1.5)
        assert run("kv", "put", url, "k", "v", env=env).returncode == 0
        got = json.loads(_line(watch))
        assert (got["op"], got["key"], got["value"]) == ("put", "k", "v")
        leader.send_signal(signal.SIGTERM)
        assert leader.wait(20) == 0
    finally:
        for p in (leader, watch):
            p.kill()
            p.wait()
