"""Issue 10, findings 1, 3 and 6: how a slot is decided and learned on a quorum.

- finding 1: a DECIDED marker is a fact proposers honour (after ``members remove`` copied
  the markers and the removed store was emptied, a stale writer must not decide slot 1
  again);
- finding 3: a reader that cannot tell whether a slot was decided never calls it missing:
  it finishes the instance (or raises);
- finding 6: an append whose ACCEPT may have landed fails with
  ``AppendOutcomeUnknownError`` (never ``QuorumError``, "not written"), and its token
  resumes it exactly once, from the library and from the CLI.

Every schedule is scripted on memory:// (or file://) stores through :class:`Link`, a
per-client link to one store that can be cut, can drop DECIDED marker writes, or can
apply requests and lose their answers.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.capabilities import Capabilities
from passivepaxos.cli import main
from passivepaxos.consensus import core
from passivepaxos.errors import (
    AppendOutcomeUnknownError,
    OutcomeUnknownError,
    QuorumError,
    TransientError,
)
from passivepaxos.log import Log, Position, _Pending
from passivepaxos.manifest import init_log
from passivepaxos.membership import change
from passivepaxos.recipes.kv import KV
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import Backend, ObjectMeta, PutMode, Version
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import FaultPlan, FaultyBackend
from tests.clocked import NO_SLEEP

MODES = ["create", "cas", "blocks"]
_n = itertools.count()


class Link:
    """One client's link to one store. ``down``: every request fails before reaching the
    store. ``drop_markers``: DECIDED marker writes fail before reaching it. ``lose_after``:
    the write to ``log/`` after that many (and every request after it) takes effect and
    its answer is lost."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.down = False
        self.drop_markers = False
        self.lose_after: int | None = None
        self.log_puts = 0
        self.losing = False
        self.cut_after: int | None = None  # like lose_after, but nothing takes effect

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def close(self) -> None:
        self.inner.close()

    def _cut(self, key: str | None) -> None:
        if self.down:
            raise TransientError("link down (test)", url=self.url, key=key)

    def get(self, key: str) -> tuple[bytes, Version] | None:
        self._cut(key)
        got = self.inner.get(key)
        if self.losing:
            raise TransientError("answer lost (test)", url=self.url, key=key)
        return got

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        self._cut(key)
        if self.drop_markers and key.endswith("/decided"):
            raise TransientError("marker write lost (test)", url=self.url, key=key)
        if key.startswith("log/") and not key.endswith("/decided"):
            if self.cut_after is not None and self.log_puts >= self.cut_after:
                self.down = True
                self._cut(key)
            if self.lose_after is not None and self.log_puts >= self.lose_after:
                self.losing = True
            self.log_puts += 1
        try:
            return self.inner.put(key, data, mode)
        finally:
            if self.losing:
                raise TransientError("answer lost (test)", url=self.url, key=key)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._cut(key)
        self.inner.delete(key, if_version)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        self._cut(None)
        items = list(self.inner.list(prefix, start_after))
        if self.losing:
            raise TransientError("answer lost (test)", url=self.url)
        return iter(items)


FAST = RetryPolicy(attempts=1, base_delay=0.001, max_delay=0.001, resolve_attempts=1)


def client(urls: list[str], mode: str) -> tuple[Log, list[Link]]:
    """A log client with its own links to ``urls`` (no real sleeps)."""
    links = [Link(open_backend(u)) for u in urls]
    stores = [Store(link, retry=FAST, sleep=lambda _: None) for link in links]
    return Log(stores, mode, runtime=NO_SLEEP, backoff_max=0.0), links


def quorum(mode: str, names: str = "abc") -> list[str]:
    run = next(_n)
    urls = [f"memory://dfact{run}-{n}" for n in names]
    init_log(",".join(urls), mode)
    return urls


