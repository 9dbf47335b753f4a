"""A loopback HTTPS stand-in for the Dropbox API v2, good enough for the official SDK.

Only the stdlib and ``trustme`` are used, so the module can be loaded on its own (tests
import it by file path). One port serves both Dropbox hosts; requests are routed by path:

- content host: ``/2/files/upload`` and ``/2/files/download``
- api host: ``/2/files/get_metadata``, ``/2/files/list_folder``,
  ``/2/files/list_folder/continue``, ``/2/files/delete_v2``, ``/2/files/create_folder_v2``

Semantics follow the Dropbox documentation (the docstrings of ``dropbox/files.py``):

- Paths are case-insensitive (``path_lower``); ``path_display`` keeps the casing each
  component was first created with. Parent folders are created implicitly on upload.
- ``WriteMode`` rules: (a) nothing at the path -> always written, (b) a folder at the path
  -> always a conflict, (c) a file with identical contents -> nothing is written and the
  existing metadata (same ``rev``) comes back, no conflict. Otherwise ``add`` conflicts,
  ``overwrite`` writes, ``update(rev)`` writes only when ``rev`` is the current one.
- ``strict_conflict=True`` turns (c) into a conflict for ``add`` and for a stale
  ``update``, and makes ``update`` conflict when the file does not exist (any more).
  ``overwrite`` never conflicts with a file, strict or not.
- ``autorename=True`` saves a conflicting ``add``/``update`` as "name (1).ext".
- Every write gets a new ``rev``: lowercase hex, 15 characters, unique per server.
- ``delete_v2`` with ``parent_rev``: missing -> ``path_lookup/not_found``; rev differs ->
  ``path_write/conflict/file`` (``delete_mismatch_error = "not_found"`` switches to the
  other plausible reply so an adapter can be tested against both); folder ->
  ``path_lookup/not_file``.
- Uploads carrying ``content_hash`` (the SDK adds it) are verified (``content_hash_mismatch``).

Errors use Dropbox's wire format: 409 + ``{"error_summary", "error"}`` for route errors,
401 for auth (``invalid_access_token``; ``missing_scope`` when the read-only token tries to
write; ``expired_access_token`` for an access token past its lifetime), 429 +
``Retry-After`` for throttling, 400 text for malformed requests.

OAuth2 (``POST /oauth2/token`` on the api host, the URL the SDK's
``refresh_access_token`` uses, reached through the same ``DROPBOX_API_HOST``):
``add_refresh_token(app_key, app_secret=None)`` registers a refresh token (no secret: a
PKCE / public app). ``grant_type=refresh_token`` with ``refresh_token``, ``client_id`` and
``client_secret`` (form fields, or HTTP Basic ``client_id:client_secret``) answers
``{"access_token", "expires_in", "token_type": "bearer"}`` with a new access token
(read/write scopes) that lives ``token_lifetime`` seconds of ``clock`` (``time.monotonic``
unless given: a test may pass a manual clock and move time itself, so that no expiry
depends on the machine's speed). Errors as Dropbox sends them, 400 +
``{"error", "error_description"}``: ``invalid_grant`` for an unknown, revoked or other
app's refresh token, ``invalid_client`` for a wrong or missing secret (of a confidential
app) or a secret sent for a public one, ``unsupported_grant_type``, ``invalid_request``.
An access token past its lifetime, or expired early with ``expire_access_tokens()``,
gets 401 ``expired_access_token``; ``revoke_refresh_token`` also invalidates the access
tokens issued from it (``invalid_access_token``, like ``/2/auth/token/revoke``). The
static ``token`` / ``readonly_token`` never expire. ``requests["oauth2/token"]`` counts
token requests, ``requests["401 expired_access_token"]`` (etc.) the refused API requests; ``fail_token_next`` / ``drop_token_response_next`` inject faults there.

Every mutation and every read happens under one lock, so racing writers are linearised:
of eight concurrent ``add`` uploads to one path exactly one wins.

Control hooks (plain methods, thread-safe): ``throttle_next``, ``drop_response_next``,
``fail_next``, ``reset``, ``make_folder`` (alias ``mkdir``), ``files``, and for OAuth2
``add_refresh_token``, ``revoke_refresh_token``, ``expire_access_tokens``,
``fail_token_next``, ``drop_token_response_next``; ``requests`` counts requests per
route.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import itertools
import json
import os
import secrets
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trustme

__all__ = ["DropboxTestServer", "content_hash"]

MAX_UPLOAD = 150 * 1024 * 1024
_BLOCK = 4 * 1024 * 1024
_WRITE_ROUTES = {"files/upload", "files/delete_v2", "files/create_folder_v2"}
_CONTENT_ROUTES = {"files/upload", "files/download"}


def content_hash(data: bytes) -> str:
    """Dropbox's content hash: SHA-256 over the SHA-256 of each 4 MiB block."""
    overall = hashlib.sha256()
    for i in range(0, len(data), _BLOCK):
        overall.update(hashlib.sha256(data[i : i + _BLOCK]).digest())
    return overall.hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header_json(obj: Any) -> str:
    # Dropbox escapes every non-ASCII character and 0x7F in Dropbox-API-* headers.
    return json.dumps(obj, ensure_ascii=True).replace("\x7f", "\\u007f")


