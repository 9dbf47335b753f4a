"""End to end (issue 4 item 9): six OS processes append to one log at once on a real S3
(moto_server), a real GCS emulator (fake-gcs-server), azurite (Azure Blob) and local disk,
two of them SIGKILLed mid-run. Afterwards ``verify`` exits 0, every acknowledged value
appears exactly once at its acknowledged (slot, index), no value appears twice, and
independent readers (two ``passivepaxos log --json`` processes and the Log API) see the same
order. A slot object overwritten by hand on S3 / GCS / Azure makes ``verify`` exit 1 naming
it and ``log`` stop there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.log import Log, slot_instance
from passivepaxos.types import PutMode
from tests.conftest import get_harness

ROOT = Path(__file__).resolve().parent.parent
WRITERS = 6
KILLED = 2  # the first KILLED writers are SIGKILLed ...
KILL_AFTER = 3  # ... once they have had this many values acknowledged
PER_WRITER = 12  # values each surviving writer appends
TIMEOUT = 120.0

# One long-lived writer process: open the log, say ready, wait for "go" on stdin, then
# append its values one at a time, printing one JSON line per acknowledged value.
WORKER = r"""
import json, sys
from passivepaxos.log import Log
url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Log.open(url) as log:
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    for i in range(count):
        value = f"{name}/{i}"
        (pos,) = log.append_positions([value.encode()])
        print(json.dumps({"value": value, "slot": pos.slot, "index": pos.index}), flush=True)
