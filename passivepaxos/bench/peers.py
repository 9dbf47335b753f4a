"""Peer systems on the same S3 endpoint, for a side-by-side benchmark.

Users who want "a shared, ordered, durable log / KV on object storage" would otherwise
reach for one of these, so the benchmark runs them against the same emulator (and the same
request-counting proxy) as passivepaxos:

- **deltalake** (delta-rs): one Delta commit per append. Each commit writes a parquet data
  file and then ``_delta_log/<version>.json`` with ``If-None-Match: *``: S3's conditional
  put is delta-rs 1.x's own concurrency control (no DynamoDB lock, no unsafe rename). We
  still set ``AWS_CONDITIONAL_PUT=etag`` explicitly so the safe mode does not rest on a
  default.
- **python-dynamodb-lock** (the locks peer): the DynamoDB lock pattern AWS users reach for
  (a port of awslabs' dynamodb-lock-client): acquire = a conditional ``PutItem`` of the
  lock item (absent, or the holder's record version unchanged for its lease), release = a
  conditional ``DeleteItem``, a heartbeat ``UpdateItem`` every ``heartbeat_period`` while
  held. Run on moto_server's DynamoDB (the same server and proxy as s3).
- **slatedb**: an LSM on object storage. ``put`` only fills the memtable/WAL buffer; the write
  is durable once its WAL SST is on S3 (``WriteHandle.await_durable()``), which by default
  happens on the next ``flush_interval`` tick (100 ms). Manifests and WAL SSTs are also
  written with ``If-None-Match: *`` (that is how slatedb fences a second writer).

Both are reached over plain HTTP with path-style requests and the emulator's credentials.
The heavy imports (deltalake, pyarrow, slatedb) happen inside the functions, so importing
this module costs nothing when they are absent; :func:`available` tells why a peer cannot
run. Every runner does its setup (table creation, DB open) before calling ``on_ready`` and
the timed loop, and calls ``on_done`` right after the loop, before closing, so a caller can
count the requests of the loop alone.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from passivepaxos.bench import environ

__all__ = [
    "DDB_LOCK",
    "DELTA",
    "DELTA_FRESH",
    "SLATE_GET",
    "SLATE_PUT",
    "PeerRun",
    "available",
    "delta_append",
    "delta_storage_options",
    "dynamodb_lock",
    "slatedb_env",
    "slatedb_get",
    "slatedb_put",
]

REGION = "us-east-1"
ACCESS_KEY = "testing"  # moto's credentials: the only ones these runners are pointed at
SECRET_KEY = "testing"
WHERE_S3 = "s3 (moto_server)"

# the peers' case names (report.PAIRS pairs each with ours; the runner names its steps so)
DELTA = "append, 1 row/commit"
DELTA_FRESH = "append, 1 row/commit, fresh process"
SLATE_PUT = "put + durable"
SLATE_GET = "get"
DDB_LOCK = "lock acquire+release"

Hook = Callable[[], None] | None


@dataclass
class PeerRun:
    system: str  # "deltalake" / "slatedb"
    operation: str  # "append (1 row/commit)", "put+durable", "get"
    ops: int  # operations completed
    latencies: list[float]  # seconds per op, one per op
    wall: float  # seconds for the whole loop
    where: str  # "s3 (moto_server)" or "local files"
    note: str = ""  # configuration facts worth printing (e.g. conditional put mode)


_REQUIRES: dict[str, tuple[str, ...]] = {
    "deltalake": ("deltalake", "pyarrow"),
    "slatedb": ("slatedb.uniffi",),
    "dynamodb-lock": ("python_dynamodb_lock.python_dynamodb_lock", "boto3"),
}


def available() -> dict[str, str | None]:
    """System -> None if it can be imported, else the ImportError text (why it is skipped)."""
    out: dict[str, str | None] = {}
    for system, modules in _REQUIRES.items():
        reason: str | None = None
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                break
        out[system] = reason
    return out


def _call(hook: Hook) -> None:
    if hook is not None:
        hook()


# -- deltalake -----------------------------------------------------------------------------


def delta_storage_options(endpoint: str) -> dict[str, str]:
    """delta-rs options for an S3 API at ``endpoint`` (http allowed, path-style, moto creds).

    Explicit options win over the process environment, so a stray ``AWS_ENDPOINT_URL`` (the
    test suite sets one to moto itself) cannot route around the counting proxy.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",  # moto serves path-style
        "AWS_CONDITIONAL_PUT": "etag",  # commit = PUT If-None-Match: * (safe, lock-free)
    }


def _value(i: int, size: int) -> str:
    """A ``size``-byte value that still says which op wrote it (read-back checks use that)."""
    head = f"{i:08d}-"
    return head + "v" * max(0, size - len(head))


