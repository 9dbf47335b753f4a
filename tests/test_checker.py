"""The linearizability checker on known histories, random histories and their mutations."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from passivepaxos.checker import (
    Hold,
    KVModel,
    LockModel,
    Op,
    Recorder,
    check,
    check_fencing,
    check_holders,
)

KV = KVModel()


def op(
    p: int,
    kind: str,
    call: float,
    ret: float | None,
    input: Any = None,
    output: Any = None,
    status: str = "ok",
    key: str = "x",
) -> Op:
    return Op(p, kind, key, input, output, status, call, ret)  # type: ignore[arg-type]


def put(p: int, v: Any, call: float, ret: float | None, status: str = "ok", key: str = "x") -> Op:
    return op(p, "put", call, ret, v, None, status, key)


def get(p: int, v: Any, call: float, ret: float, key: str = "x") -> Op:
    return op(p, "get", call, ret, None, v, "ok", key)


def cas(p: int, exp: Any, new: Any, res: bool, call: float, ret: float, key: str = "x") -> Op:
    return op(p, "cas", call, ret, (exp, new), res, "ok", key)


# ------------------------------------------------------------------ classic KV histories


def test_empty_history_is_linearizable() -> None:
    r = check([], KV)
    assert r.ok and r.verdict == "linearizable" and r.partition_results == {}


def test_concurrent_put_and_get_overlapping_may_see_either() -> None:
    for seen in (None, 1):
        h = [put(0, 1, 0, 10), get(1, seen, 2, 5)]
        assert check(h, KV).ok, seen


def test_two_overlapping_reads_may_disagree_only_in_order() -> None:
    # put(1) overlaps both reads; the first read sees 1, the second (after it) sees None:
    # impossible, since the second read started after the first one returned 1.
    h = [put(0, 1, 0, 10), get(1, 1, 1, 2), get(2, None, 3, 4)]
    r = check(h, KV)
    assert not r.ok
    # the other way round is fine
    h = [put(0, 1, 0, 10), get(1, None, 1, 2), get(2, 1, 3, 4)]
    assert check(h, KV).ok


def test_stale_read_after_completed_write_is_caught() -> None:
    h = [put(0, 1, 0, 1), put(0, 2, 2, 3), get(1, 1, 4, 5)]
    r = check(h, KV)
    assert not r.ok and r.verdict == "not linearizable"
    cex = r.counterexample
    assert cex is not None and cex.key == "x"
    assert cex.culprit == h[2]
    assert [o.input for o in cex.linearized if o.kind == "put"] == [1, 2]
    assert cex.state == 2 and cex.stuck == [h[2]]
    text = r.describe()
    assert "not linearizable" in text and "get()" in text


def test_two_cas_from_the_same_expected_value_cannot_both_succeed() -> None:
    h = [put(0, 0, 0, 1), cas(1, 0, 1, True, 2, 5), cas(2, 0, 2, True, 3, 6)]
    assert not check(h, KV).ok
    h[2] = cas(2, 0, 2, False, 3, 6)
    assert check(h, KV).ok


def test_cas_create_if_absent() -> None:
    h = [cas(0, None, "a", True, 0, 1), cas(1, None, "b", False, 2, 3), get(2, "a", 4, 5)]
    assert check(h, KV).ok
    h[1] = cas(1, None, "b", True, 2, 3)
    assert not check(h, KV).ok


def test_read_of_a_value_never_written_is_caught() -> None:
    h = [put(0, 1, 0, 1), get(1, 7, 0.5, 3)]
    assert not check(h, KV).ok


def test_delete() -> None:
    h = [put(0, 1, 0, 1), op(0, "delete", 2, 3, output=True), get(1, None, 4, 5)]
    assert check(h, KV).ok
    h[1] = op(0, "delete", 2, 3, output=False)  # the key existed
    assert not check(h, KV).ok
    h[1] = op(0, "delete", 2, 3)
    h[2] = get(1, 1, 4, 5)
    assert not check(h, KV).ok


def test_real_time_order_is_respected() -> None:
    # The sequential order put(2) then put(1) would explain the read, but put(1) returned
    # before put(2) was invoked, so real time forbids it.
    h = [put(0, 1, 0, 1), put(1, 2, 2, 3), get(2, 1, 4, 5)]
    assert not check(h, KV).ok
    # Make the puts overlap: now the read of 1 is fine.
    h[1] = put(1, 2, 0.5, 3)
    assert check(h, KV).ok


def test_many_concurrent_writers_one_reader() -> None:
    h = [put(p, p, 0, 10) for p in range(8)] + [get(9, 5, 11, 12), get(9, 5, 13, 14)]
    r = check(h, KV)
    assert r.ok
    h.append(get(9, 3, 15, 16))
    assert not check(h, KV).ok


# ---------------------------------------------------------------------------- info / fail


def test_info_put_later_read_is_linearizable() -> None:
    h = [put(0, 1, 0, 1), put(1, 2, 2, None, status="info"), get(2, 2, 5, 6)]
    assert check(h, KV).ok


def test_info_put_never_observed_is_linearizable() -> None:
    h = [put(0, 1, 0, 1), put(1, 2, 2, None, status="info"), get(2, 1, 5, 6), get(2, 1, 7, 8)]
    assert check(h, KV).ok


def test_info_put_may_take_effect_late() -> None:
    # an info put can land long after it was invoked, between two later reads
    h = [put(1, 2, 0, None, status="info"), get(2, None, 5, 6), get(2, 2, 7, 8)]
    assert check(h, KV).ok
    # but once seen, it cannot be undone by nothing
    h.append(get(2, None, 9, 10))
    assert not check(h, KV).ok


def test_info_put_cannot_take_effect_before_its_call() -> None:
    h = [get(2, 2, 0, 1), put(1, 2, 2, None, status="info")]
    assert not check(h, KV).ok


def test_fail_put_whose_value_is_read_is_not_linearizable() -> None:
    h = [put(0, 1, 0, 1), put(1, 2, 2, 3, status="fail"), get(2, 2, 5, 6)]
    r = check(h, KV)
    assert not r.ok
    assert r.counterexample is not None and r.counterexample.culprit == h[2]


def test_info_cas_and_info_get() -> None:
    h = [
        put(0, 1, 0, 1),
        op(1, "cas", 2, None, (1, 5), None, "info"),
        op(2, "get", 2, None, None, None, "info"),  # dropped: read-only
        get(3, 5, 4, 5),
    ]
    assert check(h, KV).ok
    h[0] = put(0, 9, 0, 1)  # the info cas could not have swapped
    assert not check(h, KV).ok


# ----------------------------------------------------------------------------- partitions


def test_partitioned_by_key() -> None:
    h = [
        put(0, 1, 0, 1, key="a"),
        put(1, 1, 0, 1, key="b"),
        get(2, 1, 2, 3, key="a"),
        get(3, None, 2, 3, key="c"),
        put(0, 2, 4, 5, key="b"),
        get(3, 1, 6, 7, key="b"),  # stale on b only
    ]
    r = check(h, KV)
    assert not r.ok
    assert set(r.partition_results) == {"a", "b", "c"}
    assert r.partition_results["a"].ok and r.partition_results["c"].ok
    assert r.partition_results["b"].verdict == "not linearizable"
    assert r.counterexample is not None and r.counterexample.key == "b"
    assert r.partition_results["a"].ops == 2


def test_budget_gives_unknown_not_ok() -> None:
    h = [put(p, p, 0, 10) for p in range(8)] + [get(9, 99, 11, 12)]
    r = check(h, KV, max_states=5)
    assert not r.ok and r.verdict == "unknown" and r.counterexample is None


def test_bad_ops_rejected() -> None:
    with pytest.raises(ValueError):
        check([put(0, 1, 2, 1)], KV)
    with pytest.raises(ValueError):
        check([put(0, 1, 2, None)], KV)


# ----------------------------------------------------------------------------------- locks


def acq(p: int, token: int | None, call: float, ret: float | None, status: str = "ok") -> Op:
    return Op(p, "acquire", "L", p, token, status, call, ret)  # type: ignore[arg-type]


def rel(p: int, token: int, res: bool, call: float, ret: float) -> Op:
    return Op(p, "release", "L", (p, token), res, "ok", call, ret)


def test_lock_history_linearizable() -> None:
    h = [
        acq(1, 1, 0, 1),
        acq(2, None, 2, 3),  # refused: held
        rel(1, 1, True, 4, 5),
        acq(2, 2, 4.5, 7),  # overlaps the release; linearized after it
        rel(1, 1, False, 8, 9),
    ]
    assert check(h, LockModel()).ok


def test_two_overlapping_holders_is_a_violation() -> None:
    h = [acq(1, 1, 0, 1), acq(2, 2, 2, 3)]
    assert not check(h, LockModel()).ok
    # with leases that may expire silently, the model allows it ...
    assert check(h, LockModel(expiring=True)).ok
    # ... and the true-time checker decides
    holds = [Hold("L", 1, 1, 1, 12), Hold("L", 2, 2, 3, 13)]
    v = check_holders(holds)
    assert len(v) == 1 and v[0].first.owner == 1 and v[0].second.owner == 2
    assert "overlap" in str(v[0])
    assert check_holders([Hold("L", 1, 1, 1, 3), Hold("L", 2, 2, 3, 13)]) == []
    assert check_holders([Hold("L", 1, 1, 1, 12), Hold("M", 2, 2, 3, 13)]) == []


def test_tokens_going_backwards_is_a_violation() -> None:
    h = [acq(1, 5, 0, 1), rel(1, 5, True, 2, 3), acq(2, 4, 4, 5)]
    assert not check(h, LockModel()).ok
    assert not check(h, LockModel(expiring=True)).ok
    v = check_fencing(h)
    assert len(v) == 1 and v[0].earlier == h[0] and v[0].later == h[2]
    assert "backwards" in str(v[0])
    # concurrent grants may come in either order in real time, but never equal
    h2 = [acq(1, 5, 0, 10), acq(2, 4, 1, 11)]
    assert check_fencing(h2) == []
    assert check_fencing([acq(1, 5, 0, 1), acq(2, 5, 2, 3)]) != []


def test_info_acquire_may_or_may_not_have_granted() -> None:
    h = [acq(1, None, 0, None, status="info"), acq(2, 3, 5, 6)]
    assert check(h, LockModel()).ok  # the info acquire never took effect
    h = [acq(1, None, 0, None, status="info"), acq(2, None, 5, 6)]
    assert check(h, LockModel()).ok  # it did, and holds the lock
    h = [acq(1, None, 0, None, status="info"), rel(1, 7, True, 2, 3), acq(2, 8, 5, 6)]
    assert check(h, LockModel()).ok
    h = [acq(2, 3, 0, 1), rel(1, 7, True, 2, 3)]
    assert not check(h, LockModel()).ok  # 1 never held it


def test_expiring_lock_release_after_expiry_answers_false() -> None:
    h = [acq(1, 1, 0, 1), rel(1, 1, False, 5, 6), acq(2, 2, 7, 8)]
    assert not check(h, LockModel()).ok
    assert check(h, LockModel(expiring=True)).ok


def test_recorder() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1
        return now[0]

    rec = Recorder(clock)
    a = rec.invoke(1, "put", "x", 1)
    b = rec.invoke(2, "get", "x")
    rec.ok(a)
    rec.ok(b, 1)
    c = rec.invoke(3, "put", "x", 2)
    rec.fail(c)
    rec.invoke(4, "put", "x", 3)
    hist = rec.close()
    assert [o.status for o in hist] == ["ok", "ok", "fail", "info"]
    assert hist[0].call == 1 and hist[0].ret == 3 and hist[3].ret is None
    assert check(hist, KV).ok


# ------------------------------------------------------------------------------ random


def random_history(
    seed: int,
    n_ops: int,
    keys: int = 1,
    procs_per_key: int = 8,
    faults: bool = True,
    late: float = 10.0,
    lost: float = 0.5,
) -> list[Op]:
    """A real sequential execution, stretched into overlapping intervals.

    Every key has ``procs_per_key`` clients (so per-key concurrency is at most that),
    each running one operation at a time; an operation takes effect at a random point of
    its interval, effects applied in that order. With ``faults``, some operations time
    out (``info``: with probability ``lost`` they never took effect, else at a random
    point up to ``late`` after the client gave up) and some fail without effect.
    """
    rng = random.Random(seed)
    raw: list[tuple[float, float, float, int, str, str, Any, str]] = []
    counter = 0
    for k in range(keys):
        key = f"k{k}"
        for p in range(procs_per_key):
            t = rng.random()
            for _ in range(n_ops // (keys * procs_per_key)):
                call = t + rng.random()
                ret = call + rng.expovariate(1.0) * 2
                point = rng.uniform(call, ret)
                t = ret
                kind = rng.choices(["put", "get", "cas", "delete"], [4, 5, 2, 1])[0]
                counter += 1
                status = "ok"
                if faults:
                    status = rng.choices(["ok", "info", "fail"], [92, 4, 4])[0]
                    if status == "info" and rng.random() < lost:
                        point = INF  # never took effect
                        t = ret + 5  # this client was stuck a while
                    if status == "info" and point != INF:
                        point = rng.uniform(call, ret + late)  # may land late
                raw.append((point, call, ret, p + 100 * k, kind, key, counter, status))
    raw.sort()
    state: dict[str, Any] = {}
    written: list[Any] = []
    hist: list[Op] = []
    for point, call, ret, p, kind, key, n, status in raw:
        cur = state.get(key)
        out: Any = None
        inp: Any = None
        if kind == "put":
            inp = f"v{n}"
        elif kind == "cas":
            exp = cur if rng.random() < 0.6 else rng.choice([None, *written[-5:]])
            inp = (exp, f"v{n}")
        effective = status == "ok" or (status == "info" and point != INF)
        if effective:
            if kind == "put":
                state[key] = inp
                written.append(inp)
            elif kind == "get":
                out = cur
            elif kind == "cas":
                out = cur == inp[0]
                if out:
                    state[key] = inp[1]
                    written.append(inp[1])
            else:
                state.pop(key, None)
        hist.append(
            Op(p, kind, key, inp, out if status == "ok" else None, status, call, ret)  # type: ignore[arg-type]
        )
    hist.sort(key=lambda o: o.call)
    return hist


INF = float("inf")


def max_concurrency(hist: list[Op]) -> int:
    """Operations outstanding at once (an info op until its client gave up, as in Jepsen)."""
    events = sorted([(o.call, 1) for o in hist] + [(o.ret, -1) for o in hist if o.ret is not None])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def stale_mutation(hist: list[Op], rng: random.Random) -> list[Op] | None:
    """Replace one ok read's value by a value overwritten before the read was invoked.

    The stale value was put by an ok put that completed before another ok write to the
    key completed, which in turn completed before the read began.
    """
    reads = [i for i, o in enumerate(hist) if o.kind == "get" and o.status == "ok"]
    rng.shuffle(reads)
    for i in reads:
        g = hist[i]
        writes = [
            o
            for o in hist
            if o.key == g.key
            and o.status == "ok"
            and o.end < g.call
            and (o.kind == "put" or (o.kind == "cas" and o.output))
        ]
        writes.sort(key=lambda o: o.end)
        if len(writes) < 2:
            continue
        newer = writes[-1]
        older = [w for w in writes if w.end < newer.call]
        if not older:
            continue
        w = rng.choice(older)
        value = w.input if w.kind == "put" else w.input[1]
        if value == g.output:
            continue
        mutated = list(hist)
        mutated[i] = Op(g.process, g.kind, g.key, g.input, value, g.status, g.call, g.ret)
        return mutated
    return None


@pytest.mark.parametrize("seed", range(40))
def test_random_histories_are_linearizable(seed: int) -> None:
    hist = random_history(seed, 160, keys=2)
    assert max_concurrency([o for o in hist if o.key == "k0"]) <= 8
    r = check(hist, KV, max_states=2_000_000)
    assert r.ok, r.describe()


def test_random_stale_reads_are_caught() -> None:
    caught = total = 0
    for seed in range(100):
        hist = random_history(seed, 120, keys=1)
        mutated = stale_mutation(hist, random.Random(seed))
        if mutated is None:
            continue
        total += 1
        r = check(mutated, KV, max_states=2_000_000)
        assert r.verdict != "unknown"
        if not r.ok:
            caught += 1
            assert r.counterexample is not None
    print(f"\nstale reads caught: {caught}/{total}")
    assert total >= 80
    assert caught >= 0.9 * total


def test_random_lock_histories() -> None:
    """A sequential lock service, stretched into overlapping intervals, checks clean;
    swapping two tokens is caught by the model and the fencing checker."""
    for seed in range(20):
        rng = random.Random(seed)
        raw: list[tuple[float, float, float, int, str]] = []
        for p in range(8):
            t = rng.random()
            for _ in range(15):
                call = t + rng.random()
                ret = call + rng.random() * 2
                raw.append((rng.uniform(call, ret), call, ret, p, rng.choice(["a", "r"])))
                t = ret
        raw.sort()
        holder: int | None = None
        token = 0
        mine: dict[int, int] = {}
        hist: list[Op] = []
        for _, call, ret, p, what in raw:
            if what == "a":
                out: Any = None
                if holder is None:
                    token += 1
                    holder, out = p, token
                    mine[p] = token
                hist.append(Op(p, "acquire", "L", p, out, "ok", call, ret))
            else:
                tok = mine.get(p, 0)
                res = holder == p
                if res:
                    holder = None
                hist.append(Op(p, "release", "L", (p, tok), res, "ok", call, ret))
        hist.sort(key=lambda o: o.call)
        assert check(hist, LockModel()).ok
        assert check_fencing(hist) == []
        grants = [i for i, o in enumerate(hist) if o.kind == "acquire" and o.output]
        a, b = grants[0], grants[-1]
        bad = list(hist)
        bad[a] = Op(*[*list(_fields(hist[a]))[:4], hist[b].output, "ok", hist[a].call, hist[a].ret])
        bad[b] = Op(*[*list(_fields(hist[b]))[:4], hist[a].output, "ok", hist[b].call, hist[b].ret])
        assert not check(bad, LockModel()).ok
        assert check_fencing(bad) != []


def _fields(o: Op) -> tuple[Any, ...]:
    return (o.process, o.kind, o.key, o.input)


@pytest.mark.parametrize(
    ("keys", "faults"), [(1, False), (1, True), (10, True)], ids=["1key", "1key-faults", "10keys"]
)
def test_timing_1000_ops_concurrency_8(keys: int, faults: bool) -> None:
    """Reported, not asserted: checker time on 1,000+ op histories, 8 clients per key."""
    times = []
    states = []
    for seed in range(3):
        hist = random_history(1000 + seed, 1200, keys=keys, faults=faults)
        assert max_concurrency([o for o in hist if o.key == "k0"]) <= 8
        t0 = time.perf_counter()
        r = check(hist, KV)
        times.append(time.perf_counter() - t0)
        states.append(r.states_explored)
        assert r.ok, r.describe()
    print(
        f"\n{len(hist)} ops, {keys} key(s), faults={faults}, 8 clients/key: "
        f"mean {sum(times) / len(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms, "
        f"states mean {sum(states) // len(states)}"
    )
