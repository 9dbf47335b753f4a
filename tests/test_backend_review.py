"""An outside review of backends/azure.py and the Dropbox credentials, as regression tests
(each states the rule it checks). A raw-socket stub plays the Azure service and a requests
adapter plays Dropbox, so most tests need no server; the last Azure ones run on azurite.

Azure: a truncated Get Blob body is one request and a TransientError, within the
request's budget (the SDK's downloader would resend it three times, sleeping 1 s, and
then raise an error with no status); a 2xx without an ETag is not a definite failure;
keys with ``.``/``..``/empty components or a backslash are refused (urllib3 removes dot
segments from the path, Azure reads ``\\`` as ``/``); a listed version equals the
object's. Dropbox: no message (nor the printed traceback) carries a token, and a token
with whitespace inside is a configuration error, not a transient one."""

from __future__ import annotations

import contextlib
import datetime
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from passivepaxos.deadline import request_budget
from passivepaxos.errors import ConfigError, StoreError, TransientError
from passivepaxos.types import PutMode
from passivepaxos.urls import backend_module, open_backend
from tests.conftest import fresh

_AZ_VARS = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_BLOB_ENDPOINT",
)


def _full_text(exc: BaseException) -> str:
    """The message and the whole printed traceback, causes and contexts included."""
    return str(exc) + "".join(traceback.format_exception(exc))


class _Stub:
    """A one-line HTTP server: every request is answered with ``answer(request_line)``
    (raw bytes), then the connection is closed. Request lines are recorded."""

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            line = data.split(b"\r\n", 1)[0]
            self.requests.append(line)
            conn.sendall(self.answer(line))
            time.sleep(0.05)

    def close(self) -> None:
        self._sock.close()


@contextlib.contextmanager
def _azure_on(stub: _Stub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in _AZ_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0c2VjcmV0;"
        f"BlobEndpoint=http://127.0.0.1:{stub.port}/devstoreaccount1;",
    )
    b = open_backend("az://abc/p")
    try:
        yield b
    finally:
        b.close()
        stub.close()


_HEAD = b'ETag: "0x1"\r\nx-ms-blob-type: BlockBlob\r\nContent-Type: application/octet-stream\r\n'
_TRUNCATED_206 = (
    b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n"
    b"Content-Range: bytes 0-99/100\r\n" + _HEAD + b"\r\n" + b"x" * 10
)
_TRUNCATED_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n" + _HEAD + b"\r\n" + b"x" * 10


# -- Azure, on a stub ------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [_TRUNCATED_206, _TRUNCATED_200], ids=["206", "200"])
def test_azure_truncated_download_is_transient_and_sent_once(
    monkeypatch: pytest.MonkeyPatch, answer: bytes
) -> None:
    """A truncated body is TransientError, and the SDK never sends the request again.

    (StorageStreamDownloader, azure/storage/blob/_download.py, has a private loop of 3
    attempts with ``time.sleep(1)``, outside the pipeline's retry policy, then raises an
    HttpResponseError whose ``status_code`` is None: a plain StoreError before.)"""
    stub = _Stub(lambda line: answer)
    with _azure_on(stub, monkeypatch) as b, pytest.raises(StoreError) as info:
        b.get("k")
    assert isinstance(info.value, TransientError), repr(info.value)
    assert len(stub.requests) == 1, stub.requests


