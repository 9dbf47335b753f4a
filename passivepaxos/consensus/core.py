"""Consensus protocols as pure state machines: no I/O, no clock, no global randomness.

A proposer (or learner) is a generator that yields *batches* of storage operations
(:class:`Get`, :class:`Put`, :class:`List`, :class:`Sleep`) meant to run in parallel and
is sent back one result per operation: the value, or the exception instance the store
raised. The same code therefore runs over real stores (``driver``) and inside the
deterministic simulator (``sim``), as etcd's raft core does. Randomness (backoff, block
owner nonces) comes from a ``random.Random`` the caller supplies.

Ballots are ``(round, proposer_id)`` tuples: totally ordered and unique per proposer.
``ZERO = (0, "")`` is reserved for the fast path; ordinary rounds start at 1 and a new
round always exceeds every ballot the proposer has seen.

Passive Paxos (create lists)
----------------------------
Each store holds one *virtual acceptor*: an append-only list of numbered objects
``<instance>/<slot:020d>``. Sending a PREPARE(b) or ACCEPT(b, v) to that acceptor means
creating the next free slot (create-if-absent); the loser of a slot learns the winner's
message from ``AlreadyExistsError.current`` and tries the next slot. The acceptor's state
after the first ``k`` slots is a pure function of those slots (:func:`replay`):

- a PREPARE(b) is *granted* iff ``b`` exceeds every ballot granted or accepted earlier;
- an ACCEPT(b, v) is *accepted* iff ``b`` is at least every ballot granted or accepted
  earlier; the acceptor's accepted pair is the last accepted ACCEPT (ballots of accepted
  ACCEPTs never decrease, so it is also the highest).

Invariants, and why they hold:

- L1 (immutability) a slot, once created, never changes (create-if-absent, no deletes),
  so the outcome of every message is fixed forever by the prefix before it: a replay by
  anyone, at any time, agrees with the sender's.
- L2 (no gaps) a proposer creates slot ``k`` only after seeing slots ``0..k-1`` exist,
  and a late-landing write only lands on the slot it was aimed at; readers can stop at the
  first missing slot.
- P1 (one value per ballot) a proposer sends at most one ACCEPT value per ballot: an
  ambiguous append is resolved by re-reading the slot (never by sending another value in
  the same ballot); an unresolvable one just means the acceptor is not counted, which is
  what a lost message means in Paxos. Duplicated or late messages are harmless: an
  acceptor may receive any message at any time.
- Given L1 and P1 each list is an ordinary Paxos acceptor, so Paxos's P2c holds: if
  (b, v) is accepted by a majority of lists (chosen), every ACCEPT(b', v') with b' > b has
  v' = v, because its sender's PREPARE(b') was granted by a majority, which intersects the
  choosing majority in a list where ACCEPT(b, v) precedes the PREPARE (else it would not
  have been accepted) and thus reports a pair of ballot >= b.

"Chosen" is exactly computable from the lists a reader could read (:func:`chosen`): a
value it finds chosen is decided (L1); finding none is only conclusive under the rule of
"Learning" below.

Passive Paxos (cas lists)
-------------------------
For stores used in ``cas`` mode, each store's virtual acceptor list is ONE object
``<instance>/list`` holding ``{"f": 1, "m": [entry, ...]}``, entries being the message
objects of create lists plus a ``"u"`` uid. Appending message ``m``: take the entries
``E`` known at version ``ver`` and write ``E + [m]`` with ``Put(update(ver))`` (with
``Put(CREATE)`` of ``[m]`` while the object is believed absent). A lost race
(``PreconditionFailedError``/``AlreadyExistsError``) carries ``.current``, the winner's
list, and the append is retried on top of it with no extra read. Only how a message is
appended and how a list is read differ from create lists (``_CasLists`` vs ``_Lists``);
replay, grants, :func:`chosen`, the proposer and the learner are the same code, so every
argument above carries over once L1, L2 and P1 hold for cas lists:

- L1' (append-only) a write is conditioned on the exact version whose contents it extends
  by one entry, and a store's versions never repeat (every object we write is framed
  with a fresh write id, so even content-hashed ETags differ), so every successful write,
  including one landing late, turns the list at some version into that list plus one
  entry: entry ``k``, once present, never changes and keeps its index. Readers check
  that what they read extends what they knew and stop counting a store where it does not.
- L2' (no gaps) holds trivially: the list is one object, read whole.
- P1 and "each message lands at most once": every append carries a fresh ``uid`` (drawn
  from the proposer's ``tag``, ``<proposer_id>.<48 random bits from the caller's rng>``,
  and a counter). After ``AmbiguousWriteError``/``TransientError`` the proposer re-reads
  the object: its uid there means the append landed at that index; the same version and
  no uid means it did not (yet), and the same entries are sent again under the same
  precondition (so at most one of the attempts lands); a newer version without
  the uid means it can never land (its version is gone), and the append is retried on top.
  So an unclear message is never replaced by another value at the same ballot, and the
  simulator also checks that no uid occurs twice in a final list.

Creating the object. The first append to an instance's list uses create-if-absent, so
cas mode needs stores with CAS *and* create (``driver`` refuses others, naming the
capability); every store in our capability table with CAS has create. A hypothetical
CAS-only store would need each list object pre-created (``OVERWRITE`` of an empty list)
before any proposer runs; that is safe only if no append can have happened yet, i.e. at
``init`` for instances named in advance, and creating it lazily with ``OVERWRITE`` would
be unsafe (a late blind create erases entries appended since). Instances are named on
demand here, so that variant is not implemented.

The whole list is rewritten by every append, so the object grows by one entry per
PREPARE/ACCEPT (about 100 bytes plus the value); keep values small. GCS allows about one
write per second per object name, and every message to an acceptor is a write to the same
name, so cas mode is for low-rate instances (create lists spread writes over many names).
Contending proposers lose CAS races rather than slots: each loss costs one retry and brings
the winner's list for free.

Fast path (one create)
----------------------
With exactly one create-capable store, a proposer may create slot 0 with ACCEPT(ZERO, v)
(for a cas list: create the list object holding just that ACCEPT). Safe because: the write is aimed only at slot 0 (the store's ambiguity resolution and late
landings stay on that key, and the proposer never retries it elsewhere), so at most one
ACCEPT at ballot ZERO ever exists, and it is the first message of the only acceptor, hence
accepted and chosen; ZERO is below every ordinary ballot, so every later PREPARE replays it
and reports it, and P2c holds as above. :func:`replay` ignores a ZERO ACCEPT at any other
slot. With several stores two proposers could win slot 0 on different lists with different
values at the same ballot, violating P1, so the fast path is refused there.

Leader's accept (multi-Paxos without a phase 1)
-----------------------------------------------
A proposer called with ``lead=True`` on several stores first sends ACCEPT((0, id), v),
``id`` its per-call ballot id, as slot 0 of every list (``only_slot=0``: it never goes
anywhere else); if a majority of lists took it as their slot 0, ``v`` is decided in one
round trip, with no PREPARE and no marker. Otherwise the call goes on with ordinary rounds
(round 1 and up), exactly as any proposer. This is Paxos with a round reserved for a
coordinator named in advance (Lamport's "ballot 0" of a stable leader, Mencius's slot
owner): the *caller* guarantees the precondition **at most one call ever sends a
leader's ACCEPT to an instance** (the log names the author of slot ``i - 1``, in that
process only; docs/log.md). Why it is safe, given that precondition:

- the acceptor is unchanged: a round-0 ACCEPT counts only as slot 0 (:func:`step`, as for
  ZERO), where nothing precedes it, so it is accepted there and nowhere else; P1 holds
  because it is one message, aimed at one key per store, resent only as identical bytes;
- P2c for the leader's ballot ``(0, id)``: the only ballots below it are ZERO (used only
  with one store) and other round-0 ballots, which the precondition excludes, so no value
  can be chosen below it and any value satisfies P2c; phase 1 would have reported nothing;
- P2c for every ordinary ballot ``b`` (round >= 1 > 0): unchanged. If ``((0, id), v)`` is
  chosen, it is slot 0 of a majority of lists, so every granting majority of ``b`` has a
  list where it precedes the PREPARE and reports a pair of ballot >= (0, id): by
  induction on ballots, the highest one reported carries ``v``;
- a PREPARE that took a list's slot 0 first leaves the leader's message nowhere on that
  list (it may not land at slot 1): a promise to ``b`` rejecting a lower ballot, as in
  Paxos. So an old leader's message that lands late cannot be decided behind a newer
  round: it only lands on lists nobody has written, and is then reported by the next
  phase 1 like any accepted value (the exploration of ``explore --leads 1`` checks every
  interleaving; ``--leads 2`` breaks the precondition and finds two values chosen).

Disk Paxos (blocks)
-------------------
Gafni & Lamport's DiskSynod. Every proposer call is a fresh *processor* ``owner =
<proposer_id>.<nonce>`` (so no processor ever restarts and DiskSynod's phase 0 is not
needed). It owns blocks ``<instance>/blocks/<owner>/<seq:012d>`` on every store; a block
holds ``(mbal, bal, inp)``; writing a new state uses a new ``seq`` and readers take the
highest ``seq`` per owner. Single-writer keys that are never rewritten make a write that
lands late harmless: it can never hide a newer state, so what a disk shows for ``p`` only
moves forward through ``p``'s own states, as DiskSynod assumes of ``disk[d][p]``.
In each phase the processor writes its block to every disk, then lists and reads every
other owner's latest block on that disk; a block with a higher ``mbal`` aborts the ballot;
the phase ends once a majority of disks were written and fully read. Phase 1 ends by
setting ``bal := mbal`` and ``inp :=`` the input of the highest-``bal`` block seen (own
block included) that has one, else its own input; phase 2 ends by deciding ``inp``.

The reference invariant is ``HInv``, the inductive invariant of Lamport's DiskSynod TLA+
specification (Gafni & Lamport, "Disk Paxos", Distributed Computing 16(1), 2003, appendix;
conjuncts HInv1..HInv6). The facts this implementation must preserve for it to apply,
in our words (not the spec's numbering): for every block, ``bal <= mbal`` and ``inp`` is
an input iff ``bal > ZERO``; what a disk holds for ``p`` is never ahead of ``p``'s own
``dblock`` (write-before-read, and monotone ``seq`` keys so a late write cannot move it
backwards); a block ``p`` read from ``q`` is a state ``q`` held at or before the read;
and the consequences the spec proves: once ``(b, v)`` is chosen every block with
``bal >= b`` has ``inp = v``, and all outputs are equal. The key step, as in the paper:
for two processors ``p``, ``q`` and a disk ``d`` each writes its block to ``d`` before
reading ``d``, so one of them reads the other's block with the newer ``mbal`` and aborts
or adopts. That needs only read-after-write (and list-after-write) consistency.

Ambiguity
---------
A ``Put`` that raised ``AmbiguousWriteError``/``TransientError`` is "maybe": for a create
list it is resolved by reading the slot back, for a cas list by looking for the message's
uid in the list object; for a block it just does not count (its unique key
means it cannot do harm if it lands later). Nothing is ever assumed failed and replaced by
a different value in the same ballot.

The same holds for the proposer's own outcome: once it has sent an ACCEPT (or a phase-2
block) carrying its own value, that value may be accepted by a majority even if no answer
came back, and any later proposer may adopt and decide it. Losing the majority after that
point is therefore ``OutcomeUnknownError`` (an ``AmbiguousWriteError``), never
``QuorumError``, whose meaning stays "not decided": the proposer's value was in no
ACCEPT / phase-2 block, and no one invents another's value.

DECIDED markers (M1, M2)
------------------------
After deciding, a proposer overwrites ``<instance>/decided`` on every store with
``D(ballot, v)`` (best effort). ``Log.copy_decided_markers`` writes them too, with the
value it learned, when a store is removed from a log's configuration.

- M1 (a marker is a fact) a marker names ``v`` only if ``v`` is decided: it is written
  after a decision by its decider, or from a value a learner found decided; never by a
  proposer before its own decision. So any reader may trust a marker found on any store,
  alone, and every proposer does: phase 1 reads every store's marker in the same batch as
  its PREPARE (Disk Paxos: its phase-1 block write), at no extra round trip and one GET per
  store, and returns a marked value at once (mutation ``ignore_markers``).
- M2 (a store counts in phase 1 only with its marker read) a store's phase-1 answer is its
  list (blocks) *and* its marker; a failed marker read leaves the store uncounted. Hence:
  if markers are on a set ``M`` of stores that meets every majority, every phase 1 that
  starts after they were written sees one. That is what a membership removal relies on
  (it copies the markers of all slots up to its record to a majority of the remaining
  stores, which meets every majority of the old set, as the sets differ by one store):
  the removed store can then be emptied without the lists that chose a value being
  needed to protect it from a stale proposer that starts afterwards. A proposer already
  past its marker reads when the markers are copied is protected only by those lists
  (P2c), so emptying a store under such a proposer needs the separate rule that a store
  which lost its state does not vote (issue 10, findings 1 and 9: store identity).

Learning (L3)
-------------
:func:`learner` is read-only and answers one of three things (:class:`Learned`), never
"absent" for "could not tell":

- ``DECIDED`` with the value: a marker on any store (M1), or a value :func:`chosen` in the
  lists read (create, cas);
- ``UNDECIDED``: a majority of the stores answered *in full* (marker read: absent; list
  read to its end, or every owner's latest block read) and none of them holds a marker or
  an accepted value (for blocks: a block with an input). Why that proves nothing was
  decided before the read: a decision needs its value accepted by a majority (for blocks:
  the decider's phase-2 block written to a majority, and every later block of that
  processor keeps its input); that majority meets the one read in a store where the
  acceptance happened before the read, and an acceptance never disappears from a list
  (L1) or a block sequence (monotone ``seq``). A value decided *during* the read is
  linearized after it, as for any read;
- ``UNKNOWN`` otherwise (a store did not answer, or a value is accepted but not seen
  chosen). The caller then finishes the instance with :func:`finisher`, a proposer without
  a value of its own: its phase 1 (with markers) either adopts the highest accepted value
  and decides it, as Paxos recovery does, or finds nothing accepted on a majority, which
  proves the instance undecided at that point (and no lower ballot can be decided after
  it); without a majority it raises ``QuorumError``. Or the caller reports the failure.

``MUTATIONS`` plants bugs for the mutation tests only; it is empty in normal use.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from passivepaxos.consensus.keys import blocks_prefix, decided_key, list_key, slot_key
from passivepaxos.errors import (
    AlreadyExistsError,
    ConflictError,
    OutcomeUnknownError,
    QuorumError,
    StoreError,
    StragglerError,
)
from passivepaxos.retry import Backoff
from passivepaxos.types import PutMode, Version

__all__ = [
    "DECIDED",
    "MUTATIONS",
    "ROUND_BACKOFF",
    "UNDECIDED",
    "UNKNOWN",
    "ZERO",
    "Ballot",
    "Block",
    "Get",
    "Learned",
    "List",
    "Msg",
    "Op",
    "Put",
    "Sleep",
    "blocks_prefix",
    "chosen",
    "decided_key",
    "decode_cas_list",
    "disk_proposer",
    "encode_cas_list",
    "finisher",
    "learner",
    "list_key",
    "marker_value",
    "msg_from_obj",
    "passive_proposer",
    "replay",
    "slot_key",
]

FORMAT = 1
MARKER_ROUNDS = 3
Ballot = tuple[int, str]
ZERO: Ballot = (0, "")

#: Planted bugs, switched on only by tests: ``accept_without_majority``,
#: ``replay_ignores_higher_ballot``, ``ambiguous_as_failed``, ``disk_ignores_higher_mbal``,
#: ``ignore_accepted_value``, ``cas_blind_write``.
MUTATIONS: set[str] = set()


# -- operations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Get:
    """Result: ``(data, version)`` or ``None`` when the key is missing."""

    store: int
    key: str


@dataclass(frozen=True, slots=True)
class Put:
    """Result: the new ``Version``."""

    store: int
    key: str
    data: bytes
    mode: PutMode


@dataclass(frozen=True, slots=True)
class List:
    """Result: the list of keys under ``prefix`` after ``start_after``, ascending."""

    store: int
    prefix: str
    start_after: str | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Back off for ``seconds`` (virtual in the simulator). Result: ``None``."""

    seconds: float


