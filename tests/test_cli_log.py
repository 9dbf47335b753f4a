"""`append`, `log`, `status`, `verify` through the CLI (BRIEF section 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from passivepaxos.log import slot_instance
from passivepaxos.store import open_store
from passivepaxos.types import PutMode
from tests.test_cli import ROOT, run


def run_bytes(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "passivepaxos", *args],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def jlines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_append_log_status_verify(tmp_path: Path) -> None:
    log = tmp_path.as_uri()
    assert run("init", log).returncode == 0
    out = run("append", log, "a", "b")
    assert (out.returncode, out.stdout) == (0, "0\n0\n"), out.stderr
    rows = jlines(run("append", log, "héllo", "--json").stdout)
    assert rows == [{"slot": 1, "index": 0, "value": "héllo"}]
    raw = run_bytes("append", log, b"\xff\x01bin", "--json")
    assert json.loads(raw.stdout) == {"slot": 2, "index": 0, "value_b64": "/wFiaW4="}
    entries = jlines(run("log", log, "--json").stdout)
    assert [(e["slot"], e["index"]) for e in entries] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert [e.get("value") for e in entries[:3]] == ["a", "b", "héllo"]
    assert entries[3]["value_b64"] == "/wFiaW4="
    assert jlines(run("log", log, "--from", "1", "--limit", "1", "--json").stdout) == [
        {"slot": 1, "index": 0, "value": "héllo"}
    ]
    assert run("log", log, "--limit", "2").stdout == "0\t0\ta\n0\t1\tb\n"
    status = json.loads(run("status", log, "--json").stdout)
    assert status["head"] == 2 and status["mode"] == "create" and status["stores"] == [log]
    assert status["holder"] is None and status["epoch"] == 0  # never claimed
    assert "head slot" in run("status", log).stdout
    ok = run("verify", log, "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    assert run("verify", log).stdout.startswith("intact: 3 slot(s), 4 entries")


def _fill(log: str, n: int) -> None:
    assert run("init", log).returncode == 0
    for i in range(n):
        assert run("append", log, f"e{i}").returncode == 0


def test_damage_is_exit_1_naming_slot_3(tmp_path: Path) -> None:
    log = tmp_path.as_uri()
    _fill(log, 5)
    store = open_store(log)
    store.backend.put(slot_instance(3), b"junk", PutMode.OVERWRITE)
    out = run("verify", log)
    assert out.returncode == 1 and "slot 3" in out.stdout
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "slot 3" in err[0] and slot_instance(3) in err[0]
    report = json.loads(run("verify", log, "--json").stdout)
    assert (report["ok"], report["bad_slot"]) == (False, 3)
    shown = run("log", log)
    assert shown.returncode == 1 and shown.stdout.count("\n") == 3  # slots 0..2, then stop
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and "slot 3" in lines[0] and "Traceback" not in shown.stderr

    # a validly framed record with a broken hash chain: copy slot 4's record into slot 3
    got = store.get(slot_instance(4))
    assert got is not None
    store.put(slot_instance(3), got[0].replace(b'"slot":4', b'"slot":3'), PutMode.OVERWRITE)
    out = run("verify", log, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["bad_slot"] == 3 and "checksum" in report["reason"]
    rec = json.loads(got[0])
    import hashlib

    body = {k: v for k, v in rec.items() if k != "sum"} | {"slot": 3}
    body["sum"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    store.put(
        slot_instance(3),
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
        PutMode.OVERWRITE,
    )
    out = run("verify", log, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["bad_slot"] == 3 and "hash chain" in report["reason"]
    shown = run("log", log)
    assert shown.returncode == 1 and "slot 3" in shown.stderr and "hash chain" in shown.stderr


def test_verify_cannot_check_is_exit_2(tmp_path: Path) -> None:
    d = tmp_path / "log"
    d.mkdir()
    log = d.as_uri()
    _fill(log, 1)
    os.chmod(d / "log", 0o000)
    try:
        if os.getuid() == 0:  # root reads anyway: use a missing directory instead
            log = (tmp_path / "gone").as_uri()
        out = run("verify", log)
        assert out.returncode == 2, (out.stdout, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1
    finally:
        os.chmod(d / "log", 0o755)


def test_quorum_append_with_one_broken_store(tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in "abc"]
    for d in dirs:
        d.mkdir()
    log = ",".join(d.as_uri() for d in dirs)
    assert run("init", log).returncode == 0
    import shutil

    shutil.rmtree(dirs[1])
    dirs[1].write_text("not a directory")
    out = run("append", log, "x", "y")
    assert (out.returncode, out.stdout) == (0, "0\n0\n"), out.stderr
    assert run("log", log).stdout == "0\t0\tx\n0\t1\ty\n"
    # the log is readable, but store b cannot be checked: exit 2, not "intact" (review 3 #9)
    out = run("verify", log)
    assert out.returncode == 2 and "not checked in full" in out.stdout, out
    assert dirs[1].as_uri() in out.stderr


def test_missing_bucket_is_one_line(moto_server: Any) -> None:
    out = run("append", "s3://no-such-bucket/x", "hi", env=moto_server.env())
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "bucket 'no-such-bucket' does not exist" in lines[0], out.stderr


def test_text_escaping_is_one_line_and_never_prints_two_values_alike() -> None:
    """The outside review's L2: U+2028, U+0085 and bidi overrides were printed raw (a
    value spanning lines for str.splitlines, or displayed reversed); a character U+0085
    and a byte 0x85 that is not UTF-8 must not print alike."""
    from passivepaxos.terminal import escape_value, plain_cell

    values = [
        "u\u2028v".encode(),
        "p\u0085q".encode(),
        b"p\x85q",
        "x\u202ey".encode(),
        b"a\\b",
        b"a\\\\b",
        b"a\\x85",
        b"\x00\x7f\t\n\r",
    ]
    shown = [escape_value(v) for v in values]
    assert len(set(shown)) == len(shown)
    assert all(len(s.splitlines()) == 1 and s.isprintable() for s in shown), shown
    assert plain_cell("a\nb") != plain_cell("a\\nb")
