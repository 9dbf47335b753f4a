"""Issue 10, findings 2, 9, 11 and 12: a log's identity, its store list and its objects.

Each test is a scenario from the issue, run through the CLI on real directories (and, for
a store wiped under a running process, through the library), and fails on d26dea1.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from passivepaxos.errors import ConfigError, InvalidObjectError, QuorumError
from passivepaxos.log import GENESIS, Log, slot_instance
from passivepaxos.manifest import MANIFEST_KEY, Manifest, init_log, open_log
from passivepaxos.store import open_store
from passivepaxos.types import PutMode
from tests.test_cli import run


def _dirs(tmp_path: Path, names: str) -> list[Path]:
    out = []
    for n in names:
        (tmp_path / n).mkdir()
        out.append(tmp_path / n)
    return out


def _values(log: str) -> list[str]:
    out = run("log", log)
    assert out.returncode == 0, out.stderr
    return [line.split("\t")[2] for line in out.stdout.splitlines()]


def _away(d: Path) -> Path:
    """Make a store unreachable the way the issue did: rename its directory away."""
    gone = d.with_name(d.name + ".away")
    d.rename(gone)
    return gone


def _back(gone: Path, d: Path) -> None:
    if d.exists():  # a writer may have re-created the root meanwhile (finding 10)
        shutil.rmtree(d)
    gone.rename(d)


def _wipe(d: Path) -> None:
    shutil.rmtree(d)
    d.mkdir()


# -- finding 2: a URL list that is not the log's ------------------------------------------


def test_finding_2_one_url_of_a_quorum_log_is_refused(tmp_path: Path) -> None:
    """``append`` / ``log`` / ``verify`` naming one store (or two) of a 3-store log are
    refused with the full list, instead of running the one-store layout on it (on d26dea1
    ``append a SOLO`` printed 0 and exited 0, and the quorum never showed it)."""
    a, b, c = (d.as_uri() for d in _dirs(tmp_path, "abc"))
    quorum = f"{a},{b},{c}"
    assert run("init", quorum).returncode == 0
    assert run("append", quorum, "q0").returncode == 0
    for partial in (a, f"{a},{b}", f"{a},{b},{c},{(tmp_path / 'abc').as_uri()}"):
        for cmd in (("append", partial, "SOLO"), ("log", partial), ("verify", partial)):
            out = run(*cmd)
            assert out.returncode == 2, (cmd, out.stdout, out.stderr)
            assert "not the store list of this log" in out.stderr
            assert quorum in out.stderr  # names the full list
    assert not (tmp_path / "a" / slot_instance(1)).exists()
    # the same stores in another order are the same configuration
    assert run("append", f"{c},{a},{b}", "q1").returncode == 0
    assert _values(quorum) == ["q0", "q1"]


def test_finding_2_one_prefix_of_an_s3_quorum_is_refused(moto_server: Any) -> None:
    """The issue's case on S3: ``append s3://bkt/qa SOLO`` on one prefix of a 3-prefix log
    (on d26dea1: printed 0, exit 0, and the quorum never showed it)."""
    bucket = f"ident-{uuid.uuid4().hex[:8]}"
    moto_server.client().create_bucket(Bucket=bucket)
    env = moto_server.env()
    qa, qb, qc = (f"s3://{bucket}/q{n}" for n in "abc")
    quorum = f"{qa},{qb},{qc}"
    assert run("init", quorum, env=env).returncode == 0
    assert run("append", quorum, "q0", env=env).returncode == 0
    out = run("append", qa, "SOLO", env=env)
    assert out.returncode == 2 and quorum in out.stderr, (out.stdout, out.stderr)
    for mode in ("create", "cas"):
        inst = f"{quorum.replace('/q', f'/{mode}-q')}"
        assert run("init", inst, "--mode", mode, env=env).returncode == 0
        assert run("propose", inst, "i", "one", env=env).stdout == "one\n"
        solo = run("propose", inst.split(",")[0], "i", "two", env=env)
        assert solo.returncode == 2 and inst in solo.stderr, (solo.stdout, solo.stderr)
    got = run("log", quorum, env=env)
    assert got.returncode == 0 and got.stdout == "0\t0\tq0\n", got.stderr


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_finding_2_propose_on_one_url_of_a_quorum_is_refused(tmp_path: Path, mode: str) -> None:
    """The consensus CLI on one store of a 3-store instance: refused (on d26dea1 it took
    the one-store fast path and decided a second value for the instance)."""
    a, b, c = (d.as_uri() for d in _dirs(tmp_path, "abc"))
    quorum = f"{a},{b},{c}"
    assert run("init", quorum, "--mode", mode).returncode == 0
    first = run("propose", quorum, "inst", "one")
    assert first.returncode == 0 and first.stdout.strip() == "one", first.stderr
    out = run("propose", a, "inst", "two")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert quorum in out.stderr
    assert run("propose", quorum, "inst", "three").stdout.strip() == "one"


def test_finding_2_init_refuses_a_store_named_twice(tmp_path: Path) -> None:
    x = (tmp_path / "x").as_uri()
    (tmp_path / "x").mkdir()
    out = run("init", f"{x},{x},{x}")
    assert out.returncode == 2 and "named twice" in out.stderr, (out.stdout, out.stderr)
    assert not (tmp_path / "x" / MANIFEST_KEY).exists()


# -- finding 9: store amnesia -------------------------------------------------------------


def test_finding_9_wiped_store_never_votes_cli(tmp_path: Path) -> None:
    """Slot 1 acknowledged while c was away; b wiped (re-created empty); c back, a away:
    ``append`` must not acknowledge another value at slot 1 (on d26dea1 it did, and
    readers disagreed depending on the stores they reached)."""
    da, db, dc = _dirs(tmp_path, "abc")
    quorum = ",".join(d.as_uri() for d in (da, db, dc))
    assert run("init", quorum).returncode == 0
    assert run("append", quorum, "v0").stdout == "0\n"
    gone = _away(dc)
    assert run("append", quorum, "v1").stdout == "1\n"  # on {a, b}
    _back(gone, dc)
    _wipe(db)
    gone = _away(da)
    out = run("append", quorum, "v2")
    assert out.returncode == 1, (out.stdout, out.stderr)  # never acknowledged
    assert db.as_uri() in out.stderr and "no manifest" in out.stderr
    _back(gone, da)
    assert _values(quorum) == ["v0", "v1"]
    # every reader agrees: with b wiped, a and c are the members that answer
    assert run("verify", quorum).returncode == 0
    assert not (db / MANIFEST_KEY).exists()
    # and re-running init does not readmit the wiped store behind the log's back
    again = run("init", quorum)
    assert again.returncode == 2 and db.as_uri() in again.stderr, again.stderr


@pytest.mark.parametrize("mode", ["create", "cas", "blocks"])
def test_finding_9_store_wiped_under_a_running_process(tmp_path: Path, mode: str) -> None:
    """A ``Log`` opened before the wipe re-checks membership per slot: its proposal for
    slot 1 does not count the wiped store (on d26dea1 it decided a second value there)."""
    da, db, dc = _dirs(tmp_path, "abc")
    quorum = ",".join(d.as_uri() for d in (da, db, dc))
    init_log(quorum, mode)
    with Log.open(quorum) as stale, Log.open(quorum) as other:
        assert stale.append([b"v0"]) == [0]
        gone = _away(dc)
        assert other.append([b"v1"]) == [1]  # decided on {a, b}
        _back(gone, dc)
        _wipe(db)
        gone = _away(da)
        with pytest.raises(QuorumError, match="holds no manifest") as err:
            stale.append([b"v2"])  # its tail is still slot 0: it proposes slot 1
        assert db.as_uri() in str(err.value)
        _back(gone, da)
    with Log.open(quorum) as reader:
        assert [e.value for e in reader.read()] == [b"v0", b"v1"]


def test_finding_9_check_does_not_outlive_its_batch(tmp_path: Path) -> None:
    """A store wiped between two batches of one proposal (a process paused between
    phase 1 and phase 2) does not count in the second: the check made with the first
    batch is not reused (simulation seed 35768 of ``amnesia``: the wiped store took a
    stale ACCEPT and a second value was decided at slot 0)."""
    from passivepaxos.consensus import core, driver
    from passivepaxos.errors import NotAMemberError
    from passivepaxos.manifest import close_members, member_stores

    dirs = _dirs(tmp_path, "abc")
    quorum = ",".join(d.as_uri() for d in dirs)
    init_log(quorum)
    stores, manifest = open_log(quorum)
    voters = member_stores(stores, manifest)
    instance = slot_instance(0)

    def proc() -> core.Proc[list[object]]:
        first = yield [core.Get(1, f"{instance}/{0:020d}")]
        _wipe(dirs[1])  # the pause: the store is wiped between the two batches
        second = yield [core.Put(1, f"{instance}/{1:020d}", b"x", PutMode.CREATE)]
        return [*first, *second]

    try:
        first, second = driver.run(proc(), voters)
    finally:
        close_members(voters)
    assert first is None  # a member then: its "nothing there" counts
    assert isinstance(second, NotAMemberError), second
    assert dirs[1].as_uri() in str(second)


def _memory_quorum(tag: str) -> tuple[list[str], Any, Any]:
    from passivepaxos.manifest import member_stores

    names = [f"{tag}-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    quorum = ",".join(f"memory://{n}" for n in names)
    init_log(quorum)
    stores, manifest = open_log(quorum)
    return names, stores, member_stores(stores, manifest)


def test_finding_9_a_batch_does_not_borrow_another_batchs_check() -> None:
    """Two batches on one instance of one store (two threads of one process: a writer
    and a reader of the same slot) each check for themselves: a request of batch A sent
    after the wipe does not count because batch B's check passed before it (review of
    8a8f773: the check was remembered per instance, shared by every caller)."""
    from passivepaxos.consensus import core, driver
    from passivepaxos.errors import NotAMemberError
    from passivepaxos.manifest import close_members
    from passivepaxos.urls import backend_module

    names, _, voters = _memory_quorum("borrow")
    key = f"{slot_instance(7)}/{0:020d}"
    op_a = core.Put(1, key, b"A", PutMode.CREATE)
    op_b = core.Get(1, key)
    try:
        batch_a = driver.begin_batch(voters, [op_a])  # A starts its batch, is preempted
        batch_b = driver.begin_batch(voters, [op_b])
        assert driver.execute(batch_b, op_b) is None  # B's check passes
        backend_module("memory").wipe(names[1])
        got = driver.execute(batch_a, op_a)  # A's request, sent after the wipe
    finally:
        close_members(voters)
    assert isinstance(got, NotAMemberError), got


def test_finding_9_a_retry_after_a_wipe_is_checked_again() -> None:
    """A request retried by the store (a 503, a backoff, a resend) is checked once more
    after its answer: the store wiped during the backoff answers the resent request, sent
    long after the check (review of 8a8f773: two values decided at slot 0)."""
    from passivepaxos.consensus import core, driver
    from passivepaxos.errors import NotAMemberError, TransientError
    from passivepaxos.manifest import close_members
    from passivepaxos.urls import backend_module

    memory = backend_module("memory")
    names, stores, voters = _memory_quorum("retry")
    key = f"{slot_instance(0)}/{0:020d}"
    backend = stores[1].backend
    real_put = backend.put
    failed: list[str] = []

    def put(k: str, *args: Any, **kw: Any) -> Any:
        if k == key and not failed:
            failed.append(k)
            memory.wipe(names[1])  # wiped while the store backs off
            raise TransientError("503 SlowDown (test)", url=stores[1].url, key=k)
        return real_put(k, *args, **kw)

    backend.put = put  # type: ignore[method-assign]
    op = core.Put(1, key, b"P", PutMode.CREATE)
    try:
        got = driver.execute(driver.begin_batch(voters, [op]), op)
    finally:
        backend.put = real_put  # type: ignore[method-assign]
        close_members(voters)
    assert failed and stores[1].get(key) is not None  # the resent request landed
    assert isinstance(got, NotAMemberError), got


@pytest.mark.parametrize("mode", ["create", "cas", "blocks"])
def test_finding_9_a_store_reused_by_another_log_is_neither_read_nor_written(
    tmp_path: Path, mode: str
) -> None:
    """Store b of log A is emptied and given to log B, which appends. A fresh process of
    A must neither build on B's DECIDED markers (its append was acknowledged past B's
    records, unreachable for every reader of A) nor write A's objects into b (B's log then
    read as damaged). Review of 6ec4c70: markers were read unchecked, and a store known not
    to be a member was still sent every request beside its check."""
    da, db, dc, dx, dy = _dirs(tmp_path, "abcxy")
    log_a = ",".join(d.as_uri() for d in (da, db, dc))
    init_log(log_a, mode)
    with Log.open(log_a, writer_id="WA") as a:
        a.append([b"a0"])
    _wipe(db)
    log_b = ",".join(d.as_uri() for d in (db, dx, dy))
    init_log(log_b, mode)
    with Log.open(log_b, writer_id="WB") as b:
        for i in range(5):
            b.append([f"b{i}".encode()])
    before = sorted(p.relative_to(db) for p in db.rglob("*") if p.is_file())
    with Log.open(log_a, writer_id="WA2") as a:  # a fresh process of log A
        a.append([b"a1"])
        a.append([b"a2"])
    with Log.open(log_a) as reader:
        assert [e.value for e in reader.read()] == [b"a0", b"a1", b"a2"]
    after = sorted(p.relative_to(db) for p in db.rglob("*") if p.is_file())
    assert after == before  # nothing of A's written into B's store
    with Log.open(log_b) as b:
        assert [e.value for e in b.read()] == [f"b{i}".encode() for i in range(5)]
        assert b.verify().ok


def test_finding_9_open_does_not_count_a_store_without_the_manifest(tmp_path: Path) -> None:
    da, db, dc = _dirs(tmp_path, "abc")
    quorum = ",".join(d.as_uri() for d in (da, db, dc))
    init_log(quorum)
    _wipe(db)
    gone = _away(dc)
    with pytest.raises(QuorumError, match="only 1 of 3 stores hold this log's manifest"):
        open_log(quorum)
    _back(gone, dc)
    # another log's manifest on b does not count either
    init_log(db.as_uri())
    gone = _away(dc)
    with pytest.raises(InvalidObjectError, match="manifests of different logs"):
        open_log(quorum)  # one store each: which log is it?
    _back(gone, dc)
    with Log.open(quorum) as log:  # a and c: a majority of members; b is not counted
        gone = _away(dc)
        with pytest.raises(QuorumError, match="holds another log"):
            log.append([b"x"])
        _back(gone, dc)
    assert open_log(quorum)[1].ident is not None


# -- finding 11: foreign and deleted records ----------------------------------------------


def _fill(tmp_path: Path, name: str, n: int) -> tuple[Path, str]:
    d = tmp_path / name
    d.mkdir()
    assert run("init", d.as_uri()).returncode == 0
    for i in range(n):
        assert run("append", d.as_uri(), f"{name}{i}").returncode == 0
    return d, d.as_uri()


def test_finding_11_slot_0_of_another_log_is_foreign(tmp_path: Path) -> None:
    """Each log's chain starts from its identity: another log's slot 0 copied into an
    empty log is damage (on d26dea1 it was read as ours and built on)."""
    y, _ = _fill(tmp_path, "y", 1)
    x, xu = _fill(tmp_path, "x", 0)
    (x / "log").mkdir(exist_ok=True)
    shutil.copy(y / slot_instance(0), x / slot_instance(0))
    out = run("append", xu, "mine")
    assert out.returncode == 1 and "slot 0" in out.stderr, (out.stdout, out.stderr)
    assert not (x / slot_instance(1)).exists()
    bad = run("verify", xu)
    assert bad.returncode == 1 and "broken hash chain" in bad.stdout


def test_finding_11_foreign_record_on_the_tail_is_not_built_on(tmp_path: Path) -> None:
    """A slot object copied from another log onto the tail: ``append`` refuses (on
    d26dea1 it was acknowledged at the next slot, where no reader could reach it)."""
    y, _ = _fill(tmp_path, "y", 4)
    x, xu = _fill(tmp_path, "x", 3)
    shutil.copy(y / slot_instance(3), x / slot_instance(3))
    out = run("append", xu, "after")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "slot 3 is damaged" in out.stderr and "broken hash chain" in out.stderr
    assert not (x / slot_instance(4)).exists()


def test_finding_11_deleted_middle_slot_is_not_filled(tmp_path: Path) -> None:
    """Tail discovery landing on a deleted middle slot checks the slot after it, as reads
    do (on d26dea1 ``append`` filled the gap, breaking the chain and erasing the evidence)."""
    x, xu = _fill(tmp_path, "x", 4)
    (x / slot_instance(2)).unlink()
    out = run("append", xu, "filler")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "slot 2 is damaged" in out.stderr and "slot 3 exists" in out.stderr
    assert not (x / slot_instance(2)).exists()  # the evidence is kept
    assert run("verify", xu).returncode == 1


# -- finding 12: manifest deleted or rewritten --------------------------------------------


def test_finding_12_init_refuses_over_existing_log_objects(tmp_path: Path) -> None:
    """Manifest deleted: ``init --mode blocks`` is refused and names an object (on
    d26dea1 it succeeded and the 4-slot log read as empty and intact)."""
    x, xu = _fill(tmp_path, "x", 4)
    (x / MANIFEST_KEY).unlink()
    out = run("init", xu, "--mode", "blocks")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert slot_instance(0) in out.stderr and "no log manifest" in out.stderr
    assert not (x / MANIFEST_KEY).exists()


def test_finding_12_verify_flags_objects_its_mode_does_not_explain(tmp_path: Path) -> None:
    """A valid manifest whose mode was edited: ``verify`` exits 1 naming an object the
    mode does not make (on d26dea1: "intact: 0 slot(s)", exit 0)."""
    _, xu = _fill(tmp_path, "x", 4)
    store = open_store(xu)
    got = store.get(MANIFEST_KEY)
    assert got is not None
    doc = json.loads(got[0])
    doc["mode"] = "blocks"
    store.put(MANIFEST_KEY, json.dumps(doc, sort_keys=True).encode(), PutMode.OVERWRITE)
    out = run("verify", xu)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "damage found" in out.stdout and slot_instance(0) in out.stdout


def test_finding_12_init_is_idempotent_and_completes_a_fresh_log(tmp_path: Path) -> None:
    """What still works: init twice, and init completing a store an earlier init missed
    while the log holds nothing yet (same identity everywhere)."""
    da, db, dc = _dirs(tmp_path, "abc")
    quorum = ",".join(d.as_uri() for d in (da, db, dc))
    first, created = init_log(quorum)
    assert created and first.ident is not None
    (dc / MANIFEST_KEY).unlink()
    again, created = init_log(quorum)
    assert created and again.ident == first.ident
    assert init_log(quorum) == (again, False)
    with pytest.raises(ConfigError, match="full store list"):
        init_log(",".join(d.as_uri() for d in (da, db)))


def test_format_1_log_keeps_working(tmp_path: Path) -> None:
    """A log created before identities (format-1 manifest, chain from the old constant)
    is still read, appended to and verified; its members are the stores holding a
    format-1 manifest of its mode."""
    da, db, dc = _dirs(tmp_path, "abc")
    quorum = ",".join(d.as_uri() for d in (da, db, dc))
    manifest, _ = init_log(quorum)
    old = Manifest(manifest.mode, manifest.stores, 1, None).encode()
    assert b'"id"' not in old and b'"format": 1' in old
    for d in (da, db, dc):
        open_store(d.as_uri()).put(MANIFEST_KEY, old, PutMode.OVERWRITE)
    with Log.open(quorum) as log:
        assert log.genesis == GENESIS
        assert log.append([b"x"]) == [0]
    with Log.open(quorum) as log:
        assert [e.value for e in log.read()] == [b"x"]
        assert log.verify().ok
    _wipe(db)
    with Log.open(quorum) as log:  # a wiped store does not count here either
        gone = _away(dc)
        with pytest.raises(QuorumError, match="holds no manifest"):
            log.append([b"y"])
        _back(gone, dc)


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_an_add_does_not_revive_a_store_wiped_in_place(tmp_path: Path, mode: str) -> None:
    """b is wiped in place (it lost its votes: no manifest); ``members add d`` rewrote
    every member's manifest, b's too, and b's empty lists then counted for slots it had
    decided: the holder's slot 1, decided on {a, b} while c was away, read as undecided
    on {b, c}, and every entry after it was lost to readers (simulation seed 500 of
    ``leader``). Now only stores holding this log's manifest get the new one."""
    from passivepaxos.membership import add_store

    da, db, dc, dd = _dirs(tmp_path, "abcd")
    quorum = ",".join(d.as_uri() for d in (da, db, dc))
    init_log(quorum, mode)
    with Log.open(quorum) as holder:
        holder.claim_writer(600)  # slot 0
        gone = _away(dc)
        assert holder.append([b"on a and b"]) == [1]  # a leader's ACCEPT on {a, b}
        _back(gone, dc)
        assert holder.append([b"after"]) == [2]
        holder.release_writer()  # slot 3 (a membership change waits for a live lease)
    _wipe(db)
    add_store(quorum, dd.as_uri())
    assert not (db / MANIFEST_KEY).exists(), "the wiped store got a manifest back"
    gone = _away(da)
    everything = ",".join(d.as_uri() for d in (da, db, dc, dd))
    with pytest.raises(QuorumError, match="holds no manifest"):  # b does not count
        Log.open(everything).close()  # (slot 1 is on a only now: without a, no majority)
    _back(gone, da)
    with Log.open(everything) as reader:
        assert [e.value for e in reader.read()] == [b"on a and b", b"after"]