@dataclass
class _Node:
    kind: str  # "file" | "folder"
    display: str  # path_display
    id: str
    data: bytes = b""
    rev: str = ""
    hash: str = ""
    server_modified: str = ""
    client_modified: str = ""

    @property
    def name(self) -> str:
        return self.display.rsplit("/", 1)[-1]

    def metadata(self, *, tag: bool) -> dict[str, Any]:
        md: dict[str, Any] = {
            "name": self.name,
            "path_lower": self.display.lower(),
            "path_display": self.display,
            "id": self.id,
        }
        if self.kind == "file":
            md.update(
                rev=self.rev,
                size=len(self.data),
                content_hash=self.hash,
                server_modified=self.server_modified,
                client_modified=self.client_modified,
                is_downloadable=True,
            )
        if tag:
            md = {".tag": self.kind, **md}
        return md


class _RouteError(Exception):
    """A documented route error: 409 with ``error_summary`` and the structured ``error``."""

    def __init__(self, summary: str, error: dict[str, Any], status: int = 409) -> None:
        super().__init__(summary)
        self.summary = summary
        self.error = error
        self.status = status


class _BadInput(Exception):
    """HTTP 400 with a text body, as Dropbox answers malformed calls."""


class _OAuthError(Exception):
    """An OAuth2 error of ``/oauth2/token``: 400 + ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


def _lookup(route_tag: str, reason: str) -> _RouteError:
    """A LookupError nested under the route's union member (path / path_lookup)."""
    return _RouteError(f"{route_tag}/{reason}/.", {".tag": route_tag, route_tag: {".tag": reason}})


def _write_conflict(what: str) -> _RouteError:
    return _RouteError(
        f"path/conflict/{what}/.",
        {
            ".tag": "path",
            "reason": {".tag": "conflict", "conflict": {".tag": what}},
            "upload_session_id": "pid_upload_session:" + secrets.token_urlsafe(12),
        },
    )


def _upload_malformed() -> _RouteError:
    return _RouteError(
        "path/malformed_path/.",
        {
            ".tag": "path",
            "reason": {".tag": "malformed_path"},
            "upload_session_id": "pid_upload_session:" + secrets.token_urlsafe(12),
        },
    )


@dataclass
class _State:
    nodes: dict[str, _Node] = field(default_factory=dict)  # path_lower -> node ("" = root)
    # cursor -> (page size, entries still to send)
    cursors: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)


