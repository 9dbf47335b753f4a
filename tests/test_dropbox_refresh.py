"""Dropbox credentials that last: refresh tokens, through the official SDK over HTTPS.

Dropbox has issued only short-lived access tokens (about 4 hours) to new apps since 2021,
so ``backends/dropbox.py`` takes ``DROPBOX_REFRESH_TOKEN`` + ``DROPBOX_APP_KEY`` (+
``DROPBOX_APP_SECRET`` for a confidential app) and fetches access tokens from
``/oauth2/token`` itself. These tests run their own ``DropboxTestServer`` with access
tokens that live two seconds (the shared session server's tokens never expire), and
check: refreshes before expiry over many lifetimes, the refresh-once-and-resend after an
``expired_access_token`` 401 (safe: nothing was written), a lost response that stays
ambiguous (read back by the store layer, never resent blindly), clear errors for a revoked
refresh token and a wrong secret that name the variable and never print a secret, public
(PKCE) apps, the precedence of the variables, and no refresh storm from many threads.

Time is the test's: the server measures token lifetimes, and every Dropbox client made in
a test its credentials' expiry, on one manual clock (``tests.clocked.Stepped``) that only
the test moves. So no test depends on how fast the machine is (``CONTRIBUTING``:
performance targets live in the benchmark), and the counts asserted are exact.
"""

from __future__ import annotations

import math
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("dropbox")
pytest.importorskip("trustme")

import requests

from passivepaxos.deadline import request_budget
from passivepaxos.errors import (
    AlreadyExistsError,
    ConfigError,
    PermissionDeniedError,
    TransientError,
)
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from passivepaxos.store import Store
from passivepaxos.types import PutMode
from passivepaxos.urls import backend_module, open_backend
from tests.clocked import Stepped
from tests.servers.dropbox_server import DropboxTestServer

dbmod = backend_module("dropbox")

# Seconds of the test's manual clock an access token of this file's server lives (the
# clock moves only when a test moves it): short, so that tokens are refreshed in the last
# quarter of their lifetime, the margin for a lifetime under 20 minutes (a real one, of 4
# hours, is refreshed in its last 5 minutes). A binary fraction: the times stay exact.
LIFETIME = 2.0
APP_KEY = "app-key-confidential"
APP_SECRET = "app-secret-" + uuid.uuid4().hex
PUBLIC_KEY = "app-key-pkce"
_CRED_VARS = ("DROPBOX_TOKEN", "DROPBOX_REFRESH_TOKEN", "DROPBOX_APP_KEY", "DROPBOX_APP_SECRET")


@pytest.fixture(scope="module")
def server() -> Iterator[DropboxTestServer]:
    srv = DropboxTestServer(token_lifetime=LIFETIME).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def clock(server: DropboxTestServer, monkeypatch: pytest.MonkeyPatch) -> Stepped:
    """The test's time: a manual clock (``clock.t``) on which the server measures access
    token lifetimes and every Dropbox client made in the test measures their expiry.

    Clients opened from a URL (``open_backend``, ``Log.open``, ``init_log``) get the
    default runtime, ``dbmod.REAL``; here that is a runtime whose monotonic clock is this
    one (threads and locks stay the real ones: only time is the test's)."""
    rt = Stepped(start=1000.0)
    monkeypatch.setattr(server, "clock", rt.monotonic)
    monkeypatch.setattr(dbmod, "REAL", rt)
    # a refactor that stops taking the default from there must fail here, not go flaky
    probe = dbmod._credentials("x", None, None, None, server.host, None)
    assert probe._clock == rt.monotonic, "Dropbox credentials no longer use dbmod.REAL"
    return rt


@pytest.fixture
def env(
    server: DropboxTestServer, clock: Stepped, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., str]]:
    """Point the adapter at this file's server, on the test's ``clock``; ``env(...)`` sets
    the credential variables (all four cleared first) and returns a fresh folder's URL."""
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)

    monkeypatch.setattr(server, "token_lifetime", LIFETIME)  # a test may change it

    def setup(**creds: str | None) -> str:
        for name in _CRED_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in creds.items():
            if value is not None:
                monkeypatch.setenv(name, value)
        root = f"/refresh/t-{uuid.uuid4().hex[:10]}"
        server.make_folder(root)
        return f"dropbox://{root}"

    yield setup
    # a failed test must not leave a fault pending for the next one
    server.fail_token_next(0)
    server.drop_token_response_next(0)
    server.drop_response_next(0)


