"""``passivepaxos lock run LOG NAME -- CMD`` through the real CLI (issue 13): the token in
the environment, exit-status passthrough, one run at a time, waiting, and a command that
outlives a lost lock (its renewer SIGSTOPped while another process takes the lock over)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import ROOT, run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _log(tmp_path: Path) -> str:
    d = tmp_path / "log"
    d.mkdir()
    url = f"file://{d}"
    assert run("init", url).returncode == 0
    return url


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "passivepaxos", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _s3_log(moto_server: object, name: str) -> tuple[str, dict[str, str]]:
    env: dict[str, str] = moto_server.env()  # type: ignore[attr-defined]
    moto_server.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
    url = f"s3://{name}/log"
    assert run("init", url, env=env).returncode == 0
    return url, env


SHOW = 'echo "$PASSIVEPAXOS_FENCING_TOKEN $PASSIVEPAXOS_LOCK_NAME $PASSIVEPAXOS_LOG"; exit 7'


def test_token_in_the_environment_and_the_exit_status_passed_through(tmp_path: Path) -> None:
    url = _log(tmp_path)
    out = run("lock", "run", url, "nightly", "--ttl", "5", "--", "sh", "-c", SHOW)
    assert out.returncode == 7, out.stderr
    assert out.stdout.split() == ["1", "nightly", url]
    again = run("lock", "run", url, "nightly", "--", "sh", "-c", SHOW)
    assert again.returncode == 7 and again.stdout.split()[0] == "2"  # released, new token
    status = run("lock", "status", url, "nightly", "--json")
    assert '"holder": null' in status.stdout


def test_on_s3_the_same(moto_server: object) -> None:
    url, env = _s3_log(moto_server, "lockrun-s3")
    out = run("lock", "run", url, "nightly", "--", "sh", "-c", SHOW, env=env)
    assert out.returncode == 7, out.stderr
    assert out.stdout.split() == ["1", "nightly", url]
    # a signal that ends the command is reported as a shell does: 128 + N
    killed = run("lock", "run", url, "nightly", "--", "sh", "-c", "kill -KILL $$", env=env)
    assert killed.returncode == 128 + signal.SIGKILL, killed.stderr


def test_one_run_at_a_time_and_a_waiting_run_says_what_it_waits_for(tmp_path: Path) -> None:
    url = _log(tmp_path)
    first = _spawn("lock", "run", url, "job", "--ttl", "3", "--", "sleep", "1.5")
    time.sleep(0.8)
    refused = run("lock", "run", url, "job", "--", "echo", "ran")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "lock 'job' is held by" in refused.stderr
    waited = run("lock", "run", url, "job", "--wait", "20", "--", "echo", "ran")
    assert waited.returncode == 0 and waited.stdout == "ran\n", waited.stderr
    assert "waiting up to 20 s" in waited.stderr
    assert first.wait(10) == 0


def test_options_after_the_double_dash_belong_to_the_command(tmp_path: Path) -> None:
    url = _log(tmp_path)
    out = run(
        "lock",
        "run",
        url,
        "n",
        "--",
        sys.executable,
        "-c",
        "import sys; print(sys.argv)",
        "--ttl",
        "-x",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['-c', '--ttl', '-x']"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("--", "/no/such/command"), 127, "/no/such/command"),
        ((), 2, "give the command after `--`"),
        (("--signal", "NOPE", "--", "true"), 2, "--signal 'NOPE' is not a signal"),
        (("--grace", "-1", "--", "true"), 2, "--grace"),
    ],
)
def test_bad_commands_and_options(
    tmp_path: Path, args: tuple[str, ...], code: int, needle: str
) -> None:
    url = _log(tmp_path)
    out = run("lock", "run", url, "job", *args)
    assert out.returncode == code and needle in out.stderr, out.stderr
    # one line of ours (argparse's own usage errors print the usage line before it)
    assert len([x for x in out.stderr.strip().splitlines() if not x.startswith("usage:")]) == 1
    if code == 127:  # the lock acquired for it is released
        assert '"holder": null' in run("lock", "status", url, "job", "--json").stdout


def test_an_empty_lock_name_is_refused(tmp_path: Path) -> None:
    out = run("lock", "run", _log(tmp_path), "", "--", "true")
    assert out.returncode == 2 and "non-empty NAME" in out.stderr


def test_signals_sent_to_lock_run_are_passed_on_to_the_command(tmp_path: Path) -> None:
    url = _log(tmp_path)
    trap = 'trap "echo got TERM; exit 3" TERM; while true; do sleep 0.05; done'
    p = _spawn("lock", "run", url, "job", "--", "sh", "-c", trap)
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 3 and out == "got TERM\n", err
    assert '"holder": null' in run("lock", "status", url, "job", "--json").stdout  # released


@pytest.mark.parametrize("store", ["file", "s3"])
def test_a_command_outliving_a_lost_lock_is_signalled_then_killed(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    if store == "s3":
        url, env = _s3_log(request.getfixturevalue("moto_server"), "lockrun-lost")
    else:
        url, env = _log(tmp_path), {}
    ticks = tmp_path / "ticks"
    # the command ignores SIGTERM: only the SIGKILL after the grace ends it
    body = f'trap "" TERM; while true; do echo tick >> {ticks}; sleep 0.05; done'
    p = _spawn(
        "lock", "run", url, "job", "--ttl", "2", "--grace", "0.3", "--", "sh", "-c", body, env=env
    )
    deadline = time.monotonic() + 20
    while not ticks.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGSTOP)  # the renewer stalls; the command goes on
    try:
        taken = run("lock", "acquire", url, "job", "--ttl", "30", "--wait", "20", "--json", env=env)
        assert taken.returncode == 0 and '"token": 2' in taken.stdout, taken.stderr
    finally:
        os.kill(p.pid, signal.SIGCONT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 75, err
    assert "lock 'job' (token 1)" in err and "sent SIGTERM" in err
    assert "sent SIGKILL" in err
    n = len(ticks.read_text().splitlines())
    time.sleep(0.5)
    assert len(ticks.read_text().splitlines()) == n  # the command is gone
    # the taker still holds it: a lost lock is never released by the loser
    status = run("lock", "status", url, "job", "--json", env=env)
    assert '"token": 2' in status.stdout and '"holder": null' not in status.stdout


def _stall_and_take(p: subprocess.Popen[str], url: str, env: dict[str, str] | None = None) -> None:
    """SIGSTOP ``lock run`` (its renewer stalls), let another process take the lock over,
    then SIGCONT it."""
    os.kill(p.pid, signal.SIGSTOP)
    try:
        taken = run("lock", "acquire", url, "job", "--ttl", "30", "--wait", "20", "--json", env=env)
        assert taken.returncode == 0 and '"token": 2' in taken.stdout, taken.stderr
    finally:
        os.kill(p.pid, signal.SIGCONT)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists()


def _still_ticking(ticks: Path) -> bool:
    n = len(ticks.read_text().splitlines())
    time.sleep(0.5)
    return len(ticks.read_text().splitlines()) != n


def test_a_lost_lock_ends_the_commands_children_too(tmp_path: Path) -> None:
    """Review finding 2: only CMD's pid was signalled; a loop it started in the background
    went on writing after `lock run` exited, while the taker held the lock."""
    url = _log(tmp_path)
    ticks = tmp_path / "ticks"
    body = f"while true; do echo tick >> {ticks}; sleep 0.05; done & wait"
    p = _spawn("lock", "run", url, "job", "--ttl", "2", "--grace", "0.3", "--", "sh", "-c", body)
    _wait_for(ticks)
    _stall_and_take(p, url)
    assert p.wait(20) == 75
    assert not _still_ticking(ticks)


GRACE = ("--grace", "0.3", "--", "sh", "-c")


def test_a_closed_stderr_does_not_stop_the_command_being_signalled(tmp_path: Path) -> None:
    """Review finding 1: printing the loss to a broken stderr raised BrokenPipeError before
    the command was signalled; `lock run` exited 0 and the command ran on."""
    url = _log(tmp_path)
    ticks = tmp_path / "ticks"
    body = f'trap "" TERM; while true; do echo tick >> {ticks}; sleep 0.05; done'
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "passivepaxos",
            "lock",
            "run",
            url,
            "job",
            "--ttl",
            "2",
            *GRACE,
            body,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert p.stderr is not None
    p.stderr.close()  # nobody reads stderr any more
    _wait_for(ticks)
    _stall_and_take(p, url)
    assert p.wait(20) == 75
    assert not _still_ticking(ticks)


def test_a_command_ending_after_the_validity_ran_out_exits_75_and_releases_nothing(
    tmp_path: Path,
) -> None:
    """Review finding 3: the command finished while `lock run` was stopped past its
    validity; `lock run` then exited 0 and tried to release the taker's lock."""
    url = _log(tmp_path)
    started = tmp_path / "started"
    p = _spawn(
        "lock", "run", url, "job", "--ttl", "1", "--", "sh", "-c", f"touch {started}; sleep 2"
    )
    _wait_for(started)
    os.kill(p.pid, signal.SIGSTOP)
    try:
        taken = run("lock", "acquire", url, "job", "--ttl", "30", "--wait", "20", "--json")
        assert taken.returncode == 0, taken.stderr
        time.sleep(2.0)  # the command ends while lock run is stopped
    finally:
        os.kill(p.pid, signal.SIGCONT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 75, err
    assert "no longer ours" not in err
    assert '"token": 2' in run("lock", "status", url, "job", "--json").stdout


def test_two_runs_naming_one_owner_do_not_both_run(tmp_path: Path) -> None:
    """Review finding 7: an acquire by the holder renews the lock, so a second `lock run
    --owner X` ran beside the first and released its lock."""
    url = _log(tmp_path)
    started = tmp_path / "started"
    first = _spawn(
        "lock",
        "run",
        url,
        "job",
        "--owner",
        "cron",
        "--",
        "sh",
        "-c",
        f"touch {started}; sleep 1.5",
    )
    _wait_for(started)
    second = run("lock", "run", url, "job", "--owner", "cron", "--", "echo", "ran")
    assert second.returncode == 1 and second.stdout == ""
    assert "already held by owner cron" in second.stderr
    assert first.wait(20) == 0


def _in_a_terminal(args: list[str], keys: bytes) -> tuple[bytes, int]:
    """Run the CLI as the foreground job of a new terminal (a pty), type ``keys`` after a
    second; (what the terminal showed, exit status); killed after 20 s."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "passivepaxos", *args])
    out, typed = b"", False
    start = time.monotonic()
    while time.monotonic() - start < 20:
        if not typed and time.monotonic() - start > 1.0:
            os.write(fd, keys)
            typed = True
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            with contextlib.suppress(OSError):
                out += os.read(fd, 4096)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return out, os.waitstatus_to_exitcode(status)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"still running after 20 s; the terminal showed {out!r}")


def test_in_a_terminal_the_command_reads_it_and_gets_ctrl_c(tmp_path: Path) -> None:
    """The command's own process group gets the terminal: a command that reads it is not
    stopped (SIGTTIN), and Ctrl-C reaches it once."""
    url = _log(tmp_path)
    out, code = _in_a_terminal(
        ["lock", "run", url, "job", "--", "sh", "-c", "read x; echo got $x; exit 5"], b"hello\n"
    )
    assert code == 5 and b"got hello" in out, out
    out, code = _in_a_terminal(
        ["lock", "run", url, "job", "--", "sh", "-c", 'trap "echo INT; exit 4" INT; sleep 5'],
        b"\x03",
    )
    assert code == 4 and out.count(b"INT") == 1, out