class DropboxTestServer:
    """Start with ``start()`` (or ``with``); point the SDK at it with ``env()``."""

    def __init__(
        self,
        *,
        token: str | None = None,
        readonly_token: str | None = None,
        page_size: int = 500,
        token_lifetime: float = 14400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token or "sl.test-" + secrets.token_urlsafe(24)
        self.token_lifetime = token_lifetime  # seconds an access token from /oauth2/token lives
        # what access tokens' lifetimes are measured on: a test may give (or set) a manual
        # clock it advances itself, so expiry never depends on how fast the machine is
        self.clock = clock
        self.readonly_token = readonly_token or "sl.readonly-" + secrets.token_urlsafe(24)
        self.page_size = page_size
        self.delete_mismatch_error = "conflict"  # or "not_found"
        self.requests: Counter[str] = Counter()
        self.port = 0
        self.ca_pem_path = ""
        self._lock = threading.Lock()
        self._state = _State()
        self._rev_prefix = secrets.token_hex(3)
        self._revs = itertools.count(1)
        self._ids = itertools.count(1)
        self._throttle = 0
        self._retry_after = 1
        self._drop = 0
        self._fail = 0
        self._fail_status = 503
        # refresh token -> (app key, app secret or None for a PKCE app, revoked)
        self._refresh_tokens: dict[str, tuple[str, str | None, bool]] = {}
        # issued access token -> (refresh token, expires at on self.clock)
        self._access_tokens: dict[str, tuple[str, float]] = {}
        self._token_fail = 0
        self._token_fail_status = 503
        self._token_drop = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> DropboxTestServer:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="dropbox-test-server-")
        self.ca_pem_path = os.path.join(self._tmpdir.name, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem_path)
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.socket = ctx.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        httpd.app = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"dropbox-test-server:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_all()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> DropboxTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What the SDK and ``backends/dropbox.py`` need to talk to this server.

        The SDK reads ``DROPBOX_API_HOST``/``DROPBOX_API_CONTENT_HOST`` once, when
        ``dropbox.session`` is first imported; the adapter re-reads them per client, so
        setting them later works for it (raw SDK clients need them set before import, or
        their ``_host_map`` patched).
        """
        return {
            "DROPBOX_API_HOST": self.host,
            "DROPBOX_API_CONTENT_HOST": self.host,
            "DROPBOX_TOKEN": self.token,
            "DROPBOX_CA_BUNDLE": self.ca_pem_path,
        }

    # -- control hooks --------------------------------------------------------------------

    def throttle_next(self, n: int, retry_after: int = 1) -> None:
        """The next ``n`` write requests get 429 too_many_write_operations + Retry-After."""
        with self._lock:
            self._throttle = n
            self._retry_after = retry_after

    def drop_response_next(self, n: int) -> None:
        """The next ``n`` uploads are applied, then the connection closes unanswered."""
        with self._lock:
            self._drop = n

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` requests (any route) get a 5xx without being applied."""
        with self._lock:
            self._fail = n
            self._fail_status = status

    def add_refresh_token(self, app_key: str, app_secret: str | None = None) -> str:
        """A new refresh token of app ``app_key`` (``app_secret=None``: a PKCE app)."""
        refresh = secrets.token_urlsafe(48)
        with self._lock:
            self._refresh_tokens[refresh] = (app_key, app_secret, False)
        return refresh

    def revoke_refresh_token(self, refresh_token: str) -> None:
        """Revoke it and every access token issued from it."""
        with self._lock:
            key, secret, _ = self._refresh_tokens[refresh_token]
            self._refresh_tokens[refresh_token] = (key, secret, True)
            for access in [a for a, (r, _) in self._access_tokens.items() if r == refresh_token]:
                del self._access_tokens[access]

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (401 expired_access_token)."""
        now = self.clock()
        with self._lock:
            for access, (refresh, _) in list(self._access_tokens.items()):
                self._access_tokens[access] = (refresh, now)

    def fail_token_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` token requests get a 5xx (no token issued)."""
        with self._lock:
            self._token_fail = n
            self._token_fail_status = status

    def drop_token_response_next(self, n: int) -> None:
        """The next ``n`` token requests issue a token, then close the connection unanswered."""
        with self._lock:
            self._token_drop = n

    def _auth(self, token: str) -> str | None:
        """``None`` for a valid token, else the 401 error tag (call with the lock held)."""
        if token in (self.token, self.readonly_token):
            return None
        issued = self._access_tokens.get(token)
        if issued is None:
            return "invalid_access_token"
        return "expired_access_token" if self.clock() >= issued[1] else None

    def oauth2_token(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        """``POST /oauth2/token`` (call without the lock); raises ``_OAuthError``."""
        if form.get("grant_type") != "refresh_token":
            if "grant_type" not in form:
                raise _OAuthError("invalid_request", 'No "grant_type" parameter.')
            raise _OAuthError("unsupported_grant_type", "only refresh_token is served here")
        refresh = form.get("refresh_token")
        if not refresh:
            raise _OAuthError("invalid_request", 'No "refresh_token" parameter.')
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if basic is not None:
            client_id, client_secret = basic
        if not client_id:
            raise _OAuthError("invalid_request", "No auth function available for given request")
        with self._lock:
            known = self._refresh_tokens.get(refresh)
            if known is None or known[2]:
                raise _OAuthError("invalid_grant", "refresh token is invalid or revoked")
            app_key, app_secret, _ = known
            if client_id != app_key:
                raise _OAuthError("invalid_grant", "refresh token was issued to another app")
            if client_secret != app_secret:  # wrong, missing, or sent for a PKCE app
                raise _OAuthError("invalid_client", "Invalid client_id or client_secret")
            access = "sl.u." + secrets.token_urlsafe(32)
            self._access_tokens[access] = (refresh, self.clock() + self.token_lifetime)
        return {
            "access_token": access,
            "token_type": "bearer",
            # Dropbox sends whole seconds; a test lifetime under that goes as it is
            "expires_in": int(life) if (life := self.token_lifetime) == int(life) else life,
        }

    def reset(self) -> None:
        """Forget every file, folder, cursor, pending hook and request count."""
        with self._lock:
            self._state = _State()
            self._throttle = self._drop = self._fail = 0
            self.requests.clear()

    def make_folder(self, path: str) -> None:
        """Create a folder (and its parents) directly, like ``create_folder_v2``."""
        with self._lock:
            self._mkdirs(self._split(path), len(self._split(path)))

    mkdir = make_folder

    def remove(self, path: str) -> None:
        """Delete a file or folder with everything below it (like ``rm -rf``)."""
        lower = path.lower()
        with self._lock:
            for key in [k for k in self._state.nodes if k == lower or k.startswith(lower + "/")]:
                del self._state.nodes[key]

    def exists(self, path: str) -> bool:
        with self._lock:
            return path.lower() in self._state.nodes

    def files(self) -> dict[str, bytes]:
        """Every file as ``path_display -> bytes`` (for assertions)."""
        with self._lock:
            return {n.display: n.data for n in self._state.nodes.values() if n.kind == "file"}

    # -- helpers (call with the lock held) ------------------------------------------------

    def _new_rev(self) -> str:
        return f"{self._rev_prefix}{next(self._revs):09x}"

    def _new_id(self) -> str:
        return f"id:{self._rev_prefix}{next(self._ids):08d}AAAA"

    @staticmethod
    def _split(path: str) -> list[str]:
        """``/A/b`` -> ``["A", "b"]``; raises ValueError for a malformed path."""
        if path == "":
            return []
        if not path.startswith("/") or path.endswith("/") or "//" in path:
            raise ValueError(path)
        parts = path[1:].split("/")
        if any(p in (".", "..") or p.strip() == "" for p in parts):
            raise ValueError(path)
        return parts

    def _mkdirs(self, parts: list[str], upto: int) -> str:
        """Create folders for ``parts[:upto]``; return the display path of the last one."""
        nodes = self._state.nodes
        display = ""
        for i in range(upto):
            lower = "/" + "/".join(parts[: i + 1]).lower()
            node = nodes.get(lower)
            if node is None:
                node = _Node("folder", f"{display}/{parts[i]}", self._new_id())
                nodes[lower] = node
            elif node.kind != "folder":
                raise _write_conflict("file_ancestor")
            display = node.display
        return display

    def _file_ancestor(self, parts: list[str]) -> bool:
        for i in range(1, len(parts)):
            node = self._state.nodes.get("/" + "/".join(parts[:i]).lower())
            if node is not None and node.kind != "folder":
                return True
        return False

    # -- routes ---------------------------------------------------------------------------

    def upload(self, arg: dict[str, Any], body: bytes) -> dict[str, Any]:
        path = arg.get("path")
        if not isinstance(path, str):
            raise _BadInput('missing "path"')
        mode_raw = arg.get("mode", "add")
        mode: Any
        rev: Any
        if isinstance(mode_raw, str):
            mode, rev = mode_raw, None
        elif isinstance(mode_raw, dict):
            mode, rev = mode_raw.get(".tag"), mode_raw.get("update")
        else:
            raise _BadInput('bad "mode"')
        if mode not in ("add", "overwrite", "update") or (mode == "update") != isinstance(rev, str):
            raise _BadInput(f'bad "mode": {mode_raw!r}')
        autorename = bool(arg.get("autorename", False))
        strict = bool(arg.get("strict_conflict", False))
        client_modified = arg.get("client_modified")
        if len(body) > MAX_UPLOAD:
            raise _RouteError("payload_too_large/.", {".tag": "payload_too_large"})
        digest = content_hash(body)
        if arg.get("content_hash") not in (None, digest):
            raise _RouteError("content_hash_mismatch/.", {".tag": "content_hash_mismatch"})
        try:
            parts = self._split(path)
        except ValueError:
            raise _upload_malformed() from None
        if not parts:
            raise _upload_malformed()
        with self._lock:
            nodes = self._state.nodes
            if self._file_ancestor(parts):
                raise _write_conflict("file_ancestor")
            lower = path.lower()
            current = nodes.get(lower)
            if current is not None and current.kind == "folder":
                raise _write_conflict("folder")
            if current is None:
                conflict = mode == "update" and strict
            else:
                identical = current.hash == digest
                if mode == "overwrite" or (mode == "update" and rev == current.rev):
                    conflict = False
                    if identical:  # (c): nothing is written, the old rev comes back
                        return current.metadata(tag=False)
                else:  # add, or update with a stale rev
                    conflict = True
                    if identical and not strict:  # (c) again, unless strict_conflict
                        return current.metadata(tag=False)
            if conflict:
                if not autorename:
                    raise _write_conflict("file")
                parts = self._autorename(parts, "conflicted copy" if mode == "update" else None)
                lower = "/" + "/".join(parts).lower()
                current = None
            parent_display = self._mkdirs(parts, len(parts) - 1)
            node = current or _Node("file", f"{parent_display}/{parts[-1]}", self._new_id())
            node.data = bytes(body)
            node.hash = digest
            node.rev = self._new_rev()
            node.server_modified = _now()
            node.client_modified = client_modified or node.server_modified
            nodes[lower] = node
            return node.metadata(tag=False)

    def _autorename(self, parts: list[str], label: str | None) -> list[str]:
        stem, dot, ext = parts[-1].rpartition(".")
        if not dot or not stem:
            stem, ext = parts[-1], ""
        else:
            ext = "." + ext
        for n in itertools.count(1):
            if label is None:
                name = f"{stem} ({n}){ext}"
            else:
                name = f"{stem} ({label}){ext}" if n == 1 else f"{stem} ({label} {n}){ext}"
            candidate = [*parts[:-1], name]
            if "/" + "/".join(candidate).lower() not in self._state.nodes:
                return candidate
        raise AssertionError("unreachable")

    def _find(self, path: Any, route_tag: str) -> _Node:
        if not isinstance(path, str):
            raise _BadInput('missing "path"')
        try:
            self._split(path)
        except ValueError:
            raise _lookup(route_tag, "malformed_path") from None
        node = self._state.nodes.get(path.lower())
        if node is None:
            raise _lookup(route_tag, "not_found")
        return node

    def download(self, arg: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        with self._lock:
            node = self._find(arg.get("path"), "path")
            if node.kind != "file":
                raise _lookup("path", "not_file")
            return node.metadata(tag=False), node.data

    def get_metadata(self, arg: dict[str, Any]) -> dict[str, Any]:
        if arg.get("path") == "":
            raise _BadInput("Metadata for the root folder is unsupported.")
        with self._lock:
            return self._find(arg.get("path"), "path").metadata(tag=True)

    def create_folder(self, arg: dict[str, Any]) -> dict[str, Any]:
        path = arg.get("path")
        if not isinstance(path, str):
            raise _BadInput('missing "path"')
        try:
            parts = self._split(path)
        except ValueError:
            parts = []
        if not parts:
            raise _RouteError(
                "path/malformed_path/.", {".tag": "path", "path": {".tag": "malformed_path"}}
            )
        with self._lock:
            if path.lower() in self._state.nodes or self._file_ancestor(parts):
                what = (
                    "file_ancestor"
                    if self._file_ancestor(parts)
                    else (self._state.nodes[path.lower()].kind)
                )
                raise _RouteError(
                    f"path/conflict/{what}/.",
                    {".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": what}}},
                )
            self._mkdirs(parts, len(parts))
            return {"metadata": self._state.nodes[path.lower()].metadata(tag=False)}

    def delete(self, arg: dict[str, Any]) -> dict[str, Any]:
        parent_rev = arg.get("parent_rev")
        with self._lock:
            node = self._find(arg.get("path"), "path_lookup")
            if parent_rev is not None:
                if node.kind != "file":
                    raise _lookup("path_lookup", "not_file")
                if node.rev != parent_rev:
                    if self.delete_mismatch_error == "not_found":
                        raise _lookup("path_lookup", "not_found")
                    raise _RouteError(
                        "path_write/conflict/file/.",
                        {
                            ".tag": "path_write",
                            "path_write": {".tag": "conflict", "conflict": {".tag": "file"}},
                        },
                    )
            lower = node.display.lower()
            for key in [k for k in self._state.nodes if k == lower or k.startswith(lower + "/")]:
                del self._state.nodes[key]
            return {"metadata": node.metadata(tag=True)}

    def list_folder(self, arg: dict[str, Any]) -> dict[str, Any]:
        path = arg.get("path")
        limit = arg.get("limit")
        if limit is not None and not (isinstance(limit, int) and 1 <= limit <= 2000):
            raise _BadInput('"limit" must be 1..2000')
        with self._lock:
            if path == "":
                base = ""
                entries = []
            else:
                node = self._find(path, "path")
                if node.kind != "folder":
                    raise _lookup("path", "not_folder")
                base = node.display.lower()
                # A recursive listing includes the listed folder itself.
                entries = [node.metadata(tag=True)] if arg.get("recursive") else []
            depth = base.count("/") + 1
            for lower, node in self._state.nodes.items():
                if not lower.startswith(base + "/"):
                    continue
                if not arg.get("recursive") and lower.count("/") != depth:
                    continue
                entries.append(node.metadata(tag=True))
            cursor = "AAE" + secrets.token_urlsafe(24)
            self._state.cursors[cursor] = (limit or self.page_size, entries)
            return self._page(cursor)

    def list_folder_continue(self, arg: dict[str, Any]) -> dict[str, Any]:
        cursor = arg.get("cursor")
        if not isinstance(cursor, str):
            raise _BadInput('missing "cursor"')
        with self._lock:
            if cursor not in self._state.cursors:
                raise _RouteError("reset/.", {".tag": "reset"})
            return self._page(cursor)

    def _page(self, cursor: str) -> dict[str, Any]:
        size, remaining = self._state.cursors.pop(cursor)
        page, rest = remaining[:size], remaining[size:]
        # Real cursors stay valid forever (then report changes); this one keeps the rest of
        # the snapshot and the page size (``limit`` holds for the continuations too), and an
        # exhausted cursor answers with an empty, final page.
        nxt = "AAE" + secrets.token_urlsafe(24)
        self._state.cursors[nxt] = (size, rest)
        return {"entries": page, "cursor": nxt, "has_more": bool(rest)}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    app: DropboxTestServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
            request.settimeout(30)
            request.do_handshake()
            request.settimeout(None)
            super().finish_request(request, client_address)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(request)

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-request are part of the tests


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._read_body()
        self._text(405, "Use POST.")

    def do_POST(self) -> None:
        app = self.server.app
        body = self._read_body()
        if self.path.split("?", 1)[0] == "/oauth2/token":
            self._oauth2_token(body)
            return
        route = self.path.split("?", 1)[0].removeprefix("/2/")
        with app._lock:
            app.requests[route] += 1
        handlers = {
            "files/upload": None,
            "files/download": None,
            "files/get_metadata": app.get_metadata,
            "files/list_folder": app.list_folder,
            "files/list_folder/continue": app.list_folder_continue,
            "files/delete_v2": app.delete,
            "files/create_folder_v2": app.create_folder,
        }
        if route not in handlers:
            self._text(400, f"Unknown API function: {route!r}")
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            self._text(
                400,
                f'Error in call to API function "{route}": Must provide HTTP header '
                '"Authorization" or URL parameter "authorization".',
            )
            return
        token = auth[len("Bearer ") :]
        with app._lock:
            refused = app._auth(token)
            if refused is not None:
                app.requests[f"401 {refused}"] += 1
        if refused is not None:
            self._json(401, {"error_summary": f"{refused}/..", "error": {".tag": refused}})
            return
        if token == app.readonly_token and route in _WRITE_ROUTES:
            self._json(
                401,
                {
                    "error_summary": "missing_scope/.",
                    "error": {".tag": "missing_scope", "required_scope": "files.content.write"},
                },
            )
            return
        with app._lock:
            fail = app._fail > 0
            if fail:
                app._fail -= 1
            throttle = route in _WRITE_ROUTES and app._throttle > 0
            if throttle and not fail:
                app._throttle -= 1
            drop = False
            if route == "files/upload" and app._drop > 0 and not fail and not throttle:
                app._drop -= 1
                drop = True
            fail_status, retry_after = app._fail_status, app._retry_after
        if fail:
            self._text(fail_status, "Internal Server Error (injected)")
            return
        if throttle:
            self._json(
                429,
                {
                    "error_summary": "too_many_write_operations/.",
                    "error": {
                        "reason": {".tag": "too_many_write_operations"},
                        "retry_after": retry_after,
                    },
                },
                headers={"Retry-After": str(retry_after)},
            )
            return
        try:
            if route in _CONTENT_ROUTES:
                try:
                    arg = json.loads(self.headers.get("Dropbox-API-Arg") or "")
                except ValueError:
                    raise _BadInput("Dropbox-API-Arg is not valid JSON") from None
                if not isinstance(arg, dict):
                    raise _BadInput("Dropbox-API-Arg must be a JSON object")
                if route == "files/upload":
                    ctype = self.headers.get("Content-Type", "")
                    if ctype.split(";")[0].strip() != "application/octet-stream":
                        raise _BadInput(f'Bad HTTP "Content-Type" header: {ctype!r}.')
                    result = app.upload(arg, body)
                    if drop:
                        self.close_connection = True
                        return  # applied, but the reply is lost
                    self._json(200, result)
                else:
                    md, data = app.download(arg)
                    self._send(
                        200,
                        data,
                        "application/octet-stream",
                        {"Dropbox-API-Result": _header_json(md)},
                    )
                return
            try:
                arg = json.loads(body or b"null")
            except ValueError:
                raise _BadInput("request body is not valid JSON") from None
            if not isinstance(arg, dict):
                raise _BadInput("request body must be a JSON object")
            handler = handlers[route]
            assert handler is not None
            self._json(200, handler(arg))
        except _RouteError as err:
            self._json(err.status, {"error_summary": err.summary, "error": err.error})
        except _BadInput as err:
            self._text(400, f'Error in call to API function "{route}": {err}')

    def _oauth2_token(self, body: bytes) -> None:
        app = self.server.app
        with app._lock:
            app.requests["oauth2/token"] += 1
            fail = app._token_fail > 0
            if fail:
                app._token_fail -= 1
            drop = not fail and app._token_drop > 0
            if drop:
                app._token_drop -= 1
            fail_status = app._token_fail_status
        if fail:
            self._text(fail_status, "Internal Server Error (injected)")
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            self._json(400, {"error": "invalid_request", "error_description": "not a form"})
            return
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        basic = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            basic = (user, password)
        try:
            answer = app.oauth2_token(form, basic)
        except _OAuthError as err:
            self._json(400, {"error": err.error, "error_description": err.description})
            return
        if drop:
            self.close_connection = True
            return  # a token was issued, but the reply is lost
        self._json(200, answer)

    # -- plumbing -------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        chunks = []
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Dropbox-Request-Id", secrets.token_hex(16))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")


if __name__ == "__main__":  # a manual smoke run: print the env and serve until Ctrl-C
    with DropboxTestServer() as srv:
        for k, v in srv.env().items():
            print(f"export {k}={v}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