def _confidential(server: DropboxTestServer, env: Callable[..., str]) -> tuple[str, str]:
    refresh = server.add_refresh_token(APP_KEY, APP_SECRET)
    url = env(DROPBOX_REFRESH_TOKEN=refresh, DROPBOX_APP_KEY=APP_KEY, DROPBOX_APP_SECRET=APP_SECRET)
    return refresh, url


def _count(server: DropboxTestServer, what: str) -> int:
    return server.requests[what]


def _due(lifetime: float) -> float:
    """When a token is due, after it was fetched: the adapter's documented rule (5 minutes
    before its expiry, or the last quarter of a shorter lifetime)."""
    return lifetime - min(300.0, lifetime / 4)


def _full_text(exc: BaseException) -> str:
    """The message and the whole printed traceback, causes and contexts included."""
    return str(exc) + "".join(traceback.format_exception(exc))


# -- refreshing ---------------------------------------------------------------------------------


def test_log_appends_across_many_token_lifetimes(
    server: DropboxTestServer, env: Callable[..., str], clock: Stepped
) -> None:
    """A log append loop spanning five token lifetimes, the clock moving an eighth of a
    lifetime between appends (and once idling past a whole one): a token is replaced
    exactly when it is due (the last quarter of its lifetime) or expired, before a request
    is sent with it, not after Dropbox refuses one; one token request per due point, no
    401 ever; every append works."""
    _, url = _confidential(server, env)
    tokens0, expired0 = _count(server, "oauth2/token"), _count(server, "401 expired_access_token")
    init_log(url)
    assert _count(server, "oauth2/token") - tokens0 == 1  # the first token, at clock.t
    fetched, expected = clock.t, 1
    values: list[bytes] = []
    with Log.open(url) as log:
        probe = dbmod.make_client()
        creds = probe._creds  # shared by every client of this refresh token
        probe.close()
        assert creds.token is not None
        refreshed_due = refreshed_expired = 0
        for i in range(40):
            before = creds.token  # not due at this time (checked below, last round)
            # an eighth of a lifetime, or (once) idle until the token has expired
            clock.t += 1.5 * LIFETIME if i == 20 else LIFETIME / 8
            value = f"v{i}".encode()
            log.append([value])
            values.append(value)
            with creds._lock:  # a refresh begun by a background request has finished
                pass
            age = clock.t - fetched
            if age >= _due(LIFETIME):
                expected += 1
                fetched = clock.t
                if age < LIFETIME:
                    refreshed_due += 1
                else:
                    refreshed_expired += 1
            tokens = _count(server, "oauth2/token") - tokens0
            assert tokens == expected, (i, age, tokens, expected)
            assert (creds.token != before) == (fetched == clock.t), i
            assert _count(server, "401 expired_access_token") == expired0, i
        assert [e.value for e in log.read()] == values
    # the schedule met both cases: due (refreshed while still valid) and expired
    assert refreshed_due >= 4 and refreshed_expired == 1, (refreshed_due, refreshed_expired)
    assert creds.renewals == 0  # no refresh was forced by Dropbox refusing a token


