"""Linearizability checking of KV and lock histories (Porcupine-style), plus lock checkers.

No maintained Python linearizability checker exists, so this module is one. It is pure:
no I/O, no clock reads during a check except to report how long the check took.

History model (Jepsen style)
----------------------------
A history is a list of :class:`Op`: one *completed* operation each, with its invocation
time ``call`` and completion time ``ret`` on one real-time axis (floats), and a status:

* ``ok``: the operation happened, exactly once, somewhere inside ``[call, ret]``, and
  returned ``output``;
* ``fail``: the operation definitely did not happen; it is dropped before the search;
* ``info``: unknown outcome (timeout, crash). It may have taken effect at any point after
  ``call`` (``ret`` is treated as +infinity) or never; its ``output`` is unknown. A
  read-only ``info`` operation cannot change anything and is dropped.

Search
------
Wing & Gong's search with Lowe's just-in-time linearization and memoization, as in
Porcupine: a search node is ``(set of linearized operations as a bitset, model state)``;
from a node, an operation may be linearized next iff it is not linearized yet and no
other unlinearized ``ok`` operation returned strictly before it was called. Nodes already
seen are never expanded twice. The history is linearizable iff some path linearizes
every ``ok`` operation (``info`` operations may be left out: they never happened).
Models may be nondeterministic (``step`` returns every possible next state), which the
lock model uses for unknown tokens and lease expiry.

The history is first partitioned by key (:meth:`Model.partition`): linearizability is
local (Herlihy & Wing), so each key is checked alone. When a partition is not
linearizable, the *minimal failing prefix* is found by binary search over completion
times (a prefix cut at time ``t`` keeps the operations called by ``t``; the ones still
running at ``t`` become ``info``); it ends with the completion of the *culprit*.

Lock checkers that need no search: :func:`check_fencing` (a token granted after another
grant completed is larger: tokens never go backwards in real time) and
:func:`check_holders` (lock holding intervals never overlap in true time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from passivepaxos.runtime import REAL

__all__ = [
    "INFINITY",
    "CounterExample",
    "FencingViolation",
    "Hold",
    "HoldOverlap",
    "KVModel",
    "LockModel",
    "LockState",
    "Model",
    "Op",
    "PartitionResult",
    "Recorder",
    "Result",
    "check",
    "check_fencing",
    "check_holders",
]

INFINITY = float("inf")
Status = Literal["ok", "fail", "info"]
Verdict = Literal["linearizable", "not linearizable", "unknown"]


@dataclass(frozen=True)
class Op:
    """One operation of a history.

    ``input``/``output`` per model: see :class:`KVModel` and :class:`LockModel`. ``ret``
    is ignored (taken as +infinity) for ``info`` operations and may be ``None`` there.
    """

    process: Hashable
    kind: str
    key: Hashable
    input: Any
    output: Any
    status: Status
    call: float
    ret: float | None

    @property
    def end(self) -> float:
        """The completion time used by the search: ``ret``, or +infinity for ``info``."""
        if self.status == "info" or self.ret is None:
            return INFINITY
        return self.ret

    def __str__(self) -> str:
        ret = "inf" if self.end == INFINITY else f"{self.end:g}"
        out = "?" if self.status == "info" else repr(self.output)
        arg = "" if self.input is None else repr(self.input)
        return (
            f"[{self.call:g}, {ret}] p{self.process} {self.kind}({arg}) "
            f"key={self.key!r} -> {out} ({self.status})"
        )


class Model(Protocol):
    """A sequential specification. States must be hashable (they are memoized)."""

    name: str

    def init(self) -> Hashable:
        """The state of a fresh key."""
        ...

    def step(self, state: Any, op: Op) -> Iterable[Hashable]:
        """Every state the object can be in after applying ``op`` to ``state``.

        Empty when ``op`` (with its ``output``, unless it is ``info``) is impossible.
        """
        ...

    def partition(self, op: Op) -> Hashable:
        """The independent object ``op`` acts on (a key, a lock name)."""
        ...

    def read_only(self, op: Op) -> bool:
        """True when ``op`` never changes the state (so an ``info`` one can be dropped)."""
        ...


# --------------------------------------------------------------------------------- models


class KVModel:
    """A map of registers, one per key; the absence of a key is the value ``None``.

    ===========  =======================  ==========================================
    kind         input                    output (checked on ``ok``)
    ===========  =======================  ==========================================
    ``put``      the value                ignored
    ``get``      ``None``                 the value, or ``None`` when absent
    ``delete``   ``None``                 ignored, or a bool "the key existed"
    ``cas``      ``(expected, new)``      bool: swapped; ``expected=None`` means
                                          "only if absent" (create)
    ===========  =======================  ==========================================
    """

    name = "kv"

    def init(self) -> Hashable:
        return None

    def partition(self, op: Op) -> Hashable:
        return op.key

    def read_only(self, op: Op) -> bool:
        return op.kind == "get"

    def step(self, state: Any, op: Op) -> Iterable[Hashable]:
        known = op.status == "ok"
        if op.kind == "put":
            return (op.input,)
        if op.kind == "get":
            return (state,) if not known or op.output == state else ()
        if op.kind == "delete":
            if known and isinstance(op.output, bool) and op.output != (state is not None):
                return ()
            return (None,)
        if op.kind == "cas":
            expected, new = op.input
            swapped = state == expected
            if known and bool(op.output) != swapped:
                return ()
            return (new,) if swapped else (state,)
        raise ValueError(f"KVModel: unknown operation kind {op.kind!r}")


@dataclass(frozen=True)
class LockState:
    """``holder``/``token`` of the current holder (``token`` ``None`` if never learned,
    after an ``info`` acquire); ``floor``: the largest token granted so far."""

    holder: Hashable = None
    token: int | None = None
    floor: int = 0


class LockModel:
    """Named locks with fencing tokens; partitioned by lock name (``op.key``).

    ===========  ======================  ==============================================
    kind         input                   output (checked on ``ok``)
    ===========  ======================  ==============================================
    ``acquire``  owner                   the token (int): the lock was free and the
                                         token exceeds every earlier one; or ``None``:
                                         refused because the lock was held
    ``release``  ``(owner, token)``      bool: the owner held the lock with that token
    ``refresh``  ``(owner, token)``      bool: same condition; the state is unchanged
    ===========  ======================  ==============================================

    With ``expiring=True`` (leases with a TTL) the holder may lose the lock silently at
    any moment, so an acquire may find the lock free and a release or refresh may answer
    ``False``. Mutual exclusion in *true* time is then the job of :func:`check_holders`;
    token order is still checked here.
    """

    name = "lock"

    def __init__(self, *, expiring: bool = False, first_token: int = 1) -> None:
        self.expiring = expiring
        self.first_token = first_token

    def init(self) -> Hashable:
        return LockState(floor=self.first_token - 1)

    def partition(self, op: Op) -> Hashable:
        return op.key

    def read_only(self, op: Op) -> bool:
        return op.kind == "refresh"

    def step(self, state: Any, op: Op) -> Iterable[Hashable]:
        s: LockState = state
        befores = [s]
        if self.expiring and s.holder is not None:
            befores.append(LockState(floor=s.floor))
        out: list[Hashable] = []
        for b in befores:
            out.extend(self._step(b, op))
        return out

    def _step(self, s: LockState, op: Op) -> list[Hashable]:
        known = op.status == "ok"
        free = s.holder is None
        if op.kind == "acquire":
            if not known:  # granted with an unknown token, or not at all (omitted)
                return [LockState(op.input, None, s.floor)] if free else [s]
            if op.output is None:
                return [] if free else [s]
            token = int(op.output)
            return [LockState(op.input, token, token)] if free and token > s.floor else []
        if op.kind in ("release", "refresh"):
            owner, token = op.input
            holds = not free and s.holder == owner and s.token in (None, token)
            if known and bool(op.output) != holds:
                return []
            if not holds:
                return [s]
            if op.kind == "refresh":
                return [LockState(s.holder, token, max(s.floor, token))]
            return [LockState(floor=max(s.floor, token))]
        raise ValueError(f"LockModel: unknown operation kind {op.kind!r}")


# ---------------------------------------------------------------------------- results


@dataclass
class CounterExample:
    """Why one partition is not linearizable.

    ``prefix``: the shortest real-time prefix of the partition's history that is already
    not linearizable (operations still running at the cut shown as ``info``);
    ``culprit``: the operation whose completion ends that prefix; ``linearized``: the
    longest partial linearization the search found and ``state`` the model state after
    it; ``stuck``: the ``ok`` operations that had to come next, none of which fits.
    """

    key: Hashable
    culprit: Op | None
    prefix: list[Op]
    linearized: list[Op]
    state: Any
    stuck: list[Op]

    def describe(self, tail: int = 8) -> str:
        lines = [f"key {self.key!r}: not linearizable"]
        if self.culprit is not None:
            lines.append(
                f"  shortest failing prefix: {len(self.prefix)} ops, ends when this completes:"
            )
            lines.append(f"    {self.culprit}")
        shown = self.linearized[-tail:]
        lines.append(
            f"  longest linearization found: {len(self.linearized)} ops"
            + (f" (last {len(shown)})" if len(shown) < len(self.linearized) else "")
        )
        lines.extend(f"    {o}" for o in shown)
        lines.append(f"  state then: {self.state!r}")
        lines.append("  none of these fits next:")
        lines.extend(f"    {o}" for o in self.stuck)
        return "\n".join(lines)


@dataclass
class PartitionResult:
    key: Hashable
    verdict: Verdict
    ops: int
    states_explored: int
    seconds: float
    counterexample: CounterExample | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == "linearizable"


@dataclass
class Result:
    """``ok`` is True only when every partition was proven linearizable."""

    ok: bool
    verdict: Verdict
    partition_results: dict[Hashable, PartitionResult]
    counterexample: CounterExample | None
    states_explored: int
    seconds: float
    ops: int = 0

    def describe(self) -> str:
        head = (
            f"{self.verdict}: {self.ops} ops, {len(self.partition_results)} partitions, "
            f"{self.states_explored} states, {self.seconds:.3f}s"
        )
        if self.counterexample is None:
            return head
        return head + "\n" + self.counterexample.describe()


# ----------------------------------------------------------------------------- search


@dataclass
class _Outcome:
    verdict: Verdict
    states: int
    linearized: list[Op] = field(default_factory=list)
    state: Any = None
    stuck: list[Op] = field(default_factory=list)


class _Budget:
    """How much search a check may do. Its time limit is real (``time.monotonic``, not a
    runtime's): it bounds the checker's own CPU time, which a simulated clock does not
    measure, whoever recorded the history."""

    def __init__(self, max_states: int | None, deadline: float | None) -> None:
        self.max_states = max_states
        self.deadline = deadline

    def exhausted(self, states: int) -> bool:
        if self.max_states is not None and states >= self.max_states:
            return True
        return self.deadline is not None and states % 1024 == 0 and time.monotonic() > self.deadline


def _search(ops: Sequence[Op], model: Model, budget: _Budget) -> _Outcome:
    """DFS over (linearized bitset, state); ``ops`` hold only ``ok`` and ``info`` ops."""
    oks = sorted((o for o in ops if o.status == "ok"), key=lambda o: (o.call, o.end))
    infos = sorted((o for o in ops if o.status != "ok"), key=lambda o: o.call)
    n = len(oks)
    allops: list[Op] = oks + infos
    calls = [o.call for o in allops]
    ends = [o.end for o in allops]
    full = (1 << n) - 1
    # Dominance: with the same ok ops linearized and the same state, a node that has
    # linearized a subset of the info ops another has can do everything that one can
    # (an info op may always be left out), so the other need not be expanded.
    seen: dict[tuple[int, Hashable], list[int]] = {}

    def dominated(okbits: int, state: Hashable, infobits: int) -> bool:
        subsets = seen.setdefault((okbits, state), [])
        if any(s & ~infobits == 0 for s in subsets):
            return True
        subsets.append(infobits)
        return False

    step = model.step
    init = model.init()
    Node = tuple[int, Hashable]
    # node -> (parent node, op index); the root's parent is None
    parent: dict[Node, tuple[Node, int] | None] = {}
    visited: set[Node] = set()
    root: Node = (0, init)
    parent[root] = None
    # (bits, state, lo, closed): a closed node was reached by a run of info ops from a
    # node that already expanded every such run, so it only tries ok ops next.
    stack: list[tuple[int, Hashable, int, bool]] = [(0, init, 0, False)]
    best: Node = root
    best_count = -1
    best_stuck: list[int] = []
    states = 0
    while stack:
        bits, state, lo, closed = stack.pop()
        node = (bits, state)
        if node in visited:
            continue
        okbits = bits & full
        if not closed and dominated(okbits, state, bits >> n):
            continue
        visited.add(node)
        states += 1
        if okbits == full:
            return _Outcome("linearizable", states)
        if budget.exhausted(states):
            return _Outcome("unknown", states)
        while (bits >> lo) & 1:
            lo += 1
        # Window of candidates: ok ops from ``lo`` called no later than the earliest
        # completion among unlinearized ok ops (later ok ops cannot lower that minimum).
        m = INFINITY
        cands: list[int] = []
        i = lo
        while i < n and calls[i] <= m:
            if not (bits >> i) & 1:
                cands.append(i)
                if ends[i] < m:
                    m = ends[i]
            i += 1
        cands = [c for c in cands if calls[c] <= m]
        count = okbits.bit_count()
        if count > best_count:
            best, best_count, best_stuck = node, count, cands
        if not closed:
            # Every run of info ops from here, breadth first so that a run's subsets
            # are registered before it (and dominate it when they reach its state).
            infos_here = [j for j in range(n, len(allops)) if calls[j] <= m]
            frontier: list[Node] = [node]
            closure: list[Node] = []
            while frontier and infos_here:
                nxt_frontier: list[Node] = []
                for b, st in frontier:
                    for j in infos_here:
                        if (b >> j) & 1:
                            continue
                        nb = b | (1 << j)
                        for nxt in step(st, allops[j]):
                            child = (nb, nxt)
                            if child in parent or dominated(okbits, nxt, nb >> n):
                                continue
                            parent[child] = ((b, st), j)
                            nxt_frontier.append(child)
                            closure.append(child)
                frontier = nxt_frontier
            # Closure nodes go below this node's own children on the stack: the runs
            # with fewer info ops are explored first.
            stack.extend((b, st, lo, True) for b, st in reversed(closure))
        # Push so that the op with the earliest completion is tried first.
        children: list[tuple[int, Hashable, int, bool]] = []
        for c in reversed(cands):  # cands are in call order; ends roughly too
            for nxt in step(state, allops[c]):
                child = (bits | (1 << c), nxt)
                if child not in visited:
                    parent.setdefault(child, (node, c))
                    children.append((child[0], nxt, lo, False))
        children.sort(key=lambda ch: ends[(ch[0] ^ bits).bit_length() - 1], reverse=True)
        stack.extend(children)
    # Exhausted: rebuild the deepest partial linearization.
    path: list[int] = []
    cur: tuple[int, Hashable] | None = best
    while cur is not None:
        link = parent[cur]
        if link is None:
            break
        cur, via = link
        path.append(via)
    path.reverse()
    return _Outcome(
        "not linearizable",
        states,
        [allops[k] for k in path],
        best[1],
        [allops[k] for k in best_stuck],
    )


def _prefix(ops: Sequence[Op], t: float, model: Model) -> list[Op]:
    """The real-time prefix at ``t``: ops called by ``t``; ok ops still running become info."""
    out: list[Op] = []
    for o in ops:
        if o.call > t:
            continue
        if o.status == "ok" and o.end > t:
            if model.read_only(o):
                continue
            o = replace(o, status="info", output=None, ret=None)
        out.append(o)
    return out


def _check_partition(
    key: Hashable, ops: list[Op], model: Model, budget: _Budget, minimize: bool
) -> PartitionResult:
    t0 = time.monotonic()
    oks = [o for o in ops if o.status == "ok"]
    ordered = sorted(ops, key=lambda o: o.call)
    out = _search(ordered, model, budget)
    states = out.states
    cex: CounterExample | None = None
    if out.verdict == "not linearizable":
        culprit: Op | None = None
        prefix: list[Op] = ordered
        if minimize:
            times = sorted({o.end for o in oks})
            lo, hi = 0, len(times) - 1  # times[hi] (the whole history) fails
            while lo < hi:
                mid = (lo + hi) // 2
                sub = _search(_prefix(ordered, times[mid], model), model, budget)
                states += sub.states
                if sub.verdict == "not linearizable":
                    hi = mid
                else:
                    lo = mid + 1
            cut = times[hi]
            prefix = _prefix(ordered, cut, model)
            culprit = next(o for o in oks if o.end == cut)
            sub = _search(prefix, model, budget)
            states += sub.states
            if sub.verdict == "not linearizable":
                out = sub
            else:  # budget ran out while minimizing: report the whole history
                prefix, culprit = ordered, None
        cex = CounterExample(
            key=key,
            culprit=culprit,
            prefix=sorted(prefix, key=lambda o: o.call),
            linearized=out.linearized,
            state=out.state,
            stuck=out.stuck,
        )
    return PartitionResult(
        key=key,
        verdict=out.verdict,
        ops=len(ops),
        states_explored=states,
        seconds=time.monotonic() - t0,
        counterexample=cex,
    )


def check(
    history: Iterable[Op],
    model: Model,
    *,
    max_states: int | None = None,
    timeout: float | None = None,
    minimize: bool = True,
) -> Result:
    """Check that ``history`` is linearizable with respect to ``model``.

    ``fail`` operations are dropped, read-only ``info`` ones too; the rest is split by
    :meth:`Model.partition` and each partition searched alone. ``max_states`` (per
    search) and ``timeout`` (seconds, whole check) bound the work: when hit, the verdict
    is ``"unknown"`` and ``ok`` is False. Partitions are checked in order of their first
    operation; the first non-linearizable one gives ``counterexample``.
    """
    t0 = time.monotonic()
    budget = _Budget(max_states, None if timeout is None else t0 + timeout)
    parts: dict[Hashable, list[Op]] = {}
    total = 0
    for op in history:
        total += 1
        if op.status not in ("ok", "fail", "info"):
            raise ValueError(f"bad status {op.status!r} in {op}")
        if op.status == "ok" and (op.ret is None or op.ret < op.call):
            raise ValueError(f"ok operation without a valid return time: {op}")
        if op.status == "fail" or (op.status == "info" and model.read_only(op)):
            continue
        parts.setdefault(model.partition(op), []).append(op)
    results: dict[Hashable, PartitionResult] = {}
    cex: CounterExample | None = None
    for key, ops in parts.items():
        pr = _check_partition(key, ops, model, budget, minimize)
        results[key] = pr
        if cex is None and pr.counterexample is not None:
            cex = pr.counterexample
    verdicts = {pr.verdict for pr in results.values()}
    verdict: Verdict = (
        "not linearizable"
        if "not linearizable" in verdicts
        else "unknown"
        if "unknown" in verdicts
        else "linearizable"
    )
    return Result(
        ok=verdict == "linearizable",
        verdict=verdict,
        partition_results=results,
        counterexample=cex,
        states_explored=sum(pr.states_explored for pr in results.values()),
        seconds=time.monotonic() - t0,
        ops=total,
    )


# ----------------------------------------------------------------------- lock checkers


@dataclass(frozen=True)
class FencingViolation:
    """``later`` was invoked after ``earlier`` completed yet got a token not above it."""

    earlier: Op
    later: Op

    def __str__(self) -> str:
        return (
            f"token went backwards on {self.later.key!r}: {self.earlier.output} granted by "
            f"{self.earlier} before {self.later.output} granted by {self.later}"
        )


def check_fencing(history: Iterable[Op], kind: str = "acquire") -> list[FencingViolation]:
    """Fencing tokens never go backwards in real time, per lock name.

    For every two ``ok`` grants (``kind`` ops with an int ``output``) of one name where
    the first completed before the second was invoked, the second token must be strictly
    larger. Empty list when none goes backwards. O(n log n) per name.
    """
    by_name: dict[Hashable, list[Op]] = {}
    for op in history:
        if op.kind == kind and op.status == "ok" and isinstance(op.output, int):
            by_name.setdefault(op.key, []).append(op)
    out: list[FencingViolation] = []
    for grants in by_name.values():
        by_ret = sorted(grants, key=lambda o: o.end)
        by_call = sorted(grants, key=lambda o: o.call)
        best: Op | None = None  # completed grant with the largest token so far
        k = 0
        for op in by_call:
            while k < len(by_ret) and by_ret[k].end < op.call:
                done = by_ret[k]
                if best is None or done.output > best.output:
                    best = done
                k += 1
            if best is not None and op.output <= best.output:
                out.append(FencingViolation(best, op))
    return out


@dataclass(frozen=True)
class Hold:
    """A lock held by ``owner`` with ``token`` over ``[start, end)`` in true time."""

    name: Hashable
    owner: Hashable
    token: int | None
    start: float
    end: float


@dataclass(frozen=True)
class HoldOverlap:
    first: Hold
    second: Hold

    def __str__(self) -> str:
        return f"holders overlap on {self.first.name!r}: {self.first} and {self.second}"


def check_holders(holds: Iterable[Hold]) -> list[HoldOverlap]:
    """Holders of one lock never overlap in true time (half-open intervals).

    Each overlap is reported once, against the hold that ends last among the earlier
    ones. Empty list when holders are mutually exclusive.
    """
    by_name: dict[Hashable, list[Hold]] = {}
    for h in holds:
        if h.end < h.start:
            raise ValueError(f"hold ends before it starts: {h}")
        by_name.setdefault(h.name, []).append(h)
    out: list[HoldOverlap] = []
    for hs in by_name.values():
        hs.sort(key=lambda h: (h.start, h.end))
        last: Hold | None = None
        for h in hs:
            if h.end == h.start:
                continue
            if last is not None and h.start < last.end:
                out.append(HoldOverlap(last, h))
            if last is None or h.end > last.end:
                last = h
    return out


# ---------------------------------------------------------------------------- recorder


class Recorder:
    """Builds a history while running real or simulated clients.

    ``h = rec.invoke(p, "put", "k", "v")`` before the call and ``rec.ok(h, output)``,
    ``rec.fail(h)`` or ``rec.info(h)`` after it; ``clock`` is any monotonic time source
    shared by all clients (a simulation's virtual clock, or by default the production
    runtime's ``monotonic``).
    """

    def __init__(self, clock: Callable[[], float] = REAL.monotonic) -> None:
        self.clock = clock
        self._open: dict[int, tuple[Hashable, str, Hashable, Any, float]] = {}
        self._next = 0
        self.history: list[Op] = []

    def invoke(self, process: Hashable, kind: str, key: Hashable, input: Any = None) -> int:
        handle = self._next
        self._next += 1
        self._open[handle] = (process, kind, key, input, self.clock())
        return handle

    def _complete(self, handle: int, status: Status, output: Any) -> Op:
        process, kind, key, input, call = self._open.pop(handle)
        ret = None if status == "info" else self.clock()
        op = Op(process, kind, key, input, output, status, call, ret)
        self.history.append(op)
        return op

    def ok(self, handle: int, output: Any = None) -> Op:
        return self._complete(handle, "ok", output)

    def fail(self, handle: int) -> Op:
        return self._complete(handle, "fail", None)

    def info(self, handle: int) -> Op:
        return self._complete(handle, "info", None)

    def close(self) -> list[Op]:
        """Every operation still open becomes ``info`` (its client crashed)."""
        for handle in list(self._open):
            self.info(handle)
        return self.history
