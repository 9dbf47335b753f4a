"""Issue 10, storage layer: findings 10, 14, 15, 16 and the bad-bucket-name error, each shown
the way it was found (the CLI on real directories, a real full disk, a hung TCP endpoint in
front of moto_server) and, where the rule lives below the CLI, through the library too."""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.cli import main
from passivepaxos.deadline import deadline
from passivepaxos.errors import (
    AmbiguousWriteError,
    ConfigError,
    ContainerNotFoundError,
    DeadlineAmbiguousError,
    DeadlineExceededError,
    StoreError,
)
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from passivepaxos.store import RetryPolicy, Store, open_store
from passivepaxos.types import PutMode
from passivepaxos.urls import open_backend, parse_url, parse_urls, split_urls

ROOT = Path(__file__).resolve().parent.parent


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def run(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str, float]:
    """``passivepaxos ARGS`` in a fresh process: (exit code, stdout, stderr, seconds)."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "passivepaxos", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=timeout,
    )
    return out.returncode, out.stdout, out.stderr, time.monotonic() - started


# -- finding 10 (and the storage half of finding 1) -------------------------------------


def test_finding_10_deleted_store_dir_is_not_recreated_by_a_running_appender(
    tmp_path: Path,
) -> None:
    """finding 10: a store directory deleted under a running appender stays deleted; the
    append still succeeds on the majority and the deleted store reports itself missing."""
    dirs = [tmp_path / n for n in ("a", "b", "c")]
    for d in dirs:
        d.mkdir()
    spec = ",".join(d.as_uri() for d in dirs)
    init_log(spec)
    with Log.open(spec) as log:
        log.append([b"before"])
        shutil.rmtree(dirs[1])
        log.append([b"after"])
        assert [e.value for e in log.read(0)] == [b"before", b"after"]
    assert not dirs[1].exists(), "the appender re-created the deleted store's directory"
    with pytest.raises(ContainerNotFoundError, match="does not exist"):
        open_store(dirs[1].as_uri()).get("manifest")


def test_cli_append_with_one_store_deleted_does_not_recreate_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The finding 1/10 shape from the CLI (``rm -rf`` of one store of three): a fresh
    process refused the missing root already before (its first request checked it), so
    this one passes on d26dea1 too; the regression is the running appender above."""
    dirs = [tmp_path / n for n in ("qa", "qb", "qc")]
    for d in dirs:
        d.mkdir()
    spec = ",".join(d.as_uri() for d in dirs)
    assert cli(capsys, "init", spec)[0] == 0
    assert cli(capsys, "append", spec, "one")[0] == 0
    shutil.rmtree(dirs[2])
    code, out, err = cli(capsys, "append", spec, "two")
    assert (code, out.strip()) == (0, "1"), err
    assert not dirs[2].exists()
    code, out, err = cli(capsys, "log", dirs[2].as_uri())
    assert code == 1 and "does not exist" in err and not dirs[2].exists()


# -- finding 15 -------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs (needs root and a mount namespace that allows it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the disk to the last block with one file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    return filler


