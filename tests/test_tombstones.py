"""Finding 13 of issue 10: tombstones after trim are checked, and a deleted one never lets a
write be acknowledged where readers do not look.

Trim overwrites slots ``0..s`` with tombstones so their names are never free again. These
tests delete or damage tombstones on a real directory (``file://``) and check, through the
CLI, that ``verify`` names the slot (exit 1) and that ``append`` refuses to write into the
hole (exit 1, nothing written), and, through the library, the case that stays undetectable
at write time (a writer that never saw the snapshot) is reported by ``verify``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from passivepaxos.log import Log, slot_instance
from passivepaxos.manifest import init_log
from passivepaxos.snapshot import decode_tombstone, is_tombstone
from passivepaxos.store import Store
from passivepaxos.types import PutMode
from passivepaxos.urls import open_backend

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passivepaxos", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def slot_file(root: Path, slot: int) -> Path:
    return root / slot_instance(slot)


def trimmed_log(root: Path, n: int = 5) -> str:
    """A log of ``n`` slots (values v0..), snapshot at its head, every slot trimmed."""
    root.mkdir(exist_ok=True)
    url = root.as_uri()
    assert cli("init", url).returncode == 0
    for i in range(n):
        out = cli("append", url, f"v{i}")
        assert out.returncode == 0 and out.stdout.strip() == str(i), out.stderr
    assert cli("snapshot", url).returncode == 0
    out = cli("trim", url, "--before", str(n))
    assert out.returncode == 0, out.stderr
    assert cli("verify", url).returncode == 0
    return url


def verify_json(url: str) -> tuple[int, dict[str, object]]:
    out = cli("verify", url, "--json")
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout.splitlines()[0])


@pytest.mark.parametrize("deleted", [0, 2, 4])
def test_finding_13_verify_names_a_deleted_tombstone(tmp_path: Path, deleted: int) -> None:
    """A trimmed slot whose tombstone was deleted is damage naming the slot (exit 1): on
    d26dea1 verify said "intact" for 2 and 4 (it jumped from the first tombstone to the
    snapshot's anchor)."""
    url = trimmed_log(tmp_path)
    slot_file(tmp_path, deleted).unlink()
    code, rep = verify_json(url)
    assert code == 1 and rep["ok"] is False and rep["bad_slot"] == deleted, rep
    assert "missing below the snapshot at slot 4" in str(rep["reason"])
    out = cli("verify", url)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and f"slot {deleted} is damaged" in out.stderr


def _rewrite(url: str, slot: int, change: dict[str, object], *, keep_sum: bool) -> None:
    """Overwrite slot ``slot``'s tombstone (through the Store, so its frame stays valid)
    with ``change`` applied; ``keep_sum``: leave the now wrong checksum."""
    import hashlib

    store = Store(open_backend(url))
    got = store.get(slot_instance(slot))
    assert got is not None and is_tombstone(got[0])
    doc = json.loads(got[0])
    doc.update(change)
    if not keep_sum:
        body = {k: v for k, v in doc.items() if k != "sum"}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        doc["sum"] = hashlib.sha256(canon).hexdigest()
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    store.put(slot_instance(slot), data, PutMode.OVERWRITE)


@pytest.mark.parametrize(
    ("change", "keep_sum", "needle"),
    [
        ({"writer": "mallory"}, True, "bad tombstone checksum"),
        ({"slot": 3}, False, "tombstone says it is slot 3"),
        ({"f": 7}, True, "unknown tombstone format 7"),
        ({"hash": "0" * 64}, False, "broken hash chain"),  # slot 3's prev no longer matches
        ({"snap": 9}, False, "trimmed against the snapshot at slot 9"),
    ],
)
def test_finding_13_verify_checks_every_tombstone(
    tmp_path: Path, change: dict[str, object], keep_sum: bool, needle: str
) -> None:
    """A damaged tombstone in the middle of the trimmed prefix is found and named: on
    d26dea1 only the first tombstone was ever parsed."""
    url = trimmed_log(tmp_path)
    _rewrite(url, 2, change, keep_sum=keep_sum)
    code, rep = verify_json(url)
    assert code == 1 and rep["ok"] is False, rep
    assert rep["bad_slot"] in (2, 3) and needle in str(rep["reason"]), rep


def test_finding_13_tombstone_from_elsewhere_breaks_the_chain(tmp_path: Path) -> None:
    """A valid tombstone of the same slot copied from another log is found (its ``prev``
    does not chain)."""
    url = trimmed_log(tmp_path / "a")
    other = trimmed_log(tmp_path / "b")
    data = Store(open_backend(other)).get(slot_instance(2))
    assert data is not None
    Store(open_backend(url)).put(slot_instance(2), data[0], PutMode.OVERWRITE)
    code, rep = verify_json(url)
    assert code == 1 and rep["bad_slot"] == 2 and "broken hash chain" in str(rep["reason"])


def test_finding_13_append_never_lands_in_a_deleted_tombstone(tmp_path: Path) -> None:
    """The last tombstone deleted: tail discovery finds slot 3 (a tombstone naming the
    snapshot at slot 4) as the tail. On d26dea1 `append` wrote slot 4, printed 4 and
    exited 0, and no reader ever showed the value (readers serve slot 4 from the
    snapshot); a later append then broke the chain for every reader. Now it is refused,
    nothing written."""
    url = trimmed_log(tmp_path)
    slot_file(tmp_path, 4).unlink()
    out = cli("append", url, "STALE")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert "slot 4 is damaged: missing below the snapshot at slot 4" in out.stderr
    assert "nothing was written" in out.stderr and out.stderr.count("\n") == 1
    assert not slot_file(tmp_path, 4).exists()
    log = cli("log", url)
    assert log.returncode == 0 and "STALE" not in log.stdout
    assert [line.split("\t")[2] for line in log.stdout.splitlines()] == [f"v{i}" for i in range(5)]
    code, rep = verify_json(url)
    assert code == 1 and rep["bad_slot"] == 4


def test_finding_13_writer_that_saw_the_snapshot_is_never_acknowledged(tmp_path: Path) -> None:
    """A writer whose known tail is older than a snapshot it has seen reads the slot it is
    about to write first: a deleted tombstone there is refused (nothing written), never
    acknowledged."""
    url = tmp_path.as_uri()
    init_log(url)
    with Log.open(url, hint_every=10**9) as stale, Log.open(url) as other:
        assert stale.append([b"s0"]) == [0] and stale.append([b"s1"]) == [1]  # tail: 1
        for i in range(4):
            other.append([f"o{i}".encode()])  # slots 2..5
        other.snapshot()
        assert other.trim(6).trimmed == 6
        slot_file(tmp_path, 2).unlink()
        assert stale.snapshot_slots() == [5]  # it has seen the snapshot (e.g. by reading)
        with pytest.raises(Exception, match="slot 2 is damaged: missing below the snapshot"):
            stale.append([b"STALE"])
        assert not slot_file(tmp_path, 2).exists()


def test_finding_13_stale_record_in_a_hole_is_reported_by_verify(tmp_path: Path) -> None:
    """What stays undetectable at write time (docs/log.md): a writer that never saw the
    snapshot, whose known tail is a record from before the trim, creates the slot whose
    tombstone was deleted. verify reports it (a record below a tombstone), naming the
    slot; on d26dea1 verify said intact."""
    url = tmp_path.as_uri()
    init_log(url)
    with Log.open(url, hint_every=10**9) as stale, Log.open(url) as other:
        assert stale.append([b"s0"]) == [0] and stale.append([b"s1"]) == [1]
        for i in range(4):
            other.append([f"o{i}".encode()])
        other.snapshot()
        assert other.trim(6).trimmed == 6
        slot_file(tmp_path, 2).unlink()
        assert stale.append([b"STALE"]) == [2]  # the documented operator-error case
        assert b"STALE" not in [e.value for e in other.read()]
    code, rep = verify_json(url)
    assert code == 1 and rep["bad_slot"] == 2, rep
    assert "a record below the trimmed slot 3" in str(rep["reason"])


def test_tombstones_keep_the_chain(tmp_path: Path) -> None:
    """New tombstones carry the trimmed record's ``prev``, chaining them to each other."""
    url = trimmed_log(tmp_path, 3)
    store = Store(open_backend(url))
    ts = []
    for i in range(3):
        got = store.get(slot_instance(i))
        assert got is not None
        ts.append(decode_tombstone(got[0], i))
    assert ts[1].prev == ts[0].hash and ts[2].prev == ts[1].hash


def test_finding_13_fresh_append_to_a_log_whose_only_tombstone_was_deleted(
    tmp_path: Path,
) -> None:
    """A one-slot log, snapshotted and trimmed, its tombstone deleted: the log looks empty.
    On d26dea1 `append` wrote slot 0 (printed 0, exit 0), a value no reader ever shows (slot
    0 is served from the snapshot). A fresh process that finds the log empty lists the
    snapshots once and refuses."""
    url = trimmed_log(tmp_path, 1)
    slot_file(tmp_path, 0).unlink()
    out = cli("append", url, "STALE")
    assert out.returncode == 1 and out.stdout == "", (out.stdout, out.stderr)
    assert "slot 0 is damaged: missing below the snapshot at slot 0" in out.stderr
    assert not slot_file(tmp_path, 0).exists()
    code, rep = verify_json(url)
    assert code == 1 and rep["bad_slot"] == 0


def test_finding_13_fresh_writer_landing_after_an_older_trim_sees_the_newer_snapshot(
    tmp_path: Path,
) -> None:
    """Two trims against two snapshots (slots 0-2 against the one at 2, then slot 3
    against the one at 3), the last tombstone deleted: a fresh writer's tail discovery lands
    on slot 2, a tombstone naming the older snapshot. It counted only that snapshot (2) and
    wrote slot 3, acknowledged and never read (readers serve it from the snapshot at 3);
    simulation seed 3234 of the ``damage`` profile. A tail that is a tombstone now makes
    the writer list the snapshots (one LIST), so it refuses, nothing written."""
    url = tmp_path.as_uri()
    init_log(url)
    with Log.open(url) as log:
        for i in range(3):
            assert log.append([f"v{i}".encode()]) == [i]
        assert log.snapshot().slot == 2 and log.trim(3).trimmed == 3
        assert log.append([b"v3"]) == [3]
        assert log.snapshot().slot == 3 and log.trim(4).trimmed == 1
    slot_file(tmp_path, 3).unlink()
    with (
        Log.open(url) as fresh,
        pytest.raises(Exception, match="slot 3 is damaged: missing below the snapshot"),
    ):
        fresh.append([b"STALE"])
    assert not slot_file(tmp_path, 3).exists()
