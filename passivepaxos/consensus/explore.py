"""Exhaustive small-scope exploration of the consensus core (issue 3, item 6(b)).

Where ``sim`` samples schedules at random, this enumerates *every* interleaving of
individual store operations for a small scope: a few proposers, a few stores, a bounded
number of rounds (ballots) per proposer. Each operation of a batch is a separately
schedulable step, so the operations of one batch interleave with the other proposers'
operations in every order. ``Sleep`` operations are no-ops (time is skipped).

How: a state-hashing breadth-first search over a cheap, fully immutable state:

- each store's contents (a sorted tuple of ``(key, bytes)``);
- per proposer, its *history* (the results of every batch it completed, interned as a
  node of a trie, so comparing histories is comparing ints) plus the results received so
  far in its current batch.

A proposer generator is a deterministic function of its history (its ``random.Random``
is seeded per proposer; backoff delays only feed ``Sleep``, which is skipped), so the
next batch for a history is computed once and cached on the trie node. Generators cannot
be copied, so a new history is reached by sending one batch of results to the parent's
still-unused live generator when there is one, else by *replaying* a fresh generator
along the recorded path from the root. Every step completes exactly one operation, so
the state graph is layered by the number of completed operations: the search keeps one
layer at a time with, per state, the number of distinct schedules reaching it. Hence:

- ``states``: distinct states visited (after deduplication);
- ``terminals``: distinct terminal states (every proposer decided or gave up);
- ``executions``: distinct complete schedules (paths from the start to a terminal state)
  that the deduplicated search covers.

A proposer gives up when it would start round ``rounds + 1`` (both protocols yield a
``Sleep`` batch between rounds); giving up is fine for safety, deciding differently is
not. With ``faults > 0`` that many operations may additionally fail, anywhere: ``before``
(the store raises ``TransientError`` without effect) and, with ``after=True``, also with
the effect applied (an ambiguous write or read).

At every terminal state: agreement (all decided values equal; for create lists, at most
one value is *chosen* in the final lists and it is the decided one; every DECIDED marker
agrees), validity (decided, chosen, marked and learned values were proposed) and the
read-only learner answers exactly: the decided value, "undecided" only when nothing was
decided, "unknown" only for blocks without a marker.

``python -m passivepaxos.consensus.explore --mode create --stores 3 --rounds 2``
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from passivepaxos.consensus import core
from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    QuorumError,
    TransientError,
)
from passivepaxos.types import PutKind, Version

__all__ = ["ExploreResult", "explore", "main"]

INSTANCE = "inst"
_VERSION = Version("explore", "0")  # the core never looks inside a version

# -- results as hashable tokens ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Exists:
    """``AlreadyExistsError`` carrying what the key holds."""

    data: bytes


@dataclass(frozen=True, slots=True)
class _Keys:
    """A ``List`` answer."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Fail:
    """``TransientError`` (before or after the effect: the proposer cannot tell)."""


_PENDING = object()
Token = None | Version | tuple[bytes, Version] | _Exists | _Keys | _Fail
Store = tuple[tuple[str, bytes], ...]


def _materialize(tok: Token) -> object:
    if isinstance(tok, _Exists):
        return AlreadyExistsError("exists (explore)", current=(tok.data, _VERSION))
    if isinstance(tok, _Keys):
        return list(tok.keys)
    if isinstance(tok, _Fail):
        return TransientError("injected fault (explore)")
    return tok


def _apply(store: Store, op: core.Op) -> tuple[Store, Token]:
    """One operation on an immutable store: (new store, result token)."""
    if isinstance(op, core.Sleep):
        return store, None
    if isinstance(op, core.Get):
        return store, next(((d, _VERSION) for k, d in store if k == op.key), None)
    if isinstance(op, core.List):
        keys = tuple(
            k
            for k, _ in store
            if k.startswith(op.prefix) and (op.start_after is None or k > op.start_after)
        )
        return store, _Keys(keys)
    current = dict(store)
    if op.mode.kind is PutKind.CREATE and op.key in current:
        return store, _Exists(current[op.key])
    if op.mode.kind not in (PutKind.CREATE, PutKind.OVERWRITE):
        raise ValueError(f"unsupported put mode {op.mode}")
    current[op.key] = op.data
    return tuple(sorted(current.items())), _VERSION


