"""Metrics and traces through OpenTelemetry (``passivepaxos/telemetry.py``, docs/observability.md).

Each test gets its own SDK providers (an ``InMemoryMetricReader``, an
``InMemorySpanExporter`` behind a ``SimpleSpanProcessor``) through ``telemetry.configure``:
OpenTelemetry's global providers can be set once per process, so the global path (a
provider set *after* the library was imported and used) and the path without
``opentelemetry`` at all run in subprocesses of their own.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from passivepaxos import Log, telemetry
from passivepaxos.errors import AlreadyExistsError, AmbiguousWriteError, LockLostError
from passivepaxos.manifest import init_log
from passivepaxos.recipes.lock import Locks, Op, encode_op
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import PutMode
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import CountingBackend, FaultPlan, FaultyBackend
from tests.clocked import Stepped
from tests.conftest import env, get_harness

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = "passivepaxos.storage.requests"
OPS = ("get", "put:create", "put:update", "put:overwrite", "delete", "list")
NO_WAIT = RetryPolicy(attempts=6, base_delay=0.0, max_delay=0.0, resolve_attempts=6)


@dataclass
class Otel:
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of every data point of metric ``name``: a counter's value,
        a histogram's (count, sum)."""
        out: list[tuple[dict[str, Any], Any]] = []
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else []:
            for sm in rm.scope_metrics:
                assert sm.scope.name == "passivepaxos"
                for m in sm.metrics:
                    if m.name != name:
                        continue
                    assert m.unit == telemetry.METRICS[name][1]
                    for p in m.data.data_points:
                        value = p.value if hasattr(p, "value") else (p.count, p.sum)
                        out.append((dict(p.attributes or {}), value))
        return out

    def total(self, name: str, **attrs: str) -> Any:
        """The sum over the data points of ``name`` whose attributes include ``attrs``
        (``passivepaxos.`` prefixed): an int for a counter, (count, sum) for a histogram."""
        want = {f"passivepaxos.{k}": v for k, v in attrs.items()}
        hits = [v for a, v in self.points(name) if want.items() <= a.items()]
        if hits and isinstance(hits[0], tuple):
            return (sum(c for c, _ in hits), sum(s for _, s in hits))
        return sum(hits)

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def all_attribute_values(self) -> list[str]:
        """Every attribute value recorded (spans, their events, metric points), as text."""
        values: list[Any] = []
        for s in self.finished():
            values.extend((s.attributes or {}).values())
            for e in s.events:
                values.extend((e.attributes or {}).values())
            values.append(s.status.description)
        for name in telemetry.METRICS:
            for attrs, _ in self.points(name):
                values.extend(attrs.values())
        return [repr(v) for v in values]


@pytest.fixture
def otel() -> Iterator[Otel]:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.configure(meter_provider=meter_provider, tracer_provider=tracer_provider)
    try:
        yield Otel(reader, spans)
    finally:
        telemetry.configure()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def _memory_url(name: str = "tm") -> str:
    return f"memory://{name}-{uuid.uuid4().hex[:10]}"


# -- an append on S3 -----------------------------------------------------------------------