def test_a_manifest_rewrite_does_not_undo_a_wipe_between_its_read_and_write(
    tmp_path: Path,
) -> None:
    """The rewrite is conditioned on the manifest it read (the store has compare-and-swap):
    a store wiped right after that read keeps no manifest (a blind overwrite wrote it
    back)."""
    from passivepaxos import membership
    from passivepaxos.store import Store

    da, db, dc = _dirs(tmp_path, "abc")
    quorum = ",".join(d.as_uri() for d in (da, db, dc))
    init_log(quorum)
    inner = open_store(db.as_uri())

    class WipedAfterRead(Store):
        def get(self, key: str) -> Any:
            got = inner.get(key)
            if key == MANIFEST_KEY:
                _wipe(db)  # the wipe lands between the read and the write
            return got

    assert inner.capabilities.cas  # file:// swaps: the conditional path is the one tested
    with Log.open(quorum) as log:
        stores = {s.url: s for s in log.known_stores()}
        stores[db.as_uri()] = WipedAfterRead(inner.backend)
        membership._write_manifests(log, log.members(), stores)
    assert not (db / MANIFEST_KEY).exists(), "the rewrite undid the wipe"
    assert (da / MANIFEST_KEY).exists() and (dc / MANIFEST_KEY).exists()


@pytest.mark.parametrize("how", ["same url", "symlink", "manifest kept", "foreign markers"])
def test_two_stores_removed_and_added_back_do_not_empty_the_old_slots(
    tmp_path: Path, how: str
) -> None:
    """Five stores; slots 0-2 decided while e was away (it holds nothing for them); a is
    removed (the markers copied to b, c, d: e away) and deleted, then b the same way; e
    comes back, a and b are added again, empty. With c and d unreachable, a majority of
    the old set {a, b, e} then held no marker and empty lists: a reader found the log
    empty and an append was acknowledged at slot 0, decided long before (agreement
    broken). ``add`` of a store that was a member once copies every slot's DECIDED
    marker onto it before its manifest: the old slots stay readable and the append goes
    after them. The same when the stores come back under another spelling of their URL
    (a symlink), when the deletion kept their manifest (only ``log/`` deleted), or when
    they hold another log's DECIDED markers (deleted first, never trusted): the third
    outside review of this stop."""
    from passivepaxos.membership import add_store, remove_store

    dirs = dict(zip("abcde", _dirs(tmp_path, "abcde"), strict=True))

    def urls(names: str) -> str:
        return ",".join(dirs[n].as_uri() for n in names)

    init_log(urls("abcde"))
    gone_e = _away(dirs["e"])
    with Log.open(urls("abcde")) as w:
        assert [w.append([b"x%d" % i])[0] for i in range(3)] == [0, 1, 2]
    remove_store(urls("abcde"), dirs["a"].as_uri())
    remove_store(urls("bcde"), dirs["b"].as_uri())
    for n in "ab":
        if how == "manifest kept":
            shutil.rmtree(dirs[n] / "log")
        else:
            _wipe(dirs[n])
        if how == "foreign markers":  # another log's marker of slot 0, left behind
            (dirs[n] / "log" / f"{0:020d}").mkdir(parents=True)
            shutil.copy(
                dirs["c"] / "log" / f"{3:020d}" / "decided",
                dirs[n] / "log" / f"{0:020d}" / "decided",
            )
    _back(gone_e, dirs["e"])
    back = {n: dirs[n].as_uri() for n in "ab"}
    if how == "symlink":
        for n in "ab":
            (tmp_path / f"{n}-alias").symlink_to(dirs[n])
            back[n] = (tmp_path / f"{n}-alias").as_uri()
    assert add_store(urls("cde"), back["a"])["slot"] == 5
    add_store(urls("cde") + "," + back["a"], back["b"])
    if how == "symlink":
        urls_now = urls("cde") + "," + back["a"] + "," + back["b"]
    else:
        urls_now = urls("cdeab")
    gone_c, gone_d = _away(dirs["c"]), _away(dirs["d"])
    with Log.open(urls_now) as r:
        assert [(e.slot, e.value) for e in r.read()] == [(0, b"x0"), (1, b"x1"), (2, b"x2")]
        assert r.append([b"new"]) == [7]
    _back(gone_c, dirs["c"])
    _back(gone_d, dirs["d"])
    with Log.open(urls_now) as r:
        assert [e.value for e in r.read()] == [b"x0", b"x1", b"x2", b"new"]
        assert r.verify().ok
    for n in "ab":  # the markers of slots 0-4 came back before their manifests
        assert {p.parent.name[-1] for p in (dirs[n] / "log").glob("*/decided")} >= set("01234")