Op = Get | Put | List | Sleep
Batch = list[Op]
R = TypeVar("R")
Proc = Generator[Batch, list[object], R]
Sub = Generator[Op, object, R]


ROUND_BACKOFF = Backoff(base=0.02, cap=1.0)
"""The pause between a contended proposer's rounds: full jitter (two duelling proposers
must fall out of step, so the floor is 0) from 20 ms (well under one store round trip, so
an uncontended retry is not slowed) doubling to 1 s (a duel rarely lasts longer)."""


def _mut(name: str) -> bool:
    return name in MUTATIONS


def _parallel(subs: dict[int, Sub[R]]) -> Proc[dict[int, R]]:
    """Run one small per-store generator per store, one operation each per batch."""
    out: dict[int, R] = {}
    pending: dict[int, Op] = {}
    for i, g in subs.items():
        try:
            pending[i] = next(g)
        except StopIteration as stop:
            out[i] = stop.value
    while pending:
        keys = list(pending)
        results = yield [pending[k] for k in keys]
        pending = {}
        for k, r in zip(keys, results, strict=True):
            try:
                pending[k] = subs[k].send(r)
            except StopIteration as stop:
                out[k] = stop.value
    return out


# -- encoding ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Msg:
    """A list entry: ``P`` (prepare), ``A`` (accept) or ``D`` (decided marker).

    ``uid`` is set only on entries of cas lists: it tells a proposer whether an append
    whose outcome was unclear landed (a create list's slot key does that job)."""

    kind: str
    ballot: Ballot
    value: bytes | None = None
    uid: str | None = None

    def to_obj(self) -> dict[str, Any]:
        v = None if self.value is None else base64.b64encode(self.value).decode()
        obj: dict[str, Any] = {"f": FORMAT, "k": self.kind, "b": list(self.ballot), "v": v}
        if self.uid is not None:
            obj["u"] = self.uid
        return obj

    def encode(self) -> bytes:
        return _dump(self.to_obj())


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _ballot(x: Any) -> Ballot:
    if not (isinstance(x, list) and len(x) == 2 and isinstance(x[0], int)):
        raise ValueError("bad ballot")
    if not isinstance(x[1], str):
        raise ValueError("bad ballot")
    return (x[0], x[1])