def test_append_on_s3_reports_every_request_and_a_span(moto_server: Any, otel: Otel) -> None:
    """The request counter agrees, per operation, with ``CountingBackend`` counting the
    same stores; an append is one span with the slot and the store (scheme and bucket,
    no prefix), its requests events on it; no attribute carries a credential or a value."""
    bucket = f"tm-{uuid.uuid4().hex[:10]}"
    moto_server.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/logs/{uuid.uuid4().hex[:6]}"
    secret = f"SECRET-{uuid.uuid4().hex}"
    key_id = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    values = [f"VALUE-{uuid.uuid4().hex}".encode() for _ in range(3)]
    with env(AWS_SECRET_ACCESS_KEY=secret, AWS_ACCESS_KEY_ID=key_id):
        init_log(url)
        before = {op: otel.total(REQUESTS, operation=op) for op in OPS}  # init_log's
        counting = CountingBackend(open_backend(url))
        with Log.open_on([Store(counting)], url) as log:
            slots = [log.append([values[0]]), log.append(values[1:])]
    assert slots == [[0], [1, 1]]
    counted = counting.snapshot()
    assert sum(counted.values()) >= 3
    for op in OPS:  # every request of the Log went through the counted backend
        got = otel.total(REQUESTS, backend="s3", operation=op)
        assert got - before[op] == counted[op], (op, got, before[op], counted)
    assert otel.total("passivepaxos.storage.requests", outcome="ok") == otel.total(
        "passivepaxos.storage.requests"
    )
    count, took = otel.total("passivepaxos.storage.request.duration", backend="s3")
    assert count == otel.total("passivepaxos.storage.requests") and took > 0
    count, took = otel.total("passivepaxos.log.append.duration", backend="s3")
    assert count == 2 and took > 0

    appends = otel.finished("passivepaxos.append")
    assert len(appends) == 2
    for span, slot, n in zip(appends, (0, 1), (1, 2), strict=True):
        attrs = dict(span.attributes or {})
        assert attrs["passivepaxos.store"] == f"s3://{bucket}"
        assert attrs["passivepaxos.backend"] == "s3"
        assert attrs["passivepaxos.slot"] == slot
        assert attrs["passivepaxos.entries"] == n
        events = [e for e in span.events if e.name == "passivepaxos.storage.request"]
        assert any(
            (e.attributes or {}).get("passivepaxos.operation") == "put:create" for e in events
        )
    # the second append knows the tail: one create, nothing else
    assert [(e.attributes or {}).get("passivepaxos.operation") for e in appends[1].events] == [
        "put:create"
    ]

    recorded = otel.all_attribute_values()
    assert recorded
    for needle in (secret, key_id, "logs/", *(v.decode() for v in values)):
        leaked = [v for v in recorded if needle in v]
        assert not leaked, (needle, leaked)


def test_request_counts_equal_the_counting_wrapper_for_a_whole_session(otel: Otel) -> None:
    """Every request of the store, and only those, whatever the operation: the log's
    open, appends, a read, a snapshot and a trim (overwrites), on a counted memory store."""
    url = _memory_url()
    init_log(url)
    before = {op: otel.total(REQUESTS, operation=op) for op in OPS}
    counting = CountingBackend(open_backend(url))
    with Log.open_on([Store(counting)], url) as log:
        for i in range(5):
            log.append([b"x%d" % i])
        assert len(list(log.read())) == 5
        log.snapshot()
        log.trim(2)
    counted = counting.snapshot()
    assert counted["put:overwrite"] >= 2 and counted["list"] >= 1 and counted["get"] >= 1
    for op, n in before.items():
        assert otel.total(REQUESTS, operation=op) - n == counted[op], op


# -- conflicts and ambiguous writes --------------------------------------------------------


def test_a_lost_race_counts_one_conflict(otel: Otel) -> None:
    url = _memory_url()
    init_log(url)
    with Log.open(url, backoff_max=0) as a, Log.open(url, backoff_max=0) as b:
        assert b.append([b"b0"]) == [0]
        assert a.append([b"a1"]) == [1]  # a finds the tail; b still believes it is 0
        assert otel.total("passivepaxos.storage.conflicts") == 0
        assert b.append([b"b2"]) == [2]  # b's create of slot 1 loses, then slot 2
    assert otel.total("passivepaxos.storage.conflicts", operation="put:create") == 1
    assert otel.total("passivepaxos.storage.conflicts") == 1
    assert otel.total("passivepaxos.log.races_lost", backend="memory") == 1
    assert (
        otel.total("passivepaxos.storage.requests", operation="put:create", outcome="conflict") == 1
    )
    assert otel.total("passivepaxos.storage.ambiguous_writes") == 0
    lost = otel.finished("passivepaxos.append")[-1]
    assert (lost.attributes or {})["passivepaxos.slot"] == 2


