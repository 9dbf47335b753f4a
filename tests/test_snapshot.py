"""Snapshots and trim (Log.snapshot / Log.trim, passivepaxos.snapshot): readers start from
the newest snapshot, trimmed slots become tombstones whose names are never reopened, so a
stale writer (stale view or stale lease holder) is never acknowledged; refusals; damage is
named; application-state snapshots; the CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.errors import AlreadyExistsError, UnsupportedError
from passivepaxos.lease import LeaseHeldError, LeaseLostError
from passivepaxos.log import Log, slot_instance
from passivepaxos.manifest import init_log, open_log
from passivepaxos.snapshot import (
    CompactedError,
    DamagedSnapshotError,
    TrimmedSlotError,
    TrimRefusedError,
    is_tombstone,
    snapshot_key,
)
from passivepaxos.store import Store
from passivepaxos.types import PutMode
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend
from tests.clocked import clocked
from tests.conftest import get_harness
from tests.test_cli import run


def mem() -> str:
    return f"memory://snap-{uuid.uuid4().hex[:10]}"


def url_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return mem()
    if backend == "local":
        return tmp_path.as_uri()
    return get_harness(request, backend).url()


def triples(log: Log, from_slot: int = 0) -> list[tuple[int, int, bytes]]:
    return [(e.slot, e.index, e.value) for e in log.read(from_slot)]


def fill(log: Log, n: int, tag: str = "v") -> None:
    for i in range(n):
        vals = [f"{tag}{i}".encode()] if i % 3 else [f"{tag}{i}a".encode(), f"{tag}{i}b".encode()]
        log.append(vals)


BACKENDS = ["memory", "local", "s3"]


# -- snapshot, trim, read, verify on every backend -----------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_snapshot_trim_read_verify(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    url = url_for(request, backend, tmp_path)
    init_log(url)
    with Log.open(url) as log:
        fill(log, 8)
        before = triples(log)
        info = log.snapshot()
        assert (info.slot, info.entries, info.key) == (7, len(before), snapshot_key(7))
        assert log.snapshot_slots() == [7]
        assert triples(log) == before  # served from the snapshot
        res = log.trim(4)
        assert (res.trimmed, res.before, res.snapshot) == (4, 4, 7)
        assert triples(log) == before and triples(log, 2) == before[3:]
        assert log.trim(8).trimmed == 4  # the rest, up to and including the snapshot's slot
        assert log.trim(8).trimmed == 0  # idempotent
        raw = Store(open_backend(url))
        for i in range(8):
            got = raw.get(slot_instance(i))
            assert got is not None and is_tombstone(got[0])
        assert triples(log) == before
        report = log.verify()
        assert report.ok and report.trimmed and report.snapshot == 7, report
        assert (report.slots, report.entries) == (8, len(before))
        fill(log, 3, "w")  # appending goes on after the trimmed head
    with Log.open(url) as fresh:  # tail discovery works after a trim
        assert fresh.head() == 10
        assert fresh.append([b"late"]) == [11]
        everything = triples(fresh)
        assert everything[: len(before)] == before
        assert [v for _, _, v in everything[len(before) :]] == [
            b"w0a",
            b"w0b",
            b"w1",
            b"w2",
            b"late",
        ]
        assert triples(fresh, 9) == [t for t in everything if t[0] >= 9]
        # the next snapshot is cumulative: built from the previous one + slots 8..11
        info2 = fresh.snapshot()
        assert (info2.slot, info2.entries) == (11, len(everything))
        assert fresh.trim(12).trimmed == 4
        assert triples(fresh) == everything
        assert fresh.verify().ok


def test_verify_checks_a_snapshot_against_the_untrimmed_log() -> None:
    """Without a trim, verify walks the whole chain and also checks the snapshot's anchor
    and entries against the log."""
    url = mem()
    init_log(url)
    with Log.open(url) as log:
        fill(log, 5)
        log.snapshot()
        report = log.verify()
        assert report.ok and not report.trimmed and report.snapshot == 4


# -- stale writers are never acknowledged at a trimmed slot --------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_stale_view_at_trimmed_slot_is_refused(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    url = url_for(request, backend, tmp_path)
    init_log(url)
    with Log.open(url, hint_every=10**9) as stale, Log.open(url) as other:
        assert stale.append([b"s0"]) == [0] and stale.append([b"s1"]) == [1]  # tail: 1
        fill(other, 4)  # slots 2..5
        other.snapshot()
        assert other.trim(6).trimmed == 6
        with pytest.raises(TrimmedSlotError) as info:
            stale.append([b"STALE"])  # creates slot 2: a tombstone is there
        assert info.value.slot == 2 and info.value.snapshot == 5
        assert "slot 2 was trimmed (snapshot at 5)" in str(info.value)
        assert "your view of the log is stale" in str(info.value)
        # the name is never free again: a raw create of it fails too
        with pytest.raises(AlreadyExistsError):
            Store(open_backend(url)).put(slot_instance(2), b"x", PutMode.CREATE)
        values = [e.value for e in other.read()]
        assert b"STALE" not in values and values[:2] == [b"s0", b"s1"]
        assert other.verify().ok
        # it forgot its stale view: a retry appends at the real tail
        assert stale.append([b"retry"]) == [6]
        assert [e.value for e in other.read(6)] == [b"retry"]


class World:
    """Virtual time (as in tests/test_lease.py)."""

    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> Callable[[], float]:
        return lambda: self.t

    def sleep(self, d: float) -> None:
        self.t += d

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t


def vlog(url: str, world: World, name: str) -> Log:
    return Log.open(
        url,
        writer_id=name,
        runtime=clocked(clock=world.clock(), sleep=world.sleep, wall=world.wall),
        hint_every=10**9,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_stale_lease_holder_at_trimmed_slot_is_refused(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    """The holder pauses past its TTL; another process claims, appends, snapshots and
    trims everything; the holder wakes and appends into the (trimmed) slot it thinks is
    next: refused, never acknowledged, its entries nowhere."""
    url = url_for(request, backend, tmp_path)
    init_log(url)
    world = World()
    with vlog(url, world, "old") as old, vlog(url, world, "new") as new:
        assert old.claim_writer(10).epoch == 1
        old.append([b"old-1"])  # slot 1
        new.claim_writer(10, wait=False)  # learns the tail at t=0
        world.t = 10.5
        got = new.claim_writer(10, wait=False)
        assert (got.granted, got.epoch, got.slot) == (True, 2, 2)
        new.append([b"new-1"])
        new.append([b"new-2"])
        assert new.snapshot().slot == 4
        assert new.trim(5).trimmed == 5
        with pytest.raises(TrimmedSlotError, match="slot 2 was trimmed"):
            old.append([b"STALE-1", b"STALE-2"])
        assert old.lease_read() is None
        # the tombstone keeps the lease state: old is now an ordinary non-holder
        with pytest.raises(LeaseHeldError):
            old.append([b"STALE-3"])
        assert new.writer_status().holder == "new"
        new.append([b"new-3"])  # the holder keeps appending after its own trim
    with Log.open(url) as r:
        values = [e.value for e in r.read()]
        assert values == [b"old-1", b"new-1", b"new-2", b"new-3"]
        assert not any(v.startswith(b"STALE") for v in values)
        assert r.verify().ok


def test_holder_that_lost_its_slot_to_a_trimmed_claim() -> None:
    """Variant: the stale holder's next slot is a claim that was then trimmed; it gets a
    refusal either way (TrimmedSlotError), never an acknowledgement."""
    url = mem()
    init_log(url)
    world = World()
    with vlog(url, world, "old") as old, vlog(url, world, "new") as new:
        old.claim_writer(5)
        new.claim_writer(5, wait=False)
        world.t = 6
        assert new.claim_writer(5, wait=False).granted
        new.snapshot()
        new.trim(2)
        with pytest.raises((TrimmedSlotError, LeaseLostError)):
            old.append([b"STALE"])
    with Log.open(url) as r:
        assert [e.value for e in r.read()] == []


# -- refusals ------------------------------------------------------------------------------


def test_trim_without_covering_snapshot_is_refused() -> None:
    url = mem()
    init_log(url)
    with Log.open(url) as log:
        fill(log, 6)
        with pytest.raises(TrimRefusedError, match="no snapshot"):
            log.trim(3)
        log.append([b"x"])  # slot 6
        got = Store(open_backend(url)).get(slot_instance(0))  # nothing was touched
        assert got is not None and not is_tombstone(got[0])
        assert log.verify().ok and not log.verify().trimmed
        log.snapshot()  # at slot 6
        log.append([b"y"])  # slot 7
        with pytest.raises(TrimRefusedError, match="slot >= 7"):
            log.trim(8)
        assert log.trim(7).trimmed == 7
        assert log.verify().ok


def test_trim_on_a_quorum_or_blocks_mode_is_refused_snapshot_works(tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in "abc"]
    for d in dirs:
        d.mkdir()
    quorum = ",".join(d.as_uri() for d in dirs)
    init_log(quorum)
    with Log.open(quorum) as log:
        fill(log, 4)
        before = triples(log)
        info = log.snapshot()
        assert info.slot == 3
        for d in dirs:  # written to every store
            assert Store(open_backend(d.as_uri())).get(snapshot_key(3)) is not None
        with pytest.raises(UnsupportedError, match="quorum of 3 stores"):
            log.trim(2)
        assert triples(log) == before and log.verify().ok
    blocks = (tmp_path / "blocks").as_uri()
    (tmp_path / "blocks").mkdir()
    init_log(blocks, "blocks")
    with Log.open(blocks) as log:
        fill(log, 2)
        log.snapshot()
        with pytest.raises(UnsupportedError, match="blocks mode"):
            log.trim(1)
        assert len(triples(log)) == 3


# -- damage --------------------------------------------------------------------------------


def test_corrupt_snapshot_is_named_never_skipped(tmp_path: Path) -> None:
    url = tmp_path.as_uri()
    init_log(url)
    with Log.open(url) as log:
        fill(log, 3)
        log.snapshot()
        fill(log, 2, "w")
        log.snapshot()  # slot 4: the newest
    raw = Store(open_backend(url))
    key = snapshot_key(4)
    good = raw.get(key)
    assert good is not None
    raw.put(key, good[0].replace(b'"slot":4', b'"slot":5'), PutMode.OVERWRITE)
    with Log.open(url) as log:
        with pytest.raises(DamagedSnapshotError) as info:
            list(log.read())
        assert key in str(info.value) and "checksum" in str(info.value)
        report = log.verify()
        assert (report.ok, report.bad_snapshot) == (False, 4)
        assert report.error is not None and key in report.error
    out = run("verify", url)
    assert out.returncode == 1 and key in out.stderr, out.stderr
    raw.backend.put(key, b"junk", PutMode.OVERWRITE)  # not even a frame
    with Log.open(url) as log, pytest.raises(DamagedSnapshotError, match="unreadable"):
        log.newest_snapshot()
    # a valid snapshot whose anchor does not match the log: verify says so
    raw.put(key, good[0], PutMode.OVERWRITE)
    with Log.open(url) as log:
        assert log.verify().ok
        rec = raw.get(slot_instance(4))
        assert rec is not None
        log.trim(2)
    from passivepaxos.snapshot import encode_snapshot

    with Log.open(url) as log:
        snap = log.newest_snapshot()
        assert snap is not None and snap.slots is not None
        forged = encode_snapshot(4, "0" * 64, slots=list(snap.slots), state=None)
        raw.put(key, forged, PutMode.OVERWRITE)
        report = log.verify()
        assert (report.ok, report.bad_snapshot) == (False, 4) and "anchor" in str(report.reason)


# -- application-state snapshots -----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_application_state_snapshot(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    url = url_for(request, backend, tmp_path)
    init_log(url)
    with Log.open(url) as log:
        fill(log, 6)
        state = bytes(range(256)) * 3
        info = log.snapshot(state, slot=3)
        assert (info.slot, info.entries, info.state) == (3, 0, state)
        newest = log.newest_snapshot()
        assert newest is not None and newest.state == state and newest.slots is None
        tail = triples(log, 4)
        assert [t[0] for t in tail] == [4, 5]
        with pytest.raises(CompactedError, match="compacted into application state"):
            list(log.read(0))
        with pytest.raises(CompactedError, match="read from slot 4"):
            list(log.read(3))
        with pytest.raises(Exception, match="holds application state"):
            log.snapshot()  # an entries snapshot cannot be built on it
        assert log.trim(4).trimmed == 4
        assert triples(log, 4) == tail
        assert log.verify().ok
        assert log.append([b"after"]) == [6]
    with Log.open(url) as fresh:
        assert fresh.head() == 6 and [e.value for e in fresh.read(4)][-1] == b"after"


# -- cost ----------------------------------------------------------------------------------


def test_request_counts_for_snapshot_and_trim() -> None:
    """Figures for docs/log.md: a snapshot reads only the slots after the previous one."""
    url = mem()
    init_log(url)
    counting = CountingBackend(open_backend(url))
    _, manifest = open_log(url)
    with Log([Store(counting)], manifest.mode, hint_every=10**9) as log:
        fill(log, 20)
        counting.reset()
        log.snapshot()
        first = dict(counting.counts)
        counting.reset()
        log.trim(20)
        trim = dict(counting.counts)
        fill(log, 5, "w")
        counting.reset()
        log.snapshot()
        second = dict(counting.counts)
        counting.reset()
        assert len(triples(log)) > 20
        read_all = dict(counting.counts)
    print("snapshot of 20 slots:", first)
    print("trim of 20 slots:", trim)
    print("snapshot after 5 more:", second)
    print("read all after trim:", read_all)
    assert first.get("put:create") == 1 and first.get("list") == 1
    assert trim.get("put:overwrite") == 20
    assert sum(trim.values()) <= 20 * 2 + 1 + 8 + 2
    # the snapshot object + slots 20..24 + the end (read-ahead of up to fetch_ahead=8 GETs
    # past it): never re-reads slots 0..19
    assert second.get("get", 0) <= 1 + 5 + 8 + 1 and second.get("list") == 1
    assert read_all.get("get", 0) <= 1 + 5 + 8 + 1 and read_all.get("list") == 1


# -- CLI -----------------------------------------------------------------------------------


def jrun(*args: str) -> Any:
    out = run(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_cli_snapshot_trim_status(tmp_path: Path) -> None:
    log = tmp_path.as_uri()
    assert run("init", log).returncode == 0
    assert run("append", log, "a", "b").returncode == 0
    assert run("append", log, "c").returncode == 0
    assert jrun("status", log, "--json")["snapshot"] is None
    refused = run("trim", log, "--before", "1")
    assert refused.returncode == 1 and "no snapshot" in refused.stderr
    assert refused.stderr.count("\n") == 1
    before = run("log", log, "--json").stdout
    snap = jrun("snapshot", log, "--json")
    assert snap["slot"] == 1 and snap["entries"] == 3 and snap["key"] == snapshot_key(1)
    assert snap["bytes"] > 0
    assert "snapshot at slot 1: 3 entries" in run("snapshot", log).stdout
    assert jrun("status", log, "--json")["snapshot"] == 1
    assert "slot 1" in run("status", log).stdout
    res = jrun("trim", log, "--before", "2", "--json")
    assert res == {"trimmed": 2, "before": 2, "snapshot": 1}
    assert "trimmed 0 slot(s)" in run("trim", log, "--before", "2").stdout
    assert run("log", log, "--json").stdout == before
    ok = run("verify", log, "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["trimmed"] is True
    assert run("append", log, "d").stdout == "2\n"
    assert [
        r["value"] for r in map(json.loads, run("log", log, "--json").stdout.split("\n")[:-1])
    ] == [
        "a",
        "b",
        "c",
        "d",
    ]


def test_cli_trim_on_quorum_is_usage_error(tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in "abc"]
    for d in dirs:
        d.mkdir()
    quorum = ",".join(d.as_uri() for d in dirs)
    assert run("init", quorum).returncode == 0
    assert run("append", quorum, "a").returncode == 0
    assert jrun("snapshot", quorum, "--json")["slot"] == 0
    out = run("trim", quorum, "--before", "1")
    assert out.returncode == 2 and "cannot be tombstoned safely" in out.stderr
