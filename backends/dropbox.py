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

- Credentials, one of two kinds (empty values count as unset):

  - ``DROPBOX_REFRESH_TOKEN`` with ``DROPBOX_APP_KEY`` and, for a confidential app,
    ``DROPBOX_APP_SECRET`` (an app authorised with PKCE, a public app, has no secret):
    credentials that last. They are the SDK's ``oauth2_refresh_token=``, ``app_key=``,
    ``app_secret=``; the short-lived access tokens (about 4 hours) are fetched from
    ``/oauth2/token`` when first needed, again when the current one is due (within 5
    minutes of its expiry, or the last quarter of a shorter lifetime), and at once when
    Dropbox answers ``expired_access_token`` or ``invalid_access_token`` (expired or
    revoked early). All clients of one refresh token in a process share its access token.
    See ``_Credentials`` and ``_Client`` below for the threads and the in-flight writes.
  - ``DROPBOX_TOKEN``: one OAuth2 access token. Dropbox has issued only short-lived
    ones (about 4 hours) to new apps since 2021, so this suits short runs and old
    long-lived tokens; an expired one is ``PermissionDeniedError`` saying so.

  Precedence: when ``DROPBOX_REFRESH_TOKEN`` is set it wins and ``DROPBOX_TOKEN`` is
  ignored (never used as a first access token either: its expiry is unknown, and it may
  belong to another app or account than the refresh token); ``DROPBOX_REFRESH_TOKEN``
  without ``DROPBOX_APP_KEY`` is a ``ConfigError``, not a fallback to ``DROPBOX_TOKEN``.
  Arguments of ``make_client`` (``token=``, ``refresh_token=``...) beat the environment.
  Either way the token needs scopes ``files.content.write`` (writes) and
  ``files.content.read`` / ``files.metadata.read`` (reads, lists). Whitespace around a
  credential (a CRLF ``.env`` file) is stripped; whitespace, a control or a non-ASCII
  character inside one is a ``ConfigError`` naming the variable (requests would refuse the
  header with an error quoting it). No message ever carries a token or the app secret:
  native error texts (an HTTP 400 body quoting the ``Authorization`` header...) have the
  tokens and any ``Bearer ...`` value redacted, and a native error that quoted one is not
  kept as the cause.
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
import collections
import contextlib
import copy
import functools
import math
import os
import re
import threading
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
from passivepaxos.retry import retry_after_seconds
from passivepaxos.runtime import REAL, Runtime
from passivepaxos.types import ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL

__all__ = ["DropboxBackend", "make_client", "open_backend"]

_NAME = "dropbox"
_MAX_BYTES = capabilities_for(_NAME).max_object_bytes or 150 * 1024 * 1024
_REV = re.compile(r"[0-9a-f]{9,}\Z")
# "Bearer <token>" in a text (an error body quoting the Authorization header): the value up
# to a quote or the end of the line
_BEARER = re.compile(r"\bBearer\b[^\"'\r\n]*", re.IGNORECASE)
# what a credential may hold: printable ASCII without spaces (OAuth2 tokens, app keys and
# secrets do), once the whitespace around it is stripped
_CREDENTIAL = re.compile(r"[\x21-\x7e]*\Z")
_DENIED_TAGS = {"no_write_permission", "access_restricted", "team_folder", "restricted_content"}
_UNDELETE_ROUNDS = 5
# Refresh an access token this long before it expires (the SDK's TOKEN_EXPIRATION_BUFFER),
# but never earlier than the last quarter of its lifetime (a short-lived test token).
_REFRESH_MARGIN = 300.0
_REFRESH_FRACTION = 0.25
_OFFLINE_HINT = (
    "get a new refresh token with the offline access flow (token_access_type=offline, "
    "see docs/storage.md)"
)

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