# -- proposer histories ------------------------------------------------------------------


@dataclass
class _Node:
    """One proposer history: the results of every completed batch, as a trie node."""

    parent: int
    results: tuple[Token, ...]  # the batch results that led here from the parent
    rounds: int  # Sleep batches yielded so far (= rounds finished without a decision)
    batch: tuple[core.Op, ...] = ()  # what the proposer runs next (empty: finished)
    decided: bytes | None = None
    gave_up: bool = False
    live: core.Proc[bytes] | None = None  # a generator sitting at this history, unused


class _Proposer:
    """Interned histories of one proposer and its next batch after each of them."""

    def __init__(
        self, mode: str, n: int, index: int, rounds: int, value: bytes, lead: bool = False
    ) -> None:
        self.mode, self.n, self.index, self.rounds, self.value = mode, n, index, rounds, value
        self.lead = lead
        self.nodes: list[_Node] = []
        self.children: dict[tuple[int, tuple[Token, ...]], int] = {}
        self.replays = 0
        gen = self._fresh()
        self.nodes.append(self._outcome(_Node(-1, (), 0), gen, lambda: next(gen)))

    def _fresh(self) -> core.Proc[bytes]:
        names = [f"s{i}" for i in range(self.n)]
        pid = f"p{self.index}"
        rng = random.Random(self.index)  # deterministic: replays see the same owner nonce
        if self.mode == "create":
            return core.passive_proposer(names, INSTANCE, self.value, pid, rng, lead=self.lead)
        return core.disk_proposer(names, INSTANCE, self.value, pid, rng)

    def _outcome(
        self, node: _Node, gen: core.Proc[bytes], step: Callable[[], list[core.Op]]
    ) -> _Node:
        try:
            batch: list[core.Op] = step()
        except StopIteration as stop:
            node.decided = stop.value
            return node
        except (QuorumError, AmbiguousWriteError):  # gave up; "outcome unknown" included
            node.gave_up = True
            return node
        if any(isinstance(op, core.Sleep) for op in batch):
            node.rounds += 1
            if node.rounds >= self.rounds:
                gen.close()
                node.gave_up = True  # would start round ``rounds + 1``: bounded out
                return node
        node.batch = tuple(batch)
        node.live = gen
        return node

    def _path(self, hid: int) -> list[tuple[Token, ...]]:
        out: list[tuple[Token, ...]] = []
        while hid > 0:
            node = self.nodes[hid]
            out.append(node.results)
            hid = node.parent
        out.reverse()
        return out

    def child(self, hid: int, results: tuple[Token, ...]) -> int:
        """The history ``hid`` extended by one completed batch."""
        key = (hid, results)
        got = self.children.get(key)
        if got is not None:
            return got
        parent = self.nodes[hid]
        gen = parent.live
        parent.live = None
        if gen is None:  # generators cannot be copied: replay a fresh one to ``hid``
            self.replays += 1
            gen = self._fresh()
            next(gen)
            for past in self._path(hid):
                gen.send([_materialize(t) for t in past])
        g = gen
        node = self._outcome(
            _Node(hid, results, parent.rounds),
            g,
            lambda: g.send([_materialize(t) for t in results]),
        )
        self.nodes.append(node)
        self.children[key] = len(self.nodes) - 1
        return len(self.nodes) - 1


# -- the search --------------------------------------------------------------------------

# per proposer: (history id, results so far in the current batch, _PENDING where not yet)
PState = tuple[int, tuple[object, ...]]
State = tuple[tuple[Store, ...], tuple[PState, ...], int]  # stores, proposers, faults left


@dataclass
class ExploreResult:
    mode: str
    stores: int
    proposers: int
    rounds: int
    faults: int = 0
    leads: int = 0  # proposers sending a leader's ACCEPT first (core: "Leader's accept")
    states: int = 0  # distinct states visited
    terminals: int = 0  # distinct terminal states
    executions: int = 0  # complete schedules covered
    replays: int = 0  # generator replays needed
    decided_terminals: int = 0  # terminal states where some proposer decided
    gave_up_terminals: int = 0  # terminal states where some proposer gave up
    seconds: float = 0.0
    complete: bool = True  # False: stopped at ``max_states``
    violations: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"mode={self.mode} stores={self.stores} proposers={self.proposers} "
            f"rounds={self.rounds} faults={self.faults} leads={self.leads}: "
            f"states={self.states} "
            f"terminals={self.terminals} executions={self.executions} "
            f"decided_terminals={self.decided_terminals} "
            f"gave_up_terminals={self.gave_up_terminals} replays={self.replays} "
            f"time={self.seconds:.2f}s{'' if self.complete else ' INCOMPLETE'} "
            f"violations={len(self.violations)}"
            + (f" first: {self.violations[0]}" if self.violations else "")
        )


