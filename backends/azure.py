"""``az://container/prefix``: Azure Blob Storage through ``azure-storage-blob``.

Mapping (see ``passivepaxos.types.Backend`` for the contract):

- version = the blob's ETag (``Version("azure", '"0x8DC..."')``); Azure gives every write a
  new ETag, identical bytes included.
- put CREATE = Put Blob with ``If-None-Match: *`` (``upload_blob(overwrite=False)``);
  409 ``BlobAlreadyExists`` -> ``AlreadyExistsError``.
- put UPDATE = Put Blob with ``If-Match: <etag>`` (``overwrite=True, etag=...,
  match_condition=MatchConditions.IfNotModified``); 412 ``ConditionNotMet`` is returned both
  when the ETag moved *and* when the blob is missing, so on a 412 (and only then) the adapter
  spends one ``Get Blob Properties`` to tell ``PreconditionFailedError`` from ``NotFoundError``.
- put OVERWRITE = plain Put Blob (``overwrite=True``). A 2xx without an ETag (a proxy
  stripped it) is ``TransientError``: the write may have been applied, the store reads back.
- get = one ``Get Blob``; the ETag comes from that same response. It is sent through the
  SDK's generated client, not ``download_blob``: that downloader resends a request whose
  body came back short (3 times, ``time.sleep(1)`` between, outside the pipeline's retry
  policy and the deadline) and then raises an error without a status. A body shorter than
  its ``Content-Length``, or an answer without an ETag, is ``TransientError``.
- keys: an empty, ``.`` or ``..`` component (so a leading/trailing ``/`` or ``//``) or a
  backslash is ``ConfigError`` naming the key. urllib3 removes dot segments from the
  request path (key ``../other/z`` of ``az://c/p`` would be ``az://c/other/z``), and the
  service (azurite too) reads ``\\`` as ``/``, so ``a\\b`` would alias ``a/b``.
- delete = ``Delete Blob`` with the same ETag condition when a version is given: 404
  ``BlobNotFound`` is a no-op without a version, ``NotFoundError`` with one; 412 -> one
  properties request tells ``PreconditionFailedError`` from ``NotFoundError``.
- a 404 says which: ``BlobNotFound`` -> ``NotFoundError`` (``None`` for a read),
  ``ContainerNotFound`` -> ``ContainerNotFoundError``. The container is never created here.
- list = ``List Blobs`` with ``prefix`` in pages of ``page_size`` (default 1,000; Azure's
  maximum is 5,000) following the continuation marker. Azure has no "start after" for
  listings, so keys up to ``start_after`` are skipped here (``seek_list`` is no). Azure
  sorts names by UTF-16 code units (azurite does; we saw it), which differs from UTF-8 byte
  order only between a character in U+E000..U+FFFF and one above U+FFFF at the first
  position two names differ; such runs are re-sorted here (they are contiguous in the
  listing), and the result is checked: an out-of-order listing raises ``StoreError``.
  List Blobs gives the ETag unquoted (``<Etag>0x8D..</Etag>``): it is quoted here, the form
  Get and Put Blob return, so an object's listed version equals its version.

Errors: 404 ``ContainerNotFound`` (and 409 ``ContainerBeingDeleted``) ->
``ContainerNotFoundError``; 401/403 -> ``PermissionDeniedError``; 429 and 503 (Azure's
``ServerBusy``) -> ``ThrottledError`` with ``Retry-After``; other 5xx, 408,
``OperationTimedOut``, connection errors, timeouts, truncated bodies -> ``TransientError``.

SDK retries are off (``retry_total=0`` on the client): a conditional Put Blob retried inside
the SDK could come back 412/409 although its first attempt succeeded. Retries and ambiguity
resolution belong to ``passivepaxos.store.Store``. Every request's connect and read timeouts
are ``?timeout=SECONDS`` (default 60) cut to the time the current deadline leaves
(``passivepaxos.deadline``). All native errors go through :meth:`AzureBackend._translate`.

Credentials, first match wins:

1. ``AZURE_STORAGE_CONNECTION_STRING`` (its ``BlobEndpoint`` is the endpoint: azurite,
   sovereign clouds);
2. ``AZURE_STORAGE_ACCOUNT`` + ``AZURE_STORAGE_KEY`` (shared key);
3. ``AZURE_STORAGE_ACCOUNT`` + ``DefaultAzureCredential`` when ``azure-identity`` is
   installed (managed identity, ``az login``, workload identity, ``AZURE_CLIENT_ID``...);
4. otherwise ``ConfigError`` naming what to set.

With 2 and 3 the endpoint is ``https://<account>.blob.core.windows.net`` unless
``AZURE_STORAGE_BLOB_ENDPOINT`` gives another (an emulator, a sovereign cloud). Keys and
connection strings never appear in an error message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient

from passivepaxos.capabilities import capabilities_for
from passivepaxos.deadline import request_timeout
from passivepaxos.errors import (
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
from passivepaxos.retry import retry_after_seconds
from passivepaxos.types import ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL

__all__ = [
    "CONNECTION_STRING_ENV",
    "ENDPOINT_ENV",
    "AzureBackend",
    "make_client",
    "open_backend",
]

_NAME = "azure"
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_ENV = "AZURE_STORAGE_ACCOUNT"
KEY_ENV = "AZURE_STORAGE_KEY"
ENDPOINT_ENV = "AZURE_STORAGE_BLOB_ENDPOINT"
_DEFAULT_TIMEOUT = 60.0
_PAGE_SIZE = 1000
# Put Blob takes up to 5,000 MiB in one request; one request keeps the condition on one
# request (no staged blocks) for every object we write.
_SINGLE_PUT = 5000 * 1024 * 1024

_GET, _CREATE, _UPDATE, _OVERWRITE, _DELETE, _DELETE_IF, _LIST, _HEAD = (
    "get",
    "create",
    "update",
    "overwrite",
    "delete",
    "delete-if-version",
    "list",
    "head",
)
_PUT_OPS = {PutKind.CREATE: _CREATE, PutKind.UPDATE: _UPDATE, PutKind.OVERWRITE: _OVERWRITE}
_DENIED = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationPermissionDenied",
    "AuthorizationSourceIPMismatch",
    "AuthorizationProtocolMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "InsufficientAccountPermissions",
    "AccountIsDisabled",
}
_THROTTLE = {"ServerBusy", "TooManyRequests"}
_TRANSIENT = {"InternalError", "OperationTimedOut"}


def _headers(exc: HttpResponseError) -> Any:
    return getattr(exc.response, "headers", None) or {}


def _error_code(exc: HttpResponseError) -> str:
    """Azure's error code (``BlobNotFound``, ``ServerBusy``...): parsed by the SDK from the
    ``x-ms-error-code`` header or the XML body; the header when the SDK found none."""
    code = getattr(exc, "error_code", None) or _headers(exc).get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")


def _retry_after(exc: HttpResponseError) -> float | None:
    """Seconds from a Retry-After header, if there was one."""
    return retry_after_seconds(_headers(exc).get("Retry-After"))


def _special(ch: str) -> bool:
    """A character whose UTF-16 and UTF-8 orders disagree (U+E000 and above)."""
    return ch >= "\ue000"


def _utf8_order(names: Iterable[Any], name_of: Any) -> Iterator[Any]:
    """Items listed in UTF-16 code-unit order, re-ordered into UTF-8 byte order.

    Two names compare differently in the two orders only when, at the first position they
    differ, both hold a character >= U+E000 (U+E000..U+FFFF sorts after a surrogate pair in
    UTF-16, before it in UTF-8). Such names share the prefix before their first character
    >= U+E000 and are contiguous in a UTF-16 listing: those runs are buffered and sorted;
    every other name passes straight through."""
    run: list[Any] = []
    run_prefix: str | None = None
    for item in names:
        name: str = name_of(item)
        cut = next((i for i, ch in enumerate(name) if _special(ch)), -1)
        prefix = None if cut < 0 else name[:cut]
        if run and prefix != run_prefix:
            run.sort(key=lambda it: name_of(it).encode("utf-8", "surrogatepass"))
            yield from run
            run = []
        if prefix is None:
            yield item
        else:
            run.append(item)
            run_prefix = prefix
    run.sort(key=lambda it: name_of(it).encode("utf-8", "surrogatepass"))
    yield from run


def _quoted(etag: str | None) -> str | None:
    """An ETag in its header form (quoted): List Blobs gives ``<Etag>0x8D..</Etag>``, Get and
    Put Blob ``ETag: "0x8D.."``; one object must have one version."""
    if not etag:
        return None
    return etag if etag.startswith(('"', 'W/"')) else f'"{etag}"'


def _content_total(status: int, headers: Any) -> int | None:
    """The body length a Get Blob answer announces: Content-Length, or for a 206 (never
    asked for here) the total in Content-Range, which must then be the whole blob."""
    if status == 206:
        total = str(headers.get("Content-Range") or "").rpartition("/")[2]
        if total.isdigit():
            return int(total)
    length = str(headers.get("Content-Length") or "")
    return int(length) if length.isdigit() else None


def _endpoint(account: str) -> str:
    return os.environ.get(ENDPOINT_ENV) or f"https://{account}.blob.core.windows.net"


def make_client(what: str = "az://") -> BlobServiceClient:
    """A ``BlobServiceClient`` from the environment (module docstring), SDK retries off.
    ``what`` names the URL in a ``ConfigError``."""
    options: dict[str, Any] = {"retry_total": 0, "max_single_put_size": _SINGLE_PUT}
    conn = os.environ.get(CONNECTION_STRING_ENV)
    account = os.environ.get(ACCOUNT_ENV)
    try:
        if conn:
            return BlobServiceClient.from_connection_string(conn, **options)
        if account:
            key = os.environ.get(KEY_ENV)
            if key:
                credential: Any = {"account_name": account, "account_key": key}
            else:
                try:
                    from azure.identity import DefaultAzureCredential
                except ImportError:
                    raise ConfigError(
                        f"{what}: {ACCOUNT_ENV} is set but neither {KEY_ENV} nor "
                        "azure-identity (for DefaultAzureCredential) is available; set "
                        f"{KEY_ENV}, {CONNECTION_STRING_ENV}, or pip install azure-identity"
                    ) from None
                credential = DefaultAzureCredential()
            return BlobServiceClient(_endpoint(account), credential=credential, **options)
    except ConfigError:
        raise
    except (ValueError, TypeError, AzureError) as exc:
        # the SDK's messages about a malformed connection string or endpoint quote neither
        # the key nor the string, but be safe: name the exception class only
        source = CONNECTION_STRING_ENV if conn else f"{ACCOUNT_ENV}/{ENDPOINT_ENV}"
        raise ConfigError(
            f"{what}: cannot set up the Azure Blob client from {source} "
            f"({type(exc).__name__}); check its format"
        ) from None
    raise ConfigError(
        f"{what}: no Azure Storage credentials: set {CONNECTION_STRING_ENV}, or "
        f"{ACCOUNT_ENV} with {KEY_ENV} (or with azure-identity installed, "
        f"{ACCOUNT_ENV} alone for DefaultAzureCredential); {ENDPOINT_ENV} overrides the "
        "endpoint"
    )


class AzureBackend:
    capabilities = capabilities_for(_NAME)

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        client: BlobServiceClient,
        url: str | None = None,
        timeout: float = _DEFAULT_TIMEOUT,
        page_size: int = _PAGE_SIZE,
    ) -> None:
        self.url = url or f"az://{container}" + (f"/{prefix}" if prefix else "")
        self._container_name = container
        self._prefix = f"{prefix}/" if prefix else ""
        self._client = client
        self._container = client.get_container_client(container)
        self._timeout = timeout
        self._page_size = page_size

    # -- helpers ---------------------------------------------------------------------------

    def _k(self, key: str) -> str:
        # urllib3 removes dot segments from the request path ('p/../other/z' is sent as
        # 'other/z': out of this store's prefix) and Azure (azurite too) reads '\\' as '/'
        if not key or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
            raise ConfigError(
                f"{self.url}: key {key!r} is not a valid Azure blob key (empty, leading/"
                "trailing '/', '//', a '.'/'..' component, or a backslash)"
            )
        return self._prefix + key

    def _t(self) -> dict[str, Any]:
        """This request's transport timeouts: ``?timeout=`` cut to the deadline."""
        t = request_timeout(self._timeout)
        return {"connection_timeout": t, "read_timeout": t}

    def _etag(self, version: Version) -> str:
        if version.backend != _NAME:
            raise ConfigError(f"{self.url}: a {version.backend!r} version cannot be used on Azure")
        return version.token

    def _blob_exists(self, key: str) -> bool:
        try:
            self._container.get_blob_client(self._k(key)).get_blob_properties(**self._t())
        except Exception as exc:
            err = self._translate(exc, key, _HEAD)
            if type(err) is NotFoundError:
                return False
            raise err from exc
        return True

    def _translate(self, exc: BaseException, key: str | None, op: str) -> StoreError | ConfigError:
        """The one place native errors become ``passivepaxos.errors``. ``op`` says what a
        404, 409 or 412 means; callers turn ``NotFoundError`` into ``None`` / a no-op."""
        if isinstance(exc, StoreError | ConfigError):
            return exc
        where: dict[str, Any] = {"url": self.url, "key": key}
        if isinstance(exc, DecodeError):  # a body cut short or undecodable: try again
            return TransientError(f"{type(exc).__name__}: {exc.message}", **where)
        if isinstance(exc, HttpResponseError) and exc.status_code is None:
            cause = getattr(exc, "inner_exception", None) or exc.__cause__
            if isinstance(cause, DecodeError | ServiceResponseError | ServiceRequestError) or (
                "IncompleteRead" in type(cause).__name__
            ):
                # a body cut short, undecodable, or a connection lost while reading it
                return TransientError(f"{type(cause).__name__}: {exc.message}", **where)
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            status = int(exc.status_code)
            code = _error_code(exc)
            if code in ("ContainerNotFound", "ContainerBeingDeleted"):
                # (a deleted container answers 409 ContainerBeingDeleted for a while)
                return ContainerNotFoundError(
                    f"container {self._container_name!r} does not exist", url=self.url
                )
            if status == 404:
                return NotFoundError(f"blob does not exist ({code or 404})", **where)
            if status == 409 and code == "BlobAlreadyExists":
                if op == _CREATE:
                    return AlreadyExistsError("blob already exists", **where)
                return StoreError(f"unexpected conflict {code}", **where)
            if status == 412:
                if op == _CREATE:  # If-None-Match: * answered with 412 (not Azure's way)
                    return AlreadyExistsError("blob already exists", **where)
                if op == _GET:  # a chunked download pinned to the ETag: it changed meanwhile
                    return TransientError("blob changed while being read", **where)
                if op in (_UPDATE, _DELETE_IF) and key is not None:
                    # 412 also when the blob is missing: one properties request decides
                    if not self._blob_exists(key):
                        return NotFoundError("blob does not exist", **where)
                    return PreconditionFailedError("version moved (ETag differs)", **where)
                return StoreError(f"unexpected precondition failure {code}", **where)
            if (
                isinstance(exc, ClientAuthenticationError)
                or code in _DENIED
                or status
                in (
                    401,
                    403,
                )
            ):
                return PermissionDeniedError(f"permission denied: {code or status}", **where)
            if code in _THROTTLE or status in (429, 503):
                return ThrottledError(
                    f"throttled: {code or status}", retry_after=_retry_after(exc), **where
                )
            if code in _TRANSIENT or status >= 500 or status == 408:
                return TransientError(f"service error {status} {code}".rstrip(), **where)
            return StoreError(f"Azure error {status} {code}".rstrip(), **where)
        if isinstance(exc, ClientAuthenticationError):
            # a token credential could not get a token (no status: nothing was sent)
            return PermissionDeniedError(f"credentials rejected: {exc.message}", **where)
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            # connection refused/reset, timeouts (connect or read): for a conditional write
            # the outcome is unknown, and the store layer resolves it
            return TransientError(f"{type(exc).__name__}: {exc.message}", **where)
        if isinstance(exc, ConnectionError | TimeoutError):
            return TransientError(f"{type(exc).__name__}: {exc}", **where)
        if isinstance(exc, AzureError):
            return StoreError(f"{type(exc).__name__}: {exc.message}", **where)
        return StoreError(f"{type(exc).__name__}: {exc}", **where)

    # -- Backend ---------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, Version] | None:
        # One Get Blob through the generated client, not ``download_blob``: the SDK's
        # downloader resends a request whose body came back short or undecodable (three
        # times, with a 1 s sleep, outside the pipeline's retry policy and deadline) and
        # then raises an error without a status. Here a short body is one TransientError.
        blob = self._container.get_blob_client(self._k(key))
        where: dict[str, Any] = {"url": self.url, "key": key}
        try:
            generated: Any = blob._client.blob  # the generated REST client (private)
            resp, body = generated.download(
                cls=lambda pipeline_response, stream, headers: (
                    pipeline_response.http_response,
                    stream,
                ),
                **self._t(),
            )
        except Exception as exc:
            err = self._translate(exc, key, _GET)
            if type(err) is NotFoundError:
                return None
            raise err from exc
        try:
            data = b"".join(body)
        except Exception as exc:
            # the connection broke or the body was cut short / undecodable: the status
            # line said the blob is there, so reading again may well work
            raise TransientError(f"reading the blob failed: {type(exc).__name__}", **where) from exc
        finally:
            with contextlib.suppress(Exception):
                resp.close()
        headers = resp.headers
        expected = _content_total(resp.status_code, headers)
        if expected is not None and expected != len(data):
            raise TransientError(f"truncated download: {len(data)} of {expected} bytes", **where)
        etag = headers.get("ETag")
        if not etag:
            # a proxy stripped it: the version is unknown, so is what we read
            raise TransientError("download response carried no ETag", **where)
        return bytes(data), Version(_NAME, etag)

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        blob = self._container.get_blob_client(self._k(key))
        kwargs: dict[str, Any] = {}
        if mode.kind is PutKind.CREATE:
            kwargs["overwrite"] = False  # If-None-Match: *
        elif mode.kind is PutKind.UPDATE:
            if mode.version is None:
                raise ConfigError("PutMode.update needs a version")
            kwargs["overwrite"] = True
            kwargs["etag"] = self._etag(mode.version)
            kwargs["match_condition"] = MatchConditions.IfNotModified  # If-Match: etag
        else:
            kwargs["overwrite"] = True
        try:
            resp = blob.upload_blob(
                bytes(data), blob_type="BlockBlob", length=len(data), **kwargs, **self._t()
            )
        except Exception as exc:
            raise self._translate(exc, key, _PUT_OPS[mode.kind]) from exc
        etag = resp.get("etag")
        if not etag:
            # the service accepted the write (2xx) but the version did not arrive (a proxy
            # stripped the header): not a definite failure, the store reads the key back
            raise TransientError("upload response carried no ETag", url=self.url, key=key)
        return Version(_NAME, str(etag))

    def delete(self, key: str, if_version: Version | None = None) -> None:
        blob = self._container.get_blob_client(self._k(key))
        kwargs: dict[str, Any] = {}
        if if_version is not None:
            kwargs["etag"] = self._etag(if_version)
            kwargs["match_condition"] = MatchConditions.IfNotModified
        try:
            blob.delete_blob(**kwargs, **self._t())
        except Exception as exc:
            err = self._translate(exc, key, _DELETE if if_version is None else _DELETE_IF)
            if type(err) is NotFoundError and if_version is None:
                return
            raise err from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        full_prefix = self._prefix + prefix
        after = None if start_after is None else self._k(start_after).encode()
        last: bytes | None = None
        try:
            pages = self._container.list_blobs(
                name_starts_with=full_prefix or None,
                results_per_page=self._page_size,
                **self._t(),
            )
            for blob in _utf8_order(pages, lambda b: b.name):
                name: str = blob.name
                raw = name.encode("utf-8", "surrogatepass")
                if last is not None and raw <= last:
                    raise StoreError(
                        f"listing out of UTF-8 byte order: {name!r} after {last!r}",
                        url=self.url,
                    )
                last = raw
                if after is not None and raw <= after:
                    continue  # Azure cannot start a listing at a key: skip up to it
                etag = _quoted(blob.etag)
                yield ObjectMeta(
                    name[len(self._prefix) :],
                    Version(_NAME, etag) if etag else None,
                    int(blob.size or 0),
                )
        except Exception as exc:
            raise self._translate(exc, None, _LIST) from exc

    def close(self) -> None:
        self._client.close()


def open_backend(url: StoreURL) -> AzureBackend:
    timeout = url.seconds("timeout", _DEFAULT_TIMEOUT)
    client = make_client(url.raw)
    return AzureBackend(
        url.container, url.prefix, client=client, url=url.canonical, timeout=timeout
    )