def wipe(url: str) -> None:
    """The store is deleted and recreated empty (``rm -rf`` of a file:// root that a
    client then re-creates, an emptied S3 prefix)."""
    backend = open_backend(url)
    for meta in list(backend.list("")):
        backend.delete(meta.key)


# -- finding 1 ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_finding_1_a_decided_marker_is_a_fact_for_a_stale_proposer(mode: str) -> None:
    """Slot 1 is chosen on {a, r} while b is unreachable for its writer W; ``members
    remove r`` copies the DECIDED markers to a and b; r is emptied. X, paused with its tail
    at slot 0, proposes slot 1 on the old set {a, b, r} with a unreachable: b and the empty
    r would grant; the marker on b must make X adopt W's record instead of deciding its
    own (on d26dea1 X's append was acknowledged at slot 1 and a reader saw W's)."""
    a, b, r = quorum(mode, "abr")
    x, x_links = client([a, b, r], mode)
    w, w_links = client([a, b, r], mode)
    assert x.append([b"x0"]) == [0]  # X's tail is now slot 0; it pauses here

    w_links[1].down = True  # b is unreachable for W
    assert w.append([b"w1"]) == [1]  # chosen on {a, r}
    w_links[1].down = False

    admin, _ = client([a, b, r], mode)
    removed = change(admin, "remove", r)
    assert removed["slot"] == 2 and removed["to"] == [a, b]
    # the copied marker is on b
    assert open_backend(b).get(core.decided_key("log/00000000000000000001")) is not None
    wipe(r)

    x_links[0].down = True  # a is unreachable for X
    try:
        got = x.append([b"x1"])
    except QuorumError:
        got = None  # slots >= 3 are decided on {a, b}: without a, X cannot go on
    assert got != [1], "X's value was decided at slot 1 a second time"

    fresh, _ = client([a, b], mode)
    assert [e.value for e in fresh.read(to_slot=1)] == [b"x0", b"w1"]


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_finding_1_on_emptied_s3_prefixes(mode: str, moto_server: Any) -> None:
    """Finding 1 as the issue saw it on S3: the three stores are prefixes of one bucket on
    moto_server, and the removed store r is an emptied prefix (an S3 prefix has no
    existence of its own, so the emptied r is indistinguishable from a new one)."""
    bucket = f"dfacts3-{next(_n)}-{uuid.uuid4().hex[:6]}"
    moto_server.client().create_bucket(Bucket=bucket)
    a, b, r = (f"s3://{bucket}/{n}" for n in "abr")
    init_log(",".join((a, b, r)), mode)
    x, x_links = client([a, b, r], mode)
    w, w_links = client([a, b, r], mode)
    assert x.append([b"x0"]) == [0]
    w_links[1].down = True
    assert w.append([b"w1"]) == [1]  # chosen on {a, r}
    w_links[1].down = False
    admin, _ = client([a, b, r], mode)
    assert change(admin, "remove", r)["to"] == [a, b]
    wipe(r)
    assert not list(open_backend(r).list(""))  # the prefix is empty
    x_links[0].down = True
    try:
        got = x.append([b"x1"])
    except QuorumError:
        got = None
    assert got != [1], "X's value was decided at slot 1 a second time"
    fresh, _ = client([a, b], mode)
    assert [e.value for e in fresh.read(to_slot=1)] == [b"x0", b"w1"]


@pytest.mark.parametrize("mode", ["create", "cas", "blocks"])
def test_finding_1_consensus_core_honours_markers(mode: str) -> None:
    """The same at the consensus level: a marker on a store of the phase-1 majority is the
    decision, even where the lists / blocks that chose it are gone."""
    from passivepaxos.consensus import driver

    a, b, r = (f"memory://dfcore{next(_n)}-{n}" for n in "abr")
    links = [Link(open_backend(u)) for u in (a, b, r)]
    stores = [Store(link, retry=FAST, sleep=lambda _: None) for link in links]
    links[1].down = True
    assert driver.propose(stores, "i", b"first", "w", mode, sleep=lambda _: None) == b"first"
    links[1].down = False
    marker = core.Msg("D", core.ZERO, b"first").encode()
    Store(open_backend(b)).put(core.decided_key("i"), marker, PutMode.OVERWRITE)
    wipe(r)
    links[0].down = True
    assert driver.propose(stores, "i", b"second", "x", mode, sleep=lambda _: None) == b"first"