def delta_append(
    endpoint: str,
    bucket: str,
    prefix: str,
    n: int,
    rows: int = 1,
    *,
    fresh: bool = False,
    value_size: int = 100,
    on_ready: Hook = None,
    on_done: Hook = None,
) -> PeerRun:
    """``n`` appends of ``rows`` rows (an int ``id`` and a ``value_size``-byte string), one
    Delta commit each, to the table at ``s3://bucket/prefix`` (created empty if missing).

    Default: the realistic long-lived writer, which keeps one ``DeltaTable`` and passes it to
    ``write_deltalake`` (delta-rs 1.6 still lists ``_delta_log`` to catch up before each
    commit: ~7 requests per append). ``fresh=True`` passes the URI instead, so each append
    loads the table state from ``_delta_log`` like a new process would (minus interpreter
    start-up): it reads every commit since the last checkpoint (one per 100 versions), so
    its cost grows with the table. Batches are built before the loop.
    """
    import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from deltalake import (  # type: ignore[import-not-found,unused-ignore]
        DeltaTable,
        write_deltalake,
    )

    opts = delta_storage_options(endpoint)
    uri = f"s3://{bucket}/{prefix.strip('/')}"
    schema = pa.schema([("id", pa.int64()), ("value", pa.string())])
    table: Any = DeltaTable.create(uri, schema, mode="ignore", storage_options=opts)
    start_version = table.version()
    batches = [
        pa.table(
            {
                "id": pa.array([i * rows + j for j in range(rows)], pa.int64()),
                "value": pa.array([_value(i * rows + j, value_size) for j in range(rows)]),
            },
            schema=schema,
        )
        for i in range(n)
    ]

    latencies: list[float] = []
    _call(on_ready)
    t_start = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        if fresh:
            write_deltalake(uri, batch, mode="append", storage_options=opts)
        else:
            write_deltalake(table, batch, mode="append")
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    _call(on_done)

    style = "fresh table load per append (URI)" if fresh else "long-lived DeltaTable"
    return PeerRun(
        system="deltalake",
        operation=f"append ({rows} row{'s' if rows != 1 else ''}/commit)",
        ops=len(latencies),
        latencies=latencies,
        wall=wall,
        where=WHERE_S3,
        note=(
            f"{style}; commit = parquet PUT + _delta_log JSON PUT If-None-Match:* "
            f"(AWS_CONDITIONAL_PUT=etag, no DynamoDB lock, no unsafe rename); "
            f"table version {start_version} -> {start_version + len(latencies)}"
        ),
    )


# -- python-dynamodb-lock ------------------------------------------------------------------


def dynamodb_lock(
    endpoint: str,
    bucket: str,
    prefix: str,
    n: int,
    *,
    on_ready: Hook = None,
    on_done: Hook = None,
) -> PeerRun:
    """``n`` acquire+release pairs of python-dynamodb-lock on a new lock table (named after
    ``prefix``; ``bucket`` unused) at ``endpoint``, over 10 lock names as our lock case."""
    import datetime

    import boto3
    from python_dynamodb_lock.python_dynamodb_lock import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        DynamoDBLockClient,
    )

    kw: dict[str, Any] = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    table = f"locks-{prefix}"
    DynamoDBLockClient.create_dynamodb_table(boto3.client("dynamodb", **kw), table_name=table)
    client = DynamoDBLockClient(
        boto3.resource("dynamodb", **kw),
        table_name=table,
        heartbeat_period=datetime.timedelta(seconds=5),
        lease_duration=datetime.timedelta(seconds=30),
    )
    try:
        client.acquire_lock("warm").release()
        _call(on_ready)
        lat: list[float] = []
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            client.acquire_lock(f"job-{i % 10}").release()
            lat.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
        _call(on_done)
    finally:
        client.close()
    return PeerRun(
        "dynamodb-lock",
        DDB_LOCK,
        n,
        lat,
        wall,
        "dynamodb (moto_server)",
        note="python-dynamodb-lock 0.9, lease 30 s, heartbeat 5 s",
    )


# -- slatedb -------------------------------------------------------------------------------


def slatedb_env(endpoint: str) -> dict[str, str]:
    """The variables slatedb's ``ObjectStore.resolve("s3://bucket")`` reads (object_store's
    ``AmazonS3Builder::from_env``): it has no options argument, only the environment."""
    return {
        "AWS_ENDPOINT": endpoint,
        "AWS_ENDPOINT_URL": endpoint,  # also read (alias); must not point elsewhere
        "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        "AWS_CONDITIONAL_PUT": "etag",
    }


