"""The loopback Dropbox server, the official SDK and ``backends/dropbox.py`` agree.

The server (``tests/servers/dropbox_server.py``) implements the documented Dropbox API v2
semantics; these tests pin the ones the adapter relies on, at the raw SDK level where the
behaviour is Dropbox's (identical contents, strict_conflict) and through the adapter where
it is ours (error mapping, no SDK-internal retries, root checks, sorting, paging).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("dropbox")
pytest.importorskip("trustme")

from dropbox import files as dbx_files
from dropbox.exceptions import ApiError

from passivepaxos.errors import (
    AlreadyExistsError,
    ConfigError,
    ContainerNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    ThrottledError,
    TransientError,
    UnsupportedError,
)
from passivepaxos.types import Backend, PutMode, Version
from passivepaxos.urls import backend_module, open_backend
from tests.servers.dropbox_server import DropboxTestServer

dbmod = backend_module("dropbox")


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    srv = DropboxTestServer().start()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in srv.env().items():
            mp.setenv(k, v)
        try:
            yield srv
        finally:
            srv.stop()


def _root(server: Any) -> str:
    root = f"/Logs/t-{uuid.uuid4().hex[:10]}"
    server.make_folder(root)
    return root


@pytest.fixture
def backend(server: Any) -> Iterator[Any]:
    b = open_backend(f"dropbox://{_root(server)}")
    yield b
    b.close()


def _rev(v: Version) -> str:
    assert v.backend == "dropbox"
    return v.token


# -- configuration ----------------------------------------------------------------------------


def test_env_hosts_ca_and_protocol(server: Any, backend: Any) -> None:
    # `dropbox` was imported (by the adapter) before the fixture set DROPBOX_API_HOST; the
    # adapter re-reads the variables, and DROPBOX_CA_BUNDLE beats REQUESTS_CA_BUNDLE.
    client = dbmod.make_client()
    assert client._host_map["api"] == server.host
    assert client._host_map["content"] == server.host
    assert client._max_retries_on_error == 0 and client._max_retries_on_rate_limit == 0
    assert isinstance(backend, Backend)
    assert backend.capabilities.name == "dropbox"
    assert backend.url.startswith("dropbox:///Logs/t-")
    v = backend.put("hello", b"world", PutMode.CREATE)
    assert backend.get("hello") == (b"world", v)
    assert len(_rev(v)) >= 9 and int(_rev(v), 16) >= 0
    client.close()


def test_missing_token_is_config_error(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DROPBOX_TOKEN")
    with pytest.raises(ConfigError, match="DROPBOX_TOKEN"):
        open_backend("dropbox:///anything")


# -- the semantics the adapter builds on, at the raw SDK level --------------------------------


def test_add_identical_bytes_is_not_a_conflict_unless_strict(server: Any) -> None:
    """Dropbox documents (WriteMode, rule c) that a write whose contents equal the file's
    writes nothing and is no conflict, even in add mode; strict_conflict=True turns that
    into a conflict. The adapter creates with strict_conflict=True."""
    root = _root(server)
    dbx = dbmod.make_client()
    path = f"{root}/same"
    first = dbx.files_upload(b"abc", path, mode=dbx_files.WriteMode.add)
    again = dbx.files_upload(b"abc", path, mode=dbx_files.WriteMode.add)
    assert again.rev == first.rev  # nothing written, no new rev
    with pytest.raises(ApiError) as info:
        dbx.files_upload(b"abc", path, mode=dbx_files.WriteMode.add, strict_conflict=True)
    err = info.value.error
    assert isinstance(err, dbx_files.UploadError) and err.is_path()
    assert err.get_path().reason.is_conflict() and err.get_path().reason.get_conflict().is_file()
    with pytest.raises(ApiError) as info:
        dbx.files_upload(b"different", path, mode=dbx_files.WriteMode.add)
    assert info.value.error.get_path().reason.is_conflict()
    # ...and through the adapter, identical bytes still lose a create.
    b = dbmod.DropboxBackend(root)
    with pytest.raises(AlreadyExistsError):
        b.put("same", b"abc", PutMode.CREATE)
    # Overwriting with identical contents writes nothing either: the old rev comes back.
    assert dbx.files_upload(b"abc", path, mode=dbx_files.WriteMode.overwrite).rev == first.rev
    dbx.close()
    b.close()


def test_update_with_stale_rev_conflicts(server: Any, backend: Any) -> None:
    v1 = backend.put("k", b"one", PutMode.CREATE)
    v2 = backend.put("k", b"two", PutMode.update(v1))
    assert v2 != v1
    with pytest.raises(PreconditionFailedError):
        backend.put("k", b"three", PutMode.update(v1))
    # Stale rev, identical contents: still a conflict (strict_conflict=True).
    with pytest.raises(PreconditionFailedError):
        backend.put("k", b"two", PutMode.update(v1))
    assert backend.get("k") == (b"two", v2)
    # Update of a missing key: Dropbox says conflict (strict), the adapter says NotFound.
    with pytest.raises(NotFoundError):
        backend.put("missing", b"x", PutMode.update(v2))
    assert backend.get("missing") is None
    v3 = backend.put("k", b"three", PutMode.OVERWRITE)
    assert len({v1, v2, v3}) == 3

    # Raw SDK: the stale update without strict_conflict and identical bytes is no conflict.
    dbx = dbmod.make_client()
    path = backend._path("k")
    md = dbx.files_upload(b"three", path, mode=dbx_files.WriteMode.update(_rev(v1)))
    assert md.rev == _rev(v3)
    with pytest.raises(ApiError):
        dbx.files_upload(
            b"three", path, mode=dbx_files.WriteMode.update(_rev(v1)), strict_conflict=True
        )
    dbx.close()


def test_create_race_has_exactly_one_winner(server: Any, backend: Any) -> None:
    threads, rounds = 8, 30
    barrier = threading.Barrier(threads)
    results: list[list[tuple[int, Version | Exception]]] = [[] for _ in range(rounds)]
    lock = threading.Lock()

    def racer(i: int) -> None:
        for r in range(rounds):
            barrier.wait()
            try:
                out: Version | Exception = backend.put(
                    f"race/{r:03d}", f"writer {i}".encode(), PutMode.CREATE
                )
            except Exception as exc:
                out = exc
            with lock:
                results[r].append((i, out))

    pool = [threading.Thread(target=racer, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    for r, outcomes in enumerate(results):
        assert len(outcomes) == threads
        winners = [(i, v) for i, v in outcomes if isinstance(v, Version)]
        losers = [v for _, v in outcomes if not isinstance(v, Version)]
        assert len(winners) == 1, (r, outcomes)
        assert all(isinstance(e, AlreadyExistsError) for e in losers), losers
        ((i, v),) = winners
        assert backend.get(f"race/{r:03d}") == (f"writer {i}".encode(), v)


def test_delete_semantics(server: Any, backend: Any) -> None:
    backend.delete("never-there")  # no-op
    with pytest.raises(NotFoundError):
        backend.delete("never-there", if_version=Version("dropbox", "0123456789abcdef"))
    v1 = backend.put("d", b"1", PutMode.CREATE)
    v2 = backend.put("d", b"2", PutMode.update(v1))
    for reply in ("conflict", "not_found"):  # both plausible Dropbox answers to a stale rev
        server.delete_mismatch_error = reply
        try:
            with pytest.raises(PreconditionFailedError):
                backend.delete("d", if_version=v1)
        finally:
            server.delete_mismatch_error = "conflict"
    backend.delete("d", if_version=v2)
    assert backend.get("d") is None
    # "a" is a folder on Dropbox once "a/b" exists: deleting key "a" must not remove "a/b".
    backend.put("a/b", b"x", PutMode.CREATE)
    backend.delete("a")
    with pytest.raises(NotFoundError):
        backend.delete("a", if_version=Version("dropbox", "0123456789abcdef"))
    assert backend.get("a") is None
    assert backend.get("a/b") is not None
    backend.delete("a/b")
    assert backend.get("a/b") is None
    with pytest.raises(ConfigError):
        backend.put("a//b", b"x", PutMode.CREATE)


def test_case_insensitive_paths_collide(server: Any, backend: Any) -> None:
    v = backend.put("Dir/Name", b"x", PutMode.CREATE)
    with pytest.raises(AlreadyExistsError):
        backend.put("dir/name", b"y", PutMode.CREATE)
    assert backend.get("DIR/NAME") == (b"x", v)
    assert [m.key for m in backend.list()] == ["Dir/Name"]  # original casing
    # A folder keeps the casing it was created with: "DIR/other" lists as "Dir/other".
    backend.put("DIR/other", b"z", PutMode.CREATE)
    assert [m.key for m in backend.list()] == ["Dir/Name", "Dir/other"]


# -- listing ------------------------------------------------------------------------------------


def test_list_pages_sorts_and_filters(server: Any) -> None:
    root = _root(server)
    n = 1_100
    keys = [f"seg/{i:05d}" for i in range(n)]
    extra = ["seg/Zeta", "seg/alpha", "seg/ä", "seg/é/1", "top", "ünï/ß", "Top2"]
    b = dbmod.DropboxBackend(root)
    work = keys + extra
    lock = threading.Lock()
    versions: dict[str, Version] = {}

    def writer(chunk: list[str]) -> None:
        for k in chunk:
            v = b.put(k, k.encode(), PutMode.CREATE)
            with lock:
                versions[k] = v

    pool = [threading.Thread(target=writer, args=(work[i::8],)) for i in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=300)
    assert len(versions) == len(work)

    expected = sorted(work, key=lambda k: k.encode())
    before = server.requests["files/list_folder/continue"]
    got = list(b.list())  # server default page: 500 entries
    assert [m.key for m in got] == expected
    assert all(m.version == versions[m.key] and m.size == len(m.key.encode()) for m in got)
    assert server.requests["files/list_folder/continue"] - before >= 2

    small = dbmod.DropboxBackend(root, page_size=100)
    before = server.requests["files/list_folder/continue"]
    assert [m.key for m in small.list("seg/")] == [k for k in expected if k.startswith("seg/")]
    assert server.requests["files/list_folder/continue"] - before >= 10
    assert [m.key for m in small.list("seg/0109")] == [f"seg/{i:05d}" for i in range(1090, 1100)]
    assert [m.key for m in small.list("seg/", start_after="seg/01098")] == [
        "seg/01099",
        "seg/Zeta",
        "seg/alpha",
        "seg/ä",
        "seg/é/1",
    ]
    assert [m.key for m in small.list("", start_after="ünï")] == ["ünï/ß"]
    assert list(small.list("nothing/here/")) == []
    b.close()
    small.close()


# -- errors ---------------------------------------------------------------------------------


def test_read_only_and_bad_tokens_are_permission_denied(server: Any, backend: Any) -> None:
    backend.put("ro", b"data", PutMode.CREATE)
    root = backend._root
    ro = dbmod.DropboxBackend(root, client=dbmod.make_client(token=server.readonly_token))
    assert ro.get("ro") is not None and [m.key for m in ro.list()] == ["ro"]
    with pytest.raises(PermissionDeniedError, match=r"files\.content\.write"):
        ro.put("ro2", b"x", PutMode.CREATE)
    with pytest.raises(PermissionDeniedError):
        ro.delete("ro")
    bad = dbmod.DropboxBackend(root, client=dbmod.make_client(token="sl.not-a-token"))
    with pytest.raises(PermissionDeniedError, match="invalid_access_token"):
        bad.get("ro")
    ro.close()
    bad.close()


def test_throttling_is_not_retried_by_the_sdk(server: Any, backend: Any) -> None:
    before = server.requests["files/upload"]
    server.throttle_next(1, retry_after=3)
    with pytest.raises(ThrottledError) as info:
        backend.put("t", b"x", PutMode.CREATE)
    assert info.value.retry_after == 3.0
    assert server.requests["files/upload"] - before == 1  # the SDK did not retry
    assert backend.get("t") is None
    backend.put("t", b"x", PutMode.CREATE)


def test_lost_response_and_5xx_are_transient(server: Any, backend: Any) -> None:
    before = server.requests["files/upload"]
    server.drop_response_next(1)
    with pytest.raises(TransientError):
        backend.put("lost", b"applied", PutMode.CREATE)
    assert server.requests["files/upload"] - before == 1
    got = backend.get("lost")  # the write took effect: the store layer reads it back
    assert got is not None and got[0] == b"applied"
    with pytest.raises(AlreadyExistsError):
        backend.put("lost", b"applied", PutMode.CREATE)

    server.fail_next(1, status=503)
    with pytest.raises(TransientError):
        backend.get("lost")
    assert backend.get("lost") == got


def test_missing_root_is_container_not_found(server: Any) -> None:
    url = f"dropbox:///no-such-folder-{uuid.uuid4().hex[:8]}"
    b = open_backend(url)
    for call in (
        lambda: b.get("k"),
        lambda: list(b.list()),
        lambda: b.put("k", b"x", PutMode.CREATE),
        lambda: b.put("k", b"x", PutMode.OVERWRITE),
    ):
        with pytest.raises(ContainerNotFoundError, match=url):
            call()
    assert not any(p.lower().startswith(url[len("dropbox://") :]) for p in server.files())
    # A file where the root folder should be is no container either.
    parent = _root(server)
    open_backend(f"dropbox://{parent}").put("file", b"x", PutMode.CREATE)
    with pytest.raises(ContainerNotFoundError):
        open_backend(f"dropbox://{parent}/file").get("k")
    b.close()


def test_values_over_150_mib_are_unsupported(server: Any, backend: Any) -> None:
    before = server.requests["files/upload"]
    with pytest.raises(UnsupportedError):
        backend.put("big", bytes(150 * 1024 * 1024 + 1), PutMode.OVERWRITE)
    assert server.requests["files/upload"] == before
