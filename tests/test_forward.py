"""Issue 12: forwarding. Producers that lost a race hand their entries over as parcels in
``inbox/``; whoever writes the next slot folds them, at most once; a producer is
acknowledged only from a decided record naming its parcel.

Request counts are pinned exactly on the memory backend (one call, one HTTP request on
S3); exactly-once under real contention runs on moto_server through boto3."""

from __future__ import annotations

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
    AmbiguousWriteError,
    ConfigError,
    DamagedSlotError,
    ForwardOutcomeUnknownError,
    PermissionDeniedError,
)
from passivepaxos.log import forward
from passivepaxos.log.forward import decode_parcel, encode_parcel, parcel_key
from passivepaxos.log.record import Record, decode_record
from passivepaxos.manifest import init_log
from passivepaxos.store import Store
from passivepaxos.types import PutMode
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend, LatencyBackend
from tests.conftest import fresh, get_harness
from tests.test_fresh_path import Recorder, rec  # noqa: F401 - the fixture

H = "0" * 64


def _log(n: int) -> str:
    url = f"memory://fwd-{uuid.uuid4().hex[:10]}"
    init_log(url)
    with Log.open(url, writer_id="seed", hint_every=10**9) as seed:
        for i in range(n):
            seed.append([b"s%d" % i])
    return url


def _values(url: str) -> list[tuple[int, int, bytes]]:
    with Log.open(url) as log:
        return [(e.slot, e.index, e.value) for e in log.read(0)]


def _raw(url: str) -> Store:
    return Store(open_backend(url))


def _inbox(url: str) -> list[str]:
    return [m.key for m in _raw(url).list("inbox/")]


def _parcel_keys(requests: Any) -> set[str]:
    """The parcel names among recorded (operation, key) requests."""
    return {k for _, k in requests if k.startswith("inbox/") and k != "inbox/"}


