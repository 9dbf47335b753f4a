"""Issue 10 (smaller findings), through the CLI: one clear line instead of a traceback for
non-UTF-8 arguments and a demo path that is a file; JSON always valid UTF-8 (bytes that are
not UTF-8 as ``*_b64``); ``memory://`` refused (exit 2); an unknown outcome is exit 3
"outcome unknown"; a reader closing the pipe early is exit 0, quietly."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from passivepaxos.cli import EXIT_UNKNOWN, main
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import Backend, PutMode, Version
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import FaultPlan, FaultyBackend

ROOT = Path(__file__).resolve().parent.parent


def cli(
    *args: str | bytes, stdout: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with raw bytes arguments (so that a non-UTF-8 one reaches it as such)."""
    return subprocess.run(
        [sys.executable.encode(), b"-m", b"passivepaxos", *(os.fsencode(a) for a in args)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def one_line(err: bytes) -> str:
    text = err.decode()
    assert text.count("\n") == 1 and text.startswith("passivepaxos: error: "), text
    assert "Traceback" not in text
    return text


@pytest.fixture
def log(tmp_path: Path) -> str:
    url = tmp_path.as_uri()
    assert cli("init", url).returncode == 0
    return url


def test_propose_a_non_utf8_value(log: str) -> None:
    """On d26dea1: a UnicodeEncodeError traceback (``args.value.encode()``)."""
    out = cli("propose", log, "inst", b"\xff")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"\xff\n" and out.stderr == b""
    out = cli("propose", log, "inst", b"\xfe", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.decode("utf-8"))
    assert got == {"instance": "inst", "proposed_b64": "/g==", "value_b64": "/w==", "won": False}


def test_kv_list_with_a_non_utf8_key(log: str) -> None:
    """On d26dea1: ``kv list`` after ``kv put LOG $'\\xff' v`` was a traceback and
    ``kv list --json`` wrote a raw 0xFF byte (not UTF-8 JSON)."""
    assert cli("kv", "put", log, b"\xff", "v").returncode == 0
    assert cli("kv", "put", log, "k\u00e9", b"\xfe").returncode == 0
    out = cli("kv", "list", log)
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    # one line per key, tab-separated, bytes that are not UTF-8 escaped (issue 13)
    assert out.stdout == "k\u00e9\t".encode() + b"\\xfe\n" + b"\\xff\tv\n"
    out = cli("kv", "list", log, "--json")
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    rows = [json.loads(line) for line in out.stdout.decode("utf-8").splitlines()]
    assert rows == [
        {"key": "k\u00e9", "value_b64": base64.b64encode(b"\xfe").decode()},
        {"key_b64": base64.b64encode(b"\xff").decode(), "value": "v"},
    ]
    out = cli("kv", "get", log, b"\xff", "--json")
    assert out.returncode == 0 and json.loads(out.stdout.decode("utf-8")) == {
        "key_b64": "/w==",
        "value": "v",
    }
    out = cli("kv", "get", log, b"\xff")
    assert out.returncode == 0 and out.stdout == b"v\n"


def test_lock_name_that_is_not_utf8_is_a_usage_error(log: str) -> None:
    """Lock names are stored in JSON and printed back: a non-UTF-8 one wrote a lone
    surrogate into the log and printed ``"name": "\\udcff"``; now it is refused."""
    out = cli("lock", "acquire", log, b"\xff", "--json")
    assert out.returncode == 2
    # with --json the refusal is an object on stdout too (issue 13), nothing else
    assert json.loads(out.stdout) == {"error": json.loads(out.stdout)["error"], "exit": 2}
    assert "not UTF-8" in json.loads(out.stdout)["error"]
    assert "lock name" in one_line(out.stderr) and "not UTF-8" in one_line(out.stderr)


def test_demo_path_is_a_file(tmp_path: Path) -> None:
    """On d26dea1: a FileExistsError traceback, exit 1."""
    f = tmp_path / "afile"
    f.write_text("x")
    out = cli("demo", str(f))
    assert out.returncode == 2
    assert f"{f} exists and is not a directory" in one_line(out.stderr)


@pytest.mark.parametrize("url", ["memory://x", "file:///tmp/a,memory://b", "MEMORY://x"])
def test_memory_store_refused_by_the_cli(url: str) -> None:
    """On d26dea1 ``init memory://x`` said "initialised" and ``append memory://x a`` then
    said "no log here"."""
    for args in (("init", url), ("append", url, "a"), ("log", url)):
        out = cli(*args)
        assert out.returncode == 2, (args, out.stdout)
        assert "memory:// store lives inside one process" in one_line(out.stderr)


# -- outcome unknown: exit 3 ---------------------------------------------------------------


class _LoseCreateThenFail(FaultyBackend):
    """The first create of a slot object lands and its answer is lost; from then on every
    request fails before taking effect: the append cannot find out what happened."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner, FaultPlan(before=1.0))
        self.enabled = False

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        if key.startswith("log/0") and not self.enabled:
            self.script("after")
            self.enabled = True
        return super().put(key, data, mode)


@pytest.fixture
def ambiguous(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    url = tmp_path.as_uri()
    assert main(["init", url]) == 0
    fast = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, resolve_attempts=2)

    def faulty_store(u: object, **kwargs: object) -> Store:
        return Store(_LoseCreateThenFail(open_backend(u)), retry=fast)  # type: ignore[arg-type]

    monkeypatch.setattr("passivepaxos.manifest.open_store", faulty_store)
    yield url


def test_ambiguous_append_exits_3(ambiguous: str, capsys: pytest.CaptureFixture[str]) -> None:
    """On d26dea1 an AmbiguousWriteError was exit 1, which reads as "not written"; the entry
    is in fact there."""
    code = main(["append", ambiguous, "maybe"])
    out = capsys.readouterr()
    assert code == EXIT_UNKNOWN == 3, out.err
    assert out.out == ""
    assert out.err.count("\n") == 1 and "outcome unknown" in out.err
    assert out.err.startswith("passivepaxos: error: ")
    # it did take effect (the store underneath, read directly, holds the slot)
    got = Store(open_backend(ambiguous)).get("log/00000000000000000000")
    assert got is not None and base64.b64encode(b"maybe") in got[0]


def test_transient_failure_that_wrote_nothing_is_still_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 only when the outcome is unknown: a failure before any effect stays 1."""
    url = tmp_path.as_uri()
    assert main(["init", url]) == 0
    fast = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, resolve_attempts=2)

    def failing_reads(u: object, **kwargs: object) -> Store:
        return Store(FaultyBackend(open_backend(u), FaultPlan(before=1.0)), retry=fast)  # type: ignore[arg-type]

    monkeypatch.setattr("passivepaxos.manifest.open_store", failing_reads)
    code = main(["log", url])
    err = capsys.readouterr().err
    assert code == 1 and "outcome unknown" not in err and err.count("\n") == 1, err


# -- a reader that closes the pipe early ---------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("backends",), ("backends", "--json"), ("status", "{log}"), ("log", "{log}")],
)
def test_closed_pipe_is_exit_0(tmp_path: Path, args: tuple[str, ...]) -> None:
    """The reader is gone before the first byte is written (``| head`` that already
    exited): on d26dea1 ``backends`` and ``status`` exited 1 (rich's broken-pipe handler)."""
    url = tmp_path.as_uri()
    assert cli("init", url).returncode == 0
    assert cli("append", url, *[f"v{i}" for i in range(50)]).returncode == 0
    r, w = os.pipe()
    os.close(r)  # every write to w now fails with EPIPE
    try:
        out = cli(*(a.format(log=url) for a in args), stdout=w)
    finally:
        os.close(w)
    assert out.returncode == 0, out.stderr
    assert out.stderr == b""