def _value(x: Any) -> bytes | None:
    return None if x is None else base64.b64decode(str(x), validate=True)


def msg_from_obj(obj: Any) -> Msg | None:
    """``None`` for anything that is not a message of a known format: a no-op entry."""
    try:
        if obj.get("f") != FORMAT or obj.get("k") not in ("P", "A", "D"):
            return None
        uid = obj.get("u")
        if uid is not None and not isinstance(uid, str):
            return None
        return Msg(obj["k"], _ballot(obj["b"]), _value(obj.get("v")), uid)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


def decode_msg(data: bytes) -> Msg | None:
    """``None`` for anything that is not a message of a known format: a no-op entry."""
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    return msg_from_obj(obj)


def encode_cas_list(entries: Sequence[Any]) -> bytes:
    """A cas list object: ``{"f": 1, "m": [entry, ...]}``, entries as stored (JSON)."""
    return _dump({"f": FORMAT, "m": list(entries)})


def decode_cas_list(data: bytes) -> list[Any] | None:
    """The raw entries of a cas list object, or ``None`` if it is not one."""
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("f") != FORMAT or not isinstance(obj.get("m"), list):
        return None
    entries: list[Any] = obj["m"]
    return entries


@dataclass(frozen=True, slots=True)
class Block:
    """A Disk Paxos block: DiskSynod's ``(mbal, bal, inp)``."""

    mbal: Ballot = ZERO
    bal: Ballot = ZERO
    inp: bytes | None = None

    def encode(self) -> bytes:
        v = None if self.inp is None else base64.b64encode(self.inp).decode()
        obj = {"f": FORMAT, "mb": list(self.mbal), "b": list(self.bal), "v": v}
        return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def decode_block(data: bytes) -> Block | None:
    try:
        obj = json.loads(data)
        if obj.get("f") != FORMAT:
            return None
        return Block(_ballot(obj["mb"]), _ballot(obj["b"]), _value(obj.get("v")))
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


