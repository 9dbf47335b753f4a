"""``gs://bucket/prefix``: Google Cloud Storage through ``google-cloud-storage``.

Mapping (see ``passivepaxos.types.Backend`` for the contract):

- version = the object's *generation* (``Version("gcs", "<int>")``); GCS gives every write
  of a name a new generation, so versions never repeat.
- put CREATE = upload with ``ifGenerationMatch=0``; 412 -> ``AlreadyExistsError``.
- put UPDATE = upload with ``ifGenerationMatch=<generation>``; 412 is returned both when the
  generation moved *and* when the object is missing, so on a 412 (and only then) the adapter
  spends one metadata GET to tell ``PreconditionFailedError`` from ``NotFoundError``.
- put OVERWRITE = plain upload.
- get = one media GET; the generation comes from the ``x-goog-generation`` header of that
  same response, so bytes and version always belong together (no second request, no race).
- delete = DELETE with optional ``ifGenerationMatch``: 404 -> ``NotFoundError`` (a no-op
  without a version), 412 -> one metadata GET tells ``PreconditionFailedError`` from
  ``NotFoundError`` (GCS answers 404 for a missing object, so that GET is only insurance).
  fake-gcs-server <= 1.54 ignores ``ifGenerationMatch`` on DELETE (fsouza/fake-gcs-server
  #1282): against it a conditional delete is unconditional.
- a 404 on an object request is "no such object" or "no such bucket": real GCS says which
  in the message; when it does not (fake-gcs-server) the adapter asks whether the bucket
  exists, each time (a remembered yes would make a bucket deleted later read as empty), so
  ``ContainerNotFoundError`` names a missing bucket.
- list = ``objects.list`` with ``prefix`` and ``startOffset`` (inclusive, so the key equal
  to ``start_after`` is skipped); GCS lists in ascending UTF-8 byte order and the adapter
  checks that instead of trusting it (an out-of-order listing raises ``StoreError``).

Every call passes ``retry=None``: the SDK would otherwise retry conditional uploads itself
(``DEFAULT_RETRY_IF_GENERATION_SPECIFIED``), hiding an ambiguous first attempt behind a 412
that looks like a lost race. Retries and ambiguity resolution belong to
``passivepaxos.store.Store``. All native errors go through :meth:`GCSBackend._translate`.

``STORAGE_EMULATOR_HOST`` (e.g. ``http://127.0.0.1:4443``, as fake-gcs-server wants) is
honoured: the client library itself points its endpoint there; we add anonymous credentials
and project ``test`` so that no Google credentials are looked up.

URL options: ``?project=...`` (billing/quota project for the client), ``?timeout=SECONDS``
(per request, default 60; under a deadline cut to the time left). Any other option is
refused when the URL is parsed (``passivepaxos.urls``). The bucket is never created here; uploads and listings into a missing
bucket are ``ContainerNotFoundError``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

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

try:  # google-cloud-storage >= 3 vendors resumable-media; older versions use the package
    from google.cloud.storage.exceptions import DataCorruption
except ImportError:  # pragma: no cover - google-cloud-storage 2.x
    from google.resumable_media.common import DataCorruption

__all__ = ["GCSBackend", "open_backend"]

_NAME = "gcs"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_DEFAULT_TIMEOUT = 60.0
# GCS returns at most 1,000 objects per page; asking for it explicitly makes emulators that
# otherwise answer in one page (fake-gcs-server) page like the real service.
_PAGE_SIZE = 1000

# Which operation failed, so that one translation function can say what 404 / 412 mean.
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


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header, if the response had one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("Retry-After")
    except Exception:
        return None
    return retry_after_seconds(value)


def _make_client(url: StoreURL) -> storage.Client:
    project = url.options.get("project")
    if os.environ.get(EMULATOR_ENV):
        # The library reads STORAGE_EMULATOR_HOST itself (it becomes the API endpoint and
        # switches to anonymous credentials); we make both explicit and give it a project.
        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = storage.Client(project=project or "test", credentials=anonymous)
    else:
        try:
            client = storage.Client(project=project) if project else storage.Client()
        except auth_exc.DefaultCredentialsError as exc:
            raise ConfigError(
                f"{url.raw}: no Google Cloud credentials found ({exc}); run "
                "'gcloud auth application-default login' or set "
                "GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
    # google-cloud-storage 3.x starts a background thread that fetches the bucket's metadata
    # on the first call (and re-checks the bucket after any 404) to decorate OpenTelemetry
    # spans. Those are extra, unsolicited requests racing ours; we do not want them.
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    return client


class GCSBackend:
    capabilities = capabilities_for(_NAME)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: storage.Client,
        url: str | None = None,
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url or f"gs://{bucket}" + (f"/{prefix}" if prefix else "")
        self._bucket_name = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self._client = client
        self._bucket = client.bucket(bucket)
        self._timeout = timeout
        self._bucket_seen = False  # set once the bucket is known to exist

    # -- helpers ---------------------------------------------------------------------------

    def _k(self, key: str) -> str:
        return self._prefix + key

    def _request_timeout(self) -> tuple[float, float]:
        """(connect, read) seconds for the request being made: ``?timeout=`` cut to the
        time the current deadline leaves (``passivepaxos.deadline``)."""
        t = request_timeout(self._timeout)
        return (t, t)

    def _generation(self, version: Version) -> int:
        if version.backend != _NAME:
            raise ConfigError(f"{self.url}: a {version.backend!r} version cannot be used on GCS")
        try:
            return int(version.token)
        except ValueError:
            raise ConfigError(f"{self.url}: malformed GCS generation {version.token!r}") from None

    def _version(self, generation: Any) -> Version:
        return Version(_NAME, str(int(generation)))

    def _bucket_exists(self, *, fresh: bool = False) -> bool:
        """Whether the bucket exists; a positive answer is remembered unless ``fresh``."""
        if self._bucket_seen and not fresh:
            return True
        try:
            exists = bool(self._bucket.exists(timeout=self._request_timeout(), retry=None))
        except Exception as exc:
            raise self._translate(exc, None, _HEAD) from exc
        if exists:
            self._bucket_seen = True
        return exists

    def _object_exists(self, name: str) -> bool:
        try:
            return (
                self._bucket.get_blob(name, timeout=self._request_timeout(), retry=None) is not None
            )
        except Exception as exc:
            raise self._translate(exc, None, _HEAD) from exc

    def _missing(self, exc: BaseException, key: str | None) -> StoreError:
        """A 404 on an object request: the object or the whole bucket? Real GCS says which
        in the message; fake-gcs-server only says "Not Found", so ask otherwise (every time:
        the bucket may have been deleted since it was last seen)."""
        text = str(exc).lower()  # the key inside it is URL-encoded, so it cannot fake these
        if "no such object" in text:
            return NotFoundError("object does not exist", url=self.url, key=key)
        if "bucket does not exist" not in text and self._bucket_exists(fresh=True):
            return NotFoundError("object does not exist", url=self.url, key=key)
        return ContainerNotFoundError(f"bucket {self._bucket_name!r} does not exist", url=self.url)

    def _translate(self, exc: BaseException, key: str | None, op: str) -> StoreError | ConfigError:
        """The one place native errors become ``passivepaxos.errors``. ``op`` says what a
        404 or 412 means; callers turn ``NotFoundError`` into ``None`` / a no-op as needed."""
        if isinstance(exc, StoreError | ConfigError):
            return exc
        if isinstance(
            exc,
            requests.exceptions.MissingSchema
            | requests.exceptions.InvalidSchema
            | requests.exceptions.InvalidURL,
        ):
            # the endpoint itself is malformed (STORAGE_EMULATOR_HOST=notaurl): nothing was
            # sent, and retrying cannot help
            return ConfigError(
                f"{self.url}: the GCS endpoint is not a valid URL (check {EMULATOR_ENV}): "
                f"{type(exc).__name__}: {exc}"
            )
        where: dict[str, Any] = {"url": self.url, "key": key}
        if isinstance(exc, gexc.GoogleAPICallError):
            code = exc.code
            if isinstance(exc, gexc.NotFound) or code == 404:
                if op in (_CREATE, _UPDATE, _OVERWRITE, _LIST):
                    # uploads and listings only 404 when the bucket is missing
                    return ContainerNotFoundError(
                        f"bucket {self._bucket_name!r} does not exist", url=self.url
                    )
                return self._missing(exc, key)
            if isinstance(exc, gexc.PreconditionFailed) or code == 412:
                if op == _CREATE:
                    return AlreadyExistsError("object already exists", **where)
                if op in (_UPDATE, _DELETE_IF):
                    # GCS answers 412 also when the object is missing: one extra GET decides
                    name = self._k(key) if key is not None else ""
                    if not self._object_exists(name):
                        return NotFoundError("object does not exist", **where)
                    return PreconditionFailedError("version moved", **where)
                return StoreError(f"unexpected precondition failure: {exc}", **where)
            if isinstance(exc, gexc.Unauthorized | gexc.Forbidden) or code in (401, 403):
                return PermissionDeniedError(f"permission denied: {exc.message}", **where)
            if isinstance(exc, gexc.TooManyRequests) or code == 429:
                return ThrottledError(
                    f"throttled: {exc.message}", retry_after=_retry_after(exc), **where
                )
            if code is not None and (code >= 500 or code == 408):
                return TransientError(f"service error {code}: {exc.message}", **where)
            return StoreError(f"GCS error {code}: {exc.message}", **where)
        if isinstance(
            exc,
            requests.ConnectionError
            | requests.Timeout
            | requests.exceptions.ChunkedEncodingError
            | auth_exc.TransportError
            | ConnectionError
            | TimeoutError
            | DataCorruption,
        ):
            return TransientError(f"{type(exc).__name__}: {exc}", **where)
        if isinstance(exc, auth_exc.RefreshError | auth_exc.InvalidOperation):
            # a 401 makes google-auth refresh the token; failing that (anonymous
            # credentials cannot refresh at all) the credentials were rejected
            return PermissionDeniedError(f"credentials rejected: {exc}", **where)
        return StoreError(f"{type(exc).__name__}: {exc}", **where)

    # -- Backend ---------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, Version] | None:
        name = self._k(key)
        blob = self._bucket.blob(name)
        try:
            # One media GET; the SDK copies x-goog-generation from this response into
            # blob.generation, so the bytes and the version come from the same request.
            data = blob.download_as_bytes(
                raw_download=True, timeout=self._request_timeout(), retry=None
            )
        except Exception as exc:
            err = self._translate(exc, key, _GET)
            if type(err) is NotFoundError:
                return None
            raise err from exc
        if blob.generation is None:  # a proxy stripped the header: pin a generation instead
            return self._get_pinned(key)
        self._bucket_seen = True
        return bytes(data), self._version(blob.generation)

    def _get_pinned(self, key: str) -> tuple[bytes, Version] | None:
        """Fallback read: metadata GET, then a media GET pinned to that generation; if the
        object moved in between (404 on the pinned generation) start over, twice at most."""
        name = self._k(key)
        for _ in range(2):
            try:
                meta = self._bucket.get_blob(name, timeout=self._request_timeout(), retry=None)
                if meta is None:
                    return None
                pinned = self._bucket.blob(name, generation=meta.generation)
                data = pinned.download_as_bytes(
                    raw_download=True, timeout=self._request_timeout(), retry=None
                )
            except gexc.NotFound:
                continue
            except Exception as exc:
                raise self._translate(exc, key, _GET) from exc
            return bytes(data), self._version(meta.generation)
        raise TransientError("object kept changing while being read", url=self.url, key=key)

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        blob = self._bucket.blob(self._k(key))
        kwargs: dict[str, Any] = {}
        if mode.kind is PutKind.CREATE:
            kwargs["if_generation_match"] = 0
        elif mode.kind is PutKind.UPDATE:
            if mode.version is None:
                raise ConfigError("PutMode.update needs a version")
            kwargs["if_generation_match"] = self._generation(mode.version)
        try:
            blob.upload_from_string(
                bytes(data),
                content_type="application/octet-stream",
                timeout=self._request_timeout(),
                retry=None,  # never let the SDK retry a (conditional) write: see module doc
                **kwargs,
            )
        except Exception as exc:
            raise self._translate(exc, key, _PUT_OPS[mode.kind]) from exc
        if blob.generation is None:  # the upload response always carries the resource
            raise StoreError("upload response carried no generation", url=self.url, key=key)
        self._bucket_seen = True
        return self._version(blob.generation)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        blob = self._bucket.blob(self._k(key))
        kwargs: dict[str, Any] = {}
        if if_version is not None:
            kwargs["if_generation_match"] = self._generation(if_version)
        try:
            blob.delete(timeout=self._request_timeout(), retry=None, **kwargs)
        except Exception as exc:
            err = self._translate(exc, key, _DELETE if if_version is None else _DELETE_IF)
            if type(err) is NotFoundError and if_version is None:
                return
            raise err from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        full_prefix = self._prefix + prefix
        start = None if start_after is None else self._k(start_after)
        last: bytes | None = None if start is None else start.encode()
        try:
            # start_offset is inclusive: the key equal to start_after is skipped below
            blobs = self._client.list_blobs(
                self._bucket,
                prefix=full_prefix or None,
                start_offset=start,
                fields="items(name,generation,size),nextPageToken",
                page_size=_PAGE_SIZE,
                timeout=self._request_timeout(),
                retry=None,
            )
            for blob in blobs:
                name: str = blob.name
                raw = name.encode()
                if last is not None and raw <= last:
                    if start is not None and name == start:
                        continue
                    raise StoreError(
                        f"listing out of UTF-8 byte order: {name!r} after {last!r}",
                        url=self.url,
                    )
                last = raw
                self._bucket_seen = True
                gen = blob.generation
                yield ObjectMeta(
                    name[len(self._prefix) :],
                    None if gen is None else self._version(gen),
                    int(blob.size or 0),
                )
        except Exception as exc:
            raise self._translate(exc, None, _LIST) from exc

    def close(self) -> None:
        self._client.close()


def open_backend(url: StoreURL) -> GCSBackend:
    timeout = url.seconds("timeout", _DEFAULT_TIMEOUT)
    client = _make_client(url)
    try:
        return GCSBackend(
            url.container, url.prefix, client=client, url=url.canonical, timeout=timeout
        )
    except ValueError as exc:  # the SDK's bucket-name check
        client.close()
        raise ConfigError(f"{url.raw}: {exc}") from None