class _RefreshFailed(Exception):
    """A token refresh that failed, as the error ``DropboxBackend._call`` raises (with the
    store's URL and key filled in there). Its message never carries a secret."""

    def __init__(
        self, cls: type[StoreError], message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.cls = cls
        self.message = message
        self.retry_after = retry_after

    def to_error(self, url: str, key: str | None) -> StoreError:
        if issubclass(self.cls, ThrottledError):
            return self.cls(self.message, retry_after=self.retry_after, url=url, key=key)
        return self.cls(self.message, url=url, key=key)


class _Credentials:
    """The access token that every client of one refresh token in this process (their
    deadline-bound copies, the threads using them) shares, and how a new one is fetched.

    A static token (``DROPBOX_TOKEN``) is used as it is. With a refresh token the access
    token is fetched from ``/oauth2/token`` (the SDK's ``refresh_access_token`` request:
    ``grant_type=refresh_token``, ``refresh_token``, ``client_id`` and, for a confidential
    app, ``client_secret``; made here, not by the SDK, because the SDK posts to the API
    host it froze at import, measures expiry on the wall clock and lets every thread
    refresh at once):

    - ``current``: the token to send now. When it is due (within the margin of its expiry)
      one thread refreshes while the others go on with the still valid token instead of
      waiting; once it has expired (or before the first one) they wait for that one
      refresh, so a due token costs one token request however many threads want it.
    - ``renew(stale)``: Dropbox answered ``expired_access_token`` to ``stale``. If another
      thread has already replaced it, its replacement is used; else one refresh.

    The refresh is a network call, so the lock held across it is the runtime's
    (``passivepaxos.runtime``: a lock that may be held across a request is a blocking
    wait, which goes through the runtime), and a waiter gives up after one request's
    timeout. Expiry is measured on the runtime's monotonic clock from *before* the
    request, so a slow answer only makes the token look older than it is.
    """

    def __init__(
        self,
        *,
        token: str | None,
        refresh_token: str | None,
        app_key: str | None,
        app_secret: str | None,
        api_host: str,
        runtime: Runtime,
    ) -> None:
        self._refresh_token = refresh_token
        self._app_key = app_key
        self._app_secret = app_secret
        self._url = f"https://{api_host}/oauth2/token"
        self._clock = runtime.monotonic
        self._lock = runtime.lock()
        # (token, refresh at, expires at): replaced as a whole, read without the lock
        self._state: tuple[str | None, float, float] = (
            (None, -math.inf, -math.inf) if refresh_token else (token, math.inf, math.inf)
        )
        self.refreshes = 0  # token requests sent (for tests and diagnostics)
        self.renewals = 0  # ... of them after Dropbox refused a token (renew)

    def __repr__(self) -> str:  # never the tokens or the secret
        kind = "refresh token" if self.refreshable else "access token"
        return f"<dropbox credentials: {kind}>"

    @property
    def refreshable(self) -> bool:
        return bool(self._refresh_token)

    @property
    def token(self) -> str | None:
        """The access token in use now (``None`` before the first refresh)."""
        return self._state[0]

    def current(self, session: requests.Session, timeout: tuple[float, float]) -> str:
        token, refresh_at, expires_at = self._state
        now = self._clock()
        if token is not None and now < refresh_at:
            return token
        if token is not None and now < expires_at:
            # Due but still valid: one thread refreshes, the others keep using this one.
            if not self._lock.acquire(blocking=False):
                return token
        else:
            self._wait(timeout)
        try:
            token, refresh_at, _ = self._state
            if token is not None and self._clock() < refresh_at:
                return token  # refreshed by the thread we waited for
            return self._refresh(session, timeout)
        finally:
            self._lock.release()

    def renew(
        self, stale: str | None, session: requests.Session, timeout: tuple[float, float]
    ) -> str:
        self._wait(timeout)
        try:
            token, _, expires_at = self._state
            if token is not None and token != stale and self._clock() < expires_at:
                return token  # another thread has already replaced the refused token
            self.renewals += 1
            return self._refresh(session, timeout)
        finally:
            self._lock.release()

    def _wait(self, timeout: tuple[float, float]) -> None:
        if not self._lock.acquire(timeout=max(0.001, sum(timeout))):
            raise _RefreshFailed(
                TransientError, "timed out waiting for another thread's Dropbox token refresh"
            )

    def scrub(self, text: str) -> str:
        """``text`` without any secret: the tokens, the app secret and whatever follows a
        ``Bearer`` (Dropbox quotes a malformed Authorization header back in its 400s)."""
        for secret in (self._state[0], self._refresh_token, self._app_secret):
            if secret:
                text = text.replace(secret, "***")
        return _BEARER.sub("Bearer ***", text)

    def _scrub(self, text: str) -> str:
        return self.scrub(text)[:300]

    def _refresh(self, session: requests.Session, timeout: tuple[float, float]) -> str:
        """One token request (with the lock held); the new token, or ``_RefreshFailed``."""
        assert self._refresh_token and self._app_key
        body = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": self._app_key,
        }
        if self._app_secret:
            body["client_secret"] = self._app_secret
        sent = self._clock()
        self.refreshes += 1
        try:
            resp = session.post(self._url, data=body, timeout=timeout)
            status = resp.status_code
        except requests.exceptions.RequestException as exc:
            # Nothing to undo: a refresh whose answer was lost only leaves an access token
            # unused at Dropbox; the refresh token stays valid, so trying again is safe.
            raise _RefreshFailed(
                TransientError,
                f"refreshing the Dropbox access token failed: {type(exc).__name__}: "
                f"{self._scrub(str(exc))}",
            ) from None
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status == 200:
            token, expires_in = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not token:
                raise _RefreshFailed(
                    TransientError, "Dropbox's token endpoint answered without an access_token"
                )
            if isinstance(expires_in, int | float) and expires_in > 0:
                lifetime = float(expires_in)
                expires_at = sent + lifetime
                refresh_at = expires_at - min(_REFRESH_MARGIN, lifetime * _REFRESH_FRACTION)
            else:  # no expiry given: use it until Dropbox says it expired
                expires_at = refresh_at = math.inf
            self._state = (token, refresh_at, expires_at)
            return token
        error = answer.get("error")
        what = error if isinstance(error, str) else f"HTTP {status}"
        described = answer.get("error_description")
        if isinstance(described, str) and described:
            what += f": {described}"
        what = self._scrub(what)
        if status == 429:
            after = resp.headers.get("Retry-After")
            raise _RefreshFailed(
                ThrottledError,
                f"Dropbox throttled the token refresh ({what})",
                retry_after=retry_after_seconds(after),
            )
        if status >= 500:
            raise _RefreshFailed(
                TransientError, f"Dropbox's token endpoint failed while refreshing ({what})"
            )
        if error in ("invalid_client", "unauthorized_client"):
            secret = "DROPBOX_APP_SECRET" if self._app_secret else "no DROPBOX_APP_SECRET"
            raise _RefreshFailed(
                PermissionDeniedError,
                f"Dropbox refused the app credentials (DROPBOX_APP_KEY={self._app_key!r}, "
                f"{secret}) when refreshing with DROPBOX_REFRESH_TOKEN ({what}); a "
                "confidential app needs its DROPBOX_APP_SECRET, a PKCE (public) app none",
            )
        if error == "invalid_grant":
            raise _RefreshFailed(
                PermissionDeniedError,
                f"Dropbox refused DROPBOX_REFRESH_TOKEN ({what}): it is malformed, revoked, "
                f"or was issued to another app than DROPBOX_APP_KEY; {_OFFLINE_HINT}",
            )
        raise _RefreshFailed(
            PermissionDeniedError,
            f"Dropbox refused to refresh the access token with DROPBOX_REFRESH_TOKEN ({what})",
        )