def test_a_store_level_conflict_on_create_and_update(otel: Otel) -> None:
    store = Store(open_backend(_memory_url()), retry=NO_WAIT)
    v1 = store.put("k", b"one", PutMode.CREATE)
    with pytest.raises(AlreadyExistsError):
        store.put("k", b"two", PutMode.CREATE)
    store.put("k", b"three", PutMode.update(v1))
    with pytest.raises(Exception, match=r"(?i)precondition|version|moved"):
        store.put("k", b"four", PutMode.update(v1))
    assert otel.total("passivepaxos.storage.conflicts", operation="put:create") == 1
    assert otel.total("passivepaxos.storage.conflicts", operation="put:update") == 1


def test_an_ambiguous_create_on_s3_resolved_by_read_back_counts_once(
    request: pytest.FixtureRequest, otel: Otel
) -> None:
    """The proxy in front of moto_server loses the answer to a create that took effect: the
    store reads the key back, finds its write id, and reports success; one ambiguous write,
    resolved ``landed``, and the lost answer as one request with a transient outcome."""
    harness = get_harness(request, "s3")
    with harness.wired() as (store, injector):
        injector.lose_next_response()
        version = store.put("obj", b"payload", PutMode.CREATE)
        assert store.get("obj") == (b"payload", version)
    amb = otel.points("passivepaxos.storage.ambiguous_writes")
    assert amb == [
        (
            {
                "passivepaxos.backend": "s3",
                "passivepaxos.operation": "put:create",
                "passivepaxos.resolution": "landed",
            },
            1,
        )
    ]
    assert otel.total("passivepaxos.storage.requests", operation="put:create") == 1
    assert (
        otel.total("passivepaxos.storage.requests", operation="put:create", outcome="transient")
        == 1
    )
    assert otel.total("passivepaxos.storage.requests", operation="get") == 2  # read-back, get
    assert otel.total("passivepaxos.storage.conflicts") == 0


@pytest.mark.parametrize(
    ("faults", "resolution", "raises"),
    [
        (["before"], "resent", None),  # not landed: the same bytes again, which win
        (["after"], "landed", None),
        (["after", *["before"] * 6], "unknown", AmbiguousWriteError),  # no read-back answer
    ],
)
def test_ambiguous_resolutions(
    otel: Otel, faults: list[str], resolution: str, raises: type[Exception] | None
) -> None:
    faulty = FaultyBackend(open_backend(_memory_url()), FaultPlan())
    store = Store(CountingBackend(faulty), retry=NO_WAIT, sleep=lambda s: None)
    faulty.script(*faults)
    if raises is None:
        store.put("k", b"v", PutMode.CREATE)
    else:
        with pytest.raises(raises):
            store.put("k", b"v", PutMode.CREATE)
    assert otel.points("passivepaxos.storage.ambiguous_writes") == [
        (
            {
                "passivepaxos.backend": "memory",
                "passivepaxos.operation": "put:create",
                "passivepaxos.resolution": resolution,
            },
            1,
        )
    ]
    counted = store.backend.snapshot()  # type: ignore[attr-defined]
    for op in ("get", "put:create"):
        assert otel.total("passivepaxos.storage.requests", operation=op) == counted[op]


def test_a_create_lost_to_another_writer_behind_a_lost_answer(otel: Otel) -> None:
    """A create whose attempt failed unclearly, and someone else's object there on the
    read-back: resolution ``lost`` and one conflict."""
    backend = open_backend(_memory_url())
    faulty = FaultyBackend(backend, FaultPlan())
    store = Store(faulty, retry=NO_WAIT, sleep=lambda s: None)
    other = Store(backend)

    faulty.script("before")
    other.put("k", b"theirs", PutMode.CREATE)
    with pytest.raises(AlreadyExistsError):
        # "before": no effect, and the read-back finds the other writer's object
        store.put("k", b"mine", PutMode.CREATE)
    assert otel.total("passivepaxos.storage.ambiguous_writes", resolution="lost") == 1
    assert otel.total("passivepaxos.storage.conflicts", operation="put:create") == 1