# -- the virtual acceptor ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptorState:
    promised: Ballot = ZERO  # highest ballot granted (PREPARE) or accepted (ACCEPT)
    accepted: tuple[Ballot, bytes] | None = None


def step(state: AcceptorState, msg: Msg | None, slot: int) -> tuple[bool, AcceptorState]:
    """Apply one list entry; return (granted/accepted, new state)."""
    if msg is None or msg.kind == "D":
        return False, state
    if msg.kind == "P":
        if msg.ballot > state.promised:
            return True, AcceptorState(msg.ballot, state.accepted)
        return False, state
    if msg.value is None or (msg.ballot[0] == 0 and slot != 0):
        return False, state
    if msg.ballot >= state.promised or _mut("replay_ignores_higher_ballot"):
        return True, AcceptorState(max(msg.ballot, state.promised), (msg.ballot, msg.value))
    return False, state


def replay(entries: Sequence[Msg | None]) -> AcceptorState:
    """The acceptor state after ``entries`` (a list prefix): a pure function of it."""
    state = AcceptorState()
    for i, m in enumerate(entries):
        _, state = step(state, m, i)
    return state


def accepted_pairs(entries: Sequence[Msg | None]) -> set[tuple[Ballot, bytes]]:
    """Every (ballot, value) this acceptor accepted, in any order."""
    state = AcceptorState()
    out: set[tuple[Ballot, bytes]] = set()
    for i, m in enumerate(entries):
        ok, state = step(state, m, i)
        if ok and m is not None and m.kind == "A" and m.value is not None:
            out.add((m.ballot, m.value))
    return out


