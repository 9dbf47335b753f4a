"""Review 3, storage layer findings (4, 5, 6, 7, 11, 12, 13), each as the reviewer's
reproducer showed it, made deterministic."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from backends.local import LocalBackend
from backends.memory import MemoryBackend
from passivepaxos.cli import main
from passivepaxos.deadline import deadline
from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    ConfigError,
    DeadlineExceededError,
    InvalidObjectError,
)
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import PutKind, PutMode
from passivepaxos.urls import parse_url, parse_urls
from passivepaxos.wrappers import FaultPlan, FaultyBackend
from tests.clocked import clocked


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- finding 4: a directory fsync failing after the link took effect ----------------------


def _failing_dir_fsync(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``os.fsync`` of a directory called ``name`` fails with EIO (a dying disk)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) and os.readlink(f"/proc/self/fd/{fd}").endswith(
            "/" + name
        ):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("kind", ["create", "overwrite", "delete"])
def test_review3_4_dir_fsync_failure_after_link_is_outcome_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    b = LocalBackend(tmp_path)
    if kind == "delete":
        b.put("d/k", b"x", PutMode.OVERWRITE)
    _failing_dir_fsync(monkeypatch, "d")
    with pytest.raises(AmbiguousWriteError, match="fsync failed"):
        if kind == "create":
            b.put("d/k", b"x", PutMode.CREATE)
        elif kind == "overwrite":
            b.put("d/k", b"x", PutMode.OVERWRITE)
        else:
            b.delete("d/k")
    monkeypatch.undo()
    # the change did take effect: reporting "failed, nothing was written" would be false
    assert (b.get("d/k") is None) == (kind == "delete")


def test_review3_4_cli_append_with_failing_dir_fsync_is_not_a_plain_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"file://{tmp_path}"
    assert cli(capsys, "init", url)[0] == 0
    _failing_dir_fsync(monkeypatch, "log")
    code, _, err = cli(capsys, "append", url, "hello")
    monkeypatch.undo()
    assert code in (0, 3), err  # was 1, "Input/output error", with the entry in the log
    code, out, _ = cli(capsys, "log", url)
    assert code == 0 and "hello" in out


def test_review3_4_new_directories_are_fsynced_into_their_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = LocalBackend._fsync_dir

    def spy(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(LocalBackend, "_fsync_dir", staticmethod(spy))
    LocalBackend(tmp_path).put("a/b/c", b"x", PutMode.CREATE)
    for d in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):
        assert d in synced, (d, synced)


# -- finding 12: a write applied but answered 500, every attempt --------------------------


def _applied_unanswered() -> Store:
    inner = MemoryBackend(f"r3-{uuid.uuid4().hex}")
    fb = FaultyBackend(inner, FaultPlan(after=1.0, writes_only=True))  # type: ignore[arg-type]
    return Store(fb, retry=RetryPolicy(attempts=3, base_delay=0), sleep=lambda s: None)


def test_review3_12_overwrite_never_answered_is_ambiguous_not_transient() -> None:
    s = _applied_unanswered()
    with pytest.raises(AmbiguousWriteError, match="outcome unknown after 3 attempts"):
        s.put("log/0", b"tombstone", PutMode.OVERWRITE)
    assert s.get("log/0") == (b"tombstone", s.get("log/0")[1])  # type: ignore[index]


def test_review3_12_unconditional_delete_never_answered_is_ambiguous() -> None:
    s = _applied_unanswered()
    s.backend.inner.put("k", b"", PutMode.OVERWRITE)  # type: ignore[attr-defined]
    with pytest.raises(AmbiguousWriteError):
        s.delete("k")


def test_review3_12_conditional_delete_unreadable_afterwards_is_ambiguous() -> None:
    inner = MemoryBackend(f"r3-{uuid.uuid4().hex}")
    fb = FaultyBackend(inner, FaultPlan(after=1.0))  # type: ignore[arg-type]
    v = inner.put("k", b"\0" * 40, PutMode.OVERWRITE)
    s = Store(fb, retry=RetryPolicy(attempts=2, base_delay=0), sleep=lambda s: None)
    with pytest.raises(AmbiguousWriteError):
        s.delete("k", if_version=v)


# -- finding 7: a lost race is a definite answer, not a write in doubt --------------------


def test_review3_7_lost_race_then_deadline_is_a_plain_timeout() -> None:
    url = f"memory://r3-race-{uuid.uuid4().hex}"
    init_log(url)
    other = Log.open(url)
    slow = threading.Event()  # once set, the loser's backoff pause outlasts the deadline
    rt = clocked(sleep=lambda s: time.sleep(0.6 if slow.is_set() else s))
    with deadline(0.5):
        me = Log.open(url, runtime=rt)
        me.head()
        inner = me.stores[0].backend
        orig_put = inner.put
        raced = threading.Event()

        def put(key: str, data: bytes, mode: PutMode) -> Any:
            if key.startswith("log/") and mode.kind is PutKind.CREATE and not raced.is_set():
                raced.set()
                # another writer (another process: no deadline of ours) takes the slot
                t = threading.Thread(target=other.append, args=([b"theirs"],))
                t.start()
                t.join()
            return orig_put(key, data, mode)

        inner.put = put  # type: ignore[method-assign]
        slow.set()  # past it
        with pytest.raises(DeadlineExceededError) as got:
            me.append([b"mine"])
    assert not isinstance(got.value, AmbiguousWriteError), got.value  # was exit 3
    assert [e.value for e in other.read(0)] == [b"theirs"]


def test_review3_7_deadline_write_doubt_is_settled_by_answers() -> None:
    s = Store(MemoryBackend(f"r3-{uuid.uuid4().hex}"))
    with deadline(30) as d:
        assert d is not None
        s.put("a", b"1", PutMode.CREATE)
        assert d.wrote  # landed: something of the operation is there
    with deadline(30) as d:
        assert d is not None
        with pytest.raises(AlreadyExistsError):
            s.put("a", b"2", PutMode.CREATE)
        assert not d.wrote  # refused: nothing in doubt
    s2 = _applied_unanswered()
    with deadline(30) as d:
        assert d is not None
        with pytest.raises(AmbiguousWriteError):
            s2.put("b", b"3", PutMode.OVERWRITE)
        assert d.wrote  # never answered: in doubt


# -- finding 6: S3 (and GCS/Dropbox) configuration errors are exit 2 naming the URL ---------


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"AWS_ENDPOINT_URL": "notaurl"}, "Invalid endpoint"),
        ({"AWS_PROFILE": "nosuchprofile"}, "ProfileNotFound"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "PartialCredentialsError"),
        ({"AWS_REGION": "us east!"}, "InvalidRegionError"),
        ({"PASSIVEPAXOS_CONNECT_TIMEOUT": "abc"}, "PASSIVEPAXOS_CONNECT_TIMEOUT='abc'"),
        ({"PASSIVEPAXOS_READ_TIMEOUT": "inf"}, "PASSIVEPAXOS_READ_TIMEOUT='inf'"),
    ],
)
def test_review3_6_s3_configuration_errors_are_exit_2_naming_the_url(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    says: str,
) -> None:
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = cli(capsys, "status", "s3://pbkt/l1")
    assert code == 2, err  # was 1, "unexpected <Type>"
    assert "s3://pbkt/l1" in err and says in err and "unexpected" not in err


def test_review3_6_non_utf8_prefix_is_refused_when_parsed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = cli(capsys, "init", "s3://pbkt/x\udcff")
    assert code == 2 and "not valid UTF-8" in err and "UnicodeEncodeError" not in err


def test_review3_6_gcs_and_dropbox_configuration_errors_are_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "notaurl")
    code, _, err = cli(capsys, "status", "gs://pbkt/l1")
    assert code == 2 and "gs://pbkt/l1" in err and "STORAGE_EMULATOR_HOST" in err, err
    code, _, err = cli(capsys, "status", "gs://pbkt/l1?timeout=-1")
    assert code == 2 and "timeout must be a positive number" in err, err
    monkeypatch.setenv("DROPBOX_TOKEN", "x")
    monkeypatch.setenv("PASSIVEPAXOS_READ_TIMEOUT", "abc")
    code, _, err = cli(capsys, "status", "dropbox:///l1")
    assert code == 2 and "PASSIVEPAXOS_READ_TIMEOUT='abc'" in err, err


def test_review3_6_azure_configuration_errors_are_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = cli(capsys, "status", "az://pbkt/l1")
    assert code == 2 and "az://pbkt/l1" in err and "AZURE_STORAGE_CONNECTION_STRING" in err, err
    code, _, err = cli(capsys, "status", "az://pbkt/l1?timeout=-1")
    assert code == 2 and "timeout must be a positive number" in err, err
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=c2VjcmV0;garbage")
    code, _, err = cli(capsys, "status", "az://pbkt/l1")
    assert code == 2 and "AZURE_STORAGE_CONNECTION_STRING" in err, err
    assert "c2VjcmV0" not in err  # never a secret in a message
    code, _, err = cli(capsys, "status", "az://Bad_Name/l1")
    assert code == 2 and "not a valid Azure container name" in err, err


# -- finding 5: one directory under two paths; URL parts that were silently dropped ---------


@pytest.fixture
def bind_mount(tmp_path: Path) -> Any:
    a, a2 = tmp_path / "a", tmp_path / "a2"
    a.mkdir()
    a2.mkdir()
    try:
        done = subprocess.run(["mount", "--bind", str(a), str(a2)], capture_output=True)
    except OSError:
        pytest.skip("no mount(8)")
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr!r}")
    try:
        yield a, a2
    finally:
        subprocess.run(["umount", str(a2)], check=True)


def test_review3_5_bind_mounted_directory_twice_in_a_quorum_is_refused(
    bind_mount: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, a2 = bind_mount
    b = tmp_path / "b"
    b.mkdir()
    spec = f"file://{a},file://{a2},file://{b}"
    code, _, err = cli(capsys, "init", spec)
    assert code == 2 and "same store" in err and f"file://{a2}" in err, err
    assert os.listdir(a) == []


def test_review3_5_symlinked_directory_is_one_store(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError, match="same store"):
        parse_urls([f"file://{tmp_path}/real", f"file://{tmp_path}/link"])
    # missing directories still compare by path
    assert len(parse_urls([f"file://{tmp_path}/x", f"file://{tmp_path}/y"])) == 2


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///tmp/dir#frag", "fragment"),
        ("s3://bkt/p?conditonal=off", "unknown option 'conditonal'"),
        ("file:///tmp/d?mode=x", "unknown option 'mode'"),
        ("gs://bkt/p?timout=3", "unknown option 'timout'"),
        ("s3://bkt/%FF", "percent escape"),
        ("file:///tmp/%FF", "percent escape"),
    ],
)
def test_review3_5_fragments_unknown_options_and_bad_escapes_are_refused(
    url: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        parse_url(url)
    code, _, err = cli(capsys, "status", url)
    assert code == 2 and says in err, err


# -- finding 13 (URL part): bucket names the message promises -----------------------------


@pytest.mark.parametrize("bucket", ["a..b", "a" * 64, "a" * 70, "B..kt", "bad!name", "1.2.3.4"])
def test_review3_13_s3_bucket_names_follow_the_stated_rule(bucket: str) -> None:
    with pytest.raises(ConfigError, match="3-63 characters"):
        parse_url(f"s3://{bucket}/p")


def test_review3_13_valid_s3_bucket_names_still_parse() -> None:
    for bucket in ("abc", "a" * 63, "my-bucket.v2", "1bucket"):
        assert parse_url(f"s3://{bucket}/p").container == bucket
    # legacy us-east-1 names (before March 2018) exist and stay usable
    for bucket in ("Bkt", "bad_name", "Legacy_" + "x" * 200):
        assert parse_url(f"s3://{bucket}/p").container == bucket


# -- finding 11: file names that are not UTF-8 ---------------------------------------------


def test_review3_11_non_utf8_file_in_a_store_is_named_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / os.fsdecode(b"\xff")).touch()
    with pytest.raises(InvalidObjectError, match=re.escape(f"{tmp_path}/\\xff")):
        list(LocalBackend(tmp_path).list())
    code, _, err = cli(capsys, "init", f"file://{tmp_path}")
    assert code == 1, err  # was "unexpected UnicodeEncodeError"
    assert f"{tmp_path}/\\xff" in err and "not UTF-8" in err and "unexpected" not in err


def test_review3_11_demo_refuses_a_non_utf8_directory_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / os.fsdecode(b"demo\xff")
    code, _, err = cli(capsys, "demo", str(target), "--procs", "1", "--count", "1")
    assert code == 2, err  # was exit 1 after creating it: "directory does not exist"
    assert "demo\\xff" in err and "UTF-8" in err
    assert not target.exists()


# -- finding 13: --timeout after the command; demo given a URL; non-UTF-8 URLs in JSON -------


def test_review3_13_global_options_work_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from passivepaxos.cli import build_parser

    p = build_parser()
    assert p.parse_args(["status", "u", "--timeout", "5"]).timeout == 5
    assert p.parse_args(["--timeout", "3", "status", "u"]).timeout == 3
    assert p.parse_args(["status", "u"]).timeout is None
    args = p.parse_args(["writer", "claim", "u", "--timeout", "4", "--debug"])
    assert (args.timeout, args.debug) == (4, True)
    url = f"file://{tmp_path}"
    assert cli(capsys, "init", url)[0] == 0
    code, _, err = cli(capsys, "status", url, "--timeout", "1")
    assert code == 0, err  # was exit 2, "unrecognized arguments: --timeout 1"
    with pytest.raises(SystemExit) as bad:
        main(["status", url, "--timeout", "abc"])
    assert bad.value.code == 2


def test_review3_13_demo_refuses_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "demo", "memory://x", "--procs", "1", "--count", "1")
    assert code == 2 and "demo takes a local directory" in err, err
    assert os.listdir(tmp_path) == []  # was ./memory:/x


def test_review3_13_non_utf8_url_is_refused_not_put_into_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"file://{tmp_path}/" + os.fsdecode(b"u\xff")
    code, out, err = cli(capsys, "init", url, "--json")
    assert code == 2 and "\\xff: not valid UTF-8" in err, (out, err)
    # with --json the refusal is one JSON object, valid UTF-8, the byte escaped in text
    (line,) = out.splitlines()
    assert "\\xff: not valid UTF-8" in json.loads(line)["error"]
    line.encode("utf-8")


def test_review3_12_cli_trim_whose_tombstones_land_unanswered_is_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's S3 run: every tombstone PUT applied but answered 500."""
    from passivepaxos.errors import TransientError
    from passivepaxos.urls import backend_module

    url = f"file://{tmp_path}"
    assert cli(capsys, "init", url)[0] == 0
    for v in "abc":
        assert cli(capsys, "append", url, v)[0] == 0
    assert cli(capsys, "snapshot", url)[0] == 0
    local = backend_module("local").LocalBackend
    real_put = local.put

    def put(self: Any, key: str, data: bytes, mode: PutMode) -> Any:
        version = real_put(self, key, data, mode)
        if key.startswith("log/") and mode.kind is PutKind.OVERWRITE:
            raise TransientError("InternalError: 500 (injected, after the write)", url=self.url)
        return version

    monkeypatch.setattr(local, "put", put)
    code, _, err = cli(capsys, "trim", url, "--before", "2")
    monkeypatch.undo()
    assert code == 3 and "outcome unknown" in err, err  # was 1, "InternalError"
    code, out, _ = cli(capsys, "verify", url)
    assert code == 0, out