# -- locks and leases ----------------------------------------------------------------------


def test_a_lock_wait_records_its_duration_and_spans_carry_the_slot(otel: Otel) -> None:
    """On a stepped clock the wait is exact: the holder releases during the third pause
    of a second (as in test_polling_costs), so the waiter waited 3.0 s of its clock."""
    url = _memory_url("lockwait")
    init_log(url)
    clock = Stepped()
    with Log.open(url, writer_id="f") as lf, Log.open(url, writer_id="b", runtime=clock) as lb:

        def op(kind: str, token: int | None) -> bytes:
            return encode_op("locks", Op(kind, "job", "F", 10, None, token, 0.0, kind))

        lf.append([op("acquire", None)])
        b = Locks(lb, owner="B")
        assert b.status("job").holder == "F"

        def release_during_third_pause(n: int) -> None:
            if n == 3:
                lf.append([op("release", 1)])

        clock.on_sleep = release_during_third_pause
        assert b.acquire("job", 10, wait=float("inf")) == 2
        assert b.release("job")
    assert otel.total("passivepaxos.lock.waits", result="acquired") == 1
    assert otel.total("passivepaxos.lock.wait.duration", result="acquired") == (1, 3.0)
    assert otel.total("passivepaxos.lease.claims", kind="lock", result="granted") == 1
    (acq,) = otel.finished("passivepaxos.lock.acquire")
    attrs = dict(acq.attributes or {})
    assert attrs["passivepaxos.store"] == url
    assert attrs["passivepaxos.slot"] == 2  # F's acquire, F's release, then ours
    assert attrs["passivepaxos.lock.token"] == 2
    assert attrs["passivepaxos.lock.waited"] == 3.0
    (rel,) = otel.finished("passivepaxos.lock.release")
    assert dict(rel.attributes or {})["passivepaxos.slot"] == 3
    # the lock's appends are children of its spans
    children = [s for s in otel.finished("passivepaxos.append") if s.parent is not None]
    assert {s.parent.span_id for s in children if s.parent} >= {
        acq.context.span_id,
        rel.context.span_id,
    }


def test_an_acquire_that_does_not_wait_records_no_wait_and_a_refusal(otel: Otel) -> None:
    """The refusal is recorded by its class name: its message (which names the lock and
    its holder, the application's keys) is in no attribute or event."""
    url = _memory_url()
    init_log(url)
    name, holder = f"lock-{uuid.uuid4().hex}", f"owner-{uuid.uuid4().hex}"
    with Log.open(url) as log:
        a, b = Locks(log, owner=holder), Locks(log, owner="B")
        a.acquire(name, 30)
        with pytest.raises(Exception, match="held") as refused:
            b.acquire(name, 30)
    assert name in str(refused.value) and holder in str(refused.value)
    recorded = otel.all_attribute_values()
    assert not [v for v in recorded if name in v or holder in v]
    assert otel.total("passivepaxos.lock.waits") == 0
    assert otel.total("passivepaxos.lease.claims", kind="lock", result="granted") == 1
    assert otel.total("passivepaxos.lease.claims", kind="lock", result="refused") == 1
    spans = otel.finished("passivepaxos.lock.acquire")
    assert [dict(s.attributes or {}).get("error.type") for s in spans] == [None, "LockHeldError"]