# -- finding 3 ------------------------------------------------------------------------------


def _commit_with_c_down_and_marker_lost_on_b(mode: str) -> tuple[list[str], Log]:
    a, b, c = quorum(mode)
    w, w_links = client([a, b, c], mode)
    w_links[2].down = True  # c is down
    w_links[1].drop_markers = True  # W's best-effort marker fails on b
    kv = KV(w, lease_reads=False)
    kv.put("k", b"v")  # slot 0, acknowledged
    return [a, b, c], w


@pytest.mark.parametrize("mode", MODES)
def test_finding_3_acknowledged_append_is_visible_with_one_store_down(mode: str) -> None:
    """W commits slot 0 while c is down and its DECIDED marker fails on b; a reader that
    cannot reach a (c is back, empty) must see the entry: not head() == -1, an empty
    read or KV.get None (all three on d26dea1)."""
    urls, _ = _commit_with_c_down_and_marker_lost_on_b(mode)
    for probe in ("head", "read", "kv"):
        reader, links = client(urls, mode)
        links[0].down = True  # the reader cannot reach a
        if probe == "head":
            assert reader.head() == 0
        elif probe == "read":
            assert len(list(reader.read())) == 1
        else:
            assert KV(reader, lease_reads=False).get("k") == b"v"


@pytest.mark.parametrize("mode", MODES)
def test_finding_3_no_false_gap(mode: str) -> None:
    """Same state, then slot 1 is written with every store up: the reader that cannot
    reach a sees slot 0 and slot 1, not a gap (DamagedSlotError on d26dea1)."""
    urls, _ = _commit_with_c_down_and_marker_lost_on_b(mode)
    w2, _ = client(urls, mode)
    assert w2.append([b"later"]) == [1]
    reader, links = client(urls, mode)
    links[0].down = True
    assert [e.slot for e in reader.read()] == [0, 1]


@pytest.mark.parametrize("mode", MODES)
def test_finding_3_provably_empty_slot_is_missing(mode: str) -> None:
    """The other side of the rule: a slot a majority of its stores shows nothing for is
    missing (the end of the log), with one store down."""
    a, b, c = quorum(mode)
    w, _ = client([a, b, c], mode)
    assert w.append([b"one"]) == [0]
    reader, links = client([a, b, c], mode)
    links[0].down = True
    assert reader.head() == 0
    fresh, fl = client([a, b, c], mode)  # no majority: it raises, never says "absent"
    fl[0].down = fl[1].down = True
    with pytest.raises(QuorumError):
        fresh.head()


def test_finding_3_learner_is_three_valued() -> None:
    a, b, c = (f"memory://dflearn{next(_n)}-{n}" for n in "abc")
    links = [Link(open_backend(u)) for u in (a, b, c)]
    stores = [Store(link, retry=FAST, sleep=lambda _: None) for link in links]
    from passivepaxos.consensus import driver

    assert driver.learn(stores, "i") is None  # provably undecided: all empty
    links[2].down = True
    links[1].drop_markers = True
    assert driver.propose(stores, "i", b"v", "w", sleep=lambda _: None) == b"v"
    links[2].down = False
    links[0].down = True  # b holds an accepted value, c nothing: cannot tell read-only
    with pytest.raises(QuorumError, match="cannot tell"):
        driver.learn(stores, "i")
    assert driver.learn(stores, "i", finish=True, sleep=lambda _: None) == b"v"
    assert driver.learn(stores, "i") == b"v"  # finished: now chosen on b and c


