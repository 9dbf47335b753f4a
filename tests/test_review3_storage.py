"""Review 3, storage layer findings (4, 5, 6, 7, 11, 12, 13), each as the reviewer's
reproducer showed it, made deterministic."""

from __future__ import annotations

import errno
import os
import stat
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
    DeadlineExceededError,
)
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import PutKind, PutMode
from passivepaxos.wrappers import FaultPlan, FaultyBackend


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
    with deadline(0.5):
        me = Log.open(url)
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
        me._sleep = lambda s: time.sleep(0.6)  # type: ignore[method-assign]  # past it
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