def test_expired_token_refreshes_once_and_resends_the_create(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    """Dropbox expires (here: revokes early) the access token while it still looks fresh
    to us. The conditional create gets 401 expired_access_token, which Dropbox gives before
    any write happens: the adapter refreshes once and sends the create again, which lands
    exactly once, with no read-back (the store saw no ambiguity)."""
    _, url = _confidential(server, env)
    store = Store(open_backend(url))
    store.put("warm", b"x", PutMode.CREATE)  # fetches the first token
    server.expire_access_tokens()
    uploads, downloads = _count(server, "files/upload"), _count(server, "files/download")
    tokens, expired = _count(server, "oauth2/token"), _count(server, "401 expired_access_token")
    v = store.put("k", b"once", PutMode.CREATE)
    assert _count(server, "401 expired_access_token") - expired == 1
    assert _count(server, "oauth2/token") - tokens == 1
    assert _count(server, "files/upload") - uploads == 2  # the refused one, then the resend
    assert _count(server, "files/download") == downloads  # nothing to read back
    got = store.get("k")
    assert got == (b"once", v)
    assert [p for p in server.files() if p.lower().endswith("/k")] == [url[10:] + "/k"]
    with pytest.raises(AlreadyExistsError):
        store.put("k", b"twice", PutMode.CREATE)
    # once only: a token refused again right after the refresh is an error, not a loop
    server.expire_access_tokens()
    server.token_lifetime = 0.0  # the refresh hands out a token that is already dead
    before = _count(server, "files/upload")
    with pytest.raises(PermissionDeniedError, match="expired_access_token again"):
        store.backend.put("k2", b"x", PutMode.CREATE)
    assert _count(server, "files/upload") - before == 2
    store.close()


def test_lost_response_stays_ambiguous_and_is_read_back(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    """A create whose response is lost may have been applied: the adapter does not resend
    it (unlike an expired-token 401); the store layer reads the key back and finds its
    write id. Combined with an expired token first: the 401 is resent (not applied), the
    resent create's lost response is read back."""
    _, url = _confidential(server, env)
    backend = open_backend(url)
    backend.put("warm", b"x", PutMode.CREATE)
    before = _count(server, "files/upload")
    server.drop_response_next(1)
    with pytest.raises(TransientError):
        backend.put("lost", b"applied", PutMode.CREATE)
    assert _count(server, "files/upload") - before == 1  # not resent by the adapter
    assert backend.get("lost") is not None

    store = Store(backend)
    server.expire_access_tokens()
    server.drop_response_next(1)
    uploads, downloads = _count(server, "files/upload"), _count(server, "files/download")
    v = store.put("both", b"mine", PutMode.CREATE)
    assert _count(server, "files/upload") - uploads == 2  # 401, then the lost one: no third
    assert _count(server, "files/download") - downloads >= 1  # resolved by the read-back
    got = store.get("both")
    assert got == (b"mine", v)
    store.close()


def test_token_endpoint_failures_are_transient(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    """A 5xx or a lost answer from /oauth2/token is a TransientError (the store retries);
    nothing is left broken: the next request refreshes and works."""
    _, url = _confidential(server, env)
    backend = open_backend(url)
    server.fail_token_next(1, status=503)
    with pytest.raises(TransientError, match="token"):
        backend.get("k")
    server.drop_token_response_next(1)
    with pytest.raises(TransientError, match="refreshing"):
        backend.get("k")
    assert backend.get("k") is None
    # through the store: its retries ride out one failed refresh, also for a create
    store = Store(open_backend(url))
    server.expire_access_tokens()  # the store's create: 401, and the refresh fails
    server.fail_token_next(1, status=500)
    tokens = _count(server, "oauth2/token")
    store.put("k", b"v", PutMode.CREATE)
    assert _count(server, "oauth2/token") - tokens == 2
    got = store.get("k")
    assert got is not None and got[0] == b"v"
    store.close()
    backend.close()


# -- errors -------------------------------------------------------------------------------------


def test_revoked_refresh_token_is_a_clear_error(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    refresh, url = _confidential(server, env)
    backend = open_backend(url)
    backend.put("k", b"v", PutMode.CREATE)
    server.revoke_refresh_token(refresh)  # its access tokens die with it
    for call in (lambda: backend.get("k"), lambda: open_backend(url).get("k")):
        with pytest.raises(PermissionDeniedError) as info:
            call()
        text = _full_text(info.value)
        assert "DROPBOX_REFRESH_TOKEN" in str(info.value)
        assert "invalid_grant" in str(info.value) and "token_access_type=offline" in str(info.value)
        assert refresh not in text and APP_SECRET not in text


def test_wrong_app_secret_names_the_variable_not_the_secret(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    refresh = server.add_refresh_token(APP_KEY, APP_SECRET)
    wrong = "wrong-secret-" + uuid.uuid4().hex
    url = env(DROPBOX_REFRESH_TOKEN=refresh, DROPBOX_APP_KEY=APP_KEY, DROPBOX_APP_SECRET=wrong)
    with pytest.raises(PermissionDeniedError, match="DROPBOX_APP_SECRET") as info:
        open_backend(url).get("k")
    text = _full_text(info.value)
    assert "invalid_client" in str(info.value)
    assert wrong not in text and refresh not in text and APP_SECRET not in text
    # a confidential app's refresh token without the secret is refused the same way
    url = env(DROPBOX_REFRESH_TOKEN=refresh, DROPBOX_APP_KEY=APP_KEY)
    with pytest.raises(PermissionDeniedError, match="invalid_client"):
        open_backend(url).get("k")


def test_public_pkce_app_needs_no_secret(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    refresh = server.add_refresh_token(PUBLIC_KEY)  # issued through PKCE: no secret
    url = env(DROPBOX_REFRESH_TOKEN=refresh, DROPBOX_APP_KEY=PUBLIC_KEY)
    backend = open_backend(url)
    v = backend.put("k", b"v", PutMode.CREATE)
    assert backend.get("k") == (b"v", v)
    # the raw token request the adapter made carried no client_secret; one with a secret
    # is refused by the server (so the success above was the secret-less request)
    resp = requests.post(
        f"https://{server.host}/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": PUBLIC_KEY,
            "client_secret": "x",
        },
        verify=server.ca_pem_path,
        timeout=10,
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client"
    backend.close()


def test_expired_static_token_says_how_to_get_lasting_credentials(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    """A short-lived access token in DROPBOX_TOKEN that expires: PermissionDenied that
    points at DROPBOX_REFRESH_TOKEN (nothing can be refreshed)."""
    refresh = server.add_refresh_token(PUBLIC_KEY)
    resp = requests.post(
        f"https://{server.host}/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": PUBLIC_KEY},
        verify=server.ca_pem_path,
        timeout=10,
    )
    access = resp.json()["access_token"]
    url = env(DROPBOX_TOKEN=access)
    backend = open_backend(url)
    backend.put("k", b"v", PutMode.CREATE)
    tokens = _count(server, "oauth2/token")
    server.expire_access_tokens()
    with pytest.raises(PermissionDeniedError, match="DROPBOX_REFRESH_TOKEN") as info:
        backend.get("k")
    assert "expired_access_token" in str(info.value) and access not in _full_text(info.value)
    assert _count(server, "oauth2/token") == tokens


# -- configuration ------------------------------------------------------------------------------


def test_precedence_of_the_variables(server: DropboxTestServer, env: Callable[..., str]) -> None:
    refresh = server.add_refresh_token(APP_KEY, APP_SECRET)
    # Both set: the refresh token wins; DROPBOX_TOKEN (here a read-only token) is not used,
    # not even as the first access token.
    url = env(
        DROPBOX_TOKEN=server.readonly_token,
        DROPBOX_REFRESH_TOKEN=refresh,
        DROPBOX_APP_KEY=APP_KEY,
        DROPBOX_APP_SECRET=APP_SECRET,
    )
    tokens = _count(server, "oauth2/token")
    open_backend(url).put("k", b"v", PutMode.CREATE)  # the read-only token could not
    assert _count(server, "oauth2/token") - tokens == 1
    # A refresh token without its app key is a configuration error, not a silent fallback.
    url = env(DROPBOX_TOKEN=server.token, DROPBOX_REFRESH_TOKEN=refresh)
    with pytest.raises(ConfigError, match="DROPBOX_APP_KEY"):
        open_backend(url)
    # DROPBOX_TOKEN alone: used as it is, no token requests; app variables are ignored.
    url = env(DROPBOX_TOKEN=server.token, DROPBOX_APP_KEY=APP_KEY)
    tokens = _count(server, "oauth2/token")
    open_backend(url).put("k", b"v", PutMode.CREATE)
    assert _count(server, "oauth2/token") == tokens
    # Empty values count as unset; nothing at all names both ways.
    env(DROPBOX_TOKEN="", DROPBOX_REFRESH_TOKEN="")
    with pytest.raises(ConfigError, match=r"DROPBOX_REFRESH_TOKEN.*DROPBOX_TOKEN"):
        open_backend("dropbox:///x")
    # make_client's arguments beat the environment.
    env(DROPBOX_REFRESH_TOKEN="not-used", DROPBOX_APP_KEY=APP_KEY)
    client = dbmod.make_client(token=server.readonly_token)
    assert client._creds.token == server.readonly_token and not client._creds.refreshable
    assert "readonly" not in repr(client._creds)
    client.close()


# -- threads --------------------------------------------------------------------------------------


def test_no_refresh_storm_from_eight_threads(
    server: DropboxTestServer,
    env: Callable[..., str],
    clock: Stepped,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight threads share one backend, each request through a per-request copy of its
    client (as under a deadline), and race freely within each round of one upload and one
    download per thread; between rounds the test moves the clock. Exactly one token
    request per due point however many threads find the token missing, due or expired,
    and exactly one for all of them when Dropbox expires it early (each thread then gets
    at most one 401, and each 401 costs exactly one resend). These hold for any
    interleaving of the threads."""
    # timeouts above the request budget below: every request goes through a clone
    monkeypatch.setenv("PASSIVEPAXOS_CONNECT_TIMEOUT", "600")
    monkeypatch.setenv("PASSIVEPAXOS_READ_TIMEOUT", "600")
    clones = [0]
    clones_lock = threading.Lock()
    clone = dbmod._Client.clone

    def counting_clone(self: Any, *args: Any, **kwargs: Any) -> Any:
        with clones_lock:
            clones[0] += 1
        return clone(self, *args, **kwargs)

    monkeypatch.setattr(dbmod._Client, "clone", counting_clone)
    _, url = _confidential(server, env)
    backend = open_backend(url)
    creds = backend._client._creds
    threads_n = 8
    # a guard against a hang only (a broken adapter), never a speed requirement
    go = threading.Barrier(threads_n + 1, timeout=300)
    finished = threading.Barrier(threads_n + 1, timeout=300)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        for n in range(1000):
            try:
                go.wait()
            except threading.BrokenBarrierError:
                return  # the test ended (or failed)
            try:
                with request_budget(300):
                    backend.put(f"w{i}/{n}", b"x", PutMode.CREATE)
                with request_budget(300):
                    assert backend.get(f"w{i}/{n}") is not None
            except BaseException as exc:  # reported below
                errors.append(exc)
            try:
                finished.wait()
            except threading.BrokenBarrierError:
                return

    def one_round() -> tuple[int, int, int, int]:
        """(token requests, 401s, uploads + downloads, renewals) of one round."""

        def now() -> tuple[int, int, int, int]:
            return (
                _count(server, "oauth2/token"),
                _count(server, "401 expired_access_token"),
                _count(server, "files/upload") + _count(server, "files/download"),
                creds.renewals,
            )

        before = now()
        go.wait()
        finished.wait()  # every thread's requests, and so any refresh, have ended
        assert not errors, errors
        after = now()
        return (
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
            after[3] - before[3],
        )

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads_n)]
    for t in threads:
        t.start()
    try:
        requests_n = 2 * threads_n
        # no token yet: all eight wait for one refresh
        assert one_round() == (1, 0, requests_n, 0)
        fetched = clock.t
        clock.t += LIFETIME / 2  # not due yet: nothing fetched
        assert one_round() == (0, 0, requests_n, 0)
        clock.t = fetched + 0.875 * LIFETIME  # due, still valid: one refreshes
        assert _due(LIFETIME) <= clock.t - fetched < LIFETIME
        assert one_round() == (1, 0, requests_n, 0)
        fetched = clock.t
        clock.t += LIFETIME / 2  # the old token has expired by now, the new one is fresh
        assert one_round() == (0, 0, requests_n, 0)
        # Dropbox expires the token early: each thread's next request may get a 401 (at
        # most one each); one refresh serves them all; each 401 is resent once
        server.expire_access_tokens()
        tokens, refused, sent, renewals = one_round()
        assert (tokens, renewals) == (1, 1)
        assert 1 <= refused <= threads_n
        assert sent == requests_n + refused
        clock.t += 1.5 * LIFETIME  # idle past the lifetime: expired on our clock too
        assert one_round() == (1, 0, requests_n, 0)
    finally:
        go.abort()  # the workers return
        finished.abort()
        for t in threads:
            t.join(timeout=60)
    assert clones[0] >= 6 * requests_n, clones  # the requests went through clones
    backend.close()


def test_a_401_for_a_token_already_replaced_costs_no_refresh(
    server: DropboxTestServer, env: Callable[..., str]
) -> None:
    """Two threads' requests sent with one token both get 401 expired_access_token (the
    race of the test above, played in a fixed order): the first renewal fetches a new
    token, the second finds it and fetches none; a 401 for the current token does."""
    _, url = _confidential(server, env)
    backend = open_backend(url)
    backend.get("k")
    client = backend._client
    creds = client._creds
    stale = creds.token
    server.expire_access_tokens()
    tokens = _count(server, "oauth2/token")
    assert backend.get("k") is None  # 401, one refresh, the resend works
    assert _count(server, "oauth2/token") - tokens == 1 and creds.renewals == 1
    fresh = creds.token
    assert fresh != stale
    # the other thread's 401, about the stale token, arrives now
    assert creds.renew(stale, client._session, client._budget()) == fresh
    assert _count(server, "oauth2/token") - tokens == 1 and creds.renewals == 1
    server.expire_access_tokens()  # early once more: a 401 about the current token
    assert creds.renew(fresh, client._session, client._budget()) not in (stale, fresh)
    assert _count(server, "oauth2/token") - tokens == 2 and creds.renewals == 2
    backend.close()


class _SignallingLock:
    """The credentials' lock, telling the test when a thread starts waiting for it."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.waiting = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking:
            self.waiting.set()
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_thread_waiting_for_a_refresh_uses_its_token(
    server: DropboxTestServer,
    env: Callable[..., str],
    clock: Stepped,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread that finds the token expired while another thread refreshes it waits for
    that refresh and uses its token: one token request, not two (the race of the storm
    test, played in a fixed order)."""
    monkeypatch.setenv("PASSIVEPAXOS_CONNECT_TIMEOUT", "600")  # the wait never times out
    monkeypatch.setenv("PASSIVEPAXOS_READ_TIMEOUT", "600")
    _, url = _confidential(server, env)
    backend = open_backend(url)
    backend.get("k")
    client = backend._client
    creds = client._creds
    clock.t += 1.5 * LIFETIME  # expired, on both clocks
    lock = _SignallingLock(creds._lock)
    monkeypatch.setattr(creds, "_lock", lock)
    tokens = _count(server, "oauth2/token")
    got: list[object] = []
    assert lock.acquire(blocking=False)  # "another thread is refreshing"
    try:
        waiter = threading.Thread(target=lambda: got.append(backend.get("k")), daemon=True)
        waiter.start()
        assert lock.waiting.wait(timeout=300)  # a hang guard only
        fresh = creds._refresh(client._session, client._budget())  # that other thread's
    finally:
        lock.release()
    waiter.join(timeout=300)
    assert got == [None]  # served, with the token it waited for
    assert _count(server, "oauth2/token") - tokens == 1 and creds.token == fresh
    backend.close()


def test_a_refresh_in_flight_does_not_hold_up_a_valid_token(
    server: DropboxTestServer, env: Callable[..., str], clock: Stepped
) -> None:
    """While one thread refreshes a token that is due but still valid, the others go on
    with it instead of waiting (the refresh in flight is played by holding its lock)."""
    _, url = _confidential(server, env)
    backend = open_backend(url)
    backend.get("k")
    creds = backend._client._creds
    token = creds.token
    creds._state = (token, -math.inf, clock.t + 30)  # due now, still valid
    assert creds._lock.acquire(blocking=False)  # "another thread is refreshing"
    try:
        tokens = _count(server, "oauth2/token")
        assert backend.get("k") is None  # served with the current token, no waiting
        assert _count(server, "oauth2/token") == tokens
    finally:
        creds._lock.release()
    backend.get("k")  # due: this one refreshes
    assert creds.token != token
    backend.close()
