"""Round-2 reviewer findings on ``append(resume=token)`` and "outcome unknown".

- review 1 C: callers of one group-commit slot share its write id; a resume must never take
  another caller's record (or its own resumed record) for a different caller's values.
- review 2 #4: a resume must not write the values twice when the earlier create lands
  after the resume found its slot empty (an absent object proves nothing).
- review 2 #3: a holder's resume that finds its earlier, late-landed record must count the
  lease read window from that earlier send, not from the resume's.
- review 1 D: after a create was sent, any store failure is "outcome unknown"; the
  read-back pauses stay within the store's deadline.
- review 1 E: every failure inside a resume (the open included, in the CLI) is
  ``AppendOutcomeUnknownError`` with the same token (exit 3), never "not written".
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_decided_facts import FAST, MODES, Link, client, quorum

from passivepaxos.cli import main
from passivepaxos.errors import (
    AppendOutcomeUnknownError,
    PassivePaxosError,
    TransientError,
)
from passivepaxos.log import Log, Position, _Pending
from passivepaxos.manifest import init_log, open_log
from passivepaxos.recipes.kv import KV
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import PutMode, Version
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import FaultPlan, FaultyBackend
from tests.clocked import NO_SLEEP, clocked


def _values(urls: list[str], mode: str) -> list[tuple[int, bytes]]:
    return [(e.slot, e.value) for e in client(urls, mode)[0].read()]


def _shared_slot_never_landed(
    urls: list[str], mode: str, a: list[bytes], b: list[bytes]
) -> tuple[str, str]:
    """Two callers share one group-commit slot whose record never lands: their tokens."""
    w, links = client(urls, mode)
    w.head()
    for link in links:
        link.cut_after = link.log_puts + (0 if len(urls) == 1 else 1)
    first, second = _Pending(a), _Pending(b)
    w._queue.extend([first, second])
    w._leading = True
    w._lead_round()
    w._leading = False
    assert isinstance(first.error, AppendOutcomeUnknownError)
    assert isinstance(second.error, AppendOutcomeUnknownError)
    return first.error.token, second.error.token


@pytest.mark.parametrize("different", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_review1_C_group_resume_callers_keep_their_own_values(mode: str, different: bool) -> None:
    """On 5866e2c B was told Position(0, 0), A's entry (its own never written), or got
    ConfigError forever with different values."""
    urls = quorum(mode)
    bvals = [b"other"] if different else [b"same"]
    ta, tb = _shared_slot_never_landed(urls, mode, [b"same"], bvals)
    assert client(urls, mode)[0].append_positions([b"same"], resume=ta) == [Position(0, 0)]
    got = client(urls, mode)[0].append_positions(bvals, resume=tb)
    assert got == [Position(1, 0)]
    assert _values(urls, mode) == [(0, b"same"), (1, bvals[0])]
    # resuming either token again recognises its record and writes nothing
    assert client(urls, mode)[0].append_positions(bvals, resume=tb) == got
    assert client(urls, mode)[0].append_positions([b"same"], resume=ta) == [Position(0, 0)]
    assert _values(urls, mode) == [(0, b"same"), (1, bvals[0])]


def test_review1_C_group_resume_after_trim() -> None:
    """On 5866e2c B was acknowledged at Position(0, 1), which never existed, after A's
    resumed record at slot 0 was trimmed."""
    urls = quorum("create", "a")
    ta, tb = _shared_slot_never_landed(urls, "create", [b"A"], [b"B"])
    r, _ = client(urls, "create")
    assert r.append_positions([b"A"], resume=ta) == [Position(0, 0)]
    assert r.append([b"C"]) == [1]
    r.snapshot()
    r.trim(2)
    got = client(urls, "create")[0].append_positions([b"B"], resume=tb)
    assert got == [Position(2, 0)]
    assert [(e.slot, e.value) for e in client(urls, "create")[0].read(2)] == [(2, b"B")]
    # A's token still recognises its trimmed record
    assert client(urls, "create")[0].append_positions([b"A"], resume=ta) == [Position(0, 0)]


class _LateOnRead:
    """A backend whose late create lands right after the next read of ``key`` that finds
    it absent: the resume saw the slot empty, then the earlier create landed."""

    def __init__(self, inner: FaultyBackend, key: str) -> None:
        self.inner, self.key = inner, key
        self.armed = False

    url = property(lambda self: self.inner.url)
    capabilities = property(lambda self: self.inner.capabilities)

    def close(self) -> None:
        self.inner.close()

    def get(self, key: str) -> tuple[bytes, Version] | None:
        got = self.inner.get(key)
        if self.armed and key == self.key and got is None:
            self.armed = False
            self.inner.flush_late()
        return got

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        return self.inner.put(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self.inner.delete(key, if_version)

    def list(self, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
        return self.inner.list(prefix, start_after)


NEVER = (10**6, 10**6)
QUICK = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, resolve_attempts=1)


def test_review2_4_resume_with_late_create_writes_once() -> None:
    """On 5866e2c: log [(0,a),(1,x),(2,x)]: the earlier create landed after the resume
    read its slot (absent), and the resume appended the values again at slot 2."""
    url = f"memory://r24-{uuid.uuid4().hex[:8]}"
    init_log(url)
    _, man = open_log(url)
    faulty = FaultyBackend(open_backend(url), FaultPlan(late_after=NEVER))
    hook = _LateOnRead(faulty, "log/" + "0" * 19 + "1")
    h = Log(
        [Store(hook, retry=QUICK, sleep=lambda _: None)], man.mode, writer_id="H", hint_every=10**9
    )
    h.append([b"a"])
    faulty.script("late")
    faulty.plan = FaultPlan(before=1.0, late_after=NEVER)
    with pytest.raises(AppendOutcomeUnknownError) as info:
        h.append([b"x"])
    faulty.plan = FaultPlan(late_after=NEVER)
    hook.armed = True
    assert h.append([b"x"], resume=info.value.token) == [1]
    assert not hook.armed  # the late create did land after the resume's read
    assert [(e.slot, e.value) for e in Log.open(url, writer_id="R").read(0)] == [
        (0, b"a"),
        (1, b"x"),
    ]


def test_review2_3_holder_resume_counts_the_window_from_the_earlier_send() -> None:
    """On 5866e2c H's lease read stayed valid and its kv.get returned b"old" after C had
    claimed (watching H's late-landed record for its TTL) and put b"new"."""
    t = [0.0]

    def sleeper(d: float) -> None:
        t[0] += d

    def clock() -> float:
        return t[0]

    def wall() -> float:
        return 1.7e9 + t[0]

    url = f"memory://r23-{uuid.uuid4().hex[:8]}"
    init_log(url)
    _, man = open_log(url)
    faulty = FaultyBackend(open_backend(url), FaultPlan(late_after=NEVER))
    h = Log(
        [Store(faulty, retry=QUICK, sleep=lambda _: None)],
        man.mode,
        writer_id="H",
        runtime=clocked(clock, sleeper, wall),
        hint_every=10**9,
    )
    c = Log.open(url, writer_id="C", runtime=clocked(clock, sleeper, wall), hint_every=10**9)
    kv_h, kv_c = KV(h), KV(c)
    h.claim_writer(1.0)
    kv_h.put("k", b"old")
    faulty.script("late")
    faulty.plan = FaultPlan(before=1.0, late_after=NEVER)
    with pytest.raises(AppendOutcomeUnknownError) as info:
        h.append([b"x"])
    faulty.plan = FaultPlan(late_after=NEVER)
    armed = [True]
    real_plan = h._leasing.plan

    def paused_plan(*args: Any, **kwargs: Any) -> Any:
        # the resume found the slot empty and plans its send: the earlier create lands
        # now and H is descheduled; C watches that record for its TTL, claims and writes
        if armed[0]:
            armed[0] = False
            faulty.flush_late()
            assert c.claim_writer(1.0).granted
            kv_c.put("k", b"new")
            t[0] += 0.5
        return real_plan(*args, **kwargs)

    h._leasing.plan = paused_plan  # type: ignore[method-assign]
    assert h.append([b"x"], resume=info.value.token) == [2]
    assert not armed[0]
    assert h.lease_read() is None
    assert kv_h.get("k") == b"new"


class _AnswerLostThenFailing:
    """One create store: the first log create lands, its answer is lost, and every request
    after it fails slowly (the store's deadline passes during the read-backs)."""

    def __init__(self, inner: object, clock: list[float]) -> None:
        self.inner, self.bad, self.clock = inner, False, clock

    url = property(lambda self: self.inner.url)  # type: ignore[attr-defined]
    capabilities = property(lambda self: self.inner.capabilities)  # type: ignore[attr-defined]

    def close(self) -> None:
        pass

    def _after(self, key: str | None) -> None:
        if self.bad:
            time.sleep(0.15)
            raise TransientError("failing (test)", url=self.url, key=key)

    def get(self, key: str) -> tuple[bytes, Version] | None:
        self._after(key)
        return self.inner.get(key)  # type: ignore[attr-defined, no-any-return]

    def list(self, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
        self._after(None)
        return self.inner.list(prefix, start_after)  # type: ignore[attr-defined]

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._after(key)
        self.inner.delete(key, if_version)  # type: ignore[attr-defined]

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        self._after(key)
        v: Version = self.inner.put(key, data, mode)  # type: ignore[attr-defined]
        if key.startswith("log/0"):
            self.bad = True
            raise TransientError("answer lost (test)", url=self.url, key=key)
        return v


def test_review1_D_resolve_create_failure_is_outcome_unknown() -> None:
    """On 5866e2c the read-backs' plain DeadlineExceededError escaped ("not written")
    while the entry was in the log, and the read-back pauses (1.24 s) outlasted the
    0.25 s store timeout."""
    urls = quorum("create", "a")
    _, man = open_log(urls[0])
    fl = _AnswerLostThenFailing(open_backend(urls[0]), [0.0])
    st = Store(fl, retry=RetryPolicy(attempts=6, base_delay=0.05, max_delay=0.05, timeout=0.25))  # type: ignore[arg-type]
    pauses: list[float] = []

    def sleep(d: float) -> None:
        pauses.append(d)
        time.sleep(d)

    log = Log([st], "create", manifest=man, runtime=clocked(sleep=sleep))
    with pytest.raises(AppendOutcomeUnknownError) as info:
        log.append([b"x"])
    assert _values(urls, "create") == [(0, b"x")]
    assert sum(pauses) <= 0.25
    r, _ = client(urls, "create")
    assert r.append([b"x"], resume=info.value.token) == [0]
    assert _values(urls, "create") == [(0, b"x")]


@pytest.mark.parametrize("mode", MODES)
def test_review1_E_resume_without_majority_is_still_unknown(mode: str) -> None:
    """On 5866e2c the resume raised QuorumError ("nothing was written") while the
    resumed append was in the log."""
    urls = quorum(mode)
    w, links = client(urls, mode)
    w.head()
    for link in links:
        link.lose_after = link.log_puts + 1
    with pytest.raises(AppendOutcomeUnknownError) as info:
        w.append([b"job"])
    token = info.value.token
    r, rl = client(urls, mode)
    rl[0].down = rl[1].down = True
    with pytest.raises(AppendOutcomeUnknownError) as again:
        r.append([b"job"], resume=token)
    assert again.value.token == token
    assert client(urls, mode)[0].append([b"job"], resume=token) == [0]
    assert _values(urls, mode) == [(0, b"job")]


def test_review1_E_cli_resume_open_without_majority_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On 5866e2c ``append --resume`` exited 1 (QuorumError at Log.open)."""
    dirs = []
    for n in "abc":
        (tmp_path / n).mkdir()
        dirs.append(f"file://{tmp_path / n}")
    url = ",".join(dirs)
    init_log(url, "create")
    _, man = open_log(url)
    links = [Link(open_backend(u)) for u in dirs]
    w = Log(
        [Store(link, retry=FAST, sleep=lambda _: None) for link in links],
        "create",
        manifest=man,
        runtime=NO_SLEEP,
    )
    w.head()
    for link in links:
        link.lose_after = link.log_puts + 1
    with pytest.raises(AppendOutcomeUnknownError) as info:
        w.append([b"job-42"])
    token = info.value.token
    os.rename(tmp_path / "a", tmp_path / "a.away")
    os.rename(tmp_path / "b", tmp_path / "b.away")
    capsys.readouterr()
    assert main(["append", "--resume", token, url, "job-42"]) == 3
    err = capsys.readouterr().err
    assert "outcome unknown" in err and err.count(token) == 1, err
    os.rename(tmp_path / "a.away", tmp_path / "a")
    os.rename(tmp_path / "b.away", tmp_path / "b")
    assert main(["append", "--resume", token, url, "job-42"]) == 0
    assert capsys.readouterr().out.split() == ["0"]


def test_review3_13_outcome_unknown_text_is_one_sentence() -> None:
    """On 5866e2c: "slot 1: append outcome unknown (slot 1: append outcome unknown (...":
    nested; the token must appear once and "outcome unknown" once."""
    urls = quorum("create", "a")
    w, links = client(urls, "create")
    assert w.append([b"zero"]) == [0]
    links[0].lose_after = links[0].log_puts
    with pytest.raises(AppendOutcomeUnknownError) as info:
        w.append([b"one"])
    text = str(info.value)
    assert text.count("outcome unknown") == 1 and text.count(info.value.token) == 1, text
    assert isinstance(info.value, PassivePaxosError)


@pytest.mark.parametrize("mode", MODES)
def test_review1_C_resume_unknown_at_a_new_slot_names_that_slot(mode: str) -> None:
    """B's resume finds slot 0 taken by A's record and sends its values to slot 1, whose
    answers are lost: the error names slot 1 (resumable exactly once from there), and
    B's original token also finds that record instead of appending again."""
    urls = quorum(mode)
    ta, tb = _shared_slot_never_landed(urls, mode, [b"A"], [b"B"])
    assert client(urls, mode)[0].append_positions([b"A"], resume=ta) == [Position(0, 0)]
    r, links = client(urls, mode)
    r.head()
    for link in links:
        link.lose_after = link.log_puts + (0 if len(urls) == 1 else 1)
    with pytest.raises(AppendOutcomeUnknownError) as info:
        r.append_positions([b"B"], resume=tb)
    assert info.value.slot == 1 and info.value.token != tb
    assert str(info.value).count(info.value.token) == 1
    again = client(urls, mode)[0].append_positions([b"B"], resume=info.value.token)
    assert again == [Position(1, 0)]
    assert client(urls, mode)[0].append_positions([b"B"], resume=tb) == [Position(1, 0)]
    assert _values(urls, mode) == [(0, b"A"), (1, b"B")]