def test_a_lock_taken_over_counts_a_loss(otel: Otel) -> None:
    url = _memory_url()
    init_log(url)
    clock = Stepped()
    with Log.open(url, writer_id="a") as la, Log.open(url, writer_id="b", runtime=clock) as lb:
        a, b = Locks(la, owner="A"), Locks(lb, owner="B")
        a.acquire("job", 1.0)
        assert b.acquire("job", 1.0, wait=float("inf")) == 2  # waits out A's ttl, takes over
        with pytest.raises(LockLostError):
            a.refresh("job")
    assert otel.total("passivepaxos.lease.losses", kind="lock") == 1
    assert otel.total("passivepaxos.lock.waits", result="acquired") == 1
    count, waited = otel.total("passivepaxos.lock.wait.duration")
    assert count == 1 and 1.0 <= waited <= 1.2
    assert otel.total("passivepaxos.lease.claims", kind="lock", result="granted") == 2


def test_writer_lease_claims_and_spans(otel: Otel) -> None:
    url = _memory_url()
    init_log(url)
    with Log.open(url, writer_id="h") as h, Log.open(url, writer_id="c") as c:
        got = h.claim_writer(30)
        assert got.granted
        assert not c.claim_writer(30, wait=False).granted
        h.renew()
        h.release_writer()
    assert otel.total("passivepaxos.lease.claims", kind="writer", result="granted") == 1
    assert otel.total("passivepaxos.lease.claims", kind="writer", result="refused") == 1
    (claim, refused) = otel.finished("passivepaxos.writer.claim")
    assert dict(claim.attributes or {})["passivepaxos.slot"] == got.slot
    assert "passivepaxos.slot" not in dict(refused.attributes or {})
    (renew,) = otel.finished("passivepaxos.writer.renew")
    (release,) = otel.finished("passivepaxos.writer.release")
    assert dict(renew.attributes or {})["passivepaxos.slot"] == got.slot + 1
    assert dict(release.attributes or {})["passivepaxos.slot"] == got.slot + 2


def test_a_writer_lease_taken_over_counts_a_loss(otel: Otel) -> None:
    url = _memory_url()
    init_log(url)
    clock = Stepped()
    with Log.open(url, writer_id="h") as h, Log.open(url, writer_id="c", runtime=clock) as c:
        h.claim_writer(1.0)
        assert c.claim_writer(1.0).granted  # waits out h's ttl on its own clock
        with pytest.raises(Exception, match=r"(?i)lost"):
            h.append([b"late"])
    assert otel.total("passivepaxos.lease.losses", kind="writer") == 1


# -- consensus -----------------------------------------------------------------------------


def test_a_quorum_append_is_a_propose_span_under_the_append_span(otel: Otel) -> None:
    urls = [_memory_url("q") for _ in range(3)]
    url = ",".join(urls)
    init_log(url)
    with Log.open(url) as log:
        assert log.append([b"v"]) == [0]
    (append,) = otel.finished("passivepaxos.append")
    proposes = otel.finished("passivepaxos.propose")
    assert proposes and all(
        p.parent is not None and p.parent.span_id == append.context.span_id for p in proposes
    )
    attrs = dict(proposes[-1].attributes or {})
    assert attrs["passivepaxos.won"] is True
    assert attrs["passivepaxos.store"] == url  # memory://name: the name is the container
    assert attrs["passivepaxos.backend"] == "memory"
    count, _ = otel.total("passivepaxos.consensus.propose.duration")
    assert count == len(proposes)


# -- labels, layering, and without opentelemetry --------------------------------------------


def test_store_labels_carry_no_credentials_prefix_or_query() -> None:
    assert telemetry.store_label("s3://bkt/some/prefix") == "s3://bkt"
    assert telemetry.store_label("s3://AKIA:secret@bkt/p?token=abc#frag") == "s3://bkt"
    assert telemetry.store_label("gs://b/x,file:///tmp/dir/") == "gs://b,file:///tmp/dir"
    assert telemetry.store_label("dropbox:///apps/log?token=sl.abc") == "dropbox:///apps/log"
    assert telemetry.backend_label("s3://a/x,gs://b/y,s3://c/z") == "gs,s3"


