"""The Azure Blob adapter (backends/azure.py) against azurite through the real SDK: which
credentials are used, container names, error translation (fault proxy for what azurite
never says), listing pages and order, SDK retries off, races, and a mixed quorum."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.bench.proxy import FaultProxy
from passivepaxos.errors import (
    AlreadyExistsError,
    ConfigError,
    ContainerNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    ThrottledError,
    TransientError,
)
from passivepaxos.store import Store
from passivepaxos.types import PutMode, Version
from passivepaxos.urls import backend_module, open_backend, parse_url
from tests.conftest import FAST, env, fresh
from tests.servers.azurite_server import ACCOUNT, KEY, Azurite, connection_string, free_port

azure = backend_module("azure")
_CREDS = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_BLOB_ENDPOINT",
)


@pytest.fixture
def container(azurite_server: Azurite) -> str:
    name = fresh("azt")
    azurite_server.create_container(name)
    return name


@contextlib.contextmanager
def only(**values: str) -> Iterator[None]:
    """Exactly these Azure credential variables set (the others removed)."""
    mp = pytest.MonkeyPatch()
    try:
        for name in _CREDS:
            mp.delenv(name, raising=False)
        for name, value in values.items():
            mp.setenv(name, value)
        yield
    finally:
        mp.undo()


@contextlib.contextmanager
def proxied(azurite_server: Azurite) -> Iterator[FaultProxy]:
    """A fault proxy in front of azurite, the connection string pointing at it."""
    with (
        FaultProxy(azurite_server.url.removesuffix("/" + ACCOUNT)) as proxy,
        only(AZURE_STORAGE_CONNECTION_STRING=connection_string(f"{proxy.url}/{ACCOUNT}")),
    ):
        yield proxy


def _raises(kind: type[BaseException], fn: Callable[[], object]) -> Any:
    with pytest.raises(kind) as info:
        fn()
    return info.value


# -- credentials -----------------------------------------------------------------------------


def test_connection_string_comes_first(azurite_server: Azurite, container: str) -> None:
    with only(
        AZURE_STORAGE_CONNECTION_STRING=azurite_server.connection_string,
        AZURE_STORAGE_ACCOUNT="someoneelse",
        AZURE_STORAGE_KEY="bm90IGEga2V5",
    ):
        backend = open_backend(f"az://{container}/cs")
    v = backend.put("k", b"v", PutMode.CREATE)
    assert backend.get("k") == (b"v", v) and v.backend == "azure"
    backend.close()


def test_account_and_key_with_an_endpoint_override(azurite_server: Azurite, container: str) -> None:
    with only(
        AZURE_STORAGE_ACCOUNT=ACCOUNT,
        AZURE_STORAGE_KEY=KEY,
        AZURE_STORAGE_BLOB_ENDPOINT=azurite_server.url,
    ):
        backend = open_backend(f"az://{container}/key")
    assert backend._client.url.startswith(azurite_server.url)  # type: ignore[attr-defined]
    v = backend.put("k", b"v", PutMode.CREATE)
    assert backend.get("k") == (b"v", v)
    with only(AZURE_STORAGE_ACCOUNT=ACCOUNT, AZURE_STORAGE_KEY=KEY):
        default = open_backend(f"az://{container}/key")
    assert default._client.url == f"https://{ACCOUNT}.blob.core.windows.net/"  # type: ignore[attr-defined]


def test_account_alone_uses_default_azure_credential() -> None:
    pytest.importorskip("azure.identity")
    from azure.identity import DefaultAzureCredential

    with only(AZURE_STORAGE_ACCOUNT="acct"):
        backend = open_backend("az://c0ntainer/p")  # nothing is sent when opened
    assert isinstance(backend._client.credential, DefaultAzureCredential)  # type: ignore[attr-defined]
    assert backend._client.url == "https://acct.blob.core.windows.net/"  # type: ignore[attr-defined]


def test_account_alone_without_azure_identity_names_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # import fails
    with only(AZURE_STORAGE_ACCOUNT="acct"):
        err = _raises(ConfigError, lambda: open_backend("az://c0ntainer/p"))
    assert "AZURE_STORAGE_KEY" in str(err) and "azure-identity" in str(err)


def test_no_credentials_names_what_to_set() -> None:
    with only():
        err = _raises(ConfigError, lambda: open_backend("az://c0ntainer/p"))
    msg = str(err)
    assert "az://c0ntainer/p" in msg
    assert "AZURE_STORAGE_CONNECTION_STRING" in msg and "AZURE_STORAGE_ACCOUNT" in msg
    assert "AZURE_STORAGE_KEY" in msg


def test_a_malformed_connection_string_is_a_config_error_without_the_secret() -> None:
    with only(AZURE_STORAGE_CONNECTION_STRING="AccountKey=c2VjcmV0;nonsense"):
        err = _raises(ConfigError, lambda: open_backend("az://c0ntainer/p"))
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(err) and "c2VjcmV0" not in str(err)


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Upper", "under_score", "-lead", "trail-", "dou--ble", "dot.ted"],
)
def test_bad_container_names_are_refused_naming_the_url(name: str) -> None:
    url = f"az://{name}/p"
    err = _raises(ConfigError, lambda: parse_url(url))
    assert url in str(err) and "not a valid Azure container name" in str(err)


@pytest.mark.parametrize("name", ["abc", "a" * 63, "a-b-c", "0x9", "log-2024"])
def test_good_container_names(name: str) -> None:
    assert parse_url(f"az://{name}/p/q").container == name


def test_url_options() -> None:
    assert parse_url("az://abc/p?timeout=5").options == {"timeout": "5"}
    with pytest.raises(ConfigError, match="unknown option 'project'"):
        parse_url("az://abc/p?project=x")
    with pytest.raises(ConfigError, match=r"empty, '\.' or '\.\.' component"):
        parse_url("az://abc/a/../b")


# -- error translation -------------------------------------------------------------------------


def test_conditional_writes_map_to_our_errors(azurite_server: Azurite, container: str) -> None:
    b = open_backend(f"az://{container}/errs")
    v1 = b.put("k", b"one", PutMode.CREATE)
    assert isinstance(
        _raises(AlreadyExistsError, lambda: b.put("k", b"x", PutMode.CREATE)), AlreadyExistsError
    )
    v2 = b.put("k", b"two", PutMode.update(v1))
    assert v2 != v1
    # 412 for a moved ETag and for a missing blob alike: one properties request tells which
    _raises(PreconditionFailedError, lambda: b.put("k", b"x", PutMode.update(v1)))
    _raises(NotFoundError, lambda: b.put("nope", b"x", PutMode.update(v1)))
    _raises(PreconditionFailedError, lambda: b.delete("k", if_version=v1))
    _raises(NotFoundError, lambda: b.delete("nope", if_version=v1))
    b.delete("nope")  # unconditional delete of a missing blob: a no-op
    b.delete("k", if_version=v2)
    assert b.get("k") is None
    with pytest.raises(ConfigError, match="'s3' version"):
        b.put("k", b"x", PutMode.update(Version("s3", '"abc"')))


def test_missing_container_is_container_not_found(azurite_server: Azurite) -> None:
    b = open_backend(f"az://{fresh('gone')}/p")
    for call in (
        lambda: b.get("k"),
        lambda: b.put("k", b"v", PutMode.CREATE),
        lambda: b.put("k", b"v", PutMode.OVERWRITE),
        lambda: b.delete("k"),
        lambda: list(b.list()),
    ):
        err = _raises(ContainerNotFoundError, call)
        assert "does not exist" in str(err)


def test_a_wrong_key_is_permission_denied(azurite_server: Azurite, container: str) -> None:
    wrong = "B" * 8 + KEY[8:]
    with only(AZURE_STORAGE_CONNECTION_STRING=connection_string(azurite_server.url, wrong)):
        b = open_backend(f"az://{container}/p")
    err = _raises(PermissionDeniedError, lambda: b.put("k", b"v", PutMode.CREATE))
    assert wrong not in str(err) and KEY not in str(err)
    _raises(PermissionDeniedError, lambda: b.get("k"))


_BUSY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>Ingress is over the account limit.</Message></Error>"
)
_INTERNAL = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>InternalError</Code>'
    b"<Message>The server encountered an internal error.</Message></Error>"
)


def test_throttling_carries_retry_after(azurite_server: Azurite, container: str) -> None:
    with proxied(azurite_server) as proxy:
        b = open_backend(f"az://{container}/busy")
        proxy.fail_next(
            1,
            503,
            _BUSY,
            headers={
                "Content-Type": "application/xml",
                "x-ms-error-code": "ServerBusy",
                "Retry-After": "7",
            },
        )
        err = _raises(ThrottledError, lambda: b.put("k", b"v", PutMode.CREATE))
        assert err.retry_after == 7.0
        proxy.fail_next(1, 429, b"", headers={"Retry-After": "2"})
        assert _raises(ThrottledError, lambda: b.get("k")).retry_after == 2.0


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (409, "ContainerBeingDeleted", ContainerNotFoundError),
        (503, "", ThrottledError),
        (500, "OperationTimedOut", TransientError),
        (408, "", TransientError),
        (403, "AuthorizationPermissionMismatch", PermissionDeniedError),
        (401, "", PermissionDeniedError),
    ],
)
def test_answers_azurite_never_gives(
    azurite_server: Azurite, container: str, status: int, code: str, expected: type[Exception]
) -> None:
    """What real Azure can answer and azurite does not, injected on the wire."""
    headers = {"x-ms-error-code": code} if code else {}
    with proxied(azurite_server) as proxy:
        b = open_backend(f"az://{container}/odd")
        for call in (lambda: b.put("k", b"v", PutMode.CREATE), lambda: b.get("k")):
            proxy.fail_next(1, status, b"", headers=headers)
            err = _raises(expected, call)
            assert type(err) is expected or expected is TransientError, err


def test_sdk_retries_are_off_a_500_is_seen_once(azurite_server: Azurite, container: str) -> None:
    with proxied(azurite_server) as proxy:
        b = open_backend(f"az://{container}/once")
        for call in (
            lambda: b.put("k", b"v", PutMode.CREATE),
            lambda: b.get("k"),
            lambda: list(b.list()),
        ):
            proxy.reset()
            proxy.fail_next(
                1,
                500,
                _INTERNAL,
                headers={"Content-Type": "application/xml", "x-ms-error-code": "InternalError"},
            )
            _raises(TransientError, call)
            assert len(proxy.requests) == 1, proxy.requests  # no retry inside the SDK
        # through the store layer: it, and only it, retries; the write then lands once
        proxy.reset()
        proxy.fail_next(1, 500, _INTERNAL, headers={"Content-Type": "application/xml"})
        store = Store(open_backend(f"az://{container}/once2"), retry=FAST)
        store.put("k", b"v", PutMode.CREATE)
        puts = [r for r in proxy.requests if r[0] == "PUT"]
        assert len(puts) == 2, proxy.requests  # the 500, then the store's one retry
        assert store.get("k") is not None


def test_a_lost_answer_to_a_create_is_transient_and_the_store_resolves_it(
    azurite_server: Azurite, container: str
) -> None:
    with proxied(azurite_server) as proxy:
        raw = open_backend(f"az://{container}/lost")
        proxy.drop_response_next(1, method="PUT")
        _raises(TransientError, lambda: raw.put("k", b"v", PutMode.CREATE))
        assert raw.get("k") == (b"v", raw.get("k")[1])  # type: ignore[index]  # it landed
        store = Store(open_backend(f"az://{container}/lost2"), retry=FAST)
        proxy.drop_response_next(1, method="PUT")
        v = store.put("k", b"mine", PutMode.CREATE)  # read back: our write id -> success
        assert store.get("k") == (b"mine", v)


def test_connection_refused_and_timeouts_are_transient() -> None:
    port = free_port()
    with only(
        AZURE_STORAGE_CONNECTION_STRING=connection_string(f"http://127.0.0.1:{port}/{ACCOUNT}")
    ):
        b = open_backend("az://abc/p?timeout=0.5")
    _raises(TransientError, lambda: b.put("k", b"v", PutMode.CREATE))
    _raises(TransientError, lambda: b.get("k"))


# -- listing ------------------------------------------------------------------------------------


def test_listing_pages_with_a_small_page_size(azurite_server: Azurite, container: str) -> None:
    with proxied(azurite_server) as proxy:
        client = azure.make_client()
        b = azure.AzureBackend(container, "pages", client=client, page_size=3)
        keys = [f"k{i:02d}" for i in range(10)]
        for k in keys:
            b.put(k, b"x", PutMode.CREATE)
        proxy.reset()
        got = [m.key for m in b.list()]
        assert got == keys
        assert proxy.counts()["list"] == 4  # 3 + 3 + 3 + 1, following the marker
        assert [m.key for m in b.list(start_after="k04")] == keys[5:]
        assert [m.key for m in b.list(start_after="k09")] == []
        assert [m.key for m in b.list("k0", start_after="k0")] == keys
        metas = list(b.list(start_after="k08"))
        assert [(m.key, m.size) for m in metas] == [("k09", 1)]
        assert metas[0].version is not None and metas[0].version.backend == "azure"


def test_listing_is_in_utf8_byte_order(azurite_server: Azurite, container: str) -> None:
    """azurite lists in UTF-16 code-unit order (U+1F600 before U+E000); the adapter
    re-sorts those runs into UTF-8 byte order, across pages too."""
    client = azure.make_client()
    b = azure.AzureBackend(container, "u", client=client, page_size=2)
    names = ["a", "a\ue000", "a\U0001f600", "a\U0001f600b", "a\ufffd", "b", "z\ue000", "é"]
    for n in names:
        b.put(n, b"x", PutMode.CREATE)
    raw = [x.name for x in client.get_container_client(container).list_blobs("u/")]
    assert raw.index("u/a\U0001f600") < raw.index("u/a\ue000")  # azurite's own order
    expected = sorted(names, key=lambda n: n.encode())
    assert [m.key for m in b.list()] == expected
    assert [m.key for m in b.list(start_after="a\ue000")] == expected[2:]


def test_emulator_cannot_list_xml_invalid_names(azurite_server: Azurite, container: str) -> None:
    """azurite divergence: a blob named with U+FFFE / U+FFFF (not allowed in XML) is stored,
    but every List Blobs that would include it answers 500 (real Azure returns such names
    percent-encoded with ``Encoded="true"``). The adapter reports it as transient."""
    b = open_backend(f"az://{container}/xml")
    b.put("bad\uffff", b"x", PutMode.CREATE)
    assert b.get("bad\uffff") is not None
    _raises(TransientError, lambda: list(b.list()))


def test_utf8_order_helper() -> None:
    order = azure._utf8_order
    utf16 = ["x", "y\U0001f600", "y\ue000", "y\uffff", "z"]
    assert list(order(utf16, lambda s: s)) == ["x", "y\ue000", "y\uffff", "y\U0001f600", "z"]
    assert list(order(["a", "b"], lambda s: s)) == ["a", "b"]


# -- races (beside the conformance suite's 8 x 100 on every backend) ----------------------------


def _race(n: int, attempt: Callable[[int], bool]) -> int:
    barrier = threading.Barrier(n)
    wins: list[bool] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        ok = attempt(i)
        with lock:
            wins.append(ok)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(wins)


@pytest.mark.parametrize("kind", ["create", "cas"])
def test_raw_adapter_race_has_exactly_one_winner(
    azurite_server: Azurite, container: str, kind: str
) -> None:
    """8 raw adapters (each its own client) x 100 rounds: exactly one winner per round, the
    others told the precise reason (no store layer to hide a wrong mapping)."""
    backends = [open_backend(f"az://{container}/race-{kind}") for _ in range(8)]
    if kind == "cas":
        backends[0].put("cas", b"0", PutMode.CREATE)

    def attempt(i: int, key: str, rnd: int, current: Version | None) -> bool:
        try:
            if current is None:
                backends[i].put(key, f"{i}".encode(), PutMode.CREATE)
            else:
                backends[i].put("cas", f"{rnd}-{i}".encode(), PutMode.update(current))
        except (AlreadyExistsError, PreconditionFailedError):
            return False
        return True

    for rnd in range(100):
        key = f"slot-{rnd:03d}"
        got = backends[0].get("cas") if kind == "cas" else None
        current = None if got is None else got[1]
        wins = _race(8, lambda i, k=key, r=rnd, c=current: attempt(i, k, r, c))
        assert wins == 1, f"round {rnd}: {wins} winners"
    for b in backends:
        b.close()


# -- a mixed quorum ---------------------------------------------------------------------------


def test_log_on_a_mixed_quorum_file_s3_azure(
    tmp_path: Path, moto_server: Any, azurite_server: Azurite
) -> None:
    from passivepaxos.log import Log
    from passivepaxos.manifest import init_log

    bucket = fresh("mixed")
    moto_server.client().create_bucket(Bucket=bucket)
    container = fresh("mixed")
    azurite_server.create_container(container)
    quorum = f"file://{tmp_path},s3://{bucket}/q,az://{container}/q"
    init_log(quorum)
    with Log.open(quorum) as log:
        assert log.append([b"a"]) == [0]
        assert log.append([b"b", b"c"]) == [1, 1]
        assert [e.value for e in log.read()] == [b"a", b"b", b"c"]
        assert log.verify().ok
    with Log.open(quorum) as reader:
        assert [e.value for e in reader.read()] == [b"a", b"b", b"c"]
        assert reader.head() == 1
    # the azure member really holds the slots
    with env(**azurite_server.env()):
        az = open_backend(f"az://{container}/q")
    assert len([m.key for m in az.list()]) >= 2