def chosen(lists: Sequence[Sequence[Msg | None] | None], n: int) -> set[tuple[Ballot, bytes]]:
    """Pairs accepted by a majority of the ``n`` acceptors (``None``: list unknown)."""
    counts: dict[tuple[Ballot, bytes], int] = {}
    for entries in lists:
        if entries is None:
            continue
        for pair in accepted_pairs(entries):
            counts[pair] = counts.get(pair, 0) + 1
    return {p for p, c in counts.items() if c >= n // 2 + 1}


def _max_ballot(entries: Sequence[Msg | None]) -> Ballot:
    return max((m.ballot for m in entries if m is not None), default=ZERO)


# -- passive Paxos proposer --------------------------------------------------------------


def _is_err(r: object) -> bool:
    return isinstance(r, BaseException)


class _AcceptorLists:
    """What one proposer knows of each store's list: a complete prefix (L2).

    The two list kinds differ only in how a message is appended and how a list is read
    (:meth:`append`, :meth:`read_all`); the protocol above them (replay, grants, chosen)
    is one code path."""

    MAX_TRIES = 3  # unclear answers tolerated per append before the store is not counted

    def __init__(self, instance: str, n: int) -> None:
        self.instance = instance
        self.known: list[list[Msg | None]] = [[] for _ in range(n)]
        self.errors: dict[int, str] = {}

    def append(self, s: int, msg: Msg, *, only_slot: int | None = None) -> Sub[int | None]:
        """Append ``msg`` to list ``s``; return its slot, or ``None`` if not established.

        With ``only_slot`` the message may only go to that slot (the fast path)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def read_all(self, s: int) -> Sub[bool]:
        """Extend the known prefix of list ``s`` to its current end (learners)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def _unclear(self, s: int, r: object, unclear: int) -> bool:
        """Record an unclear answer; True when the store has had enough tries (a straggler
        gets none: the others went on without it, resolving it now would wait for it)."""
        self.errors[s] = str(r)
        return unclear > self.MAX_TRIES or isinstance(r, StragglerError)


class _Lists(_AcceptorLists):
    """Create lists: slot ``k`` of store ``s`` is the object ``<instance>/<k:020d>``."""

    def append(self, s: int, msg: Msg, *, only_slot: int | None = None) -> Sub[int | None]:
        data = msg.encode()
        known = self.known[s]
        unclear = 0
        while True:
            slot = len(known)
            if only_slot is not None and slot != only_slot:
                return None
            key = slot_key(self.instance, slot)
            r = yield Put(s, key, data, PutMode.CREATE)
            if isinstance(r, Version):
                known.append(msg)
                self.errors.pop(s, None)
                return slot
            if isinstance(r, AlreadyExistsError) and r.current is not None:
                got: object = r.current
            elif isinstance(r, StoreError) and not isinstance(r, AlreadyExistsError):
                unclear += 1
                if self._unclear(s, r, unclear) or _mut("ambiguous_as_failed"):
                    return None
                got = yield Get(s, key)  # resolve: is our message there?
            elif isinstance(r, AlreadyExistsError):
                got = yield Get(s, key)
            else:
                raise TypeError(f"unexpected result {r!r}")
            if _is_err(got):
                unclear += 1
                if self._unclear(s, got, unclear):
                    return None
                continue  # retry the identical create on the same slot
            if got is None:
                continue  # slot still free: our message is not there (yet); same bytes again
            assert isinstance(got, tuple)
            existing: bytes = got[0]
            if existing == data:
                known.append(msg)
                self.errors.pop(s, None)
                return slot
            known.append(decode_msg(existing))

    def read_all(self, s: int) -> Sub[bool]:
        known = self.known[s]
        while True:
            got = yield Get(s, slot_key(self.instance, len(known)))
            if _is_err(got):
                self.errors[s] = str(got)
                return False
            if got is None:
                return True
            assert isinstance(got, tuple)
            known.append(decode_msg(got[0]))


class _CasLists(_AcceptorLists):
    """Cas lists: all of store ``s``'s list is the one object ``<instance>/list``.

    Appending writes the known entries plus the new one, conditioned on the version they
    were read at (``CREATE`` while the object is absent), so a write lands only on top of
    exactly the contents it extends. Every appended message carries a fresh ``uid``
    (``tag.counter``, ``tag`` drawn once per proposer call from the caller's rng), which is
    how an unclear append is resolved: by finding the message in the list, or not."""

    def __init__(self, instance: str, n: int, tag: str = "") -> None:
        super().__init__(instance, n)
        self.key = list_key(instance)
        self.raw: list[list[Any]] = [[] for _ in range(n)]  # the entries exactly as stored
        self.version: list[Version | None] = [None] * n  # None: believed absent
        self.broken: dict[int, str] = {}  # stores whose object is not a valid cas list
        self.tag = tag
        self.sent = 0

    def _load(self, s: int, got: tuple[bytes, Version]) -> bool:
        """Adopt what the store holds now, which must extend the known prefix (L1)."""
        entries = decode_cas_list(got[0])
        raw = self.raw[s]
        if entries is None or entries[: len(raw)] != raw:
            why = "not a cas list" if entries is None else "not an extension of what was read"
            self.broken[s] = f"{self.key}: {why}"
            self.errors[s] = self.broken[s]
            return False
        self.known[s].extend(msg_from_obj(e) for e in entries[len(raw) :])
        raw.extend(entries[len(raw) :])
        self.version[s] = got[1]
        return True

    def append(self, s: int, msg: Msg, *, only_slot: int | None = None) -> Sub[int | None]:
        self.sent += 1
        msg = Msg(msg.kind, msg.ballot, msg.value, f"{self.tag}.{self.sent}")
        obj = msg.to_obj()
        known, raw = self.known[s], self.raw[s]
        start = len(known)  # our message can only land at or after this index
        unclear = 0
        while True:
            if s in self.broken:
                return None
            slot = len(known)
            if only_slot is not None and slot != only_slot:
                return None
            ver = self.version[s]
            mode = PutMode.CREATE if ver is None else PutMode.update(ver)
            if ver is not None and _mut("cas_blind_write"):
                mode = PutMode.OVERWRITE  # planted bug: may erase others' entries (no L1)
            r = yield Put(s, self.key, encode_cas_list([*raw, obj]), mode)
            if isinstance(r, Version):
                raw.append(obj)
                known.append(msg)
                self.version[s] = r
                self.errors.pop(s, None)
                return slot
            if isinstance(r, ConflictError) and r.current is not None:
                got: object = r.current  # lost the race: retry on top of the winner's list
            elif isinstance(r, StoreError) and not isinstance(r, ConflictError):
                unclear += 1
                if self._unclear(s, r, unclear) or _mut("ambiguous_as_failed"):
                    return None
                got = yield Get(s, self.key)  # resolve: is our message there?
            elif isinstance(r, ConflictError):
                got = yield Get(s, self.key)
            else:
                raise TypeError(f"unexpected result {r!r}")
            if _is_err(got):
                unclear += 1
                if self._unclear(s, got, unclear):
                    return None
                continue  # the identical conditional write again: at most one can land
            if got is None:
                if ver is not None:  # lists are never deleted
                    self.broken[s] = f"{self.key}: the list object disappeared"
                    self.errors[s] = self.broken[s]
                    return None
                continue  # still absent: our create has not landed (yet); send it again
            assert isinstance(got, tuple)
            if not self._load(s, got):
                return None
            for i in range(start, len(known)):
                if known[i] == msg:  # an earlier attempt of ours landed
                    self.errors.pop(s, None)
                    return i

    def read_all(self, s: int) -> Sub[bool]:
        if s in self.broken:
            return False
        got = yield Get(s, self.key)
        if _is_err(got):
            self.errors[s] = str(got)
            return False
        if got is None:
            return True
        assert isinstance(got, tuple)
        return self._load(s, got)


def _make_lists(
    mode: str, instance: str, n: int, proposer_id: str = "", rng: random.Random | None = None
) -> _AcceptorLists:
    if mode == "create":
        return _Lists(instance, n)
    if mode == "cas":
        tag = f"{proposer_id}.{rng.getrandbits(48):012x}" if rng is not None else proposer_id
        return _CasLists(instance, n, tag)
    raise ValueError(f"passive Paxos runs on create or cas lists, not {mode!r}")


def _check_quorum(
    names: Sequence[str], answered: int, errors: dict[int, str], *, maybe_accepted: bool = False
) -> None:
    """Raise unless ``answered`` is a majority: ``QuorumError`` when the caller's own value
    cannot have been accepted anywhere (nothing of it was written: "not decided" is exact),
    ``OutcomeUnknownError`` once it may have been (``maybe_accepted``)."""
    if answered >= len(names) // 2 + 1:
        return
    bad = ", ".join(f"{names[i]} ({errors.get(i, 'no answer')})" for i in sorted(errors))
    what = (
        f"no majority of stores answered: {answered} of {len(names)} reachable; "
        f"unreachable: {bad or 'unknown'}"
    )
    if maybe_accepted:
        raise OutcomeUnknownError(
            f"outcome unknown: the value was sent for acceptance, then {what}; it may be "
            "decided (now or when the instance is finished)"
        )
    raise QuorumError(what)


def _write_marker(instance: str, n: int, value: bytes, ballot: Ballot) -> Proc[None]:
    """Best effort: the value is already decided. The marker makes learning cheap (for
    blocks, possible without finishing) and, as a fact every phase 1 reads (M1, M2), what
    carries the decision once a removed store's lists are gone. Failed stores are retried
    a few times, then given up."""
    data = Msg("D", ballot, value).encode()
    todo = list(range(n))
    for _ in range(MARKER_ROUNDS):
        if _mut("marker_lost"):
            return  # planted: markers never land (learners must not read that as "missing")
        results = yield [Put(s, decided_key(instance), data, PutMode.OVERWRITE) for s in todo]
        # a straggler's write is still in flight: resending would only wait for it
        todo = [
            s
            for s, r in zip(todo, results, strict=True)
            if _is_err(r) and not isinstance(r, StragglerError)
        ]
        if not todo:
            return


def marker_value(r: object) -> bytes | None:
    """The value of a DECIDED marker read (a ``Get`` result), or ``None``."""
    if isinstance(r, tuple):
        m = decode_msg(r[0])
        if m is not None and m.kind == "D" and m.value is not None:
            return m.value
    return None


def _read_marker(instance: str, s: int) -> Sub[object]:
    """One store's DECIDED marker, read in the same batch as a phase's first write."""
    r = yield Get(s, decided_key(instance))
    return r


def _with_markers(
    instance: str, subs: dict[int, Sub[R]], n: int
) -> Proc[tuple[dict[int, R], list[object]]]:
    """Run ``subs`` (keyed by store) and read every store's marker in their first batch:
    no extra round trip, one GET per store."""
    both: dict[int, Sub[Any]] = dict(subs)
    for s in range(n):
        both[n + s] = _read_marker(instance, s)
    out = yield from _parallel(both)
    return {s: out[s] for s in subs}, [out[n + s] for s in range(n)]


def passive_proposer(
    stores: Sequence[str],
    instance: str,
    value: bytes,
    proposer_id: str,
    rng: random.Random,
    *,
    fast: bool = True,
    backoff: Backoff | None = None,
    max_unreachable_rounds: int = 3,
    mode: str = "create",
    lead: bool = False,
) -> Proc[bytes]:
    """Passive Paxos over create lists (``mode="create"``) or cas lists (``"cas"``);
    returns the decided value.

    ``stores`` names the stores (for errors); operation ``store`` fields index it.
    Raises ``QuorumError`` after ``max_unreachable_rounds`` rounds without a majority while
    ``value`` cannot have been accepted anywhere, ``OutcomeUnknownError`` once it may.

    ``lead``: the caller is the instance's *leader* (see "Leader's accept" in the module
    docstring) and promises that no other call ever sends a leader's ACCEPT to this
    instance: with several stores the first message is ACCEPT((0, id), value) as slot 0
    of every list, and a majority of them decides ``value`` in one round trip."""
    got = yield from _passive(
        stores,
        instance,
        value,
        proposer_id,
        rng,
        fast,
        backoff,
        max_unreachable_rounds,
        mode,
        lead,
    )
    assert got is not None
    return got


def finisher(
    stores: Sequence[str],
    instance: str,
    mode: str,
    proposer_id: str,
    rng: random.Random,
    *,
    backoff: Backoff | None = None,
    max_unreachable_rounds: int = 3,
) -> Proc[bytes | None]:
    """Finish an instance a learner could not tell about, inventing no value: a proposer
    without a value of its own. Returns the decided value, or ``None`` when its phase 1
    found nothing accepted on a majority (so nothing was decided before it ran, and no
    ballot below its own can be decided any more). ``QuorumError`` without a majority."""
    if mode in ("create", "cas"):
        return (
            yield from _passive(
                stores,
                instance,
                None,
                proposer_id,
                rng,
                False,
                backoff,
                max_unreachable_rounds,
                mode,
            )
        )
    return (
        yield from _disk(stores, instance, None, proposer_id, rng, backoff, max_unreachable_rounds)
    )


def _passive(
    stores: Sequence[str],
    instance: str,
    value: bytes | None,
    proposer_id: str,
    rng: random.Random,
    fast: bool,
    backoff: Backoff | None,
    max_unreachable_rounds: int,
    mode: str,
    lead: bool = False,
) -> Proc[bytes | None]:
    """The passive Paxos proposer; ``value=None``: a finisher (see :func:`finisher`)."""
    _check_id(proposer_id)
    # A per-call nonce makes ballots unique even when callers reuse an id: two calls
    # sharing a ballot would send byte-identical PREPAREs, each take the other's as its
    # own, and then ACCEPT different values at one ballot (breaking P1).
    proposer_id = f"{proposer_id}.{rng.getrandbits(48):012x}"
    n = len(stores)
    majority = n // 2 + 1
    lists = _make_lists(mode, instance, n, proposer_id, rng)
    backoff = backoff or ROUND_BACKOFF
    sent_own = False  # an ACCEPT carrying our own value was sent: failure is "unknown"

    if fast and n == 1 and value is not None:
        sent_own = True
        slot = yield from _parallel({0: lists.append(0, Msg("A", ZERO, value), only_slot=0)})
        if slot[0] == 0:
            return value  # our ACCEPT(ZERO) is slot 0 of the only list: chosen
        won = chosen([lists.known[0]], 1)
        if won:
            return next(iter(won))[1]
    elif lead and n > 1 and value is not None:
        # the leader's accept: slot 0 of every list, at round 0 (below every ordinary
        # ballot), no PREPARE and no marker write ("Leader's accept" in the module
        # docstring); the markers are read in the same batch, as phase 1 reads them (M2)
        sent_own = True
        accept = Msg("A", (0, proposer_id), value)
        slots, marks = yield from _with_markers(
            instance, {s: lists.append(s, accept, only_slot=0) for s in range(n)}, n
        )
        decided = [m for m in map(marker_value, marks) if m is not None]
        if decided and not _mut("ignore_markers"):
            return decided[0]  # M1: the slot was decided before (our accept is not chosen)
        if sum(1 for s in range(n) if slots[s] == 0 and not _is_err(marks[s])) >= majority:
            return value
        won = chosen(lists.known, n)
        if won:  # someone else decided first (an ordinary round reached every list)
            return next(iter(won))[1]

    seen = ZERO
    attempt = 0
    unreachable = 0
    while True:
        for entries in lists.known:
            seen = max(seen, _max_ballot(entries))
        ballot = (seen[0] + 1, proposer_id)

        # phase 1: PREPARE to every list and, in the same batch, read every marker
        slots, marks = yield from _with_markers(
            instance, {s: lists.append(s, Msg("P", ballot)) for s in range(n)}, n
        )
        decided = [m for m in map(marker_value, marks) if m is not None]
        if decided and not _mut("ignore_markers"):
            return decided[0]  # a DECIDED marker is a fact (M1 in the module docstring)
        for s in range(n):
            if _is_err(marks[s]) and s not in lists.errors:
                lists.errors[s] = f"marker: {marks[s]}"
        # a store counts only with its whole phase-1 answer: its list AND its marker
        answered = [s for s in range(n) if slots[s] is not None and not _is_err(marks[s])]
        if len(answered) < majority:
            unreachable += 1
            if unreachable >= max_unreachable_rounds:
                _check_quorum(stores, len(answered), lists.errors, maybe_accepted=sent_own)
        else:
            unreachable = 0
        won = chosen(lists.known, n)
        if won:  # someone already decided; learning it is exact (L1)
            v = next(iter(won))[1]
            yield from _write_marker(instance, n, v, ballot)
            return v
        reports: list[tuple[Ballot, bytes] | None] = []
        for s in answered:
            idx = slots[s]
            assert idx is not None
            before = replay(lists.known[s][:idx])
            if ballot > before.promised:
                reports.append(before.accepted)
        need = 1 if _mut("accept_without_majority") else majority
        if len(reports) >= need:
            prior = [r for r in reports if r is not None]
            if prior and not _mut("ignore_accepted_value"):
                v = max(prior, key=lambda r: r[0])[1]
            elif value is None:
                return None  # a finisher: nothing accepted on a majority, nothing decided
            else:
                v = value
            accept = Msg("A", ballot, v)
            sent_own = sent_own or v == value
            slots = yield from _parallel({s: lists.append(s, accept) for s in range(n)})
            oks = 0
            for s in range(n):
                idx = slots[s]
                if idx is not None:
                    ok, _ = step(replay(lists.known[s][:idx]), accept, idx)
                    oks += ok
            if oks >= need:
                yield from _write_marker(instance, n, v, ballot)
                return v
            if _mut("ambiguous_as_failed") and value is not None and v != value:
                # planted bug: the unclear ACCEPT is taken as failed and the same ballot
                # is reused for a different value
                again = Msg("A", ballot, value)
                slots = yield from _parallel({s: lists.append(s, again) for s in range(n)})
                oks = sum(
                    step(replay(lists.known[s][:i]), again, i)[0]
                    for s, i in slots.items()
                    if i is not None
                )
                if oks >= need:
                    return value
        attempt += 1
        yield [Sleep(backoff.delay(attempt, rng))]


DECIDED, UNDECIDED, UNKNOWN = "decided", "undecided", "unknown"


@dataclass(frozen=True, slots=True)
class Learned:
    """A learner's answer, three-valued (never "absent" when it cannot tell):

    - ``DECIDED``: ``value`` is the decided value (a DECIDED marker, or a value chosen in
      the lists read, which is exact by L1);
    - ``UNDECIDED``: a majority of the stores answered in full and none of them holds a
      marker or an accepted value, so nothing was decided before the read (any choosing
      majority meets this one in a store that would show the ACCEPT or phase-2 block);
    - ``UNKNOWN``: neither could be shown (stores unreachable, or a value accepted but not
      seen chosen). Finish the instance (:func:`finisher`) or report the failure."""

    state: str
    value: bytes | None = None


def learner(stores: Sequence[str], instance: str, mode: str) -> Proc[Learned]:
    """Read-only: what is known of the instance's decision (see :class:`Learned`).

    Reads the DECIDED markers (one batch); without one, reads every list (create, cas)
    or every owner's latest block (blocks)."""
    n = len(stores)
    majority = n // 2 + 1
    results = yield [Get(s, decided_key(instance)) for s in range(n)]
    for r in results:
        m = marker_value(r)
        if m is not None:
            return Learned(DECIDED, m)
    # stores that answered "no marker" (a marker object we cannot read is not "nothing")
    clean = [s for s, r in enumerate(results) if r is None]
    if mode in ("create", "cas"):
        lists = _make_lists(mode, instance, n)
        ok: dict[int, bool] = {}
        if mode == "create":
            # Slot 0 of every list first (read_all's own first batch): a leader's ACCEPT
            # there on a majority is chosen (prefixes are final, L1), so a slot a leader
            # decided is learned without reading further (2 GETs per store with the
            # marker miss, not 3)
            heads = yield [Get(s, slot_key(instance, 0)) for s in range(n)]
            for s, r in enumerate(heads):
                if _is_err(r):
                    lists.errors[s] = str(r)
                    ok[s] = False
                elif r is None:
                    ok[s] = True
                else:
                    assert isinstance(r, tuple)
                    lists.known[s].append(decode_msg(r[0]))
            won = chosen([lists.known[s] if ok.get(s, True) else None for s in range(n)], n)
            if won:
                return Learned(DECIDED, next(iter(won))[1])
        more = yield from _parallel({s: lists.read_all(s) for s in range(n) if s not in ok})
        ok.update(more)
        won = chosen([lists.known[s] if ok[s] else None for s in range(n)], n)
        if won:
            return Learned(DECIDED, next(iter(won))[1])
        empty = [s for s in clean if ok[s] and not accepted_pairs(lists.known[s])]
    else:
        reads = yield from _parallel({s: _latest_blocks(instance, s) for s in clean})
        empty = [
            s for s, got in reads.items() if got is not None and all(b.inp is None for b in got)
        ]
    if len(empty) >= majority or _mut("unknown_as_undecided"):  # planted: "cannot tell"
        return Learned(UNDECIDED)  # read as "missing"
    return Learned(UNKNOWN)


def _latest_blocks(instance: str, s: int) -> Sub[list[Block] | None]:
    """Every owner's latest block on disk ``s``; ``None`` if it cannot be read in full."""
    keys = yield List(s, blocks_prefix(instance))
    if not isinstance(keys, list):
        return None
    latest: dict[str, str] = {}
    plen = len(blocks_prefix(instance))
    for k in keys:
        who, _, seq = str(k)[plen:].partition("/")
        if seq:
            latest[who] = max(latest.get(who, ""), str(k))
    out: list[Block] = []
    for who in sorted(latest):
        got = yield Get(s, latest[who])
        if not isinstance(got, tuple):
            return None
        b = decode_block(got[0])
        if b is None:
            return None
        out.append(b)
        if b.inp is not None:
            break  # one value is enough to show this disk is not empty
    return out


def _check_id(proposer_id: str) -> None:
    if not proposer_id or not all(c.isalnum() or c in "-_." for c in proposer_id):
        raise ValueError(f"proposer id must be non-empty [A-Za-z0-9._-]: {proposer_id!r}")


# -- Disk Paxos --------------------------------------------------------------------------


@dataclass
class _PhaseOutcome:
    ok: bool
    blocks: list[Block]
    higher: Ballot | None = None  # an mbal above ours (abort)
    error: str | None = None


def _disk_phase(instance: str, owner: str, s: int, key: str, block: Block) -> Sub[_PhaseOutcome]:
    """Write own block to disk ``s``, then read every other owner's latest block there."""
    data = block.encode()
    r = yield Put(s, key, data, PutMode.OVERWRITE)
    if _is_err(r):
        return _PhaseOutcome(False, [], error=str(r))
    keys = yield List(s, blocks_prefix(instance))
    if not isinstance(keys, list):
        return _PhaseOutcome(False, [], error=str(keys))
    latest: dict[str, str] = {}
    plen = len(blocks_prefix(instance))
    for k in keys:
        who, _, _seq = str(k)[plen:].partition("/")
        if who != owner and _seq:
            latest[who] = max(latest.get(who, ""), str(k))
    blocks: list[Block] = []
    for who in sorted(latest):
        got = yield Get(s, latest[who])
        if not isinstance(got, tuple):
            return _PhaseOutcome(False, [], error=str(got))
        b = decode_block(got[0])
        if b is None:
            return _PhaseOutcome(False, [], error=f"invalid block {latest[who]}")
        if b.mbal > block.mbal and not _mut("disk_ignores_higher_mbal"):
            return _PhaseOutcome(False, [], higher=b.mbal)
        blocks.append(b)
    return _PhaseOutcome(True, blocks)


def disk_proposer(
    stores: Sequence[str],
    instance: str,
    value: bytes,
    proposer_id: str,
    rng: random.Random,
    *,
    backoff: Backoff | None = None,
    max_unreachable_rounds: int = 3,
) -> Proc[bytes]:
    """DiskSynod over single-writer blocks; returns the decided value. ``QuorumError``
    without a majority while ``value`` was in no phase-2 block, ``OutcomeUnknownError``
    once it was."""
    got = yield from _disk(
        stores, instance, value, proposer_id, rng, backoff, max_unreachable_rounds
    )
    assert got is not None
    return got


def _disk(
    stores: Sequence[str],
    instance: str,
    value: bytes | None,
    proposer_id: str,
    rng: random.Random,
    backoff: Backoff | None,
    max_unreachable_rounds: int,
) -> Proc[bytes | None]:
    """The DiskSynod processor; ``value=None``: a finisher (see :func:`finisher`)."""
    _check_id(proposer_id)
    n = len(stores)
    majority = n // 2 + 1
    owner = f"{proposer_id}.{rng.getrandbits(48):012x}"
    backoff = backoff or ROUND_BACKOFF
    seq = 0
    dblock = Block()
    seen = ZERO
    attempt = 0
    unreachable = 0
    errors: dict[int, str] = {}
    sent_own = False  # a phase-2 block carrying our own value was sent
    marked: list[bytes] = []  # DECIDED markers read in phase 1

    def phase(block: Block, markers: bool) -> Proc[tuple[bool, list[Block]]]:
        nonlocal seq, seen, unreachable
        seq += 1
        key = f"{blocks_prefix(instance)}{owner}/{seq:012d}"
        subs = {s: _disk_phase(instance, owner, s, key, block) for s in range(n)}
        marks: list[object] = [None] * n
        if markers:
            outs, marks = yield from _with_markers(instance, subs, n)
            marked.extend(m for m in map(marker_value, marks) if m is not None)
            if marked and not _mut("ignore_markers"):
                return False, []
        else:
            outs = yield from _parallel(subs)
        for s, o in outs.items():
            if o.error is None and _is_err(marks[s]):
                o = outs[s] = _PhaseOutcome(False, [], error=f"marker: {marks[s]}")
            if o.error is not None:
                errors[s] = o.error
            else:
                errors.pop(s, None)
        good = [o for o in outs.values() if o.ok]
        higher = [o.higher for o in outs.values() if o.higher is not None]
        if higher:
            seen = max(seen, *higher)
            return False, []
        answered = sum(1 for o in outs.values() if o.error is None)
        if answered < majority:
            unreachable += 1
            if unreachable >= max_unreachable_rounds:
                _check_quorum(stores, answered, errors, maybe_accepted=sent_own)
        else:
            unreachable = 0
        if len(good) < majority:
            return False, []
        return True, [b for o in good for b in o.blocks]

    while True:
        seen = max(seen, dblock.mbal)
        dblock = Block((seen[0] + 1, owner), dblock.bal, dblock.inp)
        ok, read = yield from phase(dblock, True)
        if marked and not _mut("ignore_markers"):
            return marked[0]  # a DECIDED marker is a fact (M1)
        if ok:
            with_inp = [b for b in [*read, dblock] if b.inp is not None]
            if with_inp:
                inp = max(with_inp, key=lambda b: b.bal).inp
            elif value is None:
                return None  # a finisher: no value on a majority of disks, none decided
            else:
                inp = value
            dblock = Block(dblock.mbal, dblock.mbal, inp)
            sent_own = sent_own or inp == value
            ok, _ = yield from phase(dblock, False)
            if ok:
                assert dblock.inp is not None
                yield from _write_marker(instance, n, dblock.inp, dblock.bal)
                return dblock.inp
        attempt += 1
        yield [Sleep(backoff.delay(attempt, rng))]