"""


def cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passivepaxos", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=timeout,
    )


class Writer:
    def __init__(self, log: str, name: str, count: int) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, log, name, str(count)],
            cwd=ROOT,
            env=dict(os.environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acks: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.stderr = ""
        self._out = threading.Thread(target=self._read, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("ready"):
                self.ready.set()
                continue
            self.acks.append(msg)  # list.append is atomic: the main thread polls len()
        self.ready.set()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def finish(self, deadline: float) -> int:
        code = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        self._out.join(10)
        self._err.join(10)
        return code


def _run_writers(log: str) -> tuple[list[Writer], int]:
    """Start the writers together, SIGKILL the first KILLED after KILL_AFTER acks each, wait
    for the rest; return the writers and how many were killed while still running."""
    # the victims have far more to append: they are always mid-run when the kill comes
    writers = [Writer(log, f"w{i}", PER_WRITER * (10 if i < KILLED else 1)) for i in range(WRITERS)]
    deadline = time.monotonic() + TIMEOUT
    try:
        for w in writers:
            assert w.ready.wait(max(0.1, deadline - time.monotonic())), w.name
            assert w.proc.poll() is None, f"{w.name} died before starting: {w.stderr}"
        for w in writers:
            w.go()
        killed = 0
        victims = list(writers[:KILLED])
        while victims:  # each victim is killed as soon as it has KILL_AFTER acks
            assert time.monotonic() < deadline, [(w.name, len(w.acks)) for w in victims]
            for w in list(victims):
                if len(w.acks) >= KILL_AFTER or w.proc.poll() is not None:
                    victims.remove(w)
                    if w.proc.poll() is None:
                        w.proc.send_signal(signal.SIGKILL)
                        killed += 1
            time.sleep(0.005)
        for i, w in enumerate(writers):
            code = w.finish(deadline)
            if i < KILLED:
                assert code == -signal.SIGKILL, (w.name, code, w.stderr)
                assert KILL_AFTER <= len(w.acks) < 10 * PER_WRITER, (w.name, len(w.acks))
            else:
                assert code == 0, (w.name, code, w.stderr)
                assert len(w.acks) == PER_WRITER, (w.name, w.acks, w.stderr)
        return writers, killed
    finally:
        for w in writers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()


def _entries_of(out: subprocess.CompletedProcess[str]) -> list[tuple[int, int, str]]:
    assert out.returncode == 0, out.stderr
    return [(e["slot"], e["index"], e["value"]) for e in map(json.loads, out.stdout.splitlines())]


@pytest.mark.parametrize("name", ["local", "s3", "gcs", "azure"])
def test_six_writers_two_killed(name: str, request: pytest.FixtureRequest) -> None:
    log = get_harness(request, name).url()
    t0 = time.monotonic()
    init = cli("init", log)
    assert init.returncode == 0, init.stderr

    writers, killed = _run_writers(log)
    acks = [a for w in writers for a in w.acks]
    t_append = time.monotonic() - t0

    verify = cli("verify", log, "--json")
    assert verify.returncode == 0, (verify.stdout, verify.stderr)
    report = json.loads(verify.stdout)
    assert report["ok"] is True

    # two independent reader processes at once, then the Log API
    with subprocess.Popen(
        [sys.executable, "-m", "passivepaxos", "log", log, "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as other:
        first = _entries_of(cli("log", log, "--json"))
        out, err = other.communicate(timeout=TIMEOUT)
    second = _entries_of(subprocess.CompletedProcess(other.args, other.returncode, out, err))
    with Log.open(log) as reader:
        api = [(e.slot, e.index, e.value.decode()) for e in reader.read()]
    assert first == second == api
    assert report["entries"] == len(api)

    # every acknowledged value exactly once, where it was acknowledged; nothing twice
    counts = Counter(v for _, _, v in api)
    assert [v for v, n in counts.items() if n > 1] == []
    where = {v: (s, i) for s, i, v in api}
    for a in acks:
        assert counts[a["value"]] == 1, a
        assert where[a["value"]] == (a["slot"], a["index"]), a
    # positions are the log's order: slots ascending, indexes dense from 0 inside each slot
    assert [(s, i) for s, i, _ in api] == sorted((s, i) for s, i, _ in api)
    by_slot: dict[int, list[int]] = {}
    for s, i, _ in api:
        by_slot.setdefault(s, []).append(i)
    assert list(by_slot) == list(range(len(by_slot)))
    assert all(ix == list(range(len(ix))) for ix in by_slot.values())
    # only the killed writers can have entries nobody acknowledged (killed mid-append)
    unacked = set(counts) - {a["value"] for a in acks}
    assert all(v.split("/")[0] in {w.name for w in writers[:KILLED]} for v in unacked)
    assert len(unacked) <= KILLED

    assert killed == KILLED, "the killed writers finished before they could be killed"
    print(
        f"\n{name}: {len(acks)} values acknowledged by {WRITERS} writers "
        f"({killed} SIGKILLed after {[len(w.acks) for w in writers[:KILLED]]} acks), "
        f"{len(api)} entries in {len(by_slot)} slots, {len(unacked)} unacknowledged, "
        f"verify ok, appends {t_append:.1f} s, total {time.monotonic() - t0:.1f} s"
    )


def _corrupt_by_hand(name: str, request: pytest.FixtureRequest, log: str, slot: int) -> None:
    """Overwrite the raw object of ``slot`` with garbage, bypassing passivepaxos."""
    if name == "s3":
        moto = request.getfixturevalue("moto_server")
        bucket, _, prefix = log.removeprefix("s3://").partition("/")
        key = f"{prefix}/{slot_instance(slot)}" if prefix else slot_instance(slot)
        moto.client().head_object(Bucket=bucket, Key=key)  # the object we think it is
        moto.client().put_object(Bucket=bucket, Key=key, Body=b"\x00garbage\xff")
    else:
        raw = get_harness(request, name).store(log)
        assert raw.get(slot_instance(slot)) is not None
        raw.backend.put(slot_instance(slot), b"\x00garbage\xff", PutMode.OVERWRITE)


@pytest.mark.parametrize("name", ["s3", "gcs", "azure"])
def test_corrupt_slot_is_named_and_log_stops_there(
    name: str, request: pytest.FixtureRequest
) -> None:
    log = get_harness(request, name).url()
    assert cli("init", log).returncode == 0
    with Log.open(log) as w:
        for i in range(6):
            w.append([f"e{i}".encode()])
    _corrupt_by_hand(name, request, log, 3)

    out = cli("verify", log)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "slot 3" in out.stdout
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "slot 3" in err[0] and slot_instance(3) in err[0], out.stderr
    as_json = cli("verify", log, "--json")
    assert as_json.returncode == 1, (as_json.stdout, as_json.stderr)
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["bad_slot"], report["slots"]) == (False, 3, 3)

    shown = cli("log", log, "--json")
    assert shown.returncode == 1
    *rows, last = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["value"] for r in rows] == ["e0", "e1", "e2"]
    assert "slot 3" in last["error"] and last["exit"] == 1  # the refusal, as JSON too
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and "slot 3" in lines[0] and "Traceback" not in shown.stderr
    # reading from beyond the damage still refuses to start past it silently
    later = cli("log", log, "--from", "4")
    assert later.returncode == 1 and "slot 3" in later.stderr, (later.stdout, later.stderr)
