"""What a run observed, and the checks every run must pass.

Clients record into one :class:`Observations` while the run goes on (only one simulated
thread runs at a time, so plain lists are safe); :func:`check` turns them into violations:

- one record per slot for every reader: every ``(slot, index)`` any reader ever saw holds
  one value;
- the chain verifies (``Log.verify`` of a final reader finds no damage);
- every acknowledged entry is present exactly once, at its acknowledged position;
- nothing reported failed (an error that does not say "outcome unknown") is present;
- KV and lock histories are linearizable (``passivepaxos.checker``); with clocks outside
  the lease bound only lease reads may be stale, and the report names them;
- fencing tokens strictly increase across holders (in real time), and a token has one
  owner;
- no two holders' beliefs (``Locks.valid`` answering True) overlap inside the bound;
- liveness: once faults stop, every live process finishes.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from passivepaxos import checker
from passivepaxos.checker import Hold, KVModel, LockModel, Op, Recorder

__all__ = ["Observations", "check", "lease_bound_holds"]

READ_BOUND = 4.0 / 3.0
"""The largest ratio of two clock rates the lease and lock expiry arguments allow
(``passivepaxos.lease``: a claimant's clock may run up to 1/0.75 the holder's)."""


def lease_bound_holds(rates: list[float]) -> bool:
    """Whether every pair of clock rates is inside the lease bound."""
    return not rates or max(rates) / min(rates) <= READ_BOUND


@dataclass
class Observations:
    """Everything clients saw and were told, in global virtual time."""

    clock: Any  # () -> float: global virtual time
    acked: list[tuple[bytes, int, int, str]] = field(default_factory=list)  # value, slot, index, by
    failed: list[tuple[bytes, str, str]] = field(default_factory=list)  # value, by, error
    unknown: list[tuple[bytes, str, str]] = field(default_factory=list)
    seen: dict[tuple[int, int], dict[bytes, str]] = field(
        default_factory=dict
    )  # pos -> value -> reader
    kv: Recorder = field(init=False)
    locks: Recorder = field(init=False)
    acked_at: dict[bytes, float] = field(default_factory=dict)  # value -> when acknowledged
    heads: list[tuple[float, int, str]] = field(
        default_factory=list
    )  # log lease reads: call, head, by
    removed: list[int] = field(default_factory=list)  # stores removed by a membership change
    reads: list[tuple[float, frozenset[bytes], str]] = field(
        default_factory=list
    )  # whole-log reads: start, values, by
    lease_gets: set[tuple[Hashable, float]] = field(
        default_factory=set
    )  # kv gets served by a lease
    holds: dict[tuple[str, str, int], list[float]] = field(
        default_factory=dict
    )  # (lock, owner, token) -> [start, last True]
    fenced: list[tuple[str, int, str]] = field(default_factory=list)  # lock, token, owner accepted
    finished: set[str] = field(default_factory=set)
    crashed: set[str] = field(default_factory=set)
    stuck: dict[str, str] = field(default_factory=dict)  # process -> where it was stuck
    verify: list[str] = field(default_factory=list)  # damage a final verify reported
    notes: list[str] = field(
        default_factory=list
    )  # allowed anomalies (stale lease reads outside the bound)
    errors: list[str] = field(default_factory=list)  # unexpected exceptions in clients

    def __post_init__(self) -> None:
        self.kv = Recorder(self.clock)
        self.locks = Recorder(self.clock)

    # -- recording -------------------------------------------------------------------------

    def saw(self, slot: int, index: int, value: bytes, reader: str) -> None:
        self.seen.setdefault((slot, index), {}).setdefault(value, reader)

    def ack(self, value: bytes, slot: int, index: int, by: str) -> None:
        self.acked.append((value, slot, index, by))

    def believe(self, lock: str, owner: str, token: int, start: float | None = None) -> None:
        """``owner`` was told it holds ``lock`` with ``token`` (``valid()`` said True) now."""
        now = self.clock()
        h = self.holds.setdefault((lock, owner, token), [now if start is None else start, now])
        h[1] = max(h[1], now)


def _lin(history: list[Op], model: Any) -> checker.Result:
    return checker.check(history, model, timeout=20.0, max_states=200_000)


def check(
    obs: Observations, *, inside_bound: bool, final: dict[tuple[int, int], bytes] | None
) -> list[str]:
    """The violations of one run (empty: it passed). ``final``: what a final reader read
    (position -> value), None when the final read itself failed (then a violation is
    already recorded)."""
    out: list[str] = []
    # one record per slot for every reader
    for pos, values in sorted(obs.seen.items()):
        if len(values) > 1:
            who = ", ".join(f"{v!r} (read by {r})" for v, r in values.items())
            out.append(f"two values at slot {pos[0]} index {pos[1]}: {who}")
    # every acknowledged entry exactly once, at its position
    if final is not None:
        where: dict[bytes, list[tuple[int, int]]] = {}
        for pos, v in final.items():
            where.setdefault(v, []).append(pos)
        for value, slot, index, by in obs.acked:
            got = where.get(value, [])
            if got != [(slot, index)]:
                out.append(
                    f"acknowledged entry {value!r} (by {by} at slot {slot} index {index}) "
                    f"is at {got or 'nowhere'} in the final log"
                )
        unknown = {v for v, _, _ in obs.unknown}
        for value, by, err in obs.failed:
            if value in where and value not in unknown:
                out.append(
                    f"append of {value!r} by {by} was reported failed ({err}) "
                    f"but is in the log at {where[value]}"
                )
        for value, positions in where.items():
            if len(positions) > 1:
                out.append(f"entry {value!r} is in the log {len(positions)} times: {positions}")
    # a log lease read's head covers every append acknowledged before it was called
    stale_heads = []
    for call, head, by in obs.heads:
        missed = [
            (v, slot)
            for v, slot, _, _ in obs.acked
            if slot > head and obs.acked_at.get(v, call) < call
        ]
        if missed:
            stale_heads.append(
                f"lease read by {by} at t={call:.6f} returned head {head}, but {missed[0][0]!r} "
                f"was acknowledged at slot {missed[0][1]} before"
            )
    if inside_bound:
        out.extend(stale_heads)
    elif stale_heads:
        obs.notes.append(f"clocks outside the bound: {len(stale_heads)} stale log lease read(s)")
    # a whole-log read sees every entry acknowledged before it started (a slot that could
    # not be told apart from a missing one must not end the log early)
    for start, values_read, by in obs.reads:
        skipped = [
            v for v, *_ in obs.acked if v not in values_read and obs.acked_at.get(v, start) < start
        ]
        if skipped:
            out.append(
                f"a read of the whole log by {by} from t={start:.6f} missed {len(skipped)} "
                f"entry(ies) acknowledged before it started, e.g. {skipped[0]!r}"
            )
    out.extend(f"verify: {d}" for d in obs.verify)
    # KV linearizability
    history = obs.kv.close()
    if history:
        res = _lin(history, KVModel())
        if not res.ok:
            stale = [o for o in history if o.kind == "get" and _handle_of(obs, o) in obs.lease_gets]
            if not inside_bound and stale:
                rest = [
                    o
                    for o in history
                    if not (o.kind == "get" and _handle_of(obs, o) in obs.lease_gets)
                ]
                res2 = _lin(rest, KVModel())
                if res2.ok:
                    obs.notes.append(
                        f"clocks outside the lease bound: lease reads may be stale ({len(stale)} lease gets; "
                        "the history without them is linearizable)"
                    )
                else:
                    out.append(
                        "kv history not linearizable (even without lease reads): " + res2.describe()
                    )
            else:
                out.append("kv history not linearizable: " + res.describe())
    # locks: linearizable (expiring), fencing, one owner per token, beliefs
    lh = obs.locks.close()
    if lh:
        res = _lin(lh, LockModel(expiring=True))
        if not res.ok:
            out.append("lock history not linearizable: " + res.describe())
        out.extend(str(v) for v in checker.check_fencing(lh))
    owners: dict[tuple[str, int], str] = {}
    for op in lh:
        if op.kind == "acquire" and op.status == "ok" and isinstance(op.output, int):
            prev = owners.setdefault((str(op.key), op.output), str(op.input))
            if prev != op.input:
                out.append(f"lock {op.key!r} token {op.output} granted to {prev} and {op.input}")
    for lock, token, owner in obs.fenced:
        granted = owners.get((lock, token))
        if granted is not None and granted != owner:
            out.append(
                f"fenced write on {lock!r} with token {token} by {owner}, granted to {granted}"
            )
    holds = [Hold(k[0], k[1], k[2], s, e + 1e-9) for k, (s, e) in obs.holds.items()]
    overlaps = [str(v) for v in checker.check_holders(holds)]
    if inside_bound:
        out.extend(overlaps)
    elif overlaps:
        obs.notes.append(f"clocks outside the bound: {len(overlaps)} holder belief overlap(s)")
    # liveness
    out.extend(
        f"liveness: {p} did not finish after faults stopped: {where}"
        for p, where in obs.stuck.items()
    )
    out.extend(obs.errors)
    return out


def _handle_of(obs: Observations, op: Op) -> Hashable:
    """Lease gets are tagged by their (process, call time)."""
    return (op.process, op.call)
