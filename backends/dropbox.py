"""``dropbox:///abs/path`` via the official Dropbox SDK (``pip install 'passivepaxos[dropbox]'``).

The URL's path is a folder in the user's Dropbox (or in an app folder, for app-folder
tokens); keys are paths below it. Native mapping, in one place:

- create -> ``files_upload(mode=add, autorename=False, strict_conflict=True)``; a
  ``path/conflict/file`` error means someone else's file is there (``AlreadyExistsError``).
  ``strict_conflict`` matters: without it Dropbox treats a file with *identical* contents
  as "no conflict" and returns the existing file's metadata, so two racers writing the
  same bytes would both "win". (Our frames carry a unique write id, so it is belt and
  braces.)
- update -> ``files_upload(mode=update(rev), strict_conflict=True)``. Dropbox answers a
  stale rev *and* a file that no longer exists with the same conflict (documented for
  ``strict_conflict``: "even if the existing file has been deleted"), so on a conflict one
  ``get_metadata`` tells ``PreconditionFailedError`` from ``NotFoundError``.
- overwrite -> ``files_upload(mode=overwrite)``. Dropbox does not write identical contents
  again: the old rev comes back (the same holds for an update with identical bytes).
- delete -> ``files_delete_v2(path, parent_rev=rev)``. An unconditional delete is also sent
  with the file's current rev, read first: ``delete_v2`` of a path that is a folder would
  remove the whole subtree, and keys that are prefixes of other keys are folders there.
- list -> ``files_list_folder(recursive=True)`` + ``list_folder/continue``, files only,
  keys taken from ``path_display`` (original casing), sorted by UTF-8 bytes here because
  Dropbox returns entries in no particular order. Dropbox documents that ``path_display``
  may in rare cases carry a stale casing for *ancestor* folders (never the last
  component), so a listing can show a key in a casing other than the one written.

Dropbox paths are case-insensitive: keys that differ only in case (``a/B`` and ``a/b``)
are the *same* object there, unlike on every other backend. Keys must be valid Dropbox
paths: no empty components, no leading or trailing ``/``, no ``.``/``..`` components.

The SDK's own retries are switched off (``max_retries_on_error=0``,
``max_retries_on_rate_limit=0``): an upload it silently retried after a lost response
would come back "conflict" although the first attempt won. Retries and read-back happen
once, in ``passivepaxos.store.Store``.

The root folder is never created on purpose, but ``files_upload`` creates missing parent
folders and has no flag against it, so this adapter can only check: the root's existence
is checked with ``get_metadata`` before the first request of a backend and cached; a
missing root is ``ContainerNotFoundError``. Every *miss* checks again (one more request per
``get`` of an absent key, per refused update or delete), so a root deleted later never
reads as empty, and ``list`` reports it. A write, though, trusts the cached check: a root
deleted after it is re-created by the next upload, holding only that object. That gap
cannot be closed on Dropbox (a check before each upload would still race the deletion);
the log layer's store identity check (the manifest) is what catches such a store.

Environment, read each time a client is made (``open_backend``):

- ``DROPBOX_TOKEN`` (required): an OAuth2 access token with ``files.content.write``
  (writes) and ``files.content.read`` / ``files.metadata.read`` (reads, lists).
- ``DROPBOX_CA_BUNDLE``: a PEM file of CA certificates to trust instead of the system's.
  It wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (which requests would otherwise
  let override any session setting).
- ``DROPBOX_API_HOST`` / ``DROPBOX_API_CONTENT_HOST`` (and ``DROPBOX_API_DOMAIN`` /
  ``DROPBOX_DOMAIN``), as the SDK spells them. The SDK reads these only once, when
  ``dropbox`` is first imported; this adapter re-reads them per client and sets the
  client's host map, so they may be set (e.g. by a test fixture) after the import.
- ``PASSIVEPAXOS_CONNECT_TIMEOUT`` / ``PASSIVEPAXOS_READ_TIMEOUT`` (seconds, 5 / 30); under
  a deadline (``passivepaxos.deadline``) each request uses a copy of the client whose
  timeouts are cut to the time left.

Values are limited to 150 MiB, what one ``files_upload`` request may carry.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dropbox
import requests
from dropbox import files as dbx_files
from dropbox.exceptions import (
    ApiError,
    AuthError,
    DropboxException,
    HttpError,
    InternalServerError,
    RateLimitError,
)
from dropbox.stone_validators import ValidationError

from passivepaxos.capabilities import capabilities_for
from passivepaxos.deadline import env_seconds, request_timeout
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
    UnsupportedError,
)
from passivepaxos.types import ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL

__all__ = ["DropboxBackend", "make_client", "open_backend"]

_NAME = "dropbox"
_MAX_BYTES = capabilities_for(_NAME).max_object_bytes or 150 * 1024 * 1024
_REV = re.compile(r"[0-9a-f]{9,}\Z")
_DENIED_TAGS = {"no_write_permission", "access_restricted", "team_folder", "restricted_content"}
_UNDELETE_ROUNDS = 5

T = TypeVar("T")


# -- the client -----------------------------------------------------------------------------


class _PinnedCASession(requests.Session):
    """A session whose CA bundle beats ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``.

    requests merges those variables into every request's ``verify`` and lets them override
    ``Session.verify``, so ``dropbox.create_session(ca_certs=...)`` alone is ignored
    whenever they are set (as on many CI images). Proxies etc. still come from the env.
    """

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle
        self.verify = ca_bundle

    def merge_environment_settings(
        self,
        url: Any,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> dict[str, Any]:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.ca_bundle
        return settings


def _hosts() -> dict[str, str]:
    """The API and content hosts, resolved now the way ``dropbox.session`` does at import."""
    domain = (
        os.environ.get("DROPBOX_API_DOMAIN")
        or os.environ.get("DROPBOX_DOMAIN")
        or ".dropboxapi.com"
    )
    return {
        "api": os.environ.get("DROPBOX_API_HOST") or "api" + domain,
        "content": os.environ.get("DROPBOX_API_CONTENT_HOST") or "content" + domain,
    }


def make_client(
    *, token: str | None = None, ca_bundle: str | None = None, max_connections: int = 32
) -> Any:
    """A ``dropbox.Dropbox`` configured from the environment (see the module docstring),
    with the SDK's internal retries off. Arguments override the environment."""
    token = token or os.environ.get("DROPBOX_TOKEN")
    if not token:
        raise ConfigError(
            "dropbox:// needs an access token: set DROPBOX_TOKEN (scopes files.content.write, "
            "files.content.read, files.metadata.read)"
        )
    ca_bundle = ca_bundle or os.environ.get("DROPBOX_CA_BUNDLE") or None
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        raise ConfigError(f"DROPBOX_CA_BUNDLE={ca_bundle!r} is not a file")
    sdk_session = dropbox.create_session(max_connections=max_connections, ca_certs=ca_bundle)
    session: requests.Session = sdk_session
    if ca_bundle is not None:
        session = _PinnedCASession(ca_bundle)
        session.mount("https://", sdk_session.get_adapter("https://"))
    timeout = (
        env_seconds("PASSIVEPAXOS_CONNECT_TIMEOUT", 5),
        env_seconds("PASSIVEPAXOS_READ_TIMEOUT", 30),
    )
    client = dropbox.Dropbox(
        oauth2_access_token=token,
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
        user_agent="passivepaxos",
        session=session,
        timeout=timeout,
    )
    host_map = getattr(client, "_host_map", None)
    if isinstance(host_map, dict):  # the SDK froze its hosts at import time; refresh them
        host_map.update(_hosts())
    return client