def _successors(state: State, procs: Sequence[_Proposer], after: bool) -> Iterator[State]:
    stores, pstates, faults = state
    for p, (hid, partial) in enumerate(pstates):
        proc = procs[p]
        batch = proc.nodes[hid].batch
        for i, op in enumerate(batch):
            if partial[i] is not _PENDING:
                continue
            outcomes: list[tuple[tuple[Store, ...], Token, int]] = []
            s = 0 if isinstance(op, core.Sleep) else op.store
            new_store, tok = _apply(stores[s], op)
            outcomes.append((_replace(stores, s, new_store), tok, faults))
            if faults > 0 and not isinstance(op, core.Sleep):
                outcomes.append((stores, _Fail(), faults - 1))  # error before the effect
                if after:
                    outcomes.append((_replace(stores, s, new_store), _Fail(), faults - 1))
            for new_stores, result, left in outcomes:
                done = (*partial[:i], result, *partial[i + 1 :])
                if any(r is _PENDING for r in done):
                    ps: PState = (hid, done)
                else:
                    nid = proc.child(hid, tuple(done))  # type: ignore[arg-type]
                    ps = (nid, (_PENDING,) * len(proc.nodes[nid].batch))
                yield new_stores, (*pstates[:p], ps, *pstates[p + 1 :]), left


def _replace(stores: tuple[Store, ...], i: int, store: Store) -> tuple[Store, ...]:
    return stores if stores[i] is store else (*stores[:i], store, *stores[i + 1 :])


def _learn(mode: str, stores: tuple[Store, ...]) -> core.Learned:
    gen = core.learner([f"s{i}" for i in range(len(stores))], INSTANCE, mode)
    try:
        batch = next(gen)
        while True:
            batch = gen.send([_materialize(_apply(stores[_store(op)], op)[1]) for op in batch])
    except StopIteration as stop:
        learned: core.Learned = stop.value
        return learned


def _store(op: core.Op) -> int:
    return 0 if isinstance(op, core.Sleep) else op.store


def _check(mode: str, state: State, procs: Sequence[_Proposer], proposed: set[bytes]) -> list[str]:
    stores, pstates, _ = state
    out: list[str] = []
    decided = {
        f"p{i}": v for i, (hid, _) in enumerate(pstates) if (v := procs[i].nodes[hid].decided)
    }
    values = set(decided.values())
    if len(values) > 1:
        out.append(f"agreement: proposers decided {decided}")
    if not values <= proposed:
        out.append(f"validity: decided {sorted(values - proposed)} never proposed")
    markers: set[bytes] = set()
    for st in stores:
        for k, d in st:
            if k == core.decided_key(INSTANCE):
                m = core.decode_msg(d)
                if m is not None and m.value is not None:
                    markers.add(m.value)
    if len(markers | values) > 1:
        out.append(f"agreement: markers {sorted(markers)} vs decided {sorted(values)}")
    if mode == "create":
        lists: list[list[core.Msg | None]] = []
        for st in stores:
            content = dict(st)
            entries: list[core.Msg | None] = []
            while (raw := content.get(core.slot_key(INSTANCE, len(entries)))) is not None:
                entries.append(core.decode_msg(raw))
            lists.append(entries)
        won = {v for _, v in core.chosen(lists, len(stores))}
        if len(won) > 1:
            out.append(f"agreement: the lists chose {sorted(won)}")
        if not values <= won:
            out.append(f"decided {sorted(values)} but the lists chose {sorted(won)}")
        if not won <= proposed:
            out.append(f"validity: the lists chose unproposed {sorted(won - proposed)}")
    # three-valued: a decided value must be the one; "undecided" only if nothing was;
    # "unknown" only where a reader cannot compute it (blocks without a marker)
    got = _learn(mode, stores)
    learned = got.value
    if got.state == core.DECIDED and values and learned not in values:
        out.append(f"learn() returned {learned!r}, decided {sorted(values)}")
    if got.state == core.UNDECIDED and values:
        out.append(f"learn() said undecided, decided {sorted(values)}")
    if got.state == core.UNKNOWN and values and (mode == "create" or markers):
        out.append(f"learn() could not tell, decided {sorted(values)}")
    if learned is not None and learned not in proposed:
        out.append(f"validity: learn() returned unproposed {learned!r}")
    return out


