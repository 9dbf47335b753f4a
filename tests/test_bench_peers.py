"""The peer systems of the benchmark (delta-rs, slatedb, python-dynamodb-lock) really run against moto through the
counting proxy: ops complete, the data is there afterwards, and the request counts per op
are in a sane range (they are what the benchmark reports)."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from passivepaxos.bench import peers
from passivepaxos.bench.proxy import FaultProxy, request_kind

N = 5


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def bucket(moto_server: Any) -> str:
    name = fresh("peers")
    moto_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy(moto_server: Any) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url) as p:
        yield p


class Counter:
    """Requests seen by the proxy between ``on_ready`` and ``on_done`` (the timed loop)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.loop: list[tuple[str, str]] = []

    def ready(self) -> None:
        self.proxy.reset()

    def done(self) -> None:
        self.loop = list(self.proxy.requests)

    def by_method(self) -> collections.Counter[str]:
        return collections.Counter(m for m, _ in self.loop)


def test_available_names_every_peer() -> None:
    got = peers.available()
    assert set(got) == {"deltalake", "slatedb", "dynamodb-lock"}
    assert all(v is None or isinstance(v, str) for v in got.values())


@pytest.mark.parametrize("fresh_load", [False, True], ids=["long-lived", "fresh"])
def test_delta_append(bucket: str, proxy: FaultProxy, fresh_load: bool) -> None:
    pytest.importorskip("deltalake")
    pytest.importorskip("pyarrow")
    from deltalake import DeltaTable

    prefix = fresh("delta")
    c = Counter(proxy)
    run = peers.delta_append(
        proxy.url, bucket, prefix, N, fresh=fresh_load, on_ready=c.ready, on_done=c.done
    )
    assert (run.system, run.operation, run.where) == (
        "deltalake",
        "append (1 row/commit)",
        peers.WHERE_S3,
    )
    assert run.ops == N and len(run.latencies) == N and run.wall >= sum(run.latencies) * 0.99
    assert "AWS_CONDITIONAL_PUT=etag" in run.note

    table = DeltaTable(
        f"s3://{bucket}/{prefix}", storage_options=peers.delta_storage_options(proxy.url)
    )
    assert table.version() == N  # version 0 is the empty table made during setup
    data = table.to_pyarrow_table()
    assert sorted(data.column("id").to_pylist()) == list(range(N))
    assert all(len(v) == 100 for v in data.column("value").to_pylist())

    # The loop went through the proxy (explicit options beat the suite's AWS_ENDPOINT_URL):
    # one parquet PUT and one commit PUT per append, plus some log reads/lists.
    methods = c.by_method()
    assert methods["PUT"] == 2 * N, c.loop
    commits = [p for m, p in c.loop if m == "PUT" and "_delta_log" in p]
    assert len(commits) == N
    per_op = len(c.loop) / N
    assert 2 <= per_op <= (30 if fresh_load else 15), (per_op, methods)


def test_slatedb_put_then_get(bucket: str, proxy: FaultProxy, moto_server: Any) -> None:
    pytest.importorskip("slatedb.uniffi")
    prefix = fresh("slate")

    c = Counter(proxy)
    put = peers.slatedb_put(proxy.url, bucket, prefix, N, on_ready=c.ready, on_done=c.done)
    assert (put.system, put.operation, put.ops, len(put.latencies)) == (
        "slatedb",
        "put+durable",
        N,
        N,
    )
    # durable = its WAL SST is on S3: at least one WAL PUT per op (they run one at a time)
    wal_puts = [p for m, p in c.loop if m == "PUT" and "/wal/" in p]
    assert N <= len(wal_puts) <= 2 * N, c.loop
    assert 1 <= len(c.loop) / N <= 30, c.by_method()

    listed = moto_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any("/wal/" in k for k in keys) and any("/manifest/" in k for k in keys)

    # The reader checks every value it gets back (it must be the one slatedb_put wrote).
    for cached in (True, False):
        g = Counter(proxy)
        got = peers.slatedb_get(
            proxy.url, bucket, prefix, N, cached=cached, on_ready=g.ready, on_done=g.done
        )
        assert (got.operation, got.ops, len(got.latencies)) == ("get", N, N)
        reads = [p for m, p in g.loop if m == "GET" and "/compacted/" in p]
        if cached:
            assert len(g.loop) / N <= 10, g.by_method()
        else:  # no cache: every get reads the SST from S3
            assert len(reads) >= N, g.by_method()


def test_slatedb_flush_each_put(bucket: str, proxy: FaultProxy) -> None:
    pytest.importorskip("slatedb.uniffi")
    c = Counter(proxy)
    run = peers.slatedb_put(
        proxy.url, bucket, fresh("slate"), N, flush=True, on_ready=c.ready, on_done=c.done
    )
    assert run.ops == N and run.operation == "put+durable (flush each)"
    assert len([p for m, p in c.loop if m == "PUT" and "/wal/" in p]) == N


def test_dynamodb_lock(proxy: FaultProxy) -> None:
    """The locks peer on moto's DynamoDB: per acquire+release a GetItem, a conditional
    PutItem and a conditional DeleteItem (billed as a write), through the same proxy."""
    pytest.importorskip("python_dynamodb_lock")
    c = Counter(proxy)
    run = peers.dynamodb_lock(
        proxy.url, "unused", fresh("ddb"), N, on_ready=c.ready, on_done=c.done
    )
    assert run.ops == N == len(run.latencies) and run.system == "dynamodb-lock"
    targets = collections.Counter(p.rpartition(".")[2] for _, p in c.loop)
    assert targets == {"GetItem": N, "PutItem": N, "DeleteItem": N}
    kinds = collections.Counter(request_kind(m, p) for m, p in c.loop)
    assert kinds == {"read": N, "write": 2 * N}
