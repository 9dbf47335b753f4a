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
- liveness: once faults stop, every live process finishes;
- with damage injected (``Damage``: a middle slot deleted, another log's record copied
  past the tail, a tombstone deleted or corrupted), reads and verify failing at the
  damaged slot are expected, and the violations are issue 10's findings 11 and 13: a
  deleted slot filled again, an entry acknowledged after a foreign record (built on it),
  a read or verify stopping elsewhere (something was built on the damage), a writer that
  could know the slot was decided acknowledged in a deleted tombstone's hole, and a verify
  that reports no damage (see :func:`_damage_checks`; a stale view, by what the network
  told the writer, is only a note: :func:`_writer_knew`).
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from passivepaxos import checker
from passivepaxos.checker import Hold, KVModel, LockModel, Op, Recorder
from passivepaxos.log.record import tombstone_of
from passivepaxos.snapshot import is_tombstone, snapshot_slot_of

__all__ = ["Damage", "Observations", "check", "lease_bound_holds"]

READ_BOUND = 4.0 / 3.0
"""The largest ratio of two clock rates the lease and lock expiry arguments allow
(``passivepaxos.lease``: a claimant's clock may run up to 1/0.75 the holder's)."""


def lease_bound_holds(rates: list[float]) -> bool:
    """Whether every pair of clock rates is inside the lease bound."""
    return not rates or max(rates) / min(rates) <= READ_BOUND