def _slatedb_store(endpoint: str, bucket: str) -> Any:
    from slatedb.uniffi import ObjectStore  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with environ(slatedb_env(endpoint)):
        return ObjectStore.resolve(f"s3://{bucket}")  # a path in the URL is refused


def _key(i: int) -> bytes:
    return f"key-{i:08d}".encode()


def _db_path(prefix: str) -> str:
    return prefix.strip("/") or "slatedb"


def slatedb_put(
    endpoint: str,
    bucket: str,
    prefix: str,
    n: int,
    value_size: int = 100,
    *,
    flush: bool = False,
    on_ready: Hook = None,
    on_done: Hook = None,
) -> PeerRun:
    """``n`` puts into the DB at ``s3://bucket/prefix``, each durable before the next.

    Default: ``put`` then ``await_durable()``, which waits for the next WAL flush tick
    (``flush_interval``, 100 ms by default): what a single synchronous writer sees.
    ``flush=True`` forces a WAL flush after each put instead (the lowest latency a writer
    can get per durable op, at one WAL object per op).
    """
    return asyncio.run(
        _slatedb_put(endpoint, bucket, prefix, n, value_size, flush, on_ready, on_done)
    )


async def _slatedb_put(
    endpoint: str,
    bucket: str,
    prefix: str,
    n: int,
    value_size: int,
    flush: bool,
    on_ready: Hook,
    on_done: Hook,
) -> PeerRun:
    from slatedb.uniffi import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        DbBuilder,
        FlushOptions,
        FlushType,
    )

    store = _slatedb_store(endpoint, bucket)
    db = await DbBuilder(_db_path(prefix), store).build()
    values = [_value(i, value_size).encode() for i in range(n)]
    latencies: list[float] = []
    try:
        _call(on_ready)
        t_start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            handle = await db.put(_key(i), values[i])
            if flush:
                await db.flush_with_options(FlushOptions(flush_type=FlushType.WAL))
            await handle.await_durable()
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - t_start
        _call(on_done)
    finally:
        await db.shutdown()
    mode = "put + WAL flush each op" if flush else "put + await_durable (flush_interval 100ms)"
    return PeerRun(
        system="slatedb",
        operation="put+durable (flush each)" if flush else "put+durable",
        ops=len(latencies),
        latencies=latencies,
        wall=wall,
        where=WHERE_S3,
        note=f"{mode}; WAL SST + manifest PUT If-None-Match:*; {value_size}-byte values",
    )


def slatedb_get(
    endpoint: str,
    bucket: str,
    prefix: str,
    n: int,
    *,
    cached: bool = True,
    on_ready: Hook = None,
    on_done: Hook = None,
) -> PeerRun:
    """``n`` point reads by a separate ``DbReader`` of the DB at ``s3://bucket/prefix``.

    Setup (untimed): a writer opens the DB, puts any of the ``n`` keys that
    :func:`slatedb_put` did not write, and closes (which flushes the memtable to an L0 SST),
    so the reader's gets go to S3 rather than to a writer's memtable. ``cached=True`` is the
    default block cache (the first gets fetch SST index/filter/block, later ones hit
    memory); ``cached=False`` disables it, so every get reads S3. Every value is checked.
    """
    return asyncio.run(_slatedb_get(endpoint, bucket, prefix, n, cached, on_ready, on_done))


async def _slatedb_get(
    endpoint: str,
    bucket: str,
    prefix: str,
    n: int,
    cached: bool,
    on_ready: Hook,
    on_done: Hook,
) -> PeerRun:
    from slatedb.uniffi import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        DbBuilder,
        DbReaderBuilder,
    )

    store = _slatedb_store(endpoint, bucket)
    path = _db_path(prefix)
    writer = await DbBuilder(path, store).build()
    try:
        for i in range(n):
            if await writer.get(_key(i)) is None:
                await writer.put(_key(i), _value(i, 100).encode())
    finally:
        await writer.shutdown()

    builder = DbReaderBuilder(path, store)
    if not cached:
        builder.with_db_cache_disabled()
    reader = await builder.build()
    latencies: list[float] = []
    try:
        _call(on_ready)
        t_start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            value = await reader.get(_key(i))
            latencies.append(time.perf_counter() - t0)
            if value is None or not bytes(value).startswith(f"{i:08d}-".encode()):
                raise RuntimeError(f"slatedb get {_key(i)!r}: unexpected value {value!r:.40}")
        wall = time.perf_counter() - t_start
        _call(on_done)
    finally:
        await reader.shutdown()
    cache = "block cache on (default)" if cached else "block cache disabled"
    return PeerRun(
        system="slatedb",
        operation="get",
        ops=len(latencies),
        latencies=latencies,
        wall=wall,
        where=WHERE_S3,
        note=f"DbReader after the writer closed (data in an L0 SST); {cache}",
    )