def test_telemetry_is_the_only_module_that_imports_opentelemetry() -> None:
    from tests.test_imports import graph

    assert graph()["passivepaxos.telemetry"] == set()  # stdlib only
    importers = []
    for pkg in ("passivepaxos", "backends"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                if any(n.split(".")[0] == "opentelemetry" for n in names):
                    importers.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(importers)) == ["passivepaxos/telemetry.py"]


def _run(code: str) -> str:
    env_ = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_without_opentelemetry_everything_is_a_no_op() -> None:
    """``opentelemetry`` blocked (``sys.modules`` entry ``None``: every import of it
    fails): the library works and the hooks do nothing."""
    out = _run(
        """
        import sys
        sys.modules["opentelemetry"] = None
        from passivepaxos import Log, telemetry
        from passivepaxos.manifest import init_log
        from passivepaxos.recipes.lock import Locks
        assert telemetry.ENABLED is False
        assert not any(m.startswith("opentelemetry.") for m in sys.modules)
        url = "memory://no-otel"
        init_log(url)
        with Log.open(url) as log:
            assert log.append([b"a"]) == [0]
            locks = Locks(log)
            assert locks.acquire("x", 5) == 1 and locks.release("x")
        fn = lambda: 1
        assert telemetry.metered(object(), "get", fn) is fn  # the request itself
        op = telemetry.operation("append", "memory://x", lambda: 0.0)
        assert op is telemetry.operation("lock.acquire", "s3://b", lambda: 0.0)  # shared
        with op as o:
            o.set("slot", 1); o.slots([1]); o.waiting(0.0); o.result(True)
        telemetry.conflict(object(), "put:create")  # no attribute is even read
        telemetry.ambiguous(object(), "put:create", "landed")
        telemetry.slot_lost(object())
        telemetry.annotate(slot=1)
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_a_global_provider_set_after_import_and_use_is_used() -> None:
    """The instruments and the tracer come from OpenTelemetry's proxies: an append made
    before the application sets its providers reports nothing (and fails nothing), the
    next one reports to them."""
    out = _run(
        """
        from passivepaxos import Log, telemetry
        from passivepaxos.manifest import init_log
        url = "memory://late-provider"
        init_log(url)
        log = Log.open(url)
        log.append([b"before"])  # instruments created now, on the proxy meter

        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tp)

        assert log.append([b"after"]) == [1]
        log.close()
        points = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        key = (m.name, dict(p.attributes).get("passivepaxos.operation"))
                        points[key] = p.value if hasattr(p, "value") else p.count
        assert points[("passivepaxos.log.append.duration", None)] == 1, points
        assert points[("passivepaxos.storage.requests", "put:create")] == 1, points
        names = [s.name for s in spans.get_finished_spans()]
        assert names == ["passivepaxos.append"], names
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_the_documented_names_are_the_instruments() -> None:
    page = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    for name, (_kind, unit, _) in telemetry.METRICS.items():
        assert f"`{name}`" in page, name
        assert f"`{unit}`" in page, (name, unit)
    for name in telemetry.SPANS:
        assert f"`{name}`" in page, name


def test_append_async_is_reported_when_its_future_completes(otel: Otel) -> None:
    url = _memory_url()
    init_log(url)
    with Log.open(url) as log:
        futs = [log.append_async([b"e%d" % i]) for i in range(4)]
        slots = [f.result()[0].slot for f in futs]
    spans = otel.finished("passivepaxos.append")
    assert len(spans) == 4
    assert all(dict(s.attributes or {})["passivepaxos.async"] is True for s in spans)
    got = sorted(int(str(dict(s.attributes or {})["passivepaxos.slot"])) for s in spans)
    assert got == sorted(slots)
    count, _ = otel.total("passivepaxos.log.append.duration")
    assert count == 4