def test_finding_15_full_disk_leaves_no_temp_files(
    tiny_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """finding 15 on a real full tmpfs: failed appends leave nothing in ``.ppx-tmp``."""
    log = tiny_disk.as_uri()
    assert cli(capsys, "init", log)[0] == 0
    assert cli(capsys, "append", log, "first")[0] == 0
    filler = _fill(tiny_disk)
    for _ in range(5):
        code, _out, err = cli(capsys, "append", log, "x" * 3000)
        assert code == 1 and "no space left" in err, err
    tmp = tiny_disk / ".ppx-tmp"
    assert sorted(os.listdir(tmp)) == [], "temp files leaked by failed writes"
    filler.unlink()
    assert cli(capsys, "append", log, "second")[0] == 0
    code, out, _ = cli(capsys, "log", log)
    assert code == 0 and [line.split("\t")[2] for line in out.splitlines()] == [
        "first",
        "second",
    ]
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("call", ["write", "fsync"])
@pytest.mark.parametrize("mode", ["create", "overwrite"])
def test_finding_15_enospc_at_the_os_call_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, mode: str
) -> None:
    """finding 15 with the failure injected at the OS call (runs without root)."""
    store = Store(open_backend(tmp_path.as_uri()), retry=RetryPolicy(attempts=3, base_delay=0))
    local = sys.modules[type(store.backend).__module__]
    real = getattr(local.os, call)

    def full(*args: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(local.os, call, full)
    if call == "write":  # the data goes through a buffered file object: fail its flush
        monkeypatch.setattr(local.os, "fdopen", _fdopen_failing_write)
    for attempt in range(4):
        with pytest.raises(StoreError, match="no space left"):
            store.put(
                f"k{attempt}", b"v", PutMode.CREATE if mode == "create" else PutMode.OVERWRITE
            )
    monkeypatch.setattr(local.os, call, real)
    assert os.listdir(tmp_path / ".ppx-tmp") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ppx-tmp"]


class _FullFile:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fdopen_failing_write(fd: int, *args: Any, **kwargs: Any) -> _FullFile:
    return _FullFile(fd)


# -- finding 16 -------------------------------------------------------------------------


def test_finding_16_cli_refuses_duplicate_stores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """finding 16: the exact reproduction, from the CLI: exit 2 naming the duplicate."""
    q = tmp_path / "q"
    for n in ("qa", "qb", "qc"):
        (q / n).mkdir(parents=True)
    spec = f"file://{q}/qa,file://{q}/qa/,file://{q}/qb"
    code, out, err = cli(capsys, "init", spec)
    assert code == 2 and out == ""
    assert f"file://{q}/qa/" in err and "same store" in err and len(err.splitlines()) == 1
    assert not (q / "qa" / "manifest").exists()
    for spelling in (
        f"file://{q}/./qa",
        f"file://{q}//qa",
        f"file://{q}/qb/../qa",
        f"FILE://{q}/qa",
        f"file://localhost{q}/qa",
        f"file://LOCALHOST{q}/qa/",
        f"file://{q}/%71a",
    ):
        code, _, err = cli(capsys, "init", f"file://{q}/qa,{spelling},file://{q}/qc")
        assert code == 2 and "same store" in err, (spelling, err)
    (q / "link").symlink_to(q / "qa")
    code, _, err = cli(capsys, "init", f"file://{q}/qa,file://{q}/link,file://{q}/qc")
    assert code == 2 and f"file://{q}/link" in err
    # three different stores are fine
    assert cli(capsys, "init", f"file://{q}/qa,file://{q}/qb,file://{q}/qc")[0] == 0
    # and a log's URL list can be spelled differently later: same stores, same log
    code, out, err = cli(capsys, "append", f"file://{q}/qa/,file://{q}//qb,file://{q}/qc", "v")
    assert (code, out.strip()) == (0, "0"), err


def test_finding_16_library_refuses_duplicate_stores(tmp_path: Path) -> None:
    """finding 16 below the CLI: ``init_log`` / ``open_log`` / ``Log.open`` and the URL
    helpers refuse a quorum naming one store twice, for every scheme's equivalent forms."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    dup = f"{a.as_uri()},{a.as_uri()}/,{b.as_uri()}"
    for call in (lambda: init_log(dup), lambda: Log.open(dup), lambda: split_urls(dup)):
        with pytest.raises(ConfigError, match="same store"):
            call()
    for first, second in (
        ("s3://bkt/p", "s3://bkt/p/"),
        ("s3://bkt/p", "s3://bkt//p"),
        ("s3://bkt", "s3://bkt/"),
        ("S3://bkt/p", "s3://bkt/p?conditional=on"),
        ("gs://bkt/p", "gs://bkt/p/"),
        ("az://ctr/p", "AZ://ctr/p/?timeout=5"),
        ("dropbox:///Logs/Q", "dropbox:///logs/q/"),  # Dropbox paths ignore case
        ("memory://m/p", "memory://m/p/"),
    ):
        with pytest.raises(ConfigError, match="same store"):
            parse_urls([first, second])
    # different stores stay different
    assert len(parse_urls(["s3://bkt/p", "s3://bkt/q", "s3://other/p", "gs://bkt/p"])) == 4
    assert len(parse_urls(["az://bkt/p", "s3://bkt/p", "az://bkt/q"])) == 3
    assert parse_url("s3://Bkt/p").container == "Bkt"  # a legacy us-east-1 name
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        parse_url("s3://B..kt/p")
    assert len(parse_urls(["memory://M", "memory://m"])) == 2
    assert parse_url("file:///q//x/./y/../z/").canonical == "file:///q/x/z"
    assert parse_url("FILE://localhost/q/").canonical == "file:///q"
    assert parse_url("s3://bkt/p/?conditional=off").canonical == "s3://bkt/p?conditional=off"


# -- finding 14 -------------------------------------------------------------------------


class HungEndpoint:
    """A loopback HTTP endpoint that accepts connections and reads requests but never
    answers those that ``hangs(method)`` selects; the others are relayed to ``upstream``
    (or, without one, hang too). Bounded: every socket closes on ``close()``."""

    def __init__(self, upstream: str | None = None, hang: tuple[str, ...] = ()) -> None:
        self.upstream = upstream
        self.hang = hang
        self.hung = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (h.partition(":") for h in lines[1:])
                )
                size = int(headers.get("content-length", "0"))
                if len(rest) < size:
                    break
                body, buf = rest[:size], rest[size:]
                if self.upstream is None or method in self.hang:
                    self.hung += 1
                    continue  # read, never answered
                conn.sendall(self._relay(method, target, headers, body))

    def _relay(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        assert self.upstream is not None
        up = http.client.HTTPConnection(self.upstream.split("//", 1)[1], timeout=10)
        try:
            up.request(method, target, body=body, headers=headers)
            resp = up.getresponse()
            data = resp.read()
            out = [f"HTTP/1.1 {resp.status} {resp.reason}"]
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    out.append(f"{k}: {v}")
            out.append(f"Content-Length: {len(data)}")
            return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + data
        finally:
            up.close()

    def close(self) -> None:
        self._stop.set()
        for c in [self._sock, *self._conns]:
            with contextlib.suppress(OSError):
                c.close()
        for t in self._threads:
            t.join(timeout=2)


@pytest.fixture
def hung() -> Iterator[HungEndpoint]:
    h = HungEndpoint()
    yield h
    h.close()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_finding_14_hung_endpoint_cli_gives_up_at_the_timeout(
    moto_server: Any, hung: HungEndpoint
) -> None:
    """finding 14: every request hangs (the manifest read first): ``--timeout 3`` ends
    ``append`` and ``log`` within a few seconds, one line, exit 1 -- a plain failure, since
    no write was sent (not "outcome unknown")."""
    env = {**moto_server.env(), "AWS_ENDPOINT_URL": hung.url, "PASSIVEPAXOS_TIMEOUT": ""}
    for args in (["append", "s3://bkt/x", "v"], ["log", "s3://bkt/x"]):
        code, out, err, took = run("--timeout", "3", *args, env=env)
        line = _one_line(err)
        assert code == 1 and out == "", (args, code, err)
        assert "timed out" in line and "3s" in line and "unknown" not in line, line
        assert 2.5 <= took < 8, (args, took)
    assert hung.hung >= 2
    # the environment default, and the same through it
    code, _, err, took = run("log", "s3://bkt/x", env={**env, "PASSIVEPAXOS_TIMEOUT": "2"})
    assert code == 1 and "2s" in _one_line(err) and 1.5 <= took < 7


def test_finding_14_hung_write_is_outcome_unknown(moto_server: Any) -> None:
    """finding 14, write side: reads answer, every PUT hangs after being sent. The append
    ends at the deadline with "outcome unknown" (an ``AmbiguousWriteError``), not as a
    plain failure, because its create may have landed."""
    bucket = f"hang-{uuid.uuid4().hex[:8]}"
    moto_server.client().create_bucket(Bucket=bucket)
    log = f"s3://{bucket}/x"
    env = {**moto_server.env(), "PASSIVEPAXOS_TIMEOUT": ""}
    assert run("init", log, env=env)[0] == 0
    proxy = HungEndpoint(upstream=moto_server.url, hang=("PUT",))
    try:
        code, out, err, took = run(
            "--timeout", "3", "append", log, "v", env={**env, "AWS_ENDPOINT_URL": proxy.url}
        )
    finally:
        proxy.close()
    line = _one_line(err)
    assert code == 3 and out == "", err  # exit 3: outcome unknown
    assert "outcome unknown" in line, line
    assert 2.5 <= took < 8, took
    assert proxy.hung >= 1


def test_finding_14_store_retry_loop_stops_at_the_deadline(hung: HungEndpoint) -> None:
    """finding 14 below the CLI: the retry policy and the SDK read timeout both stop at the
    deadline (6 attempts x 30 s read timeout before), for reads and for writes."""
    env = {
        "AWS_ENDPOINT_URL": hung.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    with _environ(env):
        store = open_store("s3://bkt/x")
        started = time.monotonic()
        with deadline(1.5), pytest.raises(DeadlineExceededError) as info:
            store.get("k")
        assert not isinstance(info.value, AmbiguousWriteError)
        assert 1.4 <= time.monotonic() - started < 3
        started = time.monotonic()
        with deadline(1.5), pytest.raises(DeadlineAmbiguousError, match="outcome unknown"):
            store.put("k", b"v", PutMode.CREATE)
        assert 1.4 <= time.monotonic() - started < 3
        # a per-call budget from the retry policy: the same mechanism
        bounded = Store(open_backend("s3://bkt/x"), retry=RetryPolicy(timeout=1.0))
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="1s store timeout"):
            list(bounded.list())
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("scheme", ["gs", "dropbox", "az"])
def test_finding_14_gcs_and_dropbox_requests_end_at_the_deadline(
    hung: HungEndpoint, scheme: str
) -> None:
    """The same deadline cuts the GCS, Dropbox and Azure SDK timeouts (60 s / 30 s / 60 s
    configured)."""
    host = hung.url.split("//", 1)[1]
    env = {
        "STORAGE_EMULATOR_HOST": hung.url,
        "DROPBOX_TOKEN": "t",
        "DROPBOX_API_HOST": host,
        "DROPBOX_API_CONTENT_HOST": host,
        "DROPBOX_CA_BUNDLE": "",
        "AZURE_STORAGE_CONNECTION_STRING": (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint={hung.url}/devstoreaccount1;"
        ),
    }
    url = {"gs": "gs://bkt/x", "dropbox": "dropbox:///x", "az": "az://bkt/x"}[scheme]
    with _environ(env):
        store = open_store(url)
        for call in (lambda: store.get("k"), lambda: store.put("k", b"v", PutMode.CREATE)):
            started = time.monotonic()
            with deadline(1.5), pytest.raises(DeadlineExceededError):
                call()
            assert time.monotonic() - started < 3.5


def test_finding_14_deadline_reaches_worker_threads_of_stores_opened_under_it(
    hung: HungEndpoint,
) -> None:
    """Stores opened inside a deadline block honour it from other threads (a log's worker
    pools do not inherit context variables), and stop honouring it once the block ends."""
    env = {
        "AWS_ENDPOINT_URL": hung.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    errors: list[BaseException] = []
    with _environ(env):
        with deadline(1.0):
            store = open_store("s3://bkt/x")
            started = time.monotonic()

            def worker() -> None:
                try:
                    store.get("k")
                except BaseException as exc:
                    errors.append(exc)

            t = threading.Thread(target=worker)
            t.start()
            t.join(timeout=10)
        assert not t.is_alive() and time.monotonic() - started < 3
        assert [type(e) for e in errors] == [DeadlineExceededError]
        assert store._window() is None  # the block is over: no deadline left behind


def test_cli_timeout_option_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--timeout", "soon", "backends"])
    assert info.value.code == 2
    os.environ["PASSIVEPAXOS_TIMEOUT"] = "-1"
    try:
        code, _, err = cli(capsys, "status", "file:///nonexistent-ppx-dir")
    finally:
        del os.environ["PASSIVEPAXOS_TIMEOUT"]
    assert code == 2 and "PASSIVEPAXOS_TIMEOUT" in err


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- smaller: configuration errors that were store errors --------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "s3://Bad_Bucket!/x",
        "s3://ab/x",
        "s3://bkt:9000/x",
        "gs://Bad_Bucket/x",
        "s3://bkt/a/../b",
        "gs://bkt/a//b",
        "az://Bad_Container/x",
        "az://a--b/x",
        "az://ctr/a/./b",
        "file:///tmp/x\0y",
    ],
)
def test_invalid_bucket_or_path_is_a_configuration_error(
    moto_server: Any, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``s3://Bad_Bucket!/x`` said "create outcome unknown ... ParamValidationError" and
    exited 1; a malformed bucket name or prefix is a configuration error (exit 2) naming
    the URL, found before any request."""
    code, out, err = cli(capsys, "init", url)
    assert code == 2 and out == "", err
    line = _one_line(err)
    assert url.split("/")[2].split("\0")[0] in line, line
    assert any(why in line for why in ("not a valid", "component", "NUL")), line
    assert "unknown" not in line


def test_botocore_param_validation_is_a_config_error(moto_server: Any) -> None:
    """What botocore itself refuses is never retried as transient nor "outcome unknown"."""
    s3 = sys.modules[type(open_backend("s3://bkt/x")).__module__]
    store = Store(s3.S3Backend("Bad_Bucket!", "x"))  # past the URL check
    for call in (lambda: store.put("k", b"v", PutMode.CREATE), lambda: store.get("k")):
        with pytest.raises(ConfigError, match="not a valid S3 request"):
            call()