def test_invalid_bucket_name_is_a_configuration_error() -> None:
    """On d26dea1: "create outcome unknown ... ParamValidationError", exit 1 (and with exit 3
    for unknown outcomes it would have read as "maybe written"). botocore refuses the name
    before sending anything, so no server is needed."""
    env = {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # never contacted
    }
    for args in (("init", "s3://bad_bucket!/x"), ("append", "s3://bad_bucket!/x", "a")):
        out = subprocess.run(
            [sys.executable, "-m", "passivepaxos", *args],
            capture_output=True,
            cwd=ROOT,
            env={**os.environ, **env},
            timeout=120,
        )
        assert out.returncode == 2, out.stderr
        assert "'bad_bucket!' is not a valid S3 bucket name" in one_line(out.stderr)


def test_review3_3_huge_ttl_and_bad_wait_refused_with_exit_2(log: str, tmp_path: Path) -> None:
    """Review 3 #3: `writer claim --ttl 1e308` wrote the claim and then failed with
    "unexpected OverflowError"; `lock acquire --wait inf` failed with "unexpected
    ValueError", `--wait nan` was taken as "do not wait". Now all refused up front (exit 2),
    nothing written."""
    for args in (
        ("writer", "claim", log, "--ttl", "1e308", "--no-wait"),
        ("writer", "claim", log, "--ttl", "86401"),
        ("writer", "claim", log, "--ttl", "inf"),
        ("lock", "acquire", log, "db", "--ttl", "1e308"),
        ("lock", "acquire", log, "db", "--ttl", "nan"),
        ("lock", "acquire", log, "db", "--wait", "inf"),
        ("lock", "acquire", log, "db", "--wait", "nan"),
        ("lock", "acquire", log, "db", "--wait", "-1"),
    ):
        out = cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert b"--ttl" in out.stderr or b"--wait" in out.stderr, out.stderr
        assert b"Traceback" not in out.stderr and b"unexpected" not in out.stderr
    assert sorted(p.name for p in (tmp_path / "log").glob("*")) == [], "something was written"


def test_review3_3_readers_survive_a_huge_ttl_written_by_another_client(log: str) -> None:
    """A lease claim and a lock entry with ttl 1e308, as an older or foreign client could
    write them: status, writer status, lock status and log still answer (no crash)."""
    from passivepaxos.log import Log
    from passivepaxos.recipes.lock import Op, encode_op

    with Log.open(log, writer_id="other") as other:
        other.append([encode_op("locks", Op("acquire", "db", "o", 1e308, None, None, 1.7e9, "r1"))])
        other._commit([], op="claim", ttl=1e308, wait=False)  # bypasses claim_writer's bound
    for args in (
        ("status", log),
        ("writer", "status", log, "--json"),
        ("lock", "status", log, "db", "--json"),
        ("lock", "status", log, "db"),
        ("log", log, "--json"),
    ):
        out = cli(*args)
        assert out.returncode == 0, (args, out.stderr)
    out = cli("writer", "status", log, "--json")
    assert "out of calendar range" in json.loads(out.stdout)["expires"]
    out = cli("append", log, "x")  # held by "other" for ever: a plain refusal, one line
    assert out.returncode == 1, out.stderr
    assert "unexpected" not in one_line(out.stderr)
    out = cli("lock", "acquire", log, "db")  # held for 1e308 s: refused, in a short line
    assert out.returncode == 1, out.stderr
    assert "1e+308s more" in one_line(out.stderr) and len(out.stderr) < 400
