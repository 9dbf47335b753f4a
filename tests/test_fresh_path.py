"""Issue 12: a fresh process's first append (a CLI call, a Lambda invocation).

Request counts are pinned exactly (which request, for what), and the round trips are
counted from the requests themselves (a request that starts after another one finished
is one round later), never timed. The hint is only a guess: what it vouches for is read.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from passivepaxos import Log
from passivepaxos.errors import (
    AppendOutcomeUnknownError,
    ConfigError,
    DamagedSlotError,
    LeaseHeldError,
)
from passivepaxos.log.tail import HINT_KEY
from passivepaxos.log.tailcache import FileTailCache, MemoryTailCache
from passivepaxos.manifest import init_log
from passivepaxos.store import Store
from passivepaxos.types import PutMode
from passivepaxos.urls import backend_module, open_backend
from tests.clocked import Stepped

_memory = backend_module("memory")
_DELAY = 0.03  # per request, so that requests sent together overlap


class Recorder:
    """Every request to memory stores while ``on``: (operation, key), and its round: one
    more than the highest round that had finished when it started."""

    def __init__(self) -> None:
        self.on = False
        self.calls: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.finished = 0

    def wrap(self, op: str, orig: Any) -> Any:
        def call(backend: Any, key: str = "", *a: Any, **kw: Any) -> Any:
            if not self.on:
                return orig(backend, key, *a, **kw)
            with self.lock:
                mine = self.finished + 1
            if op == "put":
                mode = a[1] if len(a) > 1 else kw["mode"]
                tag = f"put:{mode.kind.name.lower()}"
            else:
                tag = op
            time.sleep(_DELAY)
            try:
                return orig(backend, key, *a, **kw)
            finally:
                with self.lock:
                    self.calls.append((tag, re.sub(r"\d{20}", lambda m: str(int(m[0])), key), mine))
                    self.finished = max(self.finished, mine)

        return call

    def start(self) -> None:
        self.calls.clear()
        self.finished = 0
        self.on = True

    def stop(self) -> None:
        self.on = False

    @property
    def requests(self) -> collections.Counter[tuple[str, str]]:
        return collections.Counter((op, key) for op, key, _ in self.calls)

    @property
    def rounds(self) -> int:
        """Round trips the caller waited for (the hint rewrite runs in the background)."""
        return max((r for op, key, r in self.calls if key != HINT_KEY or op == "get"), default=0)


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    r = Recorder()
    for op in ("get", "put", "list", "delete"):
        monkeypatch.setattr(
            _memory.MemoryBackend, op, r.wrap(op, getattr(_memory.MemoryBackend, op))
        )
    yield r
    r.stop()


def _log_with(n: int, *, hint_at: int | None) -> str:
    """A memory log of ``n`` slots (0..n-1) whose hint names slot ``hint_at``, or no hint
    at all."""
    url = f"memory://fresh-{uuid.uuid4().hex[:10]}"
    init_log(url)
    with Log.open(url, writer_id="seed", hint_every=10**9) as seed:
        for i in range(n):
            seed.append([b"s%d" % i])
        if hint_at is not None:
            seed._tail.write_hint(hint_at)
    return url


def _fresh_append(url: str, rec: Recorder, value: bytes = b"fresh") -> int:
    rec.start()
    try:
        with Log.open(url, writer_id="fresh") as log:
            return log.append([value])[0]
    finally:
        rec.stop()


def test_hint_at_the_tail_six_requests_three_round_trips(rec: Recorder) -> None:
    url = _log_with(10, hint_at=9)
    assert _fresh_append(url, rec) == 10
    # manifest and hint together; LIST from the hinted slot, GET of it and of the slot
    # before it (the tail must chain before it is built on) together; the create
    assert rec.requests == {
        ("get", "manifest"): 1,
        ("get", HINT_KEY): 1,
        ("list", "log/"): 1,
        ("get", "log/9"): 1,
        ("get", "log/8"): 1,
        ("put:create", "log/10"): 1,
    }
    assert rec.rounds == 3


def test_hint_behind_one_list_then_the_tail_and_its_predecessor(rec: Recorder) -> None:
    url = _log_with(48, hint_at=9)  # 38 slots behind
    assert _fresh_append(url, rec) == 48
    assert rec.requests == {
        ("get", "manifest"): 1,
        ("get", HINT_KEY): 1,
        ("list", "log/"): 1,
        ("get", "log/9"): 1,
        ("get", "log/8"): 1,
        ("get", "log/47"): 1,  # the tail
        ("get", "log/46"): 1,  # its predecessor: the tail must chain before it is built on
        ("put:create", "log/48"): 1,
        ("put:overwrite", HINT_KEY): 1,  # 38 slots past the hint: rewritten (background)
    }
    assert rec.rounds == 4
    # the rewrite goes out beside the create (naming the tail found), not after it: a
    # fresh process's close waits for it, and it cost one round trip more there
    at = {(op, key): r for op, key, r in rec.calls}
    assert at[("put:overwrite", HINT_KEY)] == at[("put:create", "log/48")] == 4
    assert json.loads(Store(open_backend(url)).get(HINT_KEY)[0])["slot"] == 47


def test_no_hint_lists_from_the_start(rec: Recorder) -> None:
    url = _log_with(5, hint_at=None)
    assert _fresh_append(url, rec) == 5
    assert rec.requests == {
        ("get", "manifest"): 1,
        ("get", HINT_KEY): 1,
        ("list", "log/"): 1,
        ("get", "log/4"): 1,
        ("get", "log/3"): 1,
        ("put:create", "log/5"): 1,
    }
    assert rec.rounds == 4


def test_empty_log(rec: Recorder) -> None:
    url = _log_with(0, hint_at=None)
    assert _fresh_append(url, rec) == 0
    assert rec.requests == {
        ("get", "manifest"): 1,
        ("get", HINT_KEY): 1,
        ("list", "log/"): 1,
        ("list", "snapshot/"): 1,  # an empty-looking log: a snapshot would mean damage
        ("put:create", "log/0"): 1,
    }


def test_without_strong_listing_the_guess_and_first_probes_share_a_round(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _log_with(10, hint_at=9)
    weak = dataclasses.replace(Store(_memory.MemoryBackend("x")).capabilities, strong_list=False)
    monkeypatch.setattr(Store, "capabilities", property(lambda self: weak))
    assert _fresh_append(url, rec) == 10
    gets = {k for (op, k) in rec.requests if op == "get" and re.fullmatch(r"log/\d+", k)}
    # the hinted slot, the one before it, 6 probes and slot 12 (the end check's h+3)
    assert gets == {
        "log/8",
        "log/9",
        "log/10",
        "log/11",
        "log/12",
        "log/13",
        "log/17",
        "log/25",
        "log/41",
    }
    assert sum(rec.requests.values()) == 12 and not any(op == "list" for op, _ in rec.requests)
    assert rec.rounds == 3


def _delete(url: str, key: str) -> None:
    _memory.MemoryBackend(url.removeprefix("memory://")).delete(key)


def test_a_hole_after_the_hint_is_damage_never_filled(rec: Recorder) -> None:
    url = _log_with(10, hint_at=3)
    _delete(url, "log/00000000000000000006")
    with pytest.raises(DamagedSlotError) as e:
        _fresh_append(url, rec)
    assert e.value.slot == 6 and "log/00000000000000000006" in str(e.value)
    assert "missing while slot 7 exists" in str(e.value)
    assert not any(op.startswith("put") for op, _ in rec.requests)  # nothing written


def test_a_hole_at_the_hinted_slot_is_damage_too(rec: Recorder) -> None:
    url = _log_with(10, hint_at=6)
    _delete(url, "log/00000000000000000006")
    with pytest.raises(DamagedSlotError) as e:
        _fresh_append(url, rec)
    assert e.value.slot == 6
    assert not any(op == "put:create" for op, _ in rec.requests)


def _put_hint(url: str, hint: dict[str, Any]) -> None:
    Store(_memory.MemoryBackend(url.removeprefix("memory://"))).put(
        HINT_KEY, json.dumps(hint).encode(), PutMode.OVERWRITE
    )


def test_another_logs_hint_is_not_even_a_guess(rec: Recorder) -> None:
    url = _log_with(6, hint_at=5)
    other = _log_with(40, hint_at=39)
    raw = _memory.MemoryBackend(other.removeprefix("memory://")).get(HINT_KEY)
    assert raw is not None
    _memory.MemoryBackend(url.removeprefix("memory://")).put(HINT_KEY, raw[0], PutMode.OVERWRITE)
    assert _fresh_append(url, rec) == 6  # listed from the start, not from slot 39
    with Log.open(url) as log:
        assert log.verify().ok


def test_a_hole_right_before_the_hinted_tail_is_damage(rec: Recorder) -> None:
    url = _log_with(10, hint_at=9)
    _delete(url, "log/00000000000000000008")
    with pytest.raises(DamagedSlotError) as e:
        _fresh_append(url, rec)
    assert e.value.slot == 8
    assert not any(op == "put:create" for op, _ in rec.requests)


def test_an_old_hint_without_log_identity_is_still_a_guess(rec: Recorder) -> None:
    url = _log_with(6, hint_at=None)
    _put_hint(url, {"slot": 5})
    assert _fresh_append(url, rec) == 6
    assert rec.requests[("get", "log/4")] == 1 and rec.requests[("list", "log/")] == 1


def test_another_logs_record_at_the_hinted_slot_is_never_built_on(rec: Recorder) -> None:
    url = _log_with(6, hint_at=5)
    other = _log_with(6, hint_at=None)
    key = "log/00000000000000000005"
    raw = _memory.MemoryBackend(other.removeprefix("memory://")).get(key)
    assert raw is not None
    _memory.MemoryBackend(url.removeprefix("memory://")).put(key, raw[0], PutMode.OVERWRITE)
    with pytest.raises(DamagedSlotError) as e:
        _fresh_append(url, rec)
    assert e.value.slot == 5
    assert not any(op == "put:create" for op, _ in rec.requests)


def test_a_low_rate_holder_writes_the_hint_every_32_slots_not_on_a_timer(rec: Recorder) -> None:
    url = _log_with(0, hint_at=None)
    clock = Stepped()
    with Log.open(url, writer_id="h", runtime=clock) as log:
        log.claim_writer(3600)
        rec.start()
        for i in range(64):
            clock.t += 5.0  # one append every 5 s
            log.append([b"%d" % i])
            log._tail.hint_pool.submit(lambda: None).result()  # the background write, if any
        rec.stop()
        writes = rec.requests
        assert writes[("put:overwrite", HINT_KEY)] == 2  # at slots 32 and 64, no more
        assert sum(n for (op, _), n in writes.items() if op == "put:create") == 64
        assert sum(writes.values()) == 66  # 1.03 requests per entry
        rec.start()
        log.release_writer()  # the next writer starts from here: the hint follows
        log._tail.hint_pool.submit(lambda: None).result()
        rec.stop()
        assert rec.requests[("put:overwrite", HINT_KEY)] == 1
        ident, tail = log._c.ident, log._tail.known
    raw = Store(_memory.MemoryBackend(url.removeprefix("memory://"))).get(HINT_KEY)
    assert raw is not None and tail is not None
    assert json.loads(raw[0]) == {"slot": tail[0], "log": ident}


def test_fresh_append_on_s3_counts_at_the_http_level(moto_server: Any) -> None:
    from passivepaxos.bench.proxy import FaultProxy
    from tests.conftest import env, fresh

    bucket = fresh("fresh")
    moto_server.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/log"
    init_log(url)
    with Log.open(url, writer_id="seed") as seed:
        for i in range(5):
            seed.append([b"%d" % i])
        tail = seed._tail.known
        assert tail is not None
        seed._tail.write_hint(tail[0])
    with FaultProxy(moto_server.url) as proxy, env(AWS_ENDPOINT_URL=proxy.url):
        proxy.reset()
        with Log.open(url, writer_id="fresh") as log:
            assert log.append([b"x"]) == [5]
        # manifest, hint, slots 4 and 3 read, one LIST, one create: 6 requests
        assert proxy.counts() == {"read": 4, "list": 1, "write": 1}


# -- the tail cache: a warm machine (a reused Lambda container, the next CLI call) ------------


def _open_append(url: str, rec: Recorder, cache: Any, value: bytes = b"w") -> int:
    rec.start()
    try:
        with Log.open(url, writer_id=f"w-{uuid.uuid4().hex[:6]}", tail_cache=cache) as log:
            return log.append([value])[0]
    finally:
        rec.stop()


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_warm_start_is_the_manifest_and_the_create(
    rec: Recorder, kind: str, tmp_path: Any
) -> None:
    url = _log_with(6, hint_at=5)

    shared = MemoryTailCache()

    def cache() -> Any:  # the next invocation: the process's cache, or a new file cache object
        return shared if kind == "memory" else FileTailCache(tmp_path / "tails")

    assert _open_append(url, rec, cache()) == 6  # cold: finds the tail, saves it
    assert ("list", "log/") in rec.requests
    for slot in (7, 8):
        assert _open_append(url, rec, cache()) == slot
        assert rec.requests == {("get", "manifest"): 1, ("put:create", f"log/{slot}"): 1}
        assert rec.rounds == 2
    with Log.open(url) as log:
        assert log.verify().ok
        assert [e.value for e in log.read(6)] == [b"w", b"w", b"w"]


def test_a_warm_start_after_others_wrote_learns_the_winner(rec: Recorder) -> None:
    url = _log_with(6, hint_at=5)
    cache = MemoryTailCache()
    assert _open_append(url, rec, cache, b"a") == 6
    with Log.open(url, writer_id="other") as other:
        other.append([b"o1"])
        other.append([b"o2"])
    assert _open_append(url, rec, cache, b"b") == 9  # the create of 7 lost; 9 is next
    with Log.open(url) as log:
        assert [e.value for e in log.read(6)] == [b"a", b"o1", b"o2", b"b"]
        assert log.verify().ok


def test_a_cached_tail_of_a_log_recreated_at_the_same_url_is_not_used(rec: Recorder) -> None:
    url = _log_with(6, hint_at=5)
    cache = MemoryTailCache()
    _open_append(url, rec, cache)
    _memory.wipe(url.removeprefix("memory://"))
    init_log(url)  # another log, the same URL
    assert _open_append(url, rec, cache) == 0  # not slot 7: the cached tail was another log's
    with Log.open(url) as log:
        assert log.verify().ok


def test_a_damaged_or_foreign_cache_file_is_ignored(rec: Recorder, tmp_path: Any) -> None:
    url = _log_with(6, hint_at=5)
    d = tmp_path / "tails"
    _open_append(url, rec, FileTailCache(d))
    (path,) = list(d.iterdir())
    doc = json.loads(path.read_text())
    doc["slot"] = 40  # edited without its checksum
    path.write_text(json.dumps(doc))
    assert _open_append(url, rec, FileTailCache(d)) == 7
    assert ("list", "log/") in rec.requests  # started cold
    path.write_bytes(b"not json")
    assert _open_append(url, rec, FileTailCache(d)) == 8
    d.chmod(0o777)  # writable by others: a planted tail is never started from
    assert FileTailCache(d).load(url) is None
    d.chmod(0o700)
    assert FileTailCache(d).load(url) is not None


def test_a_cached_tail_under_another_holders_lease_is_refused(rec: Recorder) -> None:
    url = _log_with(3, hint_at=2)
    cache = MemoryTailCache()
    with Log.open(url, writer_id="holder", tail_cache=cache) as holder:
        holder.claim_writer(60)
        holder.append([b"held"])
    with pytest.raises(LeaseHeldError):
        _open_append(url, rec, cache)
    assert not any(op == "put:create" for op, _ in rec.requests)


def test_the_tail_cache_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _log_with(1, hint_at=None)
    monkeypatch.setenv("PASSIVEPAXOS_TAIL_CACHE", "disk")
    with pytest.raises(ConfigError, match="PASSIVEPAXOS_TAIL_CACHE"):
        Log.open(url)


# -- review findings (issue 12): a cached tail is only a first guess --------------------------


def test_a_stale_warm_start_never_fills_a_hole_below_a_snapshot(rec: Recorder) -> None:
    """Review finding 1 (simulator seed 372 of damage): the warm process lost its first
    race and walked slot by slot into a deleted slot below a snapshot it never saw."""
    url = _log_with(1, hint_at=None)
    cache = MemoryTailCache()
    _open_append(url, rec, cache, b"w0")  # cached: slot 1
    with Log.open(url, writer_id="other") as other:
        for i in range(9):
            other.append([b"o%d" % i])
        other.snapshot()  # at slot 10
    _delete(url, "log/00000000000000000003")
    warm = Log.open(url, tail_cache=cache, writer_id="warm", backoff_max=0.0)
    with warm as log, pytest.raises(DamagedSlotError) as e:
        log.append([b"w1"])
    assert e.value.slot == 3
    raw = _memory.MemoryBackend(url.removeprefix("memory://")).get("log/00000000000000000003")
    assert raw is None  # not filled


def test_a_warm_start_after_a_trim_finds_the_real_tail(rec: Recorder) -> None:
    """Review finding 2: the cached slot's successor was trimmed since; every warm start
    failed with TrimmedSlotError and the cache never moved."""
    url = _log_with(4, hint_at=3)
    cache = MemoryTailCache()
    assert _open_append(url, rec, cache) == 4
    with Log.open(url, writer_id="other") as other:
        for i in range(20):
            other.append([b"o%d" % i])
        other.snapshot()
        other.trim(25)
    assert _open_append(url, rec, cache, b"after") == 25
    assert _open_append(url, rec, cache, b"warm") == 26  # the cache moved on
    assert rec.requests == {("get", "manifest"): 1, ("put:create", "log/26"): 1}


def test_a_stale_warm_start_costs_two_requests_more_than_a_cold_one(rec: Recorder) -> None:
    """Review finding 3: the first lost race sent it through contention backoff and a
    slot-by-slot walk (28 requests, 5.5 s); now it finds the tail afresh."""
    url = _log_with(6, hint_at=5)
    cache = MemoryTailCache()
    _open_append(url, rec, cache)  # slot 6 cached
    with Log.open(url, writer_id="other", hint_every=10**9) as other:
        for i in range(40):
            other.append([b"o%d" % i])
    assert _open_append(url, rec, cache) == 47
    # manifest, the lost create and a read of its winner, then as a cold start: hint,
    # LIST + hinted slot + the one before, tail + the one before, create (and the hint
    # rewrite, 40 slots behind, in the background)
    sent = rec.requests
    assert sum(sent.values()) - sent[("put:overwrite", HINT_KEY)] == 10
    assert sent[("put:create", "log/7")] == 1 and rec.rounds == 7


def test_a_warm_start_after_the_holder_released_appends(rec: Recorder) -> None:
    """Review finding 8: the cached tail was another holder's claim; after its release
    every warm start refused with LeaseHeldError, without a request to the log."""
    url = _log_with(2, hint_at=1)
    cache = MemoryTailCache()
    with Log.open(url, writer_id="H") as holder:
        holder.claim_writer(30)
        w = Log.open(url, writer_id="W", tail_cache=cache)
        with w, pytest.raises(LeaseHeldError):
            w.append([b"refused"])  # cold: finds H's claim, which is then cached
        assert cache.load(url) is not None
        holder.release_writer()
    assert _open_append(url, rec, cache, b"after release") == 4
    with Log.open(url) as log:
        assert [e.value for e in log.read(4)] == [b"after release"]


def test_a_read_from_after_a_hole_is_not_cached_as_chain_checked(
    rec: Recorder, tmp_path: Any
) -> None:
    """Review finding 5: read(k) with slot k-1 missing marked slot k chain-checked, and
    the cache carried that to the next process, which appended after the hole."""
    url = _log_with(10, hint_at=None)
    _delete(url, "log/00000000000000000008")
    d = tmp_path / "tails"
    with Log.open(url, tail_cache=FileTailCache(d)) as reader:
        assert [e.slot for e in reader.read(9)] == [9]
    got = FileTailCache(d).load(url)
    assert got is None or got.slot != 9
    with pytest.raises(DamagedSlotError) as e:
        _open_append(url, rec, FileTailCache(d))
    assert e.value.slot == 8


def test_a_listing_after_a_held_slot_that_shows_a_hole_is_damage(rec: Recorder) -> None:
    """Review finding 6: a process holding tail 4 listed after it, saw slot 5 missing
    and 6.. present, threw the listing away and probed past the hole."""
    url = _log_with(5, hint_at=None)
    with Log.open(url, writer_id="P") as p:
        p.append([b"p"])  # holds slot 5 as its tail
        with Log.open(url, writer_id="Q", hint_every=10**9) as q:  # the hint stays before
            for i in range(30):
                q.append([b"q%d" % i])
        _delete(url, "log/00000000000000000006")
        with pytest.raises(DamagedSlotError) as e:
            p.head()
        assert e.value.slot == 6


def test_a_resume_never_appends_into_a_hole_it_walked_into() -> None:
    """Simulator seed 18255 of damage (the long pass of issue 11): a resume whose token's
    slot holds another record searched for its own record, took the first missing slot
    for the end of the log although later slots existed, and appended into the hole."""
    url = _log_with(6, hint_at=None)
    _delete(url, "log/00000000000000000002")
    wid = "ab" * 16
    with Log.open(url, writer_id="R") as log, pytest.raises(AppendOutcomeUnknownError) as e:
        log.append([b"mine"], resume=f"0:0:{wid}")
    # unknown, as before the resume (an earlier resume may have landed past the hole);
    # nothing written: the hole is reported, not filled
    assert isinstance(e.value.__cause__, DamagedSlotError) and e.value.__cause__.slot == 2
    assert (
        _memory.MemoryBackend(url.removeprefix("memory://")).get("log/00000000000000000002") is None
    )


# -- the re-review (issue 12): holes the probes or the reads beside the LIST saw ---------------


def _file_log(tmp_path: Any, n: int, hint_at: int) -> str:
    url = (tmp_path / "log").as_uri()
    (tmp_path / "log").mkdir()
    init_log(url)
    with Log.open(url, writer_id="seed", hint_every=10**9) as seed:
        for i in range(n):
            seed.append([b"s%d" % i])
        seed._tail.write_hint(hint_at)
    return url


def _file_delete(url: str, slot: int) -> None:
    Store(open_backend(url)).delete(f"log/{slot:020d}")


@pytest.mark.parametrize(("n", "holes"), [(20, (11,)), (20, (12,)), (14, (11, 12)), (16, (13, 14))])
def test_probing_never_acknowledges_past_or_into_a_hole_it_saw(
    tmp_path: Any, n: int, holes: tuple[int, ...]
) -> None:
    """Re-review finding A (file:// probes): a probe saw slot 11 missing and 12 present and
    the append was acknowledged at the end past the hole; a two-slot hole right before a
    one-record tail was filled (the end check looked 1 and 3 slots past, not 2)."""
    url = _file_log(tmp_path, n, hint_at=10)
    for h in holes:
        _file_delete(url, h)
    with Log.open(url, writer_id="fresh") as log, pytest.raises(DamagedSlotError) as e:
        log.append([b"x"])
    assert e.value.slot == holes[0]
    backend = open_backend(url)
    assert all(backend.get(f"log/{h:020d}") is None for h in holes)  # never filled
    assert backend.get(f"log/{n:020d}") is None  # nothing acknowledged past the hole


@pytest.mark.parametrize("listing", [True, False])
def test_a_hole_right_before_the_hint_with_the_tail_past_it_is_damage(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch, listing: bool
) -> None:
    """Re-review finding B: the GET of the slot before the hinted one answered "missing"
    and was ignored because the tail was further on."""
    url = _log_with(20, hint_at=10)
    _delete(url, "log/00000000000000000009")
    if not listing:
        weak = dataclasses.replace(Store(_memory.MemoryBackend("x")).capabilities, seek_list=False)
        monkeypatch.setattr(Store, "capabilities", property(lambda self: weak))
    with pytest.raises(DamagedSlotError) as e:
        _fresh_append(url, rec)
    assert e.value.slot == 9
    assert not any(op == "put:create" for op, _ in rec.requests)


def test_a_warm_start_after_a_rollback_and_new_writes_finds_the_tail(rec: Recorder) -> None:
    """Re-review finding C: the cache said slot 9; the store was restored to slot 5 and
    others wrote 6..12; the winner of slot 10 did not chain to the cached slot 9, and
    every warm append failed with DamagedSlotError while the log was intact."""
    url = _log_with(10, hint_at=None)
    cache = MemoryTailCache()
    with Log.open(url, writer_id="w", tail_cache=cache) as log:
        log.head()
        log.append([b"cached"])  # slot 10 cached
    for slot in range(6, 11):  # the restore: slots 6..10 gone
        _delete(url, f"log/{slot:020d}")
    with Log.open(url, writer_id="others") as others:
        for i in range(7):
            others.append([b"n%d" % i])  # 6..12, another history
    assert _open_append(url, rec, cache, b"warm") == 13
    with Log.open(url) as log:
        assert log.verify().ok


def test_a_writer_whose_discovery_found_a_hole_never_fills_it(rec: Recorder) -> None:
    """Re-review finding D: P held tail 4; head() reported slot 5 damaged, then P's append
    was acknowledged at 5 from its old view (verify: broken chain at 6)."""
    url = _log_with(4, hint_at=None)
    with Log.open(url, writer_id="P") as p:
        p.append([b"p"])  # tail 4 held
        with Log.open(url, writer_id="Q", hint_every=10**9) as q:
            for i in range(10):
                q.append([b"q%d" % i])
        _delete(url, "log/00000000000000000005")
        with pytest.raises(DamagedSlotError):
            p.head()
        with pytest.raises(DamagedSlotError):
            p.append([b"again"])
    assert (
        _memory.MemoryBackend(url.removeprefix("memory://")).get("log/00000000000000000005") is None
    )


# -- the long pass and the damage profile after the re-review (issue 12) ---------------------


def test_a_hole_found_once_is_not_forgotten_by_a_later_discovery(rec: Recorder) -> None:
    """Simulator seed 2261 of damage: a later discovery's probes sampled past the hole
    its first discovery had found, and the append was acknowledged past it. The hole is
    read again before each write past it; restored, it no longer refuses."""
    url = _log_with(4, hint_at=None)
    with Log.open(url, writer_id="P") as p:
        p.append([b"p"])
        with Log.open(url, writer_id="Q", hint_every=10**9) as q:
            for i in range(10):
                q.append([b"q%d" % i])
        space = _memory.MemoryBackend(url.removeprefix("memory://"))
        saved = space.get("log/00000000000000000005")
        assert saved is not None
        _delete(url, "log/00000000000000000005")
        with pytest.raises(DamagedSlotError):
            p.head()
        tail = Store(space).get("log/00000000000000000014")
        assert tail is not None
        p._tail.learned(14, tail[0])  # as a read through a snapshot would (seed 4801)
        with pytest.raises(DamagedSlotError, match="earlier tail discovery"):
            p.append([b"past the hole"])
        space.put("log/00000000000000000005", saved[0], PutMode.CREATE)  # restored
        assert p.append([b"after the restore"]) == [15]


def test_a_stale_view_leaves_no_cache_entry_behind() -> None:
    """Simulator seed 4606 of damage: a warm Log found its view stale (a tombstone), the
    cache kept the old entry, and the next warm start began from it again."""
    url = _log_with(3, hint_at=None)
    cache = MemoryTailCache()
    with Log.open(url, writer_id="w", tail_cache=cache) as log:
        log.append([b"x"])
        assert cache.load(url) is not None
        with log._c.state:
            log._tail.forget()  # as stale_at_tombstone does
    assert cache.load(url) is None


def test_a_record_filling_a_hole_at_the_snapshot_slot_is_never_built_on() -> None:
    """Simulator seed 7311 of damage: a warm writer filled the deleted tombstone at the
    snapshot's slot; a fresh writer found that record as the tail (at the snapshot's
    slot), checked its chain (fine) and appended after it: acknowledged, never read
    (readers go from the snapshot's anchor)."""
    from passivepaxos.log.record import Record, chain_hash

    url = _log_with(4, hint_at=None)
    with Log.open(url, writer_id="s") as log:
        log.snapshot()
        log.trim(4)
    space = _memory.MemoryBackend(url.removeprefix("memory://"))
    _delete(url, "log/00000000000000000003")
    prev = chain_hash(Store(space).get("log/00000000000000000002")[0], 2)  # type: ignore[index]
    filler = Record(3, prev, "stale", 0, "ab" * 16, (b"filler",)).encode()
    Store(space).put("log/00000000000000000003", filler, PutMode.CREATE)
    with Log.open(url, writer_id="fresh") as log, pytest.raises(DamagedSlotError) as e:
        assert log.snapshot_slots() == [3]  # it knows the snapshot (a read lists it too)
        log.append([b"never acknowledged"])
    assert e.value.slot == 3 and "anchors" in str(e.value)
    assert space.get("log/00000000000000000004") is None