def _tags(error: Any) -> list[str]:
    """The tag path of a Stone error union, e.g. ``["path", "conflict", "file"]`` (what
    Dropbox sends as ``error_summary``, which the SDK does not keep)."""
    tags: list[str] = []
    for _ in range(8):
        tag = getattr(error, "_tag", None)
        if isinstance(tag, str):
            tags.append(tag)
            error = getattr(error, "_value", None)
            continue
        try:  # a struct wrapping the reason (UploadWriteFailed, RateLimitError)
            error = error.reason
        except Exception:
            break
    return tags


# -- the backend ----------------------------------------------------------------------------


class DropboxBackend:
    capabilities = capabilities_for(_NAME)

    def __init__(
        self,
        root: str,
        *,
        url: str | None = None,
        client: Any = None,
        page_size: int | None = None,
    ) -> None:
        root = "/" + root.strip("/")
        self._root = "" if root == "/" else root  # Dropbox spells its root folder ""
        if self._root and not _valid_path(self._root[1:]):
            raise ConfigError(f"dropbox://{root}: not a valid Dropbox folder path")
        self.url = url or f"dropbox://{root}"
        self._depth = self._root.count("/")
        self._client = client if client is not None else make_client()
        self._page_size = page_size
        self._root_ok = self._root == ""

    # -- error translation: the one place native errors become ours -------------------------

    def _translate(
        self, exc: BaseException, key: str | None, mode: PutMode | None = None
    ) -> Exception:
        where: dict[str, Any] = {"url": self.url, "key": key}
        if isinstance(exc, ApiError):
            tags = _tags(exc.error)
            summary = "/".join(tags) or repr(exc.error)
            if exc.user_message_text:
                summary += f" ({exc.user_message_text})"
            if "too_many_write_operations" in tags:
                return ThrottledError(f"Dropbox: {summary}", **where)
            if "conflict" in tags:
                if "folder" in tags or "file_ancestor" in tags:
                    return StoreError(
                        f"Dropbox: {summary}: a folder or file is in the way", **where
                    )
                if mode is not None and mode.kind is PutKind.CREATE:
                    return AlreadyExistsError(
                        f"object already exists (Dropbox: {summary})", **where
                    )
                return PreconditionFailedError(f"version moved (Dropbox: {summary})", **where)
            if "not_found" in tags or "not_file" in tags:
                return NotFoundError(f"no such object (Dropbox: {summary})", **where)
            if "not_folder" in tags:
                return ContainerNotFoundError(f"not a folder (Dropbox: {summary})", **where)
            if any(t in _DENIED_TAGS for t in tags):
                return PermissionDeniedError(f"Dropbox: {summary}", **where)
            if "reset" in tags or "content_hash_mismatch" in tags:
                return TransientError(f"Dropbox: {summary}", **where)
            return StoreError(f"Dropbox: {summary}", **where)
        if isinstance(exc, AuthError):
            tags = _tags(exc.error)
            detail = "/".join(tags) or "unauthorized"
            if "missing_scope" in tags:
                required = getattr(getattr(exc.error, "_value", None), "required_scope", None)
                detail += f" (the token lacks scope {required})" if required else ""
            return PermissionDeniedError(f"Dropbox rejected the token: {detail}", **where)
        if isinstance(exc, RateLimitError):
            tags = _tags(exc.error) if exc.error is not None else []
            return ThrottledError(
                f"Dropbox: {'/'.join(tags) or 'rate limited'}",
                retry_after=float(exc.backoff) if exc.backoff is not None else None,
                **where,
            )
        if isinstance(exc, InternalServerError) or (
            isinstance(exc, HttpError) and exc.status_code >= 500
        ):
            return TransientError(f"Dropbox: HTTP {exc.status_code}", **where)
        if isinstance(exc, HttpError):
            body = str(exc.body or getattr(exc, "error", "") or "")[:300]
            return StoreError(f"Dropbox: HTTP {exc.status_code}: {body}", **where)
        if isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE" in str(exc).upper():
            return StoreError(
                f"TLS verification failed ({exc}); set DROPBOX_CA_BUNDLE if a proxy or test "
                "server uses its own CA",
                **where,
            )
        if isinstance(exc, requests.exceptions.RequestException):
            # connection refused/reset/lost response, timeouts, truncated bodies, TLS
            # sessions torn down mid-handshake
            return TransientError(f"connection problem: {type(exc).__name__}: {exc}", **where)
        if isinstance(exc, ValidationError):
            return StoreError(f"Dropbox SDK rejected an argument: {exc}", **where)
        if isinstance(exc, DropboxException):
            return StoreError(f"Dropbox: {exc!r}", **where)
        return exc if isinstance(exc, Exception) else StoreError(repr(exc), **where)

    def _call(self, fn: Callable[[], T], key: str | None, mode: PutMode | None = None) -> T:
        try:
            return fn()
        except (DropboxException, requests.exceptions.RequestException, ValidationError) as exc:
            raise self._translate(exc, key, mode) from exc

    # -- helpers --------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        if not _valid_path(key):
            raise ConfigError(
                f"{self.url}: key {key!r} is not a valid Dropbox path (empty, leading/trailing "
                "'/', '//', or a '.'/'..' component)"
            )
        return f"{self._root}/{key}"

    def _rev(self, version: Version | None) -> str:
        if version is None or version.backend != _NAME or not _REV.match(version.token):
            raise ConfigError(f"{self.url}: version {version} was not issued by a dropbox store")
        return version.token

    def _c(self) -> Any:
        """The client for the request being made now: under a deadline, a copy (same
        session and connections) whose timeouts do not exceed the time left."""
        timeout = getattr(self._client, "_timeout", None)
        if isinstance(timeout, int | float):
            timeout = (timeout, timeout)
        if not (isinstance(timeout, tuple) and len(timeout) == 2):
            return self._client
        connect, read = (float(t) for t in timeout)
        left = request_timeout(max(connect, read))
        if left >= max(connect, read):
            return self._client
        clone = self._client.clone(timeout=(min(connect, left), min(read, left)))
        hosts, cloned = getattr(self._client, "_host_map", None), getattr(clone, "_host_map", None)
        if isinstance(hosts, dict) and isinstance(cloned, dict):
            cloned.update(hosts)  # the SDK resets it from import-time values
        return clone

    def _missing_root(self) -> None:
        """After a miss: raise ``ContainerNotFoundError`` if the root itself is gone."""
        if self._root:
            self._root_ok = False
            self._ensure_root()

    def _ensure_root(self) -> None:
        if self._root_ok:
            return
        try:
            md = self._call(lambda: self._c().files_get_metadata(self._root), None)
        except NotFoundError:
            raise ContainerNotFoundError(
                f"folder {self._root!r} does not exist in this Dropbox", url=self.url
            ) from None
        if not isinstance(md, dbx_files.FolderMetadata):
            raise ContainerNotFoundError(f"{self._root!r} is a file, not a folder", url=self.url)
        self._root_ok = True

    def _stat(self, path: str, key: str) -> Any:
        """The metadata at ``path`` or ``None`` when nothing is there."""
        try:
            return self._call(lambda: self._c().files_get_metadata(path), key)
        except NotFoundError:
            return None

    def _key_of(self, md: Any) -> str | None:
        display = md.path_display or md.path_lower
        if not isinstance(display, str):
            return None
        parts = display.split("/")
        if len(parts) <= 1 + self._depth:
            return None
        return "/".join(parts[1 + self._depth :])

    # -- Backend ---------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, Version] | None:
        path = self._path(key)
        self._ensure_root()
        try:
            md, resp = self._call(lambda: self._c().files_download(path), key)
        except NotFoundError:
            self._missing_root()
            return None
        try:
            with contextlib.closing(resp):
                data = bytes(resp.content)
        except requests.exceptions.RequestException as exc:
            raise self._translate(exc, key) from exc
        if len(data) != md.size:
            raise TransientError(
                f"truncated download: {len(data)} of {md.size} bytes", url=self.url, key=key
            )
        return data, Version(_NAME, str(md.rev))

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        if len(data) > _MAX_BYTES:
            raise UnsupportedError(
                f"{self.url}: {len(data)} bytes is more than one Dropbox upload may carry "
                f"({_MAX_BYTES} bytes)",
                capability="max_object_bytes",
            )
        path = self._path(key)
        if mode.kind is PutKind.CREATE:
            write_mode, strict = dbx_files.WriteMode.add, True
        elif mode.kind is PutKind.UPDATE:
            write_mode, strict = dbx_files.WriteMode.update(self._rev(mode.version)), True
        else:
            write_mode, strict = dbx_files.WriteMode.overwrite, False
        self._ensure_root()
        body = bytes(data)
        try:
            md = self._call(
                lambda: self._c().files_upload(
                    body, path, mode=write_mode, autorename=False, mute=True, strict_conflict=strict
                ),
                key,
                mode,
            )
        except PreconditionFailedError:
            # A stale rev and a vanished file get the same conflict; look which it was.
            if not isinstance(self._stat(path, key), dbx_files.FileMetadata):
                self._missing_root()
                raise NotFoundError("object does not exist", url=self.url, key=key) from None
            raise
        return Version(_NAME, str(md.rev))

    def delete(self, key: str, if_version: Version | None = None) -> None:
        path = self._path(key)
        self._ensure_root()
        if if_version is not None:
            rev = self._rev(if_version)
            try:
                self._call(
                    lambda: self._c().files_delete_v2(path, parent_rev=rev),
                    key,
                    PutMode.update(if_version),
                )
            except NotFoundError:
                # Dropbox may report a rev mismatch as not_found too; look which it was.
                if isinstance(self._stat(path, key), dbx_files.FileMetadata):
                    raise PreconditionFailedError("version moved", url=self.url, key=key) from None
                self._missing_root()
                raise
            return
        # Unconditional: delete the file we see, by rev, so a folder is never removed.
        for _ in range(_UNDELETE_ROUNDS):
            md = self._stat(path, key)
            if not isinstance(md, dbx_files.FileMetadata):
                if md is None:
                    self._missing_root()
                return
            current = Version(_NAME, str(md.rev))
            try:
                self._call(
                    functools.partial(self._c().files_delete_v2, path, parent_rev=current.token),
                    key,
                    PutMode.update(current),
                )
                return
            except (NotFoundError, PreconditionFailedError):
                continue  # changed under us: look again
        raise TransientError("object kept changing while being deleted", url=self.url, key=key)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        self._ensure_root()
        # List the deepest folder the prefix names in full, not the whole tree.
        folder_key = prefix.rpartition("/")[0]
        if folder_key and not _valid_path(folder_key):
            folder_key = ""
        folder = f"{self._root}/{folder_key}" if folder_key else self._root
        try:
            entries = self._list_files(folder)
        except (NotFoundError, ContainerNotFoundError) as exc:
            if folder_key:
                self._missing_root()
                return iter(())  # the root exists; nothing under this prefix
            raise ContainerNotFoundError(
                f"folder {self._root!r} does not exist in this Dropbox", url=self.url
            ) from exc
        items: builtins.list[ObjectMeta] = []
        after = start_after.encode() if start_after is not None else None
        for md in entries:
            key = self._key_of(md)
            if key is None or not key.startswith(prefix):
                continue
            if after is not None and key.encode() <= after:
                continue
            items.append(ObjectMeta(key, Version(_NAME, str(md.rev)), int(md.size)))
        items.sort(key=lambda m: m.key.encode())
        return iter(items)

    def _list_files(self, folder: str) -> builtins.list[Any]:
        client = self._c()
        res = self._call(
            lambda: client.files_list_folder(folder, recursive=True, limit=self._page_size), None
        )
        out: builtins.list[Any] = []
        while True:
            out.extend(e for e in res.entries if isinstance(e, dbx_files.FileMetadata))
            if not res.has_more:
                return out
            res = self._call(functools.partial(client.files_list_folder_continue, res.cursor), None)

    def close(self) -> None:
        self._client.close()


def _valid_path(key: str) -> bool:
    if not key or key.startswith("/") or key.endswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in key.split("/"))


def open_backend(url: StoreURL) -> DropboxBackend:
    return DropboxBackend(url.prefix, url=url.canonical)