@dataclass
class Damage:
    """What the world damaged (an outside actor: an operator, another log's tool), when."""

    kind: str  # "delete" (a middle slot), "foreign" (past the tail), "tombstone-deleted", "tombstone-corrupted"
    slot: int
    at: float  # global virtual time
    entries: tuple[bytes, ...] = ()  # "delete": the entries the deleted record held
    left: bytes | None = None  # tombstone kinds: the object as the damage left it
    healed: bool = False  # a valid tombstone is back (a trim's retried OVERWRITE landed after)

    def expected(self) -> set[int]:
        """The slots a read or verify may name as damaged because of it (a corrupted
        tombstone's ``hash`` may show as the next slot's broken link)."""
        return {self.slot, self.slot + 1} if self.kind == "tombstone-corrupted" else {self.slot}


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
    read_ends: list[int] = field(default_factory=list)  # each whole-log read's end slot
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
    damage: list[Damage] = field(default_factory=list)  # injected by the world
    started: dict[str, float] = field(default_factory=dict)  # process -> when it started
    views: dict[str, list[tuple[float, str, int]]] = field(
        default_factory=dict
    )  # process -> what it was told, in order: (when, "slot" | "snap" | "write", slot)
    reading: set[str] = field(default_factory=set)  # processes inside a whole-log read
    final_stop: tuple[int, str] | None = None  # damage runs: where the final read stopped
    verified: dict[str, Any] | None = None  # damage runs: the final verify's report
    # append_async producers: their values in call order (the log keeps that order)
    pipelines: dict[str, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kv = Recorder(self.clock)
        self.locks = Recorder(self.clock)

    # -- recording -------------------------------------------------------------------------

    def observe(self, proc: str, op: str, key: str | None, answer: Any) -> None:
        """A request of ``proc`` as the network saw it (``Network.watch``): a write sent
        (``answer`` None) or a read's answer received. Kept: the log slots it was told
        exist, the snapshots it was told of (listed, read, or named by a tombstone), the
        slots it wrote; what the damage checks ask of a writer's view."""
        now = self.clock()
        got = self.views.setdefault(proc, [])
        if answer is None:
            slot = _log_slot(key) if op.startswith("put") else None
            if slot is not None:
                got.append((now, "write", slot))
            elif op == "get" and _SLOT_OBJECT.fullmatch(key or "") and proc not in self.reading:
                # a single create store's slot object answered "missing" (a probe, a GET
                # beside a LIST): with a later slot known, the writer has seen a hole
                got.append((now, "gone", int((key or "")[4:])))
            return
        if op == "list":
            for m in answer:
                snap = snapshot_slot_of(m.key)
                if snap is not None:
                    got.append((now, "snap", snap))
                slot = _log_slot(m.key)
                if slot is not None and proc not in self.reading:
                    got.append((now, "slot", slot))
            return
        snap = snapshot_slot_of(key or "")
        if snap is not None:
            got.append((now, "snap", snap))
        slot = _log_slot(key)
        if slot is None:
            return
        if proc not in self.reading:
            got.append((now, "slot", slot))
        data = answer[0]
        if is_tombstone(data):
            with contextlib.suppress(Exception):  # a corrupted tombstone names nothing
                got.append((now, "snap", tombstone_of(data, slot).snap))

    def saw(self, slot: int, index: int, value: bytes, reader: str) -> None:
        self.seen.setdefault((slot, index), {}).setdefault(value, reader)

    def ack(self, value: bytes, slot: int, index: int, by: str) -> None:
        self.acked.append((value, slot, index, by))

    def believe(self, lock: str, owner: str, token: int, start: float | None = None) -> None:
        """``owner`` was told it holds ``lock`` with ``token`` (``valid()`` said True) now."""
        now = self.clock()
        h = self.holds.setdefault((lock, owner, token), [now if start is None else start, now])
        h[1] = max(h[1], now)


_SLOT_OBJECT = re.compile(r"log/\d{20}")  # a slot of one create store, the object itself


def _log_slot(key: str | None) -> int | None:
    """The slot of a log object's key (``log/<20 digits>[/...]``), else None."""
    if not key or not key.startswith("log/"):
        return None
    digits = key[4:24]
    if len(digits) == 20 and digits.isdigit() and key[24:25] in ("", "/"):
        return int(digits)
    return None


def _lin(history: list[Op], model: Any) -> checker.Result:
    return checker.check(history, model, timeout=20.0, max_states=200_000)


def check(
    obs: Observations, *, inside_bound: bool, final: dict[tuple[int, int], bytes] | None
) -> list[str]:
    """The violations of one run (empty: it passed). ``final``: what a final reader read
    (position -> value), None when the final read itself failed (then a violation is
    already recorded)."""
    out: list[str] = []
    exempt: set[bytes] = set()  # entries no reader can reach because of injected damage
    if obs.damage:
        exempt = _damage_checks(obs, final, out)
    # one record per slot for every reader
    for pos, values in sorted(obs.seen.items()):
        if (
            obs.damage
            and obs.damage[0].kind in ("delete", "tombstone-deleted")
            and pos[0] == obs.damage[0].slot
        ):
            continue  # a value there after the deletion is judged by _damage_checks
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
            if value in exempt:
                continue
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
        # a pipeline's values are in the log in the order of its calls, and none after
        # one of them that failed (not written: its later ones are aborted too)
        failed = {v for v, _, _ in obs.failed} - unknown
        for by, calls in obs.pipelines.items():
            gone = next((v for v in calls if v in failed), None)
            later = calls[calls.index(gone) + 1 :] if gone is not None else []
            landed = [v for v in later if v in where]
            if landed:
                out.append(
                    f"{by}'s append_async of {landed[0]!r} is in the log although its "
                    f"earlier {gone!r} failed (not written)"
                )
            placed = [(where[v][0], v) for v in calls if len(where.get(v, [])) == 1]
            for (p1, v1), (p2, v2) in itertools.pairwise(placed):
                if p2 < p1:
                    out.append(
                        f"{by}'s append_async of {v2!r} is at {p2}, before its earlier {v1!r} "
                        f"at {p1}"
                    )
                    break
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
    for n, (start, values_read, by) in enumerate(obs.reads):
        skipped = [
            v
            for v, *_ in obs.acked
            if v not in values_read and v not in exempt and obs.acked_at.get(v, start) < start
        ]
        end = obs.read_ends[n] if n < len(obs.read_ends) else -1
        if skipped and obs.damage and start > obs.damage[0].at and end == obs.damage[0].slot:
            # Reader.raw_records(reuse=True): a Log object that once probed past an end of
            # the log at slot s does not probe again when a later read stops there, so a
            # slot deleted at s ends its reads early, silently (a documented trade-off)
            obs.notes.append(
                f"reader reuse: a read by {by} from t={start:.6f} ended silently at the "
                f"damaged slot {end} (no probe past an end it had probed before), missing "
                f"{len(skipped)} acknowledged entry(ies)"
            )
        elif skipped:
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


def _damage_checks(
    obs: Observations, final: dict[tuple[int, int], bytes] | None, out: list[str]
) -> set[bytes]:
    """Issue 10's findings 11 and 13 against the damage the world injected; returns the
    acknowledged entries no reader can reach because of the damage itself (left out of
    the acknowledged-entries and whole-log-read checks).

    Expected, not violations: a read or verify stopping with ``DamagedSlotError`` at the
    damaged slot; entries acknowledged after a deleted middle slot by writers that never
    saw it (they chain to their predecessors; the gap before them hides them); the
    documented limit of ``docs/log.md`` (a writer whose stale tail is a record from before
    the trim, acknowledged in a deleted tombstone's hole: verify reports it). Stale means
    what :func:`_writer_knew` says: judged on what the network told the writer.
    Violations: something built on the damage or the damage hidden."""
    d = obs.damage[0]
    exempt: set[bytes] = set()
    expected = d.expected()
    stop = obs.final_stop
    where: dict[bytes, list[tuple[int, int]]] = {}
    for pos, v in (final or {}).items():
        where.setdefault(v, []).append(pos)

    def knew(by: str) -> tuple[str | None, str]:
        """What told writer ``by``, before it wrote at the damaged slot, that the slot was
        decided (so the library refuses to write there; ``None``: its view predates the
        damage, it cannot tell, a stale view). See :func:`_writer_knew`."""
        return _writer_knew(obs, by, d.slot, d.at)

    if d.kind == "delete":
        # (a) the deleted slot filled again (finding 11): the evidence erased, the link to
        # the slot after it broken. By a writer that could know (started after the damage,
        # or told of a snapshot at or past the slot), a violation; one whose known tail
        # predates the damage cannot tell (noted, and then the break shows at the next slot)
        exempt.update(d.entries)
        fillers: dict[bytes, str] = {}
        for value, slot, _, by in obs.acked:
            if slot == d.slot and value not in d.entries:
                fillers[value] = f"{by}'s append of {value!r} was acknowledged there"
            elif slot > d.slot:  # behind the gap: no reader reaches them
                exempt.add(value)
                seen = _saw_hole(obs, by, d.slot, d.at, slot)
                if seen is not None and not where.get(value):
                    # (a snapshot covering the hole lets readers past it: then it is read)
                    # (issue 12 re-review, finding A) built past a hole it had seen
                    out.append(
                        f"damage: slot {d.slot} was deleted at t={d.at:.6f}, and {by}'s "
                        f"append of {value!r} was acknowledged at slot {slot}, past the "
                        f"hole, although {by} {seen}"
                    )
        for (slot, _), values in obs.seen.items():
            if slot == d.slot:
                for value, reader in values.items():
                    if value not in d.entries:
                        fillers.setdefault(value, f"{reader} read {value!r} there")
        for value, what in fillers.items():
            exempt.add(value)
            by = value.decode(errors="replace").split("#")[0]
            why, later = knew(by)
            if why is not None:
                out.append(
                    f"damage: slot {d.slot} was deleted at t={d.at:.6f}, and {what} (the gap "
                    f"filled by {by}, which {why}; the chain broken)"
                )
            else:
                expected.add(d.slot + 1)
                obs.notes.append(
                    f"stale writer: slot {d.slot} deleted at t={d.at:.6f} was filled by {by}, "
                    f"whose known tail predates the damage ({what}{later})"
                )
        if any(slot == d.slot and v in d.entries for (slot, _), v in (final or {}).items()):
            # the deleted record's own entries are back: its writer, its proposal still
            # running from before the damage, decided it again (maybe another record of the
            # same entries: then the link to the next slot is broken)
            expected.add(d.slot + 1)
    elif d.kind == "foreign":
        # (b) an entry acknowledged after another log's record (finding 11): built on it
        for value, slot, _, by in obs.acked:
            if slot > d.slot:
                out.append(
                    f"damage: another log's record was copied onto slot {d.slot} at "
                    f"t={d.at:.6f}, and {by}'s append of {value!r} was acknowledged at slot "
                    f"{slot}, built on it (no reader can reach it)"
                )
                exempt.add(value)
    else:
        # a writer in a deleted tombstone's hole (finding 13): refused when it has seen the
        # snapshot; one started after the damage has no stale view of the log (knew). The
        # slot's own entries are what the final read shows there (from the snapshot); any other
        # value acknowledged or read there is a record in the hole
        own = {v for (slot, _), v in (final or {}).items() if slot == d.slot}
        # the damaged slot's own entries are read from the snapshot by readers that list
        # it; a read that started before the snapshot existed reads the slot itself and,
        # if the tombstone vanished under it, may end there: damage, not a library fault
        # (seed 8589 of damage, found after issue 12's schedule changes)
        exempt.update(own)
        holes: dict[bytes, str] = {}
        for value, slot, _, by in obs.acked:
            if slot == d.slot and value not in own and not where.get(value):
                holes[value] = f"acknowledged to {by}"
        for (slot, _), values in obs.seen.items():
            if slot == d.slot:
                for value, reader in values.items():
                    if value not in own:
                        holes.setdefault(value, f"read there by {reader}")
        for value, what in holes.items():
            exempt.add(value)
            by = value.decode(errors="replace").split("#")[0]
            why, later = knew(by)
            if why is not None:
                out.append(
                    f"damage: the tombstone of slot {d.slot} was deleted at t={d.at:.6f}, and "
                    f"{by} (which {why}) was acknowledged there with {value!r}, which "
                    f"no reader sees ({what})"
                )
            else:
                expected.add(d.slot + 1)  # its record chains to its stale tail, not on
                obs.notes.append(
                    f"documented limit: {by}, its tail stale since before the damage, wrote "
                    f"{value!r} in the deleted tombstone's slot {d.slot} ({what}{later})"
                )
                # everything appended after that record chains on it, not on the
                # snapshot's anchor: no reader reaches it, as past a deleted slot (the
                # same limit; a warm start's next call starts from it, and writers that
                # never listed the snapshot build on: issue 12, seeds 7604 and 16883)
                for v2, s2, _, by2 in obs.acked:
                    if s2 > d.slot and not where.get(v2) and v2 not in exempt:
                        exempt.add(v2)
                        obs.notes.append(
                            f"documented limit: {by2} appended {v2!r} at slot {s2}, after "
                            f"{by}'s record in the deleted tombstone's slot {d.slot}"
                        )
    if stop is not None and stop[0] not in expected:
        out.append(
            f"damage: the final read stopped at slot {stop[0]} ({stop[1]}), but the injected "
            f"damage ({d.kind}) is at slot {d.slot}: a record was built on it"
        )
    # (d) verify must report the damage (unless it healed: the final read went through
    # the slot with its own entries, or a trim's retried tombstone write landed after it)
    rep = obs.verified
    healed = d.healed or (
        d.kind == "delete"
        and any(slot == d.slot and v in d.entries for (slot, _), v in (final or {}).items())
    )
    if rep is not None and not healed:
        bad = rep.get("bad_slot")
        if bad is None and rep.get("bad_snapshot") is None:
            out.append(
                f"damage: {d.kind} at slot {d.slot} (t={d.at:.6f}), but the final verify "
                f"reports no damage: {rep}"
            )
        elif bad is not None and bad not in expected:
            out.append(
                f"damage: {d.kind} at slot {d.slot} (t={d.at:.6f}), but the final verify "
                f"names slot {bad}: {rep.get('error')}"
            )
    return exempt


def _saw_hole(obs: Observations, by: str, hole: int, at: float, slot: int) -> str | None:
    """What showed writer ``by`` the hole at ``hole`` (deleted at ``at``) before it wrote
    ``slot`` past it: a read of the hole answering "missing" after the damage, and a
    later slot it was told exists after the damage (outside whole-log reads), both
    before the write that put its record at ``slot`` began and since the ``Log`` that
    wrote it was opened; ``None`` if it was not shown both (a writer that never looked
    there builds past a hole it cannot see)."""
    events = obs.views.get(by, [])
    began = next((t for t, kind, s in reversed(events) if kind == "write" and s == slot), None)
    if began is None:
        return None
    for t, kind, s in reversed(events):  # the first write of the last run to ``slot``
        if t > began:
            continue
        if kind == "write" and s == slot:
            began = t
        elif kind == "write":
            break
    # what this Log object was told: from its opening (a new Log is a new process's)
    opened = max((t for t, kind, _ in events if kind == "open" and t <= began), default=0.0)
    since = max(at, opened)
    gone = next(
        (t for t, kind, s in events if kind == "gone" and s == hole and since <= t < began),
        None,
    )
    later = next(
        (t for t, kind, s in events if kind == "slot" and s > hole and since <= t < began),
        None,
    )
    if gone is None or later is None:
        return None
    return f"had been told slot {hole} was missing at t={gone:.6f} and a later slot existed at t={later:.6f}"


def _writer_knew(obs: Observations, by: str, slot: int, at: float) -> tuple[str | None, str]:
    """Whether writer ``by`` could know, when it began the write that put a record at
    ``slot`` (damaged at ``at``), that ``slot`` was decided; a stale view is only one
    where it could not. Judged on what the network told it (``Observations.views``)
    before that write began (its first request of its last run of writes to ``slot``
    that has one sent after the damage; else its last such run). It could know (returned
    first, a violation) when:

    - it started after the damage (whatever it builds on, it found);
    - it was told of a snapshot at ``slot`` or later (listed, read, or named by a
      tombstone), at any time: slots up to a snapshot are decided, and the library never
      writes a missing slot below a snapshot it has seen (``below_snapshot``).

    Returned second (for the note, not a violation): a later slot it was told exists
    after the damage outside a whole-log read (a discovery that then failed, a resumed
    append's search): the writer's view of the tail did not keep it (docs/simulation.md)."""
    if obs.started.get(by, 0.0) > at:
        return f"started at t={obs.started[by]:.6f}, after the damage", ""
    events = obs.views.get(by, [])
    runs: list[list[float]] = []  # its runs of consecutive writes to slot (times)
    last_slot: int | None = None
    for t, kind, s in events:
        if kind != "write":
            continue
        if s == slot and last_slot == slot and runs:
            runs[-1].append(t)
        elif s == slot:
            runs.append([t])
        last_slot = s
    if not runs:
        return None, ""  # never wrote there itself: nothing to judge
    run = next((r for r in runs if r[-1] > at), runs[-1])
    began = run[0]
    # a warm start (issue 12's tail cache) whose first write went right after the cached
    # tail: its view is the cache's, from before; the documented limit (docs/log.md, "Warm
    # starts"): a stale view
    opened = max(((t, s) for t, kind, s in events if kind == "open" and t <= began), default=None)
    if opened is not None and opened[1] >= 0 and slot == opened[1] + 1:
        first = not any(kind == "write" and opened[0] <= t < began for t, kind, _ in events)
        if first:
            return None, f"; a warm start from its tail cache at slot {opened[1]}"
    later = ""
    for t, kind, s in events:
        if t >= began:
            break
        if kind == "snap" and s >= slot:
            return (
                f"had been told of the snapshot at slot {s} at t={t:.6f}, before it wrote "
                f"there at t={began:.6f}"
            ), ""
        if kind == "slot" and s > slot and t > at and not later:
            later = f"; it had been told slot {s} exists at t={t:.6f}, after the damage"
    return None, later


def _handle_of(obs: Observations, op: Op) -> Hashable:
    """Lease gets are tagged by their (process, call time)."""
    return (op.process, op.call)
