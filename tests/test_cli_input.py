"""Values from stdin and files, and the default log from PASSIVEPAXOS_LOG, through the real
CLI (issue 13; BRIEF section 5: "A VALUE of - reads values from stdin ... PASSIVEPAXOS_LOG
supplies LOG when omitted")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from passivepaxos.log import Log
from tests.test_cli import ROOT


def cli(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "passivepaxos", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    d = tmp_path / "log"
    d.mkdir()
    u = f"file://{d}"
    assert cli("init", u).returncode == 0
    return u


def _values(url: str, env: dict[str, str] | None = None) -> list[bytes]:
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        with Log.open(url) as log:
            return [e.value for e in log.read(0)]
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_dash_reads_one_value_per_line_in_place(url: str) -> None:
    out = cli("append", url, "first", "-", "last", stdin=b"a\nb c\r\n\nd")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split() == ["0"] * 6  # one slot for the whole call
    assert _values(url) == [b"first", b"a", b"b c", b"", b"d", b"last"]


def test_binary_values_with_nul_bytes_and_ten_megabytes(url: str, tmp_path: Path) -> None:
    big = os.urandom(10 * 1024 * 1024)
    f = tmp_path / "big.bin"
    f.write_bytes(big)
    raw = b"\x00\x01\xffnot utf-8\x00\n"
    out = cli("append", url, "--file", str(f), "--stdin-raw", "--json", stdin=raw)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    assert "value_b64" in rows[1]  # not UTF-8: base64, never raw bytes
    assert _values(url) == [big, raw]
    # and back out through the CLI, byte for byte
    shown = cli("log", url, "--json")
    got = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(got) == 2 and "value_b64" in got[1]


def test_kv_put_reads_its_value_from_stdin(url: str) -> None:
    assert cli("kv", "put", url, "k", "-", stdin=b"v\x00al\n").returncode == 0
    got = json.loads(cli("kv", "get", url, "k", "--json").stdout)
    assert got["value"] == "v\u0000al\n"


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (("-", "--stdin-raw"), b"x", "stdin can be read once"),
        (("-", "-"), b"x", "stdin can be read once"),
        (("-",), b"", "stdin held no values"),
        ((), b"", "give a VALUE"),
        (("--file", "/no/such/file"), b"", "--file /no/such/file: No such file"),
    ],
)
def test_bad_value_sources_are_usage_errors(
    url: str, args: tuple[str, ...], stdin: bytes, needle: str
) -> None:
    out = cli("append", url, *args, stdin=stdin)
    assert out.returncode == 2 and needle in out.stderr.decode(), out.stderr
    assert _values(url) == []  # nothing written


def test_passivepaxos_log_supplies_log_when_left_out(url: str) -> None:
    env = {"PASSIVEPAXOS_LOG": url}
    assert cli("append", "hello", "world", env=env).returncode == 0
    assert (
        cli("append", url, "explicit", env={"PASSIVEPAXOS_LOG": "file:///nowhere"}).returncode == 0
    )
    assert _values(url) == [b"hello", b"world", b"explicit"]
    status = json.loads(cli("status", "--json", env=env).stdout)
    assert status["head"] == 1
    assert cli("kv", "put", "k", "v", env=env).returncode == 0
    assert json.loads(cli("kv", "get", "k", "--json", env=env).stdout)["value"] == "v"
    lock = cli("lock", "acquire", "job", "--json", env=env)
    assert lock.returncode == 0 and json.loads(lock.stdout)["token"] == 1


def test_no_log_and_no_passivepaxos_log_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PASSIVEPAXOS_LOG"}
    out = subprocess.run(
        [sys.executable, "-m", "passivepaxos", "status"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "or set PASSIVEPAXOS_LOG" in out.stderr


def test_on_s3_values_from_stdin(moto_server: object) -> None:
    env: dict[str, str] = moto_server.env()  # type: ignore[attr-defined]
    moto_server.client().create_bucket(Bucket="cli-input")  # type: ignore[attr-defined]
    u = "s3://cli-input/log"
    assert cli("init", u, env=env).returncode == 0
    out = cli("append", "-", stdin=b"one\ntwo\n", env={**env, "PASSIVEPAXOS_LOG": u})
    assert out.returncode == 0, out.stderr
    assert _values(u, env) == [b"one", b"two"]