# -- finding 6 ------------------------------------------------------------------------------


def _ambiguous_append(mode: str, urls: list[str], value: bytes) -> AppendOutcomeUnknownError:
    """The ACCEPT (phase-2 block) lands on every store, the answers are lost, then the
    links fail: the append must say "outcome unknown", never "not written"."""
    w, links = client(urls, mode)
    w.head()
    for link in links:
        link.lose_after = link.log_puts + 1  # after the PREPARE / phase-1 block
    with pytest.raises(AppendOutcomeUnknownError) as info:
        w.append([value])
    assert isinstance(info.value.__cause__, OutcomeUnknownError)
    return info.value


@pytest.mark.parametrize("mode", MODES)
def test_finding_6_append_that_took_effect_is_outcome_unknown(mode: str) -> None:
    urls = quorum(mode)
    err = _ambiguous_append(mode, urls, b"once")
    assert err.slot == 0 and "resume with token" in str(err)
    reader, _ = client(urls, mode)
    assert [e.value for e in reader.read()] == [b"once"]  # it did take effect
    # resuming establishes that and writes nothing again
    w, _ = client(urls, mode)
    assert w.append([b"once"], resume=err.token) == [0]
    assert [e.value for e in client(urls, mode)[0].read()] == [b"once"]
    assert w.append([b"next"]) == [1]


@pytest.mark.parametrize("mode", MODES)
def test_finding_6_resume_appends_when_the_record_did_not_land(mode: str) -> None:
    """The links fail before the ACCEPT reaches any store: resuming finds the slot empty
    (finishing it) and appends the values then, once."""
    urls = quorum(mode)
    w, links = client(urls, mode)
    w.head()
    for link in links:
        link.cut_after = link.log_puts + 1  # the phase-2 write never reaches the store
    with pytest.raises(AppendOutcomeUnknownError) as info:
        w.append([b"v"])
    w2, _ = client(urls, mode)
    assert w2.append([b"v"], resume=info.value.token) == [0]
    assert [e.value for e in client(urls, mode)[0].read()] == [b"v"]


@pytest.mark.parametrize(("mode", "phase1"), [("create", 2), ("cas", 2), ("blocks", 3)])
def test_finding_6_faultybackend_script(mode: str, phase1: int) -> None:
    """The same with ``FaultyBackend`` scripts: on every store the phase-1 requests go
    through (``phase1`` of them: the PREPARE or block write, the marker read, for blocks
    the LIST of the blocks), the ACCEPT / phase-2 block takes effect and its answer is lost ("after"),
    then every request fails. Raised ``QuorumError`` on d26dea1."""
    urls = quorum(mode)
    faulty = [FaultyBackend(open_backend(u), FaultPlan()) for u in urls]
    stores = [Store(f, retry=FAST, sleep=lambda _: None) for f in faulty]
    w = Log(stores, mode, runtime=NO_SLEEP, backoff_max=0.0)
    assert w.append([b"first"]) == [0]  # W knows its tail: the next append reads nothing
    for f in faulty:
        f.script(*[None] * phase1, "after", *["before"] * 400)
    with pytest.raises(AppendOutcomeUnknownError) as info:
        w.append([b"landed"])
    assert info.value.slot == 1
    r, _ = client(urls, mode)  # other links: the stores themselves are fine
    assert [e.value for e in r.read()] == [b"first", b"landed"]
    assert r.append([b"landed"], resume=info.value.token) == [1]
    assert [e.value for e in r.read()] == [b"first", b"landed"]


def test_finding_6_one_store_resume() -> None:
    """One create store: the create lands, its answer and the read-backs are lost; the
    error carries a token and resuming finds the record (nothing written twice)."""
    urls = quorum("create", "a")
    w, links = client(urls, "create")
    assert w.append([b"zero"]) == [0]
    links[0].lose_after = links[0].log_puts
    with pytest.raises(AppendOutcomeUnknownError) as info:
        w.append([b"one"])
    assert info.value.slot == 1
    r, _ = client(urls, "create")
    assert r.append([b"one"], resume=info.value.token) == [1]
    assert [e.value for e in r.read()] == [b"zero", b"one"]


