"""Session fixtures: the real servers, started once on free loopback ports, and one
``Harness`` per backend that the conformance suite is parametrised over."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# this checkout first: its passivepaxos and, through the passivepaxos_backends shim beside
# it, the backends/ beside these tests (never a stale installed copy)
sys.path.insert(0, str(ROOT))

from passivepaxos.bench import environ  # noqa: E402
from passivepaxos.store import RetryPolicy, Store  # noqa: E402
from passivepaxos.testing import Injector, StoreHarness  # noqa: E402
from passivepaxos.urls import backend_module, open_backend  # noqa: E402

# Fast retries in tests: behaviour is what is checked, not patience.
FAST = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.2, resolve_attempts=6)
BACKENDS = ["memory", "local", "s3", "gcs", "dropbox", "azure"]


def fresh(name: str = "t") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def env(**values: str) -> contextlib.AbstractContextManager[None]:
    """Temporarily set environment variables (backends read them when opened)."""
    return environ(values)


def _error_of(store: Store) -> str:
    """The class name of what one write raises ("no error" if it succeeds)."""
    try:
        store.put("k", b"v")
    except Exception as exc:
        return type(exc).__name__
    return "no error"


_unread: dict[int, bytes] = {}  # pid -> bytes read past the last line handed out


def next_line(p: subprocess.Popen[Any], timeout: float = 30.0, what: str = "") -> str:
    """The next line ``p`` prints on stdout (without its newline), read from the pipe's
    descriptor: a buffered ``readline`` would swallow a second line that came in the same
    write, and ``select`` would then wait for a line already read. Fails after ``timeout``."""
    import select
    import time

    assert p.stdout is not None
    fd = p.stdout.fileno()
    buf = _unread.pop(p.pid, b"")
    end = time.monotonic() + timeout
    while b"\n" not in buf:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        assert ready, f"{what or p.args}: no line in {timeout} s"
        chunk = os.read(fd, 65536)
        assert chunk, f"{what or p.args}: output ended (exit {p.wait()})"
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    _unread[p.pid] = rest
    return line.decode("utf-8", errors="replace")


class Harness(StoreHarness):
    """The built-in backends on real servers (passivepaxos.testing's hooks, all provided),
    with fast retries: behaviour is what is checked, not patience."""

    name: str
    wire_is_real = False

    def store(self, url: str | None = None) -> Store:
        return Store(open_backend(url or self.url()), retry=FAST)


class MemoryHarness(Harness):
    name = "memory"

    def url(self) -> str:
        return f"memory://{fresh('conf')}"

    def new_container_url(self) -> str:
        return self.url()

    def remove_container(self, url: str) -> None:
        backend_module("memory").reset(url.split("://", 1)[1])

    def container_exists(self, url: str) -> bool:
        return bool(backend_module("memory").exists(url.split("://", 1)[1]))


class LocalHarness(Harness):
    name = "local"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ppx-local-")

    def url(self) -> str:
        path = Path(self._tmp.name) / fresh()
        path.mkdir()
        return f"file://{path}"

    def missing_container_url(self) -> str:
        return f"file:///nonexistent-{fresh()}/log"

    def new_container_url(self) -> str:
        return self.url()

    def remove_container(self, url: str) -> None:
        shutil.rmtree(url.removeprefix("file://"))

    def container_exists(self, url: str) -> bool:
        return Path(url.removeprefix("file://")).exists()

    def denied_error(self) -> str:
        path = Path(self._tmp.name) / fresh("ro")
        path.mkdir()
        os.chmod(path, 0o555)
        code = (
            "import os,sys; sys.path.insert(0, {!r})\n"
            "from passivepaxos.store import open_store\n"
            "s = open_store({!r})\n"
            "if os.getuid() == 0: os.setgid(65534); os.setuid(65534)\n"
            "try:\n"
            "    s.put('k', b'v')\n"
            "    print('no error')\n"
            "except Exception as e: print(type(e).__name__)\n"
        ).format(str(ROOT), f"file://{path}")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[-1]


class S3Harness(Harness):
    name = "s3"
    wire_is_real = True

    def __init__(self, moto: Any, denied_moto: Any) -> None:
        self.moto = moto
        self.denied_moto = denied_moto
        self.bucket = fresh("conf")
        moto.client().create_bucket(Bucket=self.bucket)

    def url(self) -> str:
        return f"s3://{self.bucket}/{fresh()}"

    def missing_container_url(self) -> str:
        return f"s3://{fresh('nobucket')}/log"

    def new_container_url(self) -> str:
        bucket = fresh("own")
        self.moto.client().create_bucket(Bucket=bucket)
        return f"s3://{bucket}/log"

    def remove_container(self, url: str) -> None:
        bucket = url.split("/")[2]
        client = self.moto.client()
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)

    def container_exists(self, url: str) -> bool:
        bucket = url.split("/")[2]
        return bucket in [b["Name"] for b in self.moto.client().list_buckets()["Buckets"]]

    def denied_error(self) -> str:
        key, secret = self.denied_moto()
        with env(
            AWS_ENDPOINT_URL=self.denied_moto.server.url,
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
        ):
            store = self.store(f"s3://{self.denied_moto.bucket}/x")
        return _error_of(store)

    @contextlib.contextmanager
    def wired(self) -> Iterator[tuple[Store, Injector]]:
        from passivepaxos.bench.proxy import FaultProxy

        with FaultProxy(self.moto.url) as proxy, env(AWS_ENDPOINT_URL=proxy.url):
            yield self.store(), _ProxyInjector(proxy, throttle=(503, _S3_SLOWDOWN))


_S3_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_GCS_429 = (
    b'{"error": {"code": 429, "message": "The rate of change requests to the object is too '
    b'high.", "errors": [{"reason": "rateLimitExceeded"}]}}'
)
_GCS_403 = (
    b'{"error": {"code": 403, "message": "caller does not have storage.objects.create access",'
    b' "errors": [{"reason": "forbidden"}]}}'
)


class _ProxyInjector(Injector):
    def __init__(self, proxy: Any, throttle: tuple[int, bytes]) -> None:
        self.proxy = proxy
        self.throttle = throttle

    def lose_next_response(self) -> None:
        self.proxy.drop_response_next(1, method=None, path_contains=None)

    def throttle_next(self, n: int) -> None:
        status, body = self.throttle
        self.proxy.fail_next(
            n,
            status,
            body,
            headers={
                "Content-Type": "application/xml" if body.startswith(b"<") else "application/json"
            },
        )


class GCSHarness(Harness):
    name = "gcs"
    wire_is_real = True

    def __init__(self, gcs: Any) -> None:
        self.gcs = gcs
        self.bucket = fresh("conf")
        gcs.create_bucket(self.bucket)

    def url(self) -> str:
        return f"gs://{self.bucket}/{fresh()}"

    def missing_container_url(self) -> str:
        return f"gs://{fresh('nobucket')}/log"

    def new_container_url(self) -> str:
        bucket = fresh("own")
        self.gcs.create_bucket(bucket)
        return f"gs://{bucket}/log"

    def remove_container(self, url: str) -> None:
        self.gcs.delete_bucket(url.split("/")[2])

    def container_exists(self, url: str) -> bool:
        return url.split("/")[2] in self.gcs.buckets()

    def denied_error(self) -> str:
        # fake-gcs-server has no IAM: the 403 that real GCS sends is injected by the proxy
        # (real HTTP, real SDK, real error body); the mapping is what is under test.
        from passivepaxos.bench.proxy import FaultProxy

        with FaultProxy(self.gcs.url) as proxy, env(STORAGE_EMULATOR_HOST=proxy.url):
            proxy.fail_next(100, 403, _GCS_403, headers={"Content-Type": "application/json"})
            store = self.store()
            return _error_of(store)

    @contextlib.contextmanager
    def wired(self) -> Iterator[tuple[Store, Injector]]:
        from passivepaxos.bench.proxy import FaultProxy

        with FaultProxy(self.gcs.url) as proxy, env(STORAGE_EMULATOR_HOST=proxy.url):
            yield self.store(), _ProxyInjector(proxy, throttle=(429, _GCS_429))


_AZURE_503 = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>'
    b"The server is busy.</Message></Error>"
)


class AzureHarness(Harness):
    name = "azure"
    wire_is_real = True

    def __init__(self, azurite: Any) -> None:
        self.azurite = azurite
        self.container = fresh("conf")
        azurite.create_container(self.container)

    def url(self) -> str:
        return f"az://{self.container}/{fresh()}"

    def missing_container_url(self) -> str:
        return f"az://{fresh('nocontainer')}/log"

    def new_container_url(self) -> str:
        container = fresh("own")
        self.azurite.create_container(container)
        return f"az://{container}/log"

    def remove_container(self, url: str) -> None:
        self.azurite.delete_container(url.split("/")[2])

    def container_exists(self, url: str) -> bool:
        return url.split("/")[2] in self.azurite.containers()

    def denied_error(self) -> str:
        # a wrong account key: azurite (like Azure) answers 403 with a failed signature
        from tests.servers.azurite_server import KEY, connection_string

        wrong = "A" * 8 + KEY[8:]
        with env(AZURE_STORAGE_CONNECTION_STRING=connection_string(self.azurite.url, wrong)):
            store = self.store(self.url())
        return _error_of(store)

    @contextlib.contextmanager
    def wired(self) -> Iterator[tuple[Store, Injector]]:
        from passivepaxos.bench.proxy import FaultProxy
        from tests.servers.azurite_server import ACCOUNT, connection_string

        with (
            FaultProxy(self.azurite.url.removesuffix("/" + ACCOUNT)) as proxy,
            env(AZURE_STORAGE_CONNECTION_STRING=connection_string(f"{proxy.url}/{ACCOUNT}")),
        ):
            yield self.store(), _ProxyInjector(proxy, throttle=(503, _AZURE_503))


class _DropboxInjector(Injector):
    def __init__(self, server: Any) -> None:
        self.server = server

    def lose_next_response(self) -> None:
        self.server.drop_response_next(1)

    def throttle_next(self, n: int) -> None:
        self.server.throttle_next(n, retry_after=0)


class DropboxHarness(Harness):
    name = "dropbox"
    wire_is_real = True

    def __init__(self, server: Any) -> None:
        self.server = server

    def url(self) -> str:
        path = f"/conf/{fresh()}"
        self.server.mkdir(path)
        return f"dropbox://{path}"

    def missing_container_url(self) -> str:
        return f"dropbox:///{fresh('nofolder')}"

    def new_container_url(self) -> str:
        return self.url()

    def remove_container(self, url: str) -> None:
        self.server.remove(url.removeprefix("dropbox://"))

    def container_exists(self, url: str) -> bool:
        return bool(self.server.exists(url.removeprefix("dropbox://")))

    def denied_error(self) -> str:
        url = self.url()
        with env(DROPBOX_TOKEN=self.server.readonly_token):
            store = self.store(url)
        return _error_of(store)

    @contextlib.contextmanager
    def wired(self) -> Iterator[tuple[Store, Injector]]:
        yield self.store(), _DropboxInjector(self.server)


# -- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Any]:
    from passivepaxos.bench.moto import MotoServer

    with MotoServer() as srv:
        os.environ.update(srv.env())
        yield srv


class _DeniedMoto:
    """A second moto_server that enforces IAM, with a user allowed only to read."""

    def __init__(self) -> None:
        from passivepaxos.bench.moto import MotoServer

        self.server = MotoServer(auth_actions=4).start()
        self.bucket = fresh("locked")
        self._keys: tuple[str, str] | None = None

    def __call__(self) -> tuple[str, str]:
        if self._keys is None:
            self._keys = self.server.restricted_user(self.bucket, ["s3:GetObject", "s3:ListBucket"])
        return self._keys


@pytest.fixture(scope="session")
def denied_moto() -> Iterator[_DeniedMoto]:
    d = _DeniedMoto()
    yield d
    d.server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Any]:
    from tests.servers.gcs_server import FakeGCS

    srv = FakeGCS().start()
    os.environ.update(srv.env())
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def dropbox_server() -> Iterator[Any]:
    from tests.servers.dropbox_server import DropboxTestServer

    srv = DropboxTestServer().start()
    os.environ.update(srv.env())
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[Any]:
    from tests.servers.azurite_server import Azurite

    srv = Azurite().start()
    os.environ.update(srv.env())
    yield srv
    srv.stop()


_HARNESSES: dict[str, Harness] = {}


def get_harness(request: pytest.FixtureRequest, name: str) -> Harness:
    """One harness per backend per session, starting its server on first use."""
    if name not in _HARNESSES:
        if name == "memory":
            _HARNESSES[name] = MemoryHarness()
        elif name == "local":
            _HARNESSES[name] = LocalHarness()
        elif name == "s3":
            _HARNESSES[name] = S3Harness(
                request.getfixturevalue("moto_server"), request.getfixturevalue("denied_moto")
            )
        elif name == "gcs":
            _HARNESSES[name] = GCSHarness(request.getfixturevalue("gcs_server"))
        elif name == "dropbox":
            _HARNESSES[name] = DropboxHarness(request.getfixturevalue("dropbox_server"))
        elif name == "azure":
            _HARNESSES[name] = AzureHarness(request.getfixturevalue("azurite_server"))
        else:
            raise ValueError(name)
    return _HARNESSES[name]


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Harness:
    return get_harness(request, request.param)


CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, CliRun]:
    """An initialised file:// log and an in-process ``passivepaxos`` runner returning
    (exit code, stdout, stderr)."""
    from passivepaxos.cli import main

    log = tmp_path.as_uri()
    assert main(["init", log]) == 0
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return log, run


# The simulator's budget parts and mutation searches take minutes each (the rest of the
# suite seconds): they go first, and scripts/test.sh hands tests to the xdist workers a
# few at a time (--maxschedchunk), so the long ones spread over both workers instead of
# one worker ending the session alone on them.
_LONGEST_FIRST = (
    "tests/test_simulation.py::test_each_finding_is_caught_within_the_budget[finding1]",
    "tests/test_simulation.py::test_ci_budget_runs_clean",
    "tests/test_simulation.py::test_each_finding_is_caught_within_the_budget",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for i, prefix in enumerate(_LONGEST_FIRST):
            if item.nodeid.startswith(prefix):
                return i
        return len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its order