class _Client(dropbox.Dropbox):  # type: ignore[misc]
    """``dropbox.Dropbox`` whose access token comes from shared ``_Credentials``.

    The SDK's own retry loop is replaced (its 5xx and 429 retries are off here anyway,
    ``max_retries_on_error=0``): what remains of it is the resend after an expired token,
    spelled out in ``request_json_string_with_retry`` below. Copies (``clone``, made per
    request under a deadline) share the credentials, so a token refreshed by one is used
    by all.
    """

    _creds: _Credentials

    def clone(self, *args: Any, **kwargs: Any) -> Any:
        twin = super().clone(*args, **kwargs)
        twin._creds = self._creds
        return twin

    def _budget(self, timeout: Any = None) -> tuple[float, float]:
        t = timeout if timeout is not None else self._timeout
        if isinstance(t, int | float):
            return (float(t), float(t))
        if isinstance(t, tuple) and len(t) == 2:
            return (float(t[0]), float(t[1]))
        return (5.0, 30.0)

    def check_and_refresh_access_token(self) -> None:
        """The SDK calls this before every request: refresh if the token is due."""
        self._creds.current(self._session, self._budget())

    def refresh_access_token(self, host: Any = None, scope: Any = None) -> None:
        """Fetch a new access token now (the host is ours, see ``_Credentials``)."""
        if self._creds.refreshable:
            self._creds.renew(self._creds.token, self._session, self._budget())

    def request_json_string_with_retry(
        self,
        host: str,
        route_name: str,
        route_style: str,
        request_json_arg: Any,
        auth_type: str,
        request_binary: Any,
        timeout: Any = None,
        extra_headers: Any = None,
    ) -> Any:
        args = (host, route_name, route_style, request_json_arg, auth_type, request_binary)
        creds = self._creds
        token = creds.current(self._session, self._budget(timeout))
        try:
            return self._send(token, args, timeout, extra_headers)
        except AuthError as exc:
            if not (creds.refreshable and exc.error is not None):
                raise
            # expired_access_token: the SDK's case. invalid_access_token too: the access
            # token was revoked (alone, or with the refresh token: then the refresh says
            # invalid_grant, naming DROPBOX_REFRESH_TOKEN, instead of a bare 401).
            if not (exc.error.is_expired_access_token() or exc.error.is_invalid_access_token()):
                raise
        # Sending the request again is safe here, for a conditional write too. A 401
        # expired_access_token is Dropbox's complete answer to *this* request, given by the
        # authentication check that runs before any route does: nothing was written, so the
        # identical request, with a fresh token, is the first attempt at the write, and
        # its own answer (success, conflict, a lost response...) is the write's answer.
        # Once only: a second 401 right after a refresh is an error (PermissionDenied).
        # What is NOT resent here is a request whose answer never arrived (connection
        # reset, timeout, a truncated reply): it may have been applied, so it surfaces as
        # a requests exception -> TransientError, and the store layer reads the key back
        # (passivepaxos.store) instead of sending blindly. A refresh that fails after the
        # 401 raises _RefreshFailed: the write was not applied, yet a transient one still
        # goes to the store layer as "unclear" (it cannot be told apart there), which
        # costs a read-back but is never wrong.
        token = creds.renew(token, self._session, self._budget(timeout))
        return self._send(token, args, timeout, extra_headers)

    def _send(self, token: str | None, args: tuple[Any, ...], timeout: Any, headers: Any) -> Any:
        # A copy carries this request's token: the client itself is shared by threads,
        # and each must know which token its own 401 was about.
        sender = copy.copy(self)
        sender._oauth2_access_token = token
        return dropbox.Dropbox.request_json_string(
            sender, *args, timeout=timeout, extra_headers=headers
        )