def explore(
    mode: str,
    stores: int,
    proposers: int,
    rounds: int,
    *,
    faults: int = 0,
    after: bool = False,
    leads: int = 0,
    max_states: int = 5_000_000,
    max_violations: int = 10,
) -> ExploreResult:
    """Every interleaving of single store operations for the given scope.

    ``mode`` is ``"create"`` (passive Paxos) or ``"blocks"`` (Disk Paxos); each proposer
    gives up instead of starting round ``rounds + 1``. Stops early (``complete=False``)
    past ``max_states`` states or once ``max_violations`` violations were recorded. The
    first ``leads`` proposers (create lists only) open with a leader's ACCEPT; more than
    one breaks the precondition of ``lead`` (a test shows that this is then found)."""
    if mode not in ("create", "blocks"):
        raise ValueError(f"mode must be create or blocks: {mode!r}")
    if leads and mode != "create":
        raise ValueError("a leader's ACCEPT exists on create lists only")
    started = time.perf_counter()
    res = ExploreResult(mode, stores, proposers, rounds, faults, leads)
    values = [f"v{i}".encode() for i in range(proposers)]
    procs = [
        _Proposer(mode, stores, i, rounds, values[i], lead=i < leads) for i in range(proposers)
    ]
    proposed = set(values)
    start: State = (
        tuple(() for _ in range(stores)),
        tuple((0, (_PENDING,) * len(p.nodes[0].batch)) for p in procs),
        faults,
    )
    layer: dict[State, int] = {start: 1}
    while layer:
        res.states += len(layer)
        nxt: dict[State, int] = {}
        for state, paths in layer.items():
            terminal = True
            for succ in _successors(state, procs, after):
                terminal = False
                nxt[succ] = nxt.get(succ, 0) + paths
            if terminal:
                res.terminals += 1
                res.executions += paths
                if any(procs[i].nodes[h].decided is not None for i, (h, _) in enumerate(state[1])):
                    res.decided_terminals += 1
                if any(procs[i].nodes[h].gave_up for i, (h, _) in enumerate(state[1])):
                    res.gave_up_terminals += 1
                for v in _check(mode, state, procs, proposed):
                    if len(res.violations) < max_violations:
                        res.violations.append(v)
        layer = nxt
        if res.states > max_states or len(res.violations) >= max_violations:
            res.complete = not layer
            break
    res.replays = sum(p.replays for p in procs)
    res.seconds = time.perf_counter() - started
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--mode", choices=["create", "blocks", "both"], default="both")
    ap.add_argument("--stores", type=int, action="append", help="default: 2 and 3")
    ap.add_argument("--proposers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--faults", type=int, default=0, help="operations that may fail")
    ap.add_argument("--after", action="store_true", help="faults may also follow the effect")
    ap.add_argument("--leads", type=int, default=0, help="proposers opening with a leader's ACCEPT")
    ap.add_argument("--mutation", action="append", default=[], help="plant a bug (tests)")
    args = ap.parse_args(argv)
    modes = ["create", "blocks"] if args.mode == "both" else [args.mode]
    saved = set(core.MUTATIONS)
    core.MUTATIONS.update(args.mutation)
    bad = False
    try:
        for mode in modes:
            for n in args.stores or [2, 3]:
                r = explore(
                    mode,
                    n,
                    args.proposers,
                    args.rounds,
                    faults=args.faults,
                    after=args.after,
                    leads=args.leads if mode == "create" else 0,
                )
                print(r.describe(), flush=True)
                bad = bad or bool(r.violations)
    finally:
        core.MUTATIONS.clear()
        core.MUTATIONS.update(saved)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