def test_azure_truncated_download_honours_the_request_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each request's time is cut to the deadline: no sleeps the deadline does not know
    (a 0.3 s budget took over 2 s with the SDK's downloader)."""
    stub = _Stub(lambda line: _TRUNCATED_206)
    with _azure_on(stub, monkeypatch) as b:
        t0 = time.monotonic()
        with request_budget(0.3), contextlib.suppress(StoreError):
            b.get("k")
        elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"{elapsed:.2f}s for a 0.3s budget ({len(stub.requests)} requests)"


def test_azure_a_complete_download_from_the_stub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The single-request GET: bytes and the quoted ETag header as the version."""
    stub = _Stub(lambda line: b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n" + _HEAD + b"\r\nabc")
    with _azure_on(stub, monkeypatch) as b:
        got = b.get("k")
    assert got is not None
    assert got[0] == b"abc" and got[1].token == '"0x1"'
    assert stub.requests == [b"GET /devstoreaccount1/abc/p/k HTTP/1.1"]


def test_azure_a_201_without_etag_is_not_a_definite_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A definite error only when the write definitely did not apply: a 201 Created whose
    ETag a proxy stripped wrote the blob, so the store must read back, not give up."""
    stub = _Stub(lambda line: b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    with _azure_on(stub, monkeypatch) as b, pytest.raises(StoreError) as info:
        b.put("k", b"v", PutMode.CREATE)
    err = info.value
    assert isinstance(err, TransientError), repr(err)
    assert err.retryable or err.outcome_unknown, repr(err)


def test_azure_a_200_download_without_etag_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = _Stub(
        lambda line: b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nx-ms-blob-type: BlockBlob\r\n\r\nabc"
    )
    with _azure_on(stub, monkeypatch) as b, pytest.raises(TransientError, match="no ETag"):
        b.get("k")


@pytest.mark.parametrize(
    "key", ["../other/z", "a/../../x", "./k", "a/./b", "a//b", "/a", "a/", "", "a\\b", "..\\x"]
)
def test_azure_keys_that_leave_the_prefix_or_alias_are_refused(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """Like local and dropbox: ConfigError naming the key, and nothing is sent."""
    stub = _Stub(lambda line: b"HTTP/1.1 500 Nope\r\nContent-Length: 0\r\n\r\n")
    with _azure_on(stub, monkeypatch) as b:
        for call in (
            lambda: b.get(key),
            lambda: b.put(key, b"v", PutMode.CREATE),
            lambda: b.put(key, b"v", PutMode.OVERWRITE),
            lambda: b.delete(key),
        ):
            with pytest.raises(ConfigError, match="not a valid Azure blob key") as info:
                call()
            assert repr(key) in str(info.value)
        assert stub.requests == []


# -- Azure on azurite ------------------------------------------------------------------------


def _sas_backend(azurite_server: Any, monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    """A backend whose credential is an account SAS in the connection string; a bearer
    token (DefaultAzureCredential) behaves the same: neither signs the request path."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from tests.servers.azurite_server import ACCOUNT, KEY

    sas = generate_account_sas(
        ACCOUNT,
        KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, create=True),
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
    )
    for name in _AZ_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"BlobEndpoint={azurite_server.url};SharedAccessSignature={sas}",
    )
    return open_backend(url)


def test_azure_dot_segments_in_a_key_do_not_escape_the_prefix(
    azurite_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key names one object under the store's prefix: with a SAS, key '../other/z' of
    ``az://c/p`` wrote ``az://c/other/z`` (urllib3 removes dot segments)."""
    container = fresh("rvw")
    azurite_server.create_container(container)
    mine = _sas_backend(azurite_server, monkeypatch, f"az://{container}/p")
    other = open_backend(f"az://{container}/other")
    with pytest.raises(ConfigError, match=r"'\.\./other/z'"):
        mine.put("../other/z", b"data", PutMode.CREATE)
    assert other.get("z") is None, "a write through az://.../p landed in az://.../other"
    mine.put("other/z", b"data", PutMode.CREATE)  # a plain nested key still works
    assert [m.key for m in mine.list()] == ["other/z"]


def test_azure_backslash_key_does_not_alias_the_slash_key(azurite_server: Any) -> None:
    """Distinct keys are distinct objects: azurite stores 'a\\\\b' as 'a/b', so a backslash
    key is refused and 'a/b' can still be created."""
    container = fresh("rvw")
    azurite_server.create_container(container)
    b = open_backend(f"az://{container}/p")
    with pytest.raises(ConfigError, match="backslash"):
        b.put("a\\b", b"one", PutMode.CREATE)
    b.put("a/b", b"two", PutMode.CREATE)
    assert [m.key for m in b.list()] == ["a/b"]


def test_azure_listed_version_equals_the_objects_version(azurite_server: Any) -> None:
    """Version is compared by value: list() gave the XML <Etag> unquoted, put()/get() the
    quoted ETag header."""
    container = fresh("rvw")
    azurite_server.create_container(container)
    b = open_backend(f"az://{container}/p")
    v = b.put("k", b"v", PutMode.CREATE)
    (meta,) = list(b.list())
    assert meta.version == v
    got = b.get("k")
    assert got is not None and got[1] == v


# -- Dropbox ---------------------------------------------------------------------------------

dbmod = backend_module("dropbox")
_SECRET = "sl.TOPSECRETACCESSTOKEN"
_DB_VARS = ("DROPBOX_TOKEN", "DROPBOX_REFRESH_TOKEN", "DROPBOX_APP_KEY", "DROPBOX_APP_SECRET")


def _dropbox(monkeypatch: pytest.MonkeyPatch, token: str) -> Any:
    for name in _DB_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DROPBOX_TOKEN", token)
    monkeypatch.setenv("DROPBOX_API_HOST", "127.0.0.1:9")
    monkeypatch.setenv("DROPBOX_API_CONTENT_HOST", "127.0.0.1:9")
    return open_backend("dropbox:///")


class _Echo(requests.adapters.BaseAdapter):
    """Answers every request with ``status`` and a text quoting its Authorization header,
    as api.dropboxapi.com does for a malformed one ('Invalid authorization value in HTTP
    header "Authorization": "Bearer ...". Expecting "Bearer <oauth2-access-token>".')."""

    def __init__(self, status: int = 400) -> None:
        super().__init__()
        self.status = status
        self.sent: list[str] = []

    def send(self, request: Any, **kwargs: Any) -> requests.Response:
        auth = str(request.headers.get("Authorization"))
        self.sent.append(auth)
        resp = requests.Response()
        resp.status_code = self.status
        resp.request = request
        resp.url = request.url
        resp.headers["Content-Type"] = "text/plain; charset=utf-8"
        resp._content = (
            'Error in call to API function "files/download": Invalid authorization value in '
            f'HTTP header "Authorization": "{auth}".  '
            'Expecting "Bearer <oauth2-access-token>".'
        ).encode()
        return resp

    def close(self) -> None:
        pass


def test_dropbox_surrounding_whitespace_of_a_token_is_stripped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DROPBOX_TOKEN read from a CRLF .env file ends in '\\r\\n': requests refused the
    header with InvalidHeader quoting 'Bearer <token>', copied into a TransientError
    (retried forever). The whitespace around a credential is not part of it."""
    b = _dropbox(monkeypatch, " " + _SECRET + "\r\n")
    echo = _Echo()
    b._client._session.mount("https://", echo)
    with pytest.raises(StoreError) as info:
        b.get("k")
    assert echo.sent == [f"Bearer {_SECRET}"]
    assert _SECRET not in _full_text(info.value), _full_text(info.value)


@pytest.mark.parametrize(
    "variable", ["DROPBOX_TOKEN", "DROPBOX_REFRESH_TOKEN", "DROPBOX_APP_KEY", "DROPBOX_APP_SECRET"]
)
@pytest.mark.parametrize("inside", ["\r\n", "\n", " ", "\t", "\x1b", "\x7f", "\u00e9"])
def test_dropbox_a_credential_with_whitespace_inside_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, inside: str
) -> None:
    """Refused where it is read, naming the variable and never the value."""
    for name in _DB_VARS:
        monkeypatch.delenv(name, raising=False)
    if variable != "DROPBOX_TOKEN":
        monkeypatch.setenv("DROPBOX_REFRESH_TOKEN", "refresh-" + _SECRET)
        monkeypatch.setenv("DROPBOX_APP_KEY", "appkey")
    value = _SECRET[:8] + inside + _SECRET[8:]
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as info:
        dbmod.make_client()
    text = _full_text(info.value)
    assert _SECRET[:8] not in text and _SECRET[8:] not in text, text


def test_dropbox_credential_arguments_are_checked_the_same_way() -> None:
    with pytest.raises(ConfigError, match=r"make_client\(token=\.\.\.\)") as info:
        dbmod.make_client(token=_SECRET + "\nX")
    assert _SECRET not in _full_text(info.value)
    client = dbmod.make_client(token=f"  {_SECRET}\r\n")
    try:
        assert client._creds.token == _SECRET
    finally:
        client.close()


def test_dropbox_a_bad_header_is_a_config_error_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should a token with a line break still reach requests (make_client refuses one from
    the environment; here it is put in place behind its back), its InvalidHeader, which
    quotes the header, is a ConfigError that prints no token, not a TransientError."""
    b = _dropbox(monkeypatch, _SECRET)
    bad = _SECRET + "\r\nX: y"
    b._client._creds._state = (bad, float("inf"), float("inf"))
    with pytest.raises(ConfigError) as info:
        b.get("k")
    assert not isinstance(info.value, TransientError)
    text = _full_text(info.value)
    assert _SECRET not in text, text


def test_dropbox_400_quoting_the_authorization_header_never_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token Dropbox finds malformed (e.g. quoted in a .env file: DROPBOX_TOKEN='"sl..."')
    gets a 400 whose body quotes the Authorization header; the body reached the
    StoreError's message (300 characters of it)."""
    b = _dropbox(monkeypatch, f'"{_SECRET}"')
    b._client._session.mount("https://", _Echo())
    with pytest.raises(StoreError) as info:
        b.get("k")
    text = _full_text(info.value)
    assert _SECRET not in text, text
    assert "Bearer ***" in str(info.value)  # the rest of the body is still there


def test_dropbox_redaction_of_bearer_values() -> None:
    creds = dbmod._credentials("tok-" + _SECRET, None, None, None, "127.0.0.1:9", None)
    said = f'header "Authorization": "Bearer x{_SECRET}y". and tok-{_SECRET} again'
    clean = creds.scrub(said)
    assert _SECRET not in clean
    assert clean.startswith('header "Authorization": "Bearer ***". and ***')
