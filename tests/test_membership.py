"""Store membership changes through the log (passivepaxos.membership): one store added or
removed per change while appends continue; refusals; a stale client; the CLI."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from passivepaxos.cli import main
from passivepaxos.errors import ConfigError, UnsupportedError
from passivepaxos.log import Log
from passivepaxos.manifest import init_log
from passivepaxos.membership import (
    ConfigChange,
    MembershipConflictError,
    add_store,
    change,
    list_members,
    remove_store,
)


def _dirs(tmp_path: Path, names: str) -> list[str]:
    out = []
    for n in names:
        d = tmp_path / n
        d.mkdir()
        out.append(d.as_uri())
    return out


def _values(log: Log) -> list[bytes]:
    return [e.value for e in log.read()]


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_add_and_remove_while_appending(tmp_path: Path, mode: str) -> None:
    a, b, c, d = _dirs(tmp_path, "abcd")
    old = ",".join([a, b, c])
    init_log(old, mode)
    acked: list[bytes] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def appender(tag: str) -> None:
        try:
            with Log.open(old) as log:  # keeps its OLD list for the whole run
                i = 0
                while not stop.is_set():
                    v = f"{tag}-{i}".encode()
                    log.append([v])
                    acked.append(v)
                    i += 1
                    # a pause per append: without a lease nothing is fair, and two
                    # appenders racing flat out can keep a change out for minutes (each slot
                    # they add is one more the change must walk and copy markers for); 5 ms
                    # kept a remove out for over 10 minutes in a CI run on 2 loaded cores
                    stop.wait(0.03)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=appender, args=(t,)) for t in ("x", "y")]
    for t in threads:
        t.start()

    def appended(more: int) -> None:
        # each phase must see appends land (not a fixed sleep: on a loaded machine 0.3 s
        # saw 7 acknowledged entries in all; the test is about safety during appends)
        want, until = len(acked) + more, time.monotonic() + 60
        while len(acked) < want and not errors and time.monotonic() < until:
            time.sleep(0.02)

    try:
        appended(4)
        added = add_store(old, d)
        assert added["op"] == "add" and added["to"] == [a, b, c, d]
        appended(4)
        # opened with its current list (a list that is not a configuration is refused)
        removed = remove_store(",".join([a, b, c, d]), a)
        assert removed["to"] == [b, c, d] and removed["slot"] > added["slot"]
        # the removed store may go away entirely. An appender still on the old list (it may
        # be backing off after a lost slot) can write into it while it is being deleted: a
        # removed store's contents no longer matter, so delete again until it is gone
        for _ in range(100):
            try:
                shutil.rmtree(tmp_path / "a")
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise AssertionError("the removed store could not be deleted")
        appended(4)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    n_before = len(acked)
    assert n_before > 10
    new = ",".join([b, c, d])
    with Log.open(new) as log:  # a fresh reader with the NEW list
        log.append([b"after"])
        acked.append(b"after")
        got = _values(log)
        assert sorted(got) == sorted(acked) and len(got) == len(set(got))  # each exactly once
        report = log.verify()
        assert report.ok, report
        assert log.members() == (b, c, d)
        assert [(cfg.op, cfg.url) for _, cfg in log.config_history()] == [
            ("add", d),
            ("remove", a),
        ]
    # a fresh client with the OLD list (one of its stores deleted) finds the changes too
    with Log.open(old) as log:
        assert log.members() == (b, c, d)
        log.append([b"old-list"])
        assert _values(log)[-2:] == [b"after", b"old-list"]
        assert log.verify().ok
    listed = list_members(new)
    assert listed["stores"] == [b, c, d] and listed["origin"] == [a, b, c]
    assert [x["op"] for x in listed["changes"]] == ["add", "remove"]


@pytest.mark.parametrize("mode", ["create", "blocks"])
def test_stale_client_idle_across_two_changes(tmp_path: Path, mode: str) -> None:
    a, b, c, d = _dirs(tmp_path, "abcd")
    old = ",".join([a, b, c])
    init_log(old, mode)
    stale = Log.open(old)
    try:
        stale.append([b"s0"])
        with Log.open(old) as log:
            change(log, "add", d)
            log.append([b"m1"])
            change(log, "remove", a)
            log.append([b"m2"])
        shutil.rmtree(tmp_path / "a")
        # the idle client proposes after its known tail, learning both changes in order
        stale.append([b"s1"])
        assert stale.members() == (b, c, d)
        assert _values(stale) == [b"s0", b"m1", b"m2", b"s1"]
        assert stale.verify().ok
        # slots after the add are decided on the new store too
        assert any((tmp_path / "d").rglob("*decided*"))
    finally:
        stale.close()
    with Log.open(",".join([b, c, d])) as log:
        assert _values(log) == [b"s0", b"m1", b"m2", b"s1"]


def test_refusals(tmp_path: Path) -> None:
    single = (tmp_path / "single").as_uri()
    (tmp_path / "single").mkdir()
    init_log(single)
    x, y = _dirs(tmp_path, "xy")
    with pytest.raises(UnsupportedError, match="single-store"):
        add_store(single, x)
    a, b = _dirs(tmp_path, "ab")
    two = f"{a},{b}"
    init_log(two)
    with pytest.raises(UnsupportedError, match="leave one store"):
        remove_store(two, a)
    with pytest.raises(ConfigError, match="one change at a time"):
        add_store(two, f"{x},{y}")
    with pytest.raises(ConfigError, match="already a store"):
        add_store(two, a)
    with pytest.raises(ConfigError, match="full store list"):
        add_store(f"{a},{x}", y)
    with pytest.raises(ConfigError, match="not a store"):
        remove_store(two, x)
    # a store holding another log's slots is not added
    init_log(y)
    with Log.open(y) as other:
        other.append([b"z"])
    with pytest.raises(ConfigError, match="already holds log slots"):
        add_store(two, y)
    # two changes computed from the same configuration: the second is refused
    with Log.open(two) as log:
        change(log, "add", x)  # writes the marker, then the configuration record
        w = (tmp_path / "w").as_uri()
        stale = ConfigChange("add", w, (a, b), (a, b, w))
        with pytest.raises(MembershipConflictError, match="one change at a time"):
            log.append_config(stale)
        assert log.members() == (a, b, x)
    with pytest.raises(ValueError):
        ConfigChange("add", x, (a,), (a, x, y)).check()


def test_cli_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c, d = _dirs(tmp_path, "abcd")
    old = ",".join([a, b, c])
    assert main(["init", old]) == 0
    assert main(["append", old, "v0"]) == 0
    capsys.readouterr()
    assert main(["members", "add", old, d, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["op"] == "add" and out["to"] == [a, b, c, d]
    assert main(["members", "remove", old, c]) == 0
    assert "committed at slot" in capsys.readouterr().out
    assert main(["members", "list", f"{a},{b},{d}"]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == [a, b, d]
    assert main(["members", "add", old, f"{c},{tmp_path.as_uri()}/e"]) == 2
    assert "one change at a time" in capsys.readouterr().err
    assert main(["append", f"{a},{b},{d}", "v1"]) == 0
    capsys.readouterr()
    assert main(["log", f"{a},{b},{d}"]) == 0
    assert "v1" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_resume_that_meets_a_configuration_record(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed append finds its slot free, and a membership change's configuration
    record is decided there before its proposal lands (the simulator's seed 19786 of
    ``membership``). Appending the values anew on top of that record must name it
    (``conf``) and use the new store set: it used to be built as if no change had
    happened, and every reader then failed at the next slot ("names configuration slot
    None, not 1": the log damaged for good)."""
    from passivepaxos.log.config import ConfigView

    a, b, c, d = _dirs(tmp_path, "abcd")
    old = ",".join([a, b, c])
    init_log(old, mode)
    with Log.open(old) as stale:
        stale.append([b"s0"])  # slot 0: this client has looked, and seen no change
        decide = ConfigView.decide
        raced = []

        def change_first(
            view: ConfigView, slot: int, data: bytes, frame_wid: bytes, *, lead: bool = False
        ) -> bytes:
            if view is stale._cfg and slot == 1 and not raced:
                raced.append(slot)  # the change wins slot 1 just before our proposal
                with Log.open(old) as other:
                    change(other, "add", d)
            return decide(view, slot, data, frame_wid, lead=lead)

        monkeypatch.setattr(ConfigView, "decide", change_first)
        token = "1:0:" + "ab" * 16  # an earlier append's (unknown) outcome at slot 1
        assert stale.append([b"resumed"], resume=token) == [2]
        monkeypatch.undo()
        assert raced and stale.members() == (a, b, c, d)
        stale.append([b"after"])
        assert _values(stale) == [b"s0", b"resumed", b"after"]
    new = ",".join([a, b, c, d])
    with Log.open(new) as log:
        assert _values(log) == [b"s0", b"resumed", b"after"]
        assert log.verify().ok
    # slots after the change were decided on the added store too
    assert any((tmp_path / "d").rglob("*decided*"))


def test_an_old_store_list_whose_markers_cannot_be_read_is_not_called_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulator seed 68 of `stale`: opening the log with its original store list after a
    change, while the membership markers could not be read (a majority did not answer
    the LIST), was ConfigError "not the store list of this log" (exit 2, bad input). The
    list may be an earlier configuration: nothing was established, so QuorumError."""
    from passivepaxos import membership_data
    from passivepaxos.errors import QuorumError

    a, b, c, d = _dirs(tmp_path, "abcd")
    old = ",".join([a, b, c])
    init_log(old)
    with Log.open(old) as log:
        change(log, "add", d)
        change(log, "remove", c)
    with Log.open(old) as log:  # an earlier configuration, found through the markers
        assert log.members() == (a, b, d)
    with pytest.raises(ConfigError, match="is not the store list"):
        Log.open(",".join([a, d]))  # never a configuration: bad input

    def unreadable(stores: object) -> object:
        raise QuorumError("no majority answered the LIST of members/")

    monkeypatch.setattr(membership_data, "read_markers", unreadable)
    with pytest.raises(QuorumError, match="cannot tell whether this is a store list"):
        Log.open(old)
