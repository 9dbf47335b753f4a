"""``passivepaxos demo [DIR]`` (issue 4 item 8): three OS processes append to a log on
local disk at once; the log, its status and a verification are shown; exit 0 only when
the log verifies and every acknowledged value is in it exactly once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from passivepaxos.log import Log, slot_instance
from passivepaxos.store import open_store
from passivepaxos.types import PutMode

ROOT = Path(__file__).resolve().parent.parent
VALUES = [f"proc-{p} #{i}" for p in (1, 2, 3) for i in range(1, 21)]


def demo(*args: str, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the demo as a user would, in a fresh interpreter; (result, wall seconds)."""
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "passivepaxos", "demo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    return out, time.monotonic() - t0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passivepaxos", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_demo_in_dir(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    out, secs = demo(str(d), cwd=tmp_path)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert secs < 30, f"demo took {secs:.1f} s"  # a sanity bound, not a performance test
    text = out.stdout
    # the table lists every value, once
    for v in VALUES:
        assert len(re.findall(rf"\b{re.escape(v)}\b", text)) == 1, v
    # the status table and the verification are shown; the summary is one line
    assert re.search(r"head slot\s*(│\s*)?59\b", text), text  # a table, or plain rows in a pipe
    assert "verify: intact: 60 slot(s), 60 entries, hash chain ok" in text
    summary = [ln for ln in text.splitlines() if ln.startswith(("OK:", "FAILED:"))]
    assert len(summary) == 1 and summary[0].startswith("OK: 60 entries acknowledged by 3"), text
    assert re.search(r"in \d+ slots .* [\d.]+ storage requests per entry", summary[0])

    # the log on disk is what the demo said: every value exactly once, chain intact
    log = d.as_uri()
    assert cli("verify", log).returncode == 0
    entries = [json.loads(line) for line in cli("log", log, "--json").stdout.splitlines()]
    assert Counter(e["value"] for e in entries) == Counter(VALUES)
    # each process's values are in its own order
    for p in (1, 2, 3):
        mine = [e["value"] for e in entries if e["value"].startswith(f"proc-{p} ")]
        assert mine == [f"proc-{p} #{i}" for i in range(1, 21)]

    # run again in the same directory: the log grows, only this run's entries are checked
    again, _ = demo(str(d), cwd=tmp_path)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert "reused (head slot 59)" in again.stdout
    with Log.open(log) as reader:
        assert reader.head() >= 60 and len(list(reader.read())) == 120


def test_demo_default_temp_dir() -> None:
    out, secs = demo()
    try:
        assert out.returncode == 0, (out.stdout, out.stderr)
        m = re.search(r"demo directory \(new, temporary\): (\S+)", out.stdout)
        assert m is not None, out.stdout
        path = Path(m.group(1))
        assert path.is_dir() and path.parent == Path(tempfile.gettempdir()).resolve()
        assert cli("verify", path.as_uri()).returncode == 0
        assert f"passivepaxos log {path.as_uri()}" in out.stdout
        assert secs < 30
    finally:
        if m := re.search(r"demo directory \(new, temporary\): (\S+)", out.stdout):
            shutil.rmtree(m.group(1), ignore_errors=True)


def test_demo_on_a_damaged_log_fails(tmp_path: Path) -> None:
    log = tmp_path.as_uri()
    assert cli("init", log).returncode == 0
    assert cli("append", log, "a").returncode == 0
    assert cli("append", log, "b").returncode == 0
    open_store(log).backend.put(slot_instance(1), b"junk", PutMode.OVERWRITE)
    out, _ = demo(str(tmp_path), "--count", "2")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "slot 1" in out.stdout + out.stderr
    assert "OK:" not in out.stdout


def test_demo_bad_options() -> None:
    out, _ = demo("--count", "0")
    assert out.returncode == 2 and "--count" in out.stderr