class Forwarded:
    """``p.append_positions(values)`` in a thread of its own, started once the caller is
    ready; :meth:`started` returns once its parcel is in the inbox."""

    def __init__(self, p: Log, url: str, values: list[bytes]) -> None:
        self.url = url
        self.got: list[Any] = []
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.got.extend(p.append_positions(values))
            except BaseException as exc:  # shown by positions()
                self.error = exc

        self.thread = threading.Thread(target=run)

    def started(self) -> Forwarded:
        self.thread.start()
        while not _inbox(self.url):
            time.sleep(0.005)
        return self

    def positions(self) -> list[tuple[int, int]]:
        self.thread.join(10)
        if self.error is not None:
            raise self.error
        return [(x.slot, x.index) for x in self.got]


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Producers wait 2000 of their round trips (2 s on memory) before their first look."""
    monkeypatch.setattr(forward, "PATIENCE", (2000.0, 2000.0))
    yield


def _lose_then_forward(url: str, *, forwarding: bool = False) -> tuple[Log, Log]:
    """A forwarding producer that knows the tail, and another writer (``forwarding`` or
    not) that then writes the slot after it (so the producer's next direct try loses)."""
    p = Log.open(url, forward=True, writer_id="p", hint_every=10**9)
    p.append([b"p0"])
    w = Log.open(url, writer_id="w", hint_every=10**9, forward=forwarding)
    w.append([b"w0"])
    return p, w


def test_a_loser_forwards_and_folds_its_own_parcel(rec: Recorder) -> None:  # noqa: F811
    url = _log(3)
    p, w = _lose_then_forward(url)  # p0 at 3, w0 at 4
    with p, w:
        rec.start()
        got = p.append_positions([b"p1", b"p2"])
        p.close()  # waits for the parcel's background delete
        rec.stop()
    (fid_key,) = _parcel_keys(rec.requests)
    # the lost create and the read of the winner (as any lost race); a GET of the slot
    # after it (missing: the base is fresh); the parcel; after its patience the producer
    # looks at the next slot again (missing), then writes it itself: LIST of the inbox,
    # GET of the one parcel, the create; the parcel's delete
    assert rec.requests == {
        ("put:create", "log/4"): 1,
        ("get", "log/4"): 1,
        ("put:create", fid_key): 1,
        ("get", "log/5"): 2,
        ("list", "inbox/"): 1,
        ("get", fid_key): 1,
        ("put:create", "log/5"): 1,
        ("delete", fid_key): 1,
    }
    assert fid_key.startswith("inbox/5.")  # base: the slot after the tail it knew
    assert [(x.slot, x.index) for x in got] == [(5, 0), (5, 1)]
    assert _values(url)[-3:] == [(4, 0, b"w0"), (5, 0, b"p1"), (5, 1, b"p2")]
    assert _inbox(url) == []


def test_a_producer_that_sequenced_writes_directly_next(rec: Recorder) -> None:  # noqa: F811
    url = _log(1)
    p, w = _lose_then_forward(url)
    with p, w:
        p.append([b"p1"])  # lost, forwarded, and folded by p itself: p sequences now
        rec.start()
        p.append([b"p2"])
        rec.stop()
    # its next append writes directly, listing the inbox first (it found a parcel, its own,
    # within CONTENDED_FOR s: a sequencer lists before every slot while parcels come in)
    # (besides, perhaps, the background delete of p1's parcel)
    ops = sorted(op for op, k in rec.requests.elements() if op != "delete")
    assert ops == ["list", "put:create"]
    assert [v for _, _, v in _values(url)] == [b"s0", b"p0", b"w0", b"p1", b"p2"]


def test_a_recent_loser_goes_straight_to_the_inbox(
    rec: Recorder,  # noqa: F811
    patient: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)  # w lists before each of its appends
    monkeypatch.setattr(forward, "CONTENDED_FOR", 60.0)  # p's patience may be seconds
    url = _log(1)
    p, w = _lose_then_forward(url, forwarding=True)
    with p, w:
        # p1 loses to w0's slot, is forwarded and waits its patience
        producer = Forwarded(p, url, [b"p1"]).started()
        w.append([b"w1"])  # w lists the inbox first and folds p1 with its own entry
        assert producer.positions() == [(3, 1)]
        monkeypatch.setattr(forward, "PATIENCE", (3.0, 3.0))
        rec.start()
        p.append([b"p2"])  # within CONTENDED_FOR of its loss: no direct try
        p.close()
        rec.stop()
    (key,) = _parcel_keys(rec.requests)
    # the parcel; after the patience a look at the next slot (nobody wrote: missing);
    # then its own fold: LIST, GET of the parcel, create; the parcel's delete
    assert rec.requests == {
        ("put:create", key): 1,
        ("get", "log/4"): 1,
        ("list", "inbox/"): 1,
        ("get", key): 1,
        ("put:create", "log/4"): 1,
        ("delete", key): 1,
    }
    assert [v for _, _, v in _values(url)] == [b"s0", b"p0", b"w0", b"w1", b"p1", b"p2"]


def test_the_lease_holder_folds_parcels_into_its_appends(
    rec: Recorder,  # noqa: F811
    patient: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)  # its claim listed an empty inbox
    url = _log(2)
    h = Log.open(url, forward=True, writer_id="h", hint_every=10**9)
    h.claim_writer(30.0)  # slot 2
    p = Log.open(url, forward=True, writer_id="p", hint_every=10**9)
    with h, p:
        p.head()
        producer = Forwarded(p, url, [b"p"]).started()  # the lease is held: forwarded at once
        rec.start()
        slot = h.append([b"h"])[0]
        hreq = dict(rec.requests)
        got = producer.positions()
        rec.stop()
    assert slot == 3
    (key,) = _parcel_keys(hreq)
    # the holder's append: the inbox LIST, the parcel's GET, its create (the parcel in it)
    assert hreq == {("list", "inbox/"): 1, ("get", key): 1, ("put:create", "log/3"): 1}
    assert got == [(3, 1)]
    assert _values(url)[-2:] == [(3, 0, b"h"), (3, 1, b"p")]


def test_a_holder_does_not_get_a_parcel_it_folded_again(
    rec: Recorder,  # noqa: F811
    patient: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A parcel stays in the inbox until its producer reads its record and deletes it: the
    holder's next listing shows it again, and the holder knows it from its own record
    (held, no request) instead of GETting it a second time (it did, once per parcel,
    while one writer kept sequencing)."""
    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)
    url = _log(2)
    h = Log.open(url, forward=True, writer_id="h", hint_every=10**9)
    h.claim_writer(30.0)  # slot 2
    p = Log.open(url, forward=True, writer_id="p", hint_every=10**9)
    q = Log.open(url, forward=True, writer_id="q", hint_every=10**9)
    with h, p, q:
        p.head()
        q.head()
        first = Forwarded(p, url, [b"p"]).started()
        assert h.append([b"h1"])[0] == 3  # folds p's parcel; p is still waiting
        before = set(_inbox(url))
        second = Forwarded(q, url, [b"q"])
        second.thread.start()
        while set(_inbox(url)) == before:
            time.sleep(0.005)
        (qkey,) = set(_inbox(url)) - before
        rec.start()
        assert h.append([b"h2"])[0] == 4
        hreq = dict(rec.requests)
        rec.stop()
        assert first.positions() == [(3, 1)] and second.positions() == [(4, 1)]
    # the listing (both parcels), the new parcel's GET only, the create
    short = re.sub(r"\d{20}", lambda m: str(int(m[0])), qkey)  # as the recorder names it
    assert hreq == {("list", "inbox/"): 1, ("get", short): 1, ("put:create", "log/4"): 1}


def test_a_producer_looks_first_where_its_parcels_were_folded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A producer whose recent parcels were folded two slots past their base reads that
    slot first: found there, the slots between are never read (one GET, not three)."""
    monkeypatch.setattr(forward, "PATIENCE", (500.0, 500.0))  # 0.5 s: the rtt floor is 1 ms
    url = _log(1)
    counter = CountingBackend(open_backend(url))
    p = Log([Store(counter)], "create", url=url, writer_id="p", forward=True)
    w = Log.open(url, writer_id="w", hint_every=10**9, forward=True)
    fw, ww = p._forward, w._forward
    assert fw is not None and ww is not None
    with p, w:
        p.head()
        fw.offsets.extend([2, 2, 1])
        assert fw.likely_offset() == 2
        fw.contended_at = time.monotonic()  # lost a race just now: straight to the inbox
        producer = Forwarded(p, url, [b"p"]).started()  # its base: slot 1
        ww.list_after = time.monotonic() + 100  # w's next two appends do not fold
        w.append([b"w1"])
        w.append([b"w2"])
        ww.list_after = 0.0
        counter.reset()
        assert w.append([b"w3"])[0] == 3  # folds the parcel
        got = producer.positions()
    assert got == [(3, 1)]
    assert counter.snapshot()["get"] == 1  # slot 3 only: slots 1 and 2 were not read


def test_a_holder_folding_on_s3_counts_at_the_http_level(
    moto_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder's side of forwarding, counted by a proxy in front of moto_server (the
    producers reach moto directly): folding one parcel into an append is the inbox
    LIST, the parcel's GET and the create; the next append, with that parcel still
    listed and a new one, GETs only the new one."""
    from passivepaxos.bench.proxy import FaultProxy
    from tests.conftest import env

    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)
    # producers first look after ~200 of their round trips (about a second here): both
    # appends of the holder are long done by then
    monkeypatch.setattr(forward, "PATIENCE", (200.0, 200.0))
    bucket = fresh("fwdhttp")
    moto_server.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/log"
    init_log(url)
    p = Log.open(url, forward=True, writer_id="p", hint_every=10**9)
    q = Log.open(url, forward=True, writer_id="q", hint_every=10**9)
    with FaultProxy(moto_server.url) as proxy:
        with env(AWS_ENDPOINT_URL=proxy.url):
            h = Log.open(url, forward=True, writer_id="h", hint_every=10**9)
        with h, p, q:
            h.claim_writer(30.0)  # slot 0
            p.head()
            q.head()
            first = Forwarded(p, url, [b"p"]).started()
            proxy.reset()
            assert h.append([b"h1"]) == [1]
            one = proxy.counts()
            before = set(_inbox(url))
            second = Forwarded(q, url, [b"q"])
            second.thread.start()
            while set(_inbox(url)) == before:
                time.sleep(0.005)
            proxy.reset()
            assert h.append([b"h2"]) == [2]
            two = proxy.counts()
            assert first.positions() == [(1, 1)] and second.positions() == [(2, 1)]
    assert one == {"list": 1, "read": 1, "write": 1}
    assert two == {"list": 1, "read": 1, "write": 1}  # p's parcel, still listed: no GET


def test_a_damaged_slot_past_the_parcel_does_not_make_it_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first look's guess lands on a damaged slot past the record that holds the
    parcel: the guess is dropped and the walk from the base acknowledges it (it made the
    append outcome unknown: the outside review's finding 2)."""
    from passivepaxos.log.record import slot_instance

    monkeypatch.setattr(forward, "PATIENCE", (500.0, 500.0))
    url = _log(1)
    p = Log.open(url, writer_id="p", forward=True, hint_every=10**9)
    w = Log.open(url, writer_id="w", forward=True, hint_every=10**9)
    fw, ww = p._forward, w._forward
    assert fw is not None and ww is not None
    with p, w:
        p.head()
        fw.offsets.extend([2, 2, 2])
        fw.contended_at = time.monotonic()
        producer = Forwarded(p, url, [b"P"]).started()  # base: slot 1
        ww.list_after = 0.0
        assert w.append([b"w1"]) == [1]  # folds the parcel
        ww.list_after = time.monotonic() + 100
        assert w.append([b"w2"]) == [2]
        _raw(url).put(slot_instance(3), b"\x00garbage", PutMode.CREATE)  # the guessed slot
        assert producer.positions() == [(1, 1)]


def test_a_decided_fold_is_never_reported_failed_by_its_bookkeeping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a folding commit was decided, the sequencer notes the parcels its record took
    from the record held in memory only: when another thread's reads have pushed that
    record out of the cache and the store fails meanwhile, the append still returns its
    position (a GET there raised, and the decided append was reported a retryable
    failure that a caller would retry: the entry twice; the outside review's finding 1)."""
    from passivepaxos.wrappers import FaultPlan, FaultyBackend

    url = _log(3)
    fb = FaultyBackend(open_backend(url), FaultPlan())
    h = Log([Store(fb)], "create", url=url, writer_id="h", forward=True, hint_every=10**9)
    fw = h._forward
    assert fw is not None
    with h:
        h.append([b"warm"])  # slot 3
        real = h._tail.confirmed

        def confirmed() -> None:  # inside commit, after the decide: evict it, break the store
            real()
            with h._c.state:
                h._tail.recent.clear()
            fb.script(*["before"] * 10)

        monkeypatch.setattr(h._tail, "confirmed", confirmed)
        fw.list_after = 0.0  # the inbox is due: the commit folds
        got = h.append_positions([b"X"])
        fb.enabled = False
    assert [(x.slot, x.index) for x in got] == [(4, 0)]
    assert [v for _, _, v in _values(url)] == [b"s0", b"s1", b"s2", b"warm", b"X"]


def test_verify_checks_the_inbox_of_a_cas_mode_log_and_odd_markers() -> None:
    """Forwarding runs on one store in cas mode too, so verify reads its inbox there (it
    did only for create mode: a foreign object said "intact"); and a withdrawn marker
    whose contents name another parcel is damage like any object naming another parcel
    (the second outside review, findings 1 and 5)."""
    url = f"memory://fwd-{uuid.uuid4().hex[:10]}"
    init_log(url, "cas")
    raw = _raw(url)
    with Log.open(url, forward=True, writer_id="w") as w:
        w.append([b"w0"])
    raw.put(parcel_key(1, "12" * 16), encode_parcel(1, "34" * 16, [b"x"]), PutMode.CREATE)
    raw.put(parcel_key(1, "aa" * 16), forward._withdrawn(9, "bb" * 16), PutMode.CREATE)
    with Log.open(url) as log:
        report = log.verify()
    assert not report.ok and sorted(report.bad_inbox) == sorted(_inbox(url))
    assert "naming another parcel" in report.bad_inbox[parcel_key(1, "aa" * 16)]


def test_verify_of_a_log_written_meanwhile_is_not_a_gap() -> None:
    """verify reads the end slot missing, then a writer decides it and the next one: the
    look past the end finds the next, reads the end again and walks on (it reported a
    gap at a healthy slot: the second outside review, finding 2, 1 of 7 verifies beside
    4 writers)."""
    url = _log(3)

    class Racing(CountingBackend):
        fired = False

        def get(self, key: str) -> Any:
            got = super().get(key)
            if got is None and key == f"log/{3:020d}" and not Racing.fired:
                Racing.fired = True
                with Log.open(url, writer_id="w2", hint_every=10**9) as w2:
                    w2.append([b"x"])
                    w2.append([b"y"])
            return got

    with Log([Store(Racing(open_backend(url)))], "create", url=url) as log:
        report = log.verify()
    assert Racing.fired
    assert report.ok and report.slots == 5 and report.entries == 5, report


def test_many_producers_on_s3_each_entry_exactly_once(request: pytest.FixtureRequest) -> None:
    """Real contention through boto3 on moto_server: every acknowledged entry is in the log
    once, at the position it was acknowledged at; nothing else is in the log; the inbox is
    empty at the end (each parcel deleted once acknowledged)."""
    url = get_harness(request, "s3").url()
    init_log(url)
    n, k = 6, 8
    acks: dict[bytes, tuple[int, int]] = {}
    errors: list[BaseException] = []
    forwarded = [0]
    lock = threading.Lock()

    def producer(i: int) -> None:
        try:
            with Log.open(url, forward=True, writer_id=f"w{i}") as log:
                for j in range(k):
                    v = b"%d-%d" % (i, j)
                    (pos,) = log.append_positions([v])
                    with lock:
                        acks[v] = (pos.slot, pos.index)
                with lock:
                    forwarded[0] += log._forward.parcels_folded if log._forward else 0
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    seen = _values(url)
    at = {v: (s, i) for s, i, v in seen}
    assert len(seen) == len(at) == n * k  # nothing twice, nothing else
    assert at == acks
    assert _inbox(url) == []
    print(f"\n{n * k} entries in {len(set(s for s, _, _ in seen))} slots, {forwarded[0]} folded")


def test_resume_of_a_parcel_nobody_folded_settles_it(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _log(1)
    p, w = _lose_then_forward(url)
    raw = _raw(url)
    with p, w:
        fid = "ab" * 16
        raw.put(parcel_key(3, fid), encode_parcel(3, fid, [b"x", b"y"]), PutMode.CREATE)
        monkeypatch.setattr(forward, "PATIENCE", (1.0, 1.0))
        got = p.append_positions([b"x", b"y"], resume=f"fwd:3.{fid}")
        assert [(x.slot, x.index) for x in got] == [(3, 0), (3, 1)]
        again = p.append_positions([b"x", b"y"], resume=f"fwd:3.{fid}")
        assert again == got  # found in the log: nothing written
    assert [v for _, _, v in _values(url)] == [b"s0", b"p0", b"w0", b"x", b"y"]


def test_resume_of_a_parcel_never_created_withdraws_it_then_appends_once() -> None:
    url = _log(1)
    p, w = _lose_then_forward(url)
    raw = _raw(url)
    fid = "cd" * 16
    with p, w:
        first = p.append_positions([b"z"], resume=f"fwd:3.{fid}")
        assert [(x.slot, x.index) for x in first] == [(3, 0)]
        # the late create of the original parcel can no longer land
        with pytest.raises(Exception, match="exist"):
            raw.put(parcel_key(3, fid), encode_parcel(3, fid, [b"z"]), PutMode.CREATE)
        p.append([b"other"])
        second = p.append_positions([b"z"], resume=f"fwd:3.{fid}")
        assert second == first  # the first resume's record, found by its write id
    assert [v for _, _, v in _values(url)] == [b"s0", b"p0", b"w0", b"z", b"other"]


def test_an_ambiguous_parcel_create_is_outcome_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _log(1)
    p, w = _lose_then_forward(url)
    real = Store.put

    def put(self: Store, key: str, *a: Any, **kw: Any) -> Any:
        if key.startswith("inbox/"):
            real(self, key, *a, **kw)  # it landed; the answer is lost
            raise AmbiguousWriteError("create of the parcel: no answer", url=self.url, key=key)
        return real(self, key, *a, **kw)

    monkeypatch.setattr(Store, "put", put)
    with p, w, pytest.raises(ForwardOutcomeUnknownError) as err:
        p.append([b"maybe"])
    assert err.value.token.startswith("fwd:3.") and "may be folded" in str(err.value)
    assert err.value.outcome_unknown
    monkeypatch.setattr(Store, "put", real)
    monkeypatch.setattr(forward, "PATIENCE", (1.0, 1.0))
    with Log.open(url, forward=True) as q:
        got = q.append_positions([b"maybe"], resume=err.value.token)
    assert [v for _, _, v in _values(url)].count(b"maybe") == 1
    assert got[0].slot == 3


def test_a_damaged_parcel_is_never_folded(patient: None) -> None:
    url = _log(1)
    raw = _raw(url)
    raw.put(parcel_key(1, "ef" * 16), b'{"kind":"ppx-parcel","entries":["eA=="]}', PutMode.CREATE)
    raw.put(parcel_key(1, "12" * 16), encode_parcel(1, "34" * 16, [b"renamed"]), PutMode.CREATE)
    h = Log.open(url, forward=True, writer_id="h")
    with h:
        h.claim_writer(10.0)
        h.append([b"h"])
    assert [v for _, _, v in _values(url)] == [b"s0", b"h"]
    assert len(_inbox(url)) == 2  # left where they are, never repaired or deleted
    # skipped by every folder, so verify is what reports them (never silently)
    with Log.open(url) as log:
        report = log.verify()
    assert not report.ok and report.damaged and report.bad_slot is None
    assert sorted(report.bad_inbox) == sorted(_inbox(url))
    assert "its contents name another parcel" in report.bad_inbox[parcel_key(1, "12" * 16)]
    assert report.to_json()["head"] == 2  # the log itself is intact up to its end (s0, claim, h)


def test_verify_counts_the_inbox_and_names_a_foreign_object(tmp_path: Any) -> None:
    """``verify`` lists ``inbox/``: parcels a record names (folded, their producers not
    done yet), pending ones, withdrawn markers; any other object there is damage, exit 1,
    named in the text and in the JSON (the log's head is still given)."""
    from tests.test_cli import run

    (tmp_path / "log").mkdir()
    url = (tmp_path / "log").as_uri()
    init_log(url)
    raw = _raw(url)
    with Log.open(url, writer_id="w", forward=True) as w:
        w.append([b"w0"])  # slot 0
        raw.put(parcel_key(1, "aa" * 16), encode_parcel(1, "aa" * 16, [b"a"]), PutMode.CREATE)
        w._forward.list_after = 0.0  # type: ignore[union-attr]
        w.append([b"w1"])  # slot 1 folds parcel aa (its producer is gone: it stays listed)
    raw.put(parcel_key(2, "bb" * 16), encode_parcel(2, "bb" * 16, [b"b"]), PutMode.CREATE)
    raw.put(parcel_key(2, "cc" * 16), forward._withdrawn(2, "cc" * 16), PutMode.CREATE)
    ok = json.loads(run("verify", url, "--json").stdout)
    assert ok["ok"] and ok["inbox"] == {"folded": 1, "pending": 1, "withdrawn": 1, "damaged": []}
    raw.put("inbox/notes.txt", b"hello", PutMode.CREATE)
    out = run("verify", url)
    assert out.returncode == 1
    assert "damage found" in out.stdout and "inbox/notes.txt: not a parcel name" in out.stdout
    bad = json.loads(run("verify", url, "--json").stdout)
    assert not bad["ok"] and bad["head"] == 1 and bad["bad_slot"] is None
    assert bad["inbox"]["damaged"] == [
        {"key": "inbox/notes.txt", "reason": "inbox/notes.txt: not a parcel name"}
    ]


def test_parcel_and_record_formats_are_checked() -> None:
    fid = "ab" * 16
    p = decode_parcel(encode_parcel(7, fid, [b"a", b"b"]), parcel_key(7, fid))
    assert p is not None and p.entries == (b"a", b"b") and p.base == 7
    with pytest.raises(ValueError, match="another parcel"):
        decode_parcel(encode_parcel(7, fid, [b"a"]), parcel_key(8, fid))
    with pytest.raises(ValueError, match="checksum"):
        decode_parcel(
            encode_parcel(7, fid, [b"a"]).replace(b'"YQ=="', b'"Yg=="'), parcel_key(7, fid)
        )
    record = Record(0, H, "w", 0, "w" * 32, (b"own", b"a", b"b"), fwd=((fid, 2),))
    back = decode_record(record.encode(), 0, H)
    assert back.fwd == ((fid, 2),) and back.parcel_at(fid) == 1 and back.parcel_at("0" * 32) is None
    too_many = Record(0, H, "w", 0, "w" * 32, (b"a",), fwd=((fid, 2),))
    with pytest.raises(DamagedSlotError, match="malformed"):
        decode_record(too_many.encode(), 0, H)


def test_forwarding_needs_one_create_store() -> None:
    url = ",".join(f"memory://{fresh('q')}" for _ in range(3))
    init_log(url)
    with pytest.raises(ConfigError, match="single-store"):
        Log.open(url, forward=True)
    with Log.open(url) as log, pytest.raises(ConfigError, match="forward=True"):
        log.append([b"x"], resume="fwd:0." + "ab" * 16)


def test_resume_with_other_values_is_refused_naming_the_slot() -> None:
    url = _log(1)
    p, w = _lose_then_forward(url)
    with p, w:
        (pos,) = p.append_positions([b"p1"])  # forwarded, folded by p itself
        (fid,) = p._forward.record(pos.slot).parcel_ids  # type: ignore[union-attr]
        with pytest.raises(ConfigError, match=f"slot {pos.slot} from index 0"):
            p.append([b"other"], resume=f"fwd:{pos.slot}.{fid}")


def test_cli_append_forward_and_its_resume_token(tmp_path: Any) -> None:
    from passivepaxos.cli import main

    d = tmp_path / "log"
    d.mkdir()
    url = f"file://{d}"
    assert main(["init", url]) == 0
    assert main(["append", "--forward", url, "a"]) == 0
    raw = _raw(url)
    fid = "ef" * 16
    raw.put(parcel_key(1, fid), encode_parcel(1, fid, [b"b"]), PutMode.CREATE)
    # a forwarded append's token: the parcel is there, nobody folds it, the resume does
    assert main(["append", url, "b", "--resume", f"fwd:1.{fid}"]) == 0
    assert main(["append", url, "b", "--resume", f"fwd:1.{fid}"]) == 0  # found: no copy
    assert [v for _, _, v in _values(url)] == [b"a", b"b"]
    assert main(["append", url, "b", "--resume", "fwd:1.xyz"]) == 2
    from passivepaxos.log import check_token

    with pytest.raises(ConfigError, match=r"expected fwd:BASE\.FID"):
        check_token("fwd:1.xyz")


# -- the outside review's findings (each test fails without its fix) ------------------------


def test_resume_settles_the_name_before_reading_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 1: the parcel is folded and deleted while the resume looks: the resume
    must not take the free name for "never created" and append again."""
    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)
    url = _log(1)
    p, w = _lose_then_forward(url, forwarding=True)
    raw = _raw(url)
    fid = "ab" * 16
    key = parcel_key(3, fid)
    raw.put(key, encode_parcel(3, fid, [b"once"]), PutMode.CREATE)  # landed late
    real = Store.get
    hooked = []

    def get(self: Store, k: str) -> Any:
        if k == key and not hooked:
            hooked.append(k)
            w.append([b"w1"])  # folds the parcel
            raw.delete(key)  # and the clean-up deletes it (after the fold was decided)
        return real(self, k)

    with p, w:
        monkeypatch.setattr(Store, "get", get)
        got = p.append_positions([b"once"], resume=f"fwd:3.{fid}")
    assert hooked
    values = [v for _, _, v in _values(url)]
    assert values.count(b"once") == 1 and [(x.slot, x.index) for x in got] == [(3, 1)]


def test_resume_of_a_pending_parcel_with_other_values_is_refused() -> None:
    """Finding 2: positions for values that are not the parcel's would be acknowledged."""
    url = _log(1)
    p, w = _lose_then_forward(url)
    fid = "ab" * 16
    _raw(url).put(parcel_key(3, fid), encode_parcel(3, fid, [b"forwarded"]), PutMode.CREATE)
    with p, w, pytest.raises(ConfigError, match="differ from the ones forwarded"):
        p.append([b"other-1", b"other-2"], resume=f"fwd:3.{fid}")
    assert b"other-1" not in [v for _, _, v in _values(url)]


def test_a_lost_race_far_behind_the_tail_forwards_with_a_fresh_base(
    rec: Recorder,  # noqa: F811
) -> None:
    """Finding 4: after losing the slot after an old view, the parcel's base is the real
    tail's next slot, not the lost one (every folder would read each slot in between,
    and past FOLD_WINDOW none would fold it)."""
    url = _log(1)
    p, w = _lose_then_forward(url)  # p knows slot 1; w0 at 2
    with p, w:
        for i in range(40):
            w.append([b"w%d" % i])  # up to slot 42
        rec.start()
        p.append([b"late"])
        rec.stop()
    keys = _parcel_keys(rec.requests)
    assert keys and all(k.startswith("inbox/43.") for k in keys), keys
    assert _values(url)[-1] == (43, 0, b"late")


def test_a_foreign_object_in_the_inbox_does_not_stop_forwarding_writers() -> None:
    """Finding 6: an object under a parcel's name that is not a passivepaxos object."""
    url = _log(1)
    backend = open_backend(url)
    backend.put(parcel_key(1, "cd" * 16), b"hello from aws s3 cp\n", PutMode.CREATE)
    with Log.open(url, forward=True, writer_id="h") as h:
        assert h.append([b"b"]) == [1]
        h.claim_writer(10.0)
        assert h.append([b"c"]) == [3]
    assert len(_inbox(url)) == 1  # left alone


def test_a_holder_that_only_renews_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 7: renewals (and claims) of a forwarding holder fold the inbox."""
    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)
    monkeypatch.setattr(forward, "PATIENCE", (2000.0, 2000.0))
    url = _log(1)
    h = Log.open(url, forward=True, writer_id="h")
    h.claim_writer(30.0)
    p = Log.open(url, forward=True, writer_id="p")
    with h, p:
        p.head()
        producer = Forwarded(p, url, [b"P"]).started()
        slot = h.renew()
        got = producer.positions()
    assert got == [(slot, 0)]


def test_a_trimmed_slot_it_saw_does_not_fail_a_folders_appends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 8: a parcel left in the inbox (deletes denied) whose slot was trimmed."""
    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)
    monkeypatch.setattr(forward, "STALE_PARCEL", 2)
    url = _log(0)
    fid = "ef" * 16
    _raw(url).put(parcel_key(0, fid), encode_parcel(0, fid, [b"P"]), PutMode.CREATE)
    denied = []

    def delete(self: Store, key: str, if_version: Any = None) -> None:
        denied.append(key)
        raise PermissionDeniedError("AccessDenied", url=self.url, key=key)

    with Log.open(url, forward=True, writer_id="f", hint_every=10**9) as f:
        monkeypatch.setattr(Store, "delete", delete)
        assert f.append([b"f0"]) == [0]  # folds P
        for _ in range(300):  # slot 0 leaves the recent records
            f.append([b"f"])
        f.snapshot()
        f.trim(100)
        assert f.append([b"x"]) == [301]
        assert f.append([b"y"]) == [302]
    assert denied.count(parcel_key(0, fid)) == 1  # tried once, not at every listing


def test_forwarding_keeps_group_commit() -> None:
    """Finding 10: concurrent appends of one forwarding Log share slots."""
    url = _log(0)
    counting = CountingBackend(LatencyBackend(open_backend(url), 0.005))
    with Log([Store(counting)], "create", url=url, forward=True, hint_every=10**9) as log:
        log.head()
        counting.reset()
        threads = [
            threading.Thread(target=lambda i=i: [log.append([b"%d" % i]) for _ in range(5)])
            for i in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert counting.counts["put:create"] < 40  # 80 appends
    assert len(_values(url)) == 80


def test_an_interrupted_forwarded_append_names_its_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 9: Ctrl-C while waiting: the parcel exists; the interrupt carries the token
    (the CLI prints it)."""
    url = _log(1)
    p, w = _lose_then_forward(url)

    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    with p, w:
        monkeypatch.setattr(p.runtime, "sleep", sleep)
        with pytest.raises(KeyboardInterrupt) as err:
            p.append([b"x"])
    (note,) = err.value.__notes__
    assert re.search(r"resume with token fwd:3\.[0-9a-f]{32}$", note)


# -- the second outside review's findings -----------------------------------------------


def test_a_refused_producer_behind_a_busy_holder_forwards_with_a_fresh_base(
    rec: Recorder,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A1: a lease refusal reads nothing, so a tail learned long ago was the parcel's base
    (past FOLD_WINDOW the holder never folded it). Now an old tail is probed first."""
    monkeypatch.setattr(forward, "QUIET_LIST", 0.0)
    url = _log(1)
    h = Log.open(url, forward=True, writer_id="h", hint_every=10**9)
    h.claim_writer(60.0)  # slot 1
    p = Log.open(url, forward=True, writer_id="p", hint_every=10**9)
    with h, p:
        p.head()
        for i in range(30):
            h.append([b"h%d" % i])  # slots 2..31
        time.sleep(0.05)  # p's view is old now
        rec.start()
        producer = Forwarded(p, url, [b"P"]).started()
        rec.stop()
        keys = _parcel_keys(rec.requests)
        h.append([b"h-last"])  # folds it
        got = producer.positions()
    assert keys and all(k.startswith("inbox/32.") for k in keys), keys
    assert got == [(32, 1)]


def test_a_resume_of_a_parcel_past_the_fold_window_finishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A2: the listing dropped parcels past FOLD_WINDOW before the own-parcel exemption."""
    monkeypatch.setattr(forward, "FOLD_WINDOW", 8)
    monkeypatch.setattr(forward, "PATIENCE", (1.0, 1.0))
    url = _log(1)
    fid = "ab" * 16
    _raw(url).put(parcel_key(1, fid), encode_parcel(1, fid, [b"P"]), PutMode.CREATE)
    with Log.open(url, writer_id="plain") as w:
        for i in range(20):
            w.append([b"w%d" % i])  # slots 1..20, the parcel's producer gone
    with Log.open(url, forward=True, writer_id="r") as r:
        got = r.append_positions([b"P"], resume=f"fwd:1.{fid}")
    assert [(x.slot, x.index) for x in got] == [(21, 0)]
    assert [v for _, _, v in _values(url)].count(b"P") == 1


def test_an_interrupt_during_the_parcels_create_names_its_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A3: Ctrl-C as the parcel's create is answered: it may have landed (and be folded
    later), so the interrupt carries the fwd: token."""
    url = _log(1)
    p, w = _lose_then_forward(url)
    real = Store.put

    def put(self: Store, key: str, *a: Any, **kw: Any) -> Any:
        got = real(self, key, *a, **kw)
        if key.startswith("inbox/"):
            raise KeyboardInterrupt
        return got

    with p, w:
        monkeypatch.setattr(Store, "put", put)
        with pytest.raises(KeyboardInterrupt) as err:
            p.append([b"x"])
    (note,) = err.value.__notes__
    assert re.search(r"resume with token fwd:3\.[0-9a-f]{32}$", note)
