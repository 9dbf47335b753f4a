"""Review round 1 (reviewer 1), findings A, B, F and G: store identity, membership and
tail discovery on a quorum opened from its manifest.

- A: a passed membership check lives for one batch only (since 8a8f773; one phase-1 batch before) (it was remembered for
  the whole slot, so a store wiped later voted in a later proposal of that slot);
- B: a reader's learner and finisher count a store only while it holds the manifest (a
  reader's finisher decided a second value for an acknowledged slot on a wiped store);
- F: ``members remove`` of a store whose removal was committed finishes the marker copy;
- G: appends after two deleted middle slots.

Schedules are scripted on memory:// stores through ``Link`` (tests/test_decided_facts.py).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from passivepaxos.cli import main
from passivepaxos.consensus import core
from passivepaxos.errors import (
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    PassivePaxosError,
    QuorumError,
)
from passivepaxos.log import DamagedSlotError, Log, slot_instance
from passivepaxos.manifest import close_members, init_log, member_stores, open_log
from passivepaxos.membership import MembershipIncompleteError, change
from passivepaxos.store import Store
from passivepaxos.urls import open_backend
from tests.clocked import NO_SLEEP
from tests.test_decided_facts import FAST, Link, wipe

MODES = ["create", "cas", "blocks"]
_n = itertools.count()


def quorum(mode: str, names: str = "abc") -> list[str]:
    run = next(_n)
    urls = [f"memory://rev1id{run}-{n}" for n in names]
    init_log(",".join(urls), mode)
    return urls


def client(urls: list[str], mode: str) -> tuple[Log, list[Link]]:
    """A client opened from the manifest (identity checks on), with its own links."""
    links = [Link(open_backend(u)) for u in urls]
    stores = [Store(link, retry=FAST, sleep=lambda _: None) for link in links]
    _, manifest = open_log(",".join(urls))
    log = Log(stores, mode, manifest=manifest, runtime=NO_SLEEP, backoff_max=0.0)
    return log, links


def values(urls: list[str], mode: str, down: tuple[int, ...] = ()) -> list[bytes]:
    reader, links = client(urls, mode)
    for i in down:
        links[i].down = True
    with reader:
        return [e.value for e in reader.read()]


@pytest.mark.parametrize("mode", MODES)
def test_review1_A_membership_check_does_not_outlive_a_phase_1_batch(mode: str) -> None:
    """W's check of b for slot 1 (made in its unclear append of w1) must not count the
    wiped b when W proposes slot 1 again: x1 was acknowledged there (on 5866e2c W's next
    append decided w1 on {a, b-wiped} and readers saw w1, not x1)."""
    urls = quorum(mode)
    w, wl = client(urls, mode)
    x, xl = client(urls, mode)
    assert w.append([b"w0"]) == [0]
    for link in wl[1:]:
        link.cut_after = link.log_puts + 1  # b, c: W's PREPARE lands, then the link fails
    with pytest.raises(AppendOutcomeUnknownError):
        w.append([b"w1"])  # ACCEPT(w1) on a only
    xl[0].down = True  # X cannot reach a; its marker write to c is lost
    xl[2].drop_markers = True
    assert x.append([b"x1"]) == [1]  # acknowledged, decided on {b, c}
    wipe(urls[1])  # b loses its state
    for link in wl:
        link.down, link.cut_after = False, None
    wl[2].down = True  # W cannot reach c now
    with pytest.raises(PassivePaxosError):
        w.append([b"w2"])  # only a counts: no majority
    assert values(urls, mode) == [b"w0", b"x1"]
    assert values(urls, mode, down=(1,)) == [b"w0", b"x1"]


@pytest.mark.parametrize("mode", MODES)
def test_review1_B_reader_finisher_does_not_count_a_wiped_store(mode: str) -> None:
    """v is acknowledged at slot 0 on {a, b}; W1's ACCEPT(w1) sits on c only; b is
    wiped. A reader that cannot reach a must not finish slot 0 with the empty b (on
    5866e2c it decided w1 on {b, c}, so readers disagreed and verify said intact)."""
    urls = quorum(mode)
    w1, l1 = client(urls, mode)
    w2, l2 = client(urls, mode)
    w1.head()
    w2.head()
    for link in l1[:2]:
        link.cut_after = link.log_puts + 1  # W1: PREPARE everywhere, ACCEPT only on c
    with pytest.raises(AppendOutcomeUnknownError):
        w1.append([b"w1"])
    l2[2].down = True  # W2 cannot reach c
    assert w2.append([b"v"]) == [0]
    wipe(urls[1])
    r, rl = client(urls, mode)  # a fresh open: a and c hold the manifest
    rl[0].down = True
    with pytest.raises(PassivePaxosError):
        list(r.read())  # b does not count, a is unreachable: no majority, no decision
    assert values(urls, mode) == [b"v"]
    with pytest.raises(PassivePaxosError):
        values(urls, mode, down=(0,))  # only c counts
    with pytest.raises(PassivePaxosError):
        values(urls, mode, down=(2,))  # only a counts: the end of the log is not known


def _markers_on(url: str, upto: int) -> int:
    backend = open_backend(url)
    return sum(backend.get(core.decided_key(slot_instance(s))) is not None for s in range(upto + 1))


def test_review1_F_remove_after_commit_finishes_the_marker_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The removal record is committed but b refuses the DECIDED marker copy: the error
    says the change is committed and how to finish; `members remove` again completes the
    copy (on 5866e2c: "QuorumError: DECIDED marker on 1 of 2 stores", then "is not a
    store", and the copy could never be finished)."""
    for n in "abr":
        (tmp_path / f"s-{n}").mkdir()
    a, b, r = urls = [f"file://{tmp_path}/s-{n}" for n in "abr"]
    init_log(",".join(urls), "create")
    admin, links = client(urls, "create")
    assert admin.append([b"zero"]) == [0]
    links[1].drop_markers = True  # b stops taking marker writes mid-change
    with pytest.raises(MembershipIncompleteError) as info:
        change(admin, "remove", r)
    assert isinstance(info.value, QuorumError)
    msg = str(info.value)
    assert "committed at slot 1" in msg and "members remove" in msg and "do not delete" in msg
    assert _markers_on(b, 1) < 2
    # the CLI, a new process: reports the earlier commit and completes the copy
    assert main(["members", "remove", ",".join(urls), r]) == 0
    out = capsys.readouterr().out
    assert "committed earlier at slot 1; DECIDED markers complete" in out
    assert _markers_on(a, 1) == 2 and _markers_on(b, 1) == 2
    fresh, _ = client([a, b], "create")
    assert fresh.members() == (a, b)
    # again: nothing left to copy, still success
    again, _ = client(urls, "create")
    assert change(again, "remove", r)["markers_written"] == 0