def test_finding_6_group_commit_callers_get_their_own_token() -> None:
    """Two callers share one ambiguous slot: each gets a token with its own index and
    resumes exactly its own values, once."""
    urls = quorum("create")
    w, links = client(urls, "create")
    w.head()
    for link in links:
        link.lose_after = link.log_puts + 1
    first, second = _Pending([b"a"]), _Pending([b"b", b"c"])
    w._queue.extend([first, second])
    w._leading = True
    w._lead_round()
    assert isinstance(first.error, AppendOutcomeUnknownError)
    assert isinstance(second.error, AppendOutcomeUnknownError)
    assert (first.error.index, second.error.index) == (0, 1)
    assert first.error.wid == second.error.wid and "token 0:1:" in str(second.error)
    r, _ = client(urls, "create")
    assert r.append_positions([b"b", b"c"], resume=second.error.token) == [
        Position(0, 1),
        Position(0, 2),
    ]
    assert r.append_positions([b"a"], resume=first.error.token) == [Position(0, 0)]
    assert [e.value for e in r.read()] == [b"a", b"b", b"c"]


def test_finding_6_cli_resume_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An append on file:// stores is ambiguous (the library's error carries the token);
    ``passivepaxos append --resume TOKEN LOG VALUE`` prints the slot and writes nothing
    twice; a bad token is refused."""
    dirs = []
    for n in "abc":
        (tmp_path / n).mkdir()
        dirs.append((tmp_path / n).as_uri())
    url = ",".join(dirs)
    init_log(url, "create")
    err = _ambiguous_append("create", dirs, b"exactly-once")
    assert main(["append", "--resume", err.token, url, "exactly-once"]) == 0
    assert capsys.readouterr().out.strip() == "0"
    assert main(["append", "--json", "--resume", err.token, url, "exactly-once"]) == 0
    assert json.loads(capsys.readouterr().out)["slot"] == 0
    assert main(["log", url]) == 0
    assert capsys.readouterr().out.count("exactly-once") == 1
    assert main(["append", "--resume", "nonsense", url, "x"]) != 0
    assert "bad resume token" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_finding_1_a_stale_leader_reads_the_markers(mode: str) -> None:
    """Finding 1's schedule for a leader's ACCEPT (issue 12's stable leader): W decides
    slot 1 on {a, r} (b unreachable for it); the removal copies its DECIDED marker to a
    and b; r is emptied. X, the slot's leader (it wrote slot 0) but paused until now,
    sends its leader's ACCEPT with a unreachable: b and the empty r take it as their slot
    0, a majority. Its batch reads the markers, as a phase 1 does (M2): it must return W's
    value. Without the marker read it decided its own (a second value at slot 1)."""
    from passivepaxos.consensus import core, driver

    a, b, r = quorum(mode, "abr")
    instance = "log/00000000000000000001"
    w_links = [Link(open_backend(u)) for u in (a, b, r)]
    w_links[1].down = True
    w = [Store(link, retry=FAST, sleep=lambda _: None) for link in w_links]
    assert driver.propose(w, instance, b"w1", "W", mode) == b"w1"  # chosen on {a, r}
    marker = core.Msg("D", core.ZERO, b"w1").encode()
    for u in (a, b):  # what `members remove r` copies
        Store(open_backend(u)).put(core.decided_key(instance), marker, PutMode.OVERWRITE)
    wipe(r)
    x_links = [Link(open_backend(u)) for u in (a, b, r)]
    x_links[0].down = True
    x = [Store(link, retry=FAST, sleep=lambda _: None) for link in x_links]
    assert driver.propose(x, instance, b"x1", "X", mode, lead=True) == b"w1"