def make_client(
    *,
    token: str | None = None,
    refresh_token: str | None = None,
    app_key: str | None = None,
    app_secret: str | None = None,
    ca_bundle: str | None = None,
    max_connections: int = 32,
    runtime: Runtime | None = None,
) -> Any:
    """A ``dropbox.Dropbox`` configured from the environment (see the module docstring),
    with the SDK's internal retries off. Arguments override the environment: given
    ``token`` or ``refresh_token``, no credential is read from it."""
    token = _credential("make_client(token=...)", token)
    refresh_token = _credential("make_client(refresh_token=...)", refresh_token)
    app_key = _credential("make_client(app_key=...)", app_key)
    app_secret = _credential("make_client(app_secret=...)", app_secret)
    if not (token or refresh_token):
        refresh_token = _env_credential("DROPBOX_REFRESH_TOKEN")
        if refresh_token:
            app_key = app_key or _env_credential("DROPBOX_APP_KEY")
            app_secret = app_secret or _env_credential("DROPBOX_APP_SECRET")
        else:
            token = _env_credential("DROPBOX_TOKEN")
    if refresh_token:
        token = None  # the refresh token wins (see the module docstring)
        if not app_key:
            raise ConfigError(
                "DROPBOX_REFRESH_TOKEN needs DROPBOX_APP_KEY, the key of the app it was issued "
                "to (and DROPBOX_APP_SECRET for a confidential app)"
            )
    elif not token:
        raise ConfigError(
            "dropbox:// needs credentials: set DROPBOX_REFRESH_TOKEN with DROPBOX_APP_KEY "
            "(and DROPBOX_APP_SECRET for a confidential app), or DROPBOX_TOKEN, an access "
            "token (scopes files.content.write, files.content.read, files.metadata.read)"
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
    client = _Client(
        oauth2_access_token=token,
        oauth2_refresh_token=refresh_token,
        app_key=app_key,
        app_secret=app_secret,
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
        user_agent="passivepaxos",
        session=session,
        timeout=timeout,
    )
    hosts = _hosts()
    host_map = getattr(client, "_host_map", None)
    if isinstance(host_map, dict):  # the SDK froze its hosts at import time; refresh them
        host_map.update(hosts)
    client._creds = _credentials(token, refresh_token, app_key, app_secret, hosts["api"], runtime)
    return client


def _env_credential(variable: str) -> str | None:
    return _credential(variable, os.environ.get(variable))


def _credential(what: str, value: str | None) -> str | None:
    """A credential with the whitespace around it stripped (a CRLF ``.env`` file), empty as
    ``None``. Whitespace, a control or a non-ASCII character inside it is a ``ConfigError``
    naming ``what`` (the variable), never the value: requests would refuse it in the
    Authorization header with an error quoting the header."""
    value = (value or "").strip()
    if not _CREDENTIAL.match(value):
        raise ConfigError(
            f"{what} holds whitespace, a control character or a non-ASCII character inside "
            "it; a Dropbox credential is printable ASCII without spaces (check how it was "
            "copied or quoted)"
        )
    return value or None


# Every client of one refresh token (one app, one API host) in this process shares its
# access token: a process opening many stores, logs and backends fetches one token per
# lifetime, not one per client. Bounded; a plain lock, held only around the dict.
_shared: collections.OrderedDict[tuple[Any, ...], _Credentials] = collections.OrderedDict()
_shared_lock = threading.Lock()
_SHARED_MAX = 16


def _credentials(
    token: str | None,
    refresh_token: str | None,
    app_key: str | None,
    app_secret: str | None,
    api_host: str,
    runtime: Runtime | None,
) -> _Credentials:
    runtime = runtime or REAL

    def make() -> _Credentials:
        return _Credentials(
            token=token,
            refresh_token=refresh_token,
            app_key=app_key,
            app_secret=app_secret,
            api_host=api_host,
            runtime=runtime,
        )

    if not refresh_token:
        return make()
    key = (refresh_token, app_key, app_secret, api_host, id(runtime))
    with _shared_lock:
        creds = _shared.get(key)
        if creds is None:
            creds = _shared[key] = make()
        _shared.move_to_end(key)
        while len(_shared) > _SHARED_MAX:
            _shared.popitem(last=False)
        return creds


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
                summary += f" ({self._scrub(exc.user_message_text)})"
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
            if "expired_access_token" in tags:
                creds = getattr(self._client, "_creds", None)
                detail += (
                    " again, right after a refresh with DROPBOX_REFRESH_TOKEN"
                    if creds is not None and creds.refreshable
                    else " (Dropbox access tokens last about 4 hours: set DROPBOX_REFRESH_TOKEN "
                    "and DROPBOX_APP_KEY for credentials that last, see docs/storage.md)"
                )
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
            body = self._scrub(str(exc.body or getattr(exc, "error", "") or ""))[:300]
            return StoreError(f"Dropbox: HTTP {exc.status_code}: {body}", **where)
        if isinstance(exc, requests.exceptions.InvalidHeader):
            # requests refused a header value, and its message quotes it: never copy it (the
            # Authorization header carries the token). make_client refuses such credentials;
            # this is the same mistake arriving another way (a token from the token endpoint).
            return ConfigError(
                f"{self.url}: the Dropbox credentials do not fit in an HTTP header (whitespace "
                "or a control character in the access token?)"
            )
        if isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE" in str(exc).upper():
            return StoreError(
                f"TLS verification failed ({self._scrub(str(exc))}); set DROPBOX_CA_BUNDLE if "
                "a proxy or test server uses its own CA",
                **where,
            )
        if isinstance(exc, requests.exceptions.RequestException):
            # connection refused/reset/lost response, timeouts, truncated bodies, TLS
            # sessions torn down mid-handshake
            return TransientError(
                f"connection problem: {type(exc).__name__}: {self._scrub(str(exc))}", **where
            )
        if isinstance(exc, ValidationError):
            return StoreError(f"Dropbox SDK rejected an argument: {self._scrub(str(exc))}", **where)
        if isinstance(exc, DropboxException):
            return StoreError(f"Dropbox: {self._scrub(repr(exc))}", **where)
        return exc if isinstance(exc, Exception) else StoreError(repr(exc), **where)

    def _scrub(self, text: str) -> str:
        """``text`` without the current access token (or any other secret, or a ``Bearer``
        value): what a native error says goes through here before it reaches a message."""
        creds = getattr(self._client, "_creds", None)
        if isinstance(creds, _Credentials):
            return creds.scrub(text)
        return _BEARER.sub("Bearer ***", text)

    def _call(self, fn: Callable[[], T], key: str | None, mode: PutMode | None = None) -> T:
        try:
            return fn()
        except _RefreshFailed as exc:
            raise exc.to_error(self.url, key) from None
        except (DropboxException, requests.exceptions.RequestException, ValidationError) as exc:
            err = self._translate(exc, key, mode)
            native = f"{exc!s} {exc!r} {getattr(exc, 'body', '')}"
            if self._scrub(native) != native:
                raise err from None  # the native error quotes a secret: not even as a cause
            raise err from exc

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