def test_review1_F_remove_whose_record_outcome_is_unknown_is_finished_by_a_rerun() -> None:
    """The removal record's ACCEPTs land but their answers are lost: outcome unknown,
    saying how to finish; the rerun settles the record (it was decided) and copies the
    markers instead of answering "not a store"."""
    a, b, r = urls = quorum("create", "abr")
    admin, links = client(urls, "create")
    assert admin.append([b"zero"]) == [0]
    for link in links:
        link.lose_after = link.log_puts + 1  # PREPARE answered; ACCEPT lands, answer lost
    with pytest.raises(AmbiguousWriteError) as info:
        change(admin, "remove", r)
    assert "run `members remove` with the same arguments again" in str(info.value)
    rerun, _ = client(urls, "create")
    out = change(rerun, "remove", r)
    assert out["slot"] == 1 and out["resumed"] and out["to"] == [a, b]
    assert _markers_on(a, 1) == 2 and _markers_on(b, 1) == 2


@pytest.mark.parametrize("deleted", [(2, 3), (2, 3, 4)])
def test_review1_G_two_or_three_deleted_middle_slots_are_not_filled(
    tmp_path: Path, deleted: tuple[int, ...]
) -> None:
    """Tail discovery landing on the first of several deleted middle slots finds the
    later slot (it probes lo+2 and lo+4, as verify does) and refuses (on 5866e2c the
    append with slots 2 and 3 deleted was acknowledged at slot 2, erasing the evidence)."""
    url = f"file://{tmp_path}"
    init_log(url, "create")
    with Log.open(url) as log:
        for i in range(6):
            assert log.append([f"e{i}".encode()]) == [i]
    for s in deleted:
        (tmp_path / slot_instance(s)).unlink()
    with Log.open(url) as log, pytest.raises(DamagedSlotError) as info:
        log.append([b"NEW"])
    assert info.value.slot == 2
    assert not (tmp_path / slot_instance(2)).exists()  # the evidence is kept


@pytest.mark.parametrize("mode", MODES)
def test_review1_B_propose_through_member_stores_does_not_count_a_wiped_store(
    mode: str,
) -> None:
    """``propose`` (what ``cli propose`` runs) with stores wrapped by
    ``manifest.member_stores``: "first" is decided on {a, r} (b unreachable, so no
    marker on b), r is wiped, then a proposal reaching only b and r must not decide a
    second value (on the raw stores it decided "second")."""
    from passivepaxos.consensus import driver

    urls = quorum(mode, "abr")
    _, manifest = open_log(",".join(urls))
    links = [Link(open_backend(u)) for u in urls]
    raw = [Store(link, retry=FAST, sleep=lambda _: None) for link in links]
    stores = member_stores(raw, manifest)  # instance "i": a one-part name
    try:
        links[1].down = True
        assert driver.propose(stores, "i", b"first", "w", mode, sleep=lambda _: None) == b"first"
        links[1].down = False
        wipe(urls[2])
        links[0].down = True
        with pytest.raises(PassivePaxosError):
            driver.propose(stores, "i", b"second", "x", mode, sleep=lambda _: None)
    finally:
        close_members(stores)
