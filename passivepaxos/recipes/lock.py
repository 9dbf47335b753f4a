"""Named locks with fencing tokens, decided in log order.

Every operation is a log entry (UTF-8 JSON)::

    {"ppx": "lock", "ns": "locks", "op": "acquire"|"refresh"|"release", "name": "...",
     "owner": "...", "ttl": 10.0, "over": [slot, index]|null, "token": 3|null,
     "wall": <sender's wall clock, display only>, "id": "<request id>"}

Each process replays the entries with the same rules (:class:`LockState`), so all agree who
holds each lock and what its token is. The sender learns its outcome by applying the log up
to its own entry (like a KV cas).

Rules, applied in log order (``renewed`` = position of the holder's last acquire or refresh)
-----------------------------------------------------------------------------------------
- ``acquire`` of a free lock is granted: ``token = previous token + 1`` (tokens start at 1).
  An ``acquire`` by the current holder renews it (same token).
- ``acquire`` of a lock held by someone else is granted (a *takeover*, token + 1) only if
  its ``over`` equals the lock's current ``renewed``; otherwise it is refused.
- ``refresh`` / ``release`` apply only if ``owner`` and ``token`` match the holder's.

So tokens strictly increase across holders of a lock, and an entry's outcome depends on the
log alone: no replica ever consults a clock to apply an entry.

Expiry without trusting clocks (the same argument as the log's writer lease)
--------------------------------------------------------------------------
A lock is held until released or taken over. A process may send a takeover only after it
has observed the lock with the *same* ``renewed`` position for ``ttl`` seconds of its *own*
monotonic clock (the ``ttl`` that entry carries), and names that position in ``over``. If
the holder refreshed meanwhile, ``renewed`` moved, the takeover is refused in log order,
whatever any clock said.

The holder considers itself the holder (:meth:`Locks.valid`) only until ``0.75 x ttl`` of
its own clock after *starting* its last successful acquire/refresh, and never longer than
``0.75 x ttl'`` after starting to send any acquire/refresh (ttl ``ttl'``) whose outcome it
does not know: such an entry may have landed although its answer was lost, and a taker
then counts *its* ttl. So a shorter ttl shortens validity *before* the entry is sent, and
an ambiguous refresh (an error) leaves validity at that minimum until an entry of ours is
established at a slot beyond every slot the ambiguous one may occupy, with nothing of ours
in flight (concurrent refreshes of one object are accounted together). A release ends
validity before it is sent, and no answer to an acquire/refresh sent before it brings it
back (a per-lock generation). Ttls are at most ``MAX_TTL`` (one day).

Let the start of the send of the entry a taker watched be true time ``s``: the taker first
saw it after it was written (after ``s``) and then waited its ``ttl`` on its clock, so the
takeover lands after ``s + ttl / r_t`` (``r``: a clock's rate, its seconds per true
second); the holder's ``valid()`` turned false at ``s + 0.75 ttl / r_h`` at the latest.
So ``valid()`` never answers True after a takeover of that grant has landed iff ``r_t / r_h
<= 4/3`` over that interval (a taker clock up to 33% faster is safe; a relative drift
within +/-25% is inside the bound), *and* the holder's monotonic clock keeps counting
while the process is paused (it does for SIGSTOP and scheduling stalls; Linux's
CLOCK_MONOTONIC does not count a suspended machine). That is a statement about the
*answers* of ``valid()``: a holder that got True and then stalls before it acts may act
after a takeover. Outside the bound, and for such stalls, two processes may both *act* as
holder for a while: that is why every grant carries a fencing token. A resource that
remembers the highest token it has seen and rejects lower ones (:class:`FencedResource`)
is safe with any clocks: the taker's token is strictly higher than the stale holder's, so
once the new holder has used it, the old holder's requests are refused.

Owners: ``Locks(log)`` without ``owner`` is an owner of its own (unique per object); two
objects or processes that *name* the same owner are one holder to the log (an acquire by
the holder renews it, same token), and each keeps its own ``valid()`` bookkeeping: name an
owner to resume a lock after a restart, never to share it between live processes.

Failures: a store outage makes acquire/refresh/release fail (an ambiguous append is
retried with the same request id; once an attempt was ambiguous the call ends in
``AmbiguousWriteError``); a holder that cannot refresh loses the lock after its ttl (someone else may take it over), which is what :meth:`Locks.valid` and fencing are for.
While another process holds the log's writer lease, lock operations raise
``LeaseHeldError``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from passivepaxos import telemetry
from passivepaxos.errors import (
    AppendOutcomeUnknownError,
    ConfigError,
    LockHeldError,
    LockLostError,
    PassivePaxosError,
    ResultCompactedError,
    ResultUnreadError,
    StaleTokenError,
)
from passivepaxos.keepalive import KeepAlive
from passivepaxos.lease import READ_FRACTION, check_ttl, check_wait, format_wall, poll_pause
from passivepaxos.log import Entry, Log, Position
from passivepaxos.recipes._entry import (
    append_retrying,
    decode_entry,
    encode_entry,
    runtime_of,
)
from passivepaxos.recipes.rsm import StateMachine, new_id
from passivepaxos.types import require_bytes, require_name

__all__ = [
    "FencedResource",
    "LockHeldError",
    "LockLostError",
    "LockRecord",
    "LockState",
    "LockStatus",
    "Locks",
    "StaleTokenError",
]

OPS = ("acquire", "refresh", "release")


@dataclass(frozen=True)
class LockRecord:
    holder: str | None = None
    token: int = 0  # the last token granted (0: never held)
    ttl: float = 0.0
    renewed: Position | None = None  # the holder's last acquire/refresh entry
    wall: float | None = None  # the holder's wall clock at that entry (display only)


@dataclass(frozen=True)
class LockStatus:
    name: str
    holder: str | None
    token: int
    ttl: float | None
    renewed: Position | None
    expires: float | None  # ESTIMATE from the holder's wall clock
    mine: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "held": self.holder is not None,
            "holder": self.holder,
            "token": self.token if self.token else None,
            "ttl": self.ttl,
            "renewed": None if self.renewed is None else [self.renewed.slot, self.renewed.index],
            "expires": format_wall(self.expires) if self.expires is not None else None,
            "expires_is_estimate": True,
            "mine": self.mine,
        }


@dataclass(frozen=True)
class Op:
    op: str
    name: str
    owner: str
    ttl: float
    over: Position | None
    token: int | None
    wall: float
    rid: str


def encode_op(ns: str, o: Op) -> bytes:
    fields = {
        "op": o.op,
        "name": o.name,
        "owner": o.owner,
        "ttl": o.ttl,
        "over": None if o.over is None else [o.over.slot, o.over.index],
        "token": o.token,
        "wall": o.wall,
        "id": o.rid,
    }
    return encode_entry("lock", "ns", ns, fields)


def decode_op(value: bytes, ns: str) -> Op | None:
    d = decode_entry(value, "lock", "ns", ns)
    if d is None:
        return None
    try:
        over = None if d["over"] is None else Position(int(d["over"][0]), int(d["over"][1]))
        token = None if d["token"] is None else int(d["token"])
        o = Op(
            d["op"], d["name"], d["owner"], float(d["ttl"]), over, token, float(d["wall"]), d["id"]
        )
        if o.op not in OPS or not all(isinstance(x, str) for x in (o.name, o.owner, o.rid)):
            return None
        return o
    except (ValueError, KeyError, TypeError, IndexError):
        return None


class LockState:
    """The deterministic lock table and its rules (module docstring)."""

    def __init__(self) -> None:
        self.locks: dict[str, LockRecord] = {}
        self.seen: set[str] = set()

    def get(self, name: str) -> LockRecord:
        return self.locks.get(name, LockRecord())

    def apply(self, o: Op, pos: Position) -> bool | None:
        """Apply ``o`` (at ``pos``): whether it took effect; ``None``: a duplicate id."""
        if o.rid in self.seen:
            return None
        self.seen.add(o.rid)
        cur = self.get(o.name)
        if o.op == "acquire":
            if cur.holder is None:
                new = LockRecord(o.owner, cur.token + 1, o.ttl, pos, o.wall)
            elif cur.holder == o.owner:
                new = LockRecord(o.owner, cur.token, o.ttl, pos, o.wall)
            elif o.over is not None and o.over == cur.renewed:
                new = LockRecord(o.owner, cur.token + 1, o.ttl, pos, o.wall)
            else:
                return False
        elif cur.holder != o.owner or cur.holder is None or o.token not in (None, cur.token):
            return False
        elif o.op == "refresh":
            new = replace(cur, ttl=o.ttl, renewed=pos, wall=o.wall)
        else:
            new = LockRecord(None, cur.token)
        self.locks[o.name] = new
        return True


@dataclass
class _Held:
    """Our belief that we hold a lock: it rests on our acquire/refresh entry at ``at``
    (sent at ``started``, own monotonic clock, carrying ``ttl``)."""

    token: int
    ttl: float
    started: float
    at: Position


@dataclass
class _Book:
    """Per lock name: what we believe we hold (``held``) and what bounds it.

    ``cap`` bounds validity by every acquire/refresh we have sent whose outcome we do not
    know (in flight, or ambiguous): such an entry may have landed with its own, maybe
    shorter, ttl, and a taker may count that one. ``inflight`` counts those still being
    sent (their position is unknown), ``pending`` is the highest slot an unsettled one may
    occupy (``inf`` if unknown). ``gen`` changes whenever we stop holding (release,
    refusal): an answer to an entry sent before that must not bring the hold back."""

    held: _Held | None = None
    gen: int = 0
    inflight: int = 0
    pending: float = -math.inf
    cap: float = math.inf

    def until(self) -> float:
        if self.held is None:
            return -math.inf
        return min(self.held.started + READ_FRACTION * self.held.ttl, self.cap)


def _possible_slot(exc: BaseException, landed: Position | None) -> float:
    """The highest slot the entry of a failed submit may occupy (``inf``: unknown)."""
    if landed is not None:
        return float(landed.slot)
    slot = getattr(exc, "max_slot", None)
    if isinstance(slot, (int, float)):
        return float(slot)
    if isinstance(exc, AppendOutcomeUnknownError):
        return float(exc.slot)
    if isinstance(exc, PassivePaxosError) and not exc.outcome_unknown:
        return -math.inf  # "not written"
    return math.inf


class Locks:
    """Locks on ``log`` for ``owner`` (default: unique to this object: the log's writer id
    plus a random suffix). Objects, or processes, that pass the same ``owner`` are one
    holder to the lock: an acquire by the holder renews it. See the module docstring for
    the rules; ``clock`` is this process's monotonic clock and ``wall`` its wall clock
    (shown to people only), both by default the log's runtime's (``passivepaxos.runtime``),
    which also supplies the sleeps, the ids and the keepalive tasks. A waiting ``acquire``
    looks again every ``poll`` seconds; by default every tenth of the holder's ttl, at
    most a second apart (on a single store one read a look while nothing changes)."""

    def __init__(
        self,
        log: Log,
        *,
        owner: str | None = None,
        namespace: str = "locks",
        poll: float | None = None,
        retries: int = 5,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.log = log
        self.runtime = runtime_of(log)
        # unique per object unless named: an acquire by the holder renews it, so a shared
        # default would let two independent holders both get the lock (and its token)
        self.owner = owner or f"{log.writer_id}.{self.runtime.token_hex(4)}"
        self.ns = namespace
        if poll is not None and not poll > 0:
            raise ConfigError(f"Locks: poll must be a positive number of seconds, got {poll!r}")
        self.poll = poll
        self.retries = retries
        self._clock = clock or self.runtime.monotonic
        self._wall = wall or self.runtime.wall
        self._state = LockState()
        # bookkeeping only: no runtime call (clock reads included) and no store call under it
        self._mu = threading.Lock()
        self._waiting: dict[str, bool | None] = {}
        self._watch: dict[str, tuple[Position | None, float]] = {}
        self._books: dict[str, _Book] = {}
        self.sm = StateMachine(log, self._apply)

    def _apply(self, e: Entry) -> None:
        o = decode_op(e.value, self.ns)
        if o is None:
            return
        ok = self._state.apply(o, Position(e.slot, e.index))
        if ok is not None:
            with self._mu:
                if o.rid in self._waiting:
                    self._waiting[o.rid] = ok

    def _submit(
        self,
        op: str,
        name: str,
        ttl: float,
        over: Position | None,
        token: int | None,
        landed: list[Position] | None = None,
    ) -> tuple[bool, LockRecord, float, Position]:
        """Append the op, apply through it; (took effect, record after, start time, the
        op's position). The position is also put in ``landed`` as soon as it is known (an
        error after that still tells the caller where the entry is)."""
        require_name(name, "a lock name")  # an int would be written and then never applied
        o = Op(op, name, self.owner, ttl, over, token, self._wall(), new_id(self.runtime))
        data = encode_op(self.ns, o)
        with self._mu:
            self._waiting[o.rid] = None
        try:
            started = self._clock()
            pos = append_retrying(self.log, data, retries=self.retries, delay=0.05)
            telemetry.annotate(slot=pos.slot)
            if landed is not None:
                landed.append(pos)
            try:
                self.sm.catch_up(through=pos)
            except PassivePaxosError as exc:
                # established at pos: applied by every replica; only its answer is unknown
                raise ResultUnreadError(pos, exc, self.log.url) from exc
            with self._mu:
                ok = self._waiting[o.rid]
            if ok is None:
                # our entry was not applied by us (a state restored during the catch-up
                # covered it): never assert, the answer is simply unknown
                raise ResultCompactedError(pos, self.log.url)
            with self.sm._mutex:
                return ok, self._state.get(name), started, pos
        finally:
            with self._mu:
                self._waiting.pop(o.rid, None)

    def _observe(self, name: str) -> tuple[LockRecord, float]:
        """Sync (linearizable) and return the lock and how long (own clock) we have seen its
        current ``renewed`` unchanged."""
        self.sm.sync()
        with self.sm._mutex:
            rec = self._state.get(name)
        now = self._clock()
        with self._mu:
            seen = self._watch.get(name)
            if seen is None or seen[0] != rec.renewed:
                seen = (rec.renewed, now)  # conservative: first learned after the read
                self._watch[name] = seen
        return rec, now - seen[1]

    def acquire(
        self,
        name: str,
        ttl: float,
        *,
        wait: float = 0.0,
        on_wait: Callable[[LockRecord, float], object] | None = None,
    ) -> int:
        """Acquire ``name`` for ``ttl`` seconds; return its fencing token. A lock held by
        someone else is waited for (up to ``wait`` seconds) until it is released or has
        stayed unrefreshed for its holder's ttl of our own clock, then taken over; else
        ``LockHeldError`` naming the holder. Acquiring a lock our ``owner`` holds renews
        it (same token): two objects or processes naming the same owner share the lock.
        ``ttl`` is at most ``MAX_TTL`` (one day); ``wait`` is seconds >= 0 (``inf``: as long
        as it takes); anything else raises ``ConfigError`` before anything is sent.
        ``on_wait(lock, remaining)`` is called once, when the call starts waiting for a
        holder (``remaining``: seconds of our clock before it may be taken over)."""
        check_ttl(ttl)
        check_wait(wait, "wait", forever=True)  # nan would make every comparison False
        with telemetry.operation("lock.acquire", self.log.url, self._clock, ttl=ttl) as op:
            token = self._acquire(name, ttl, wait, on_wait, op)
            op.set("lock.token", token)
        return token

    def _acquire(
        self,
        name: str,
        ttl: float,
        wait: float,
        on_wait: Callable[[LockRecord, float], object] | None,
        op: telemetry.Operation,
    ) -> int:
        deadline = self._clock() + wait
        while True:
            rec, unchanged = self._observe(name)
            over = None
            if rec.holder is not None and rec.holder != self.owner:
                remaining = rec.ttl - unchanged
                if remaining > 0:
                    now = self._clock()
                    if now >= deadline:
                        raise LockHeldError(name, rec.holder, rec.token, remaining)
                    op.waiting(now)
                    if on_wait is not None:
                        on_wait(rec, remaining)
                        on_wait = None
                    pause = min(self._pause(rec.ttl), remaining, deadline - now)
                    self.runtime.sleep(max(0.001, pause))
                    continue
                over = rec.renewed
            gen = self._sending(name, ttl)
            landed: list[Position] = []
            try:
                ok, after, started, pos = self._submit("acquire", name, ttl, over, None, landed)
            except BaseException as exc:
                self._unsettled(name, _possible_slot(exc, landed[0] if landed else None))
                raise
            if ok:
                self._granted(name, gen, after.token, ttl, started, pos)
                return after.token
            self._refused(name)  # an acquire by the holder always applies
            if self._clock() >= deadline and after.holder is not None:
                raise LockHeldError(name, after.holder, after.token, after.ttl)

    def _pause(self, ttl: float) -> float:
        """A waiting acquire's pause between looks: ``poll``, else a tenth of the holder's
        ``ttl``, at most a second (``lease.poll_pause``: ~10 reads per ttl up to a 10 s
        ttl, one a second beyond; a release is noticed within a second). Fixed, no
        jitter: waiters only read, so they need not fall out of step; each pause is also
        cut to the time left before the holder's ttl runs out and to the caller's
        ``wait``."""
        return self.poll if self.poll is not None else poll_pause(ttl)

    def refresh(self, name: str, ttl: float | None = None) -> int:
        """Renew our hold of ``name`` (optionally with a new ttl); ``LockLostError`` if it
        was taken over or released meanwhile. A shorter ttl shortens :meth:`valid` before
        the refresh is sent, and for good if its outcome stays unknown (an error)."""
        with self._mu:
            book = self._books.get(name)
            held = None if book is None else book.held
        if held is None:
            raise ConfigError(f"refresh: this process does not hold lock {name!r}")
        new_ttl = held.ttl if ttl is None else check_ttl(ttl)
        with telemetry.operation("lock.refresh", self.log.url, self._clock, ttl=new_ttl) as op:
            op.set("lock.token", held.token)
            return self._refresh(name, held, new_ttl)

    def _refresh(self, name: str, held: _Held, new_ttl: float) -> int:
        gen = self._sending(name, new_ttl)
        landed: list[Position] = []
        try:
            ok, after, started, pos = self._submit(
                "refresh", name, new_ttl, None, held.token, landed
            )
        except BaseException as exc:
            self._unsettled(name, _possible_slot(exc, landed[0] if landed else None))
            raise
        if not ok:
            self._refused(name)
            telemetry.lease_lost("lock")
            raise LockLostError(name, held.token, after)
        self._granted(name, gen, held.token, new_ttl, started, pos)
        return held.token

    # Validity bookkeeping. An acquire/refresh entry we send may land even if we never
    # learn it did (an ambiguous append), and a taker then counts *its* ttl from when it
    # saw it: so before sending, our validity is capped at now + 0.75 x its ttl, and the
    # cap stays until an entry of ours is established at a slot beyond every slot an
    # unsettled entry of ours may occupy, with nothing of ours in flight (every entry sent
    # before it is then decided at an earlier position, and takers must watch the newer
    # one). Concurrent callers (threads, a keepalive) share this per lock name.

    def _book(self, name: str) -> _Book:
        book = self._books.get(name)
        if book is None:
            book = self._books[name] = _Book()
        return book

    def _sending(self, name: str, ttl: float) -> int:
        """Before sending an acquire/refresh: cap validity; the generation it is sent in."""
        now = self._clock()  # read before the lock: no runtime call under it
        with self._mu:
            book = self._book(name)
            book.cap = min(book.cap, now + READ_FRACTION * ttl)
            book.inflight += 1
            return book.gen

    def _unsettled(self, name: str, slot: float) -> None:
        """The entry's outcome is unknown (it may occupy a slot up to ``slot``): the cap it
        set stays until an established entry of ours lies beyond ``slot``."""
        with self._mu:
            book = self._book(name)
            book.inflight -= 1
            book.pending = max(book.pending, slot)

    def _refused(self, name: str) -> None:
        """Our acquire/refresh was applied and refused: we do not hold the lock."""
        with self._mu:
            book = self._book(name)
            book.inflight -= 1
            book.held = None
            book.gen += 1

    def _granted(
        self,
        name: str,
        gen: int,
        token: int,
        ttl: float,
        started: float,
        pos: Position,
    ) -> None:
        with self._mu:
            book = self._book(name)
            book.inflight -= 1
            if book.gen != gen:
                return  # released or refused since we sent it: the grant is not ours to use
            cur = book.held
            if cur is None or cur.token != token:
                book.held = _Held(token, ttl, started, pos)
            elif pos > cur.at:
                cur.ttl, cur.started, cur.at = ttl, started, pos
            if book.inflight == 0 and pos.slot > book.pending:
                book.cap, book.pending = math.inf, -math.inf

    def release(self, name: str, token: int | None = None) -> bool:
        """Release ``name`` if ``owner`` holds it (with ``token``, if given); whether it did.
        We stop considering ourselves the holder before the release is sent, and no answer
        to an acquire/refresh sent before it brings the hold back."""
        with self._mu:
            book = self._book(name)
            held, book.held = book.held, None
            book.gen += 1
        tok = token if token is not None else (held.token if held is not None else None)
        with telemetry.operation("lock.release", self.log.url, self._clock) as op:
            ok, _, _, _ = self._submit("release", name, 0.0, None, tok)
            op.set("released", ok)
        return ok

    def valid(self, name: str) -> bool:
        """Whether we may still act as the holder: we hold ``name`` and less than 0.75 x ttl
        of our own clock has passed since we started our last successful acquire/refresh
        (the ttl of any acquire/refresh sent since whose outcome is unknown, if shorter)."""
        return self._clock() < self.valid_until(name)

    def valid_until(self, name: str) -> float:
        """When (our own ``clock``) :meth:`valid` turns False, as things stand now;
        ``-inf`` if we do not hold ``name``."""
        with self._mu:
            book = self._books.get(name)
            return -math.inf if book is None else book.until()

    def token(self, name: str) -> int | None:
        with self._mu:
            book = self._books.get(name)
            held = None if book is None else book.held
        return None if held is None else held.token

    def status(self, name: str) -> LockStatus:
        """The lock as of now (linearizable: a read through the log)."""
        rec, _ = self._observe(name)
        expires = None if rec.holder is None or rec.wall is None else rec.wall + rec.ttl
        return LockStatus(
            name,
            rec.holder,
            rec.token,
            rec.ttl if rec.holder is not None else None,
            rec.renewed if rec.holder is not None else None,
            expires,
            rec.holder == self.owner,
        )

    @contextlib.contextmanager
    def hold(
        self,
        name: str,
        ttl: float,
        *,
        wait: float = 0.0,
        keepalive: bool = True,
        on_lost: Callable[[str], object] | None = None,
    ) -> Iterator[int]:
        """``with locks.hold(name, ttl) as token:`` acquire, refresh every ttl/3 in a
        background task of the runtime (``keepalive``, :meth:`keep_alive`: ``on_lost``
        is called once if the lock is lost or cannot be refreshed in time), release on
        exit."""
        token = self.acquire(name, ttl, wait=wait)
        ka = self.keep_alive(name, on_lost=on_lost) if keepalive else None
        try:
            yield token
        finally:
            if ka is not None:
                ka.stop()
            with contextlib.suppress(PassivePaxosError):
                self.release(name, token)

    def keep_alive(
        self,
        name: str,
        *,
        every: float | None = None,
        on_lost: Callable[[str], object] | None = None,
    ) -> KeepAlive:
        """Refresh lock ``name`` (held by us) every ``every`` seconds (default ttl/3) in a
        background task until ``stop()``; the returned :class:`KeepAlive` is a context
        manager, its ``lost`` event is set and ``on_lost(reason)`` called once when a
        refresh is refused (taken over, released) or :meth:`valid` ran out before one
        succeeded (an outage, a stalled process). Nothing is released on stop."""
        with self._mu:
            book = self._books.get(name)
            held = None if book is None else book.held
        if held is None:
            raise ConfigError(f"keep_alive: this process does not hold lock {name!r}")
        return KeepAlive(
            self.runtime,
            renew=lambda: self.refresh(name),
            valid_until=lambda: self.valid_until(name),
            every=held.ttl / 3 if every is None else every,
            what=f"lock {name!r} (token {held.token})",
            fatal=(LockLostError, ConfigError),
            on_lost=on_lost,
            clock=self._clock,
            name="ppx-lock-keepalive",
        ).start()

    def follow_lock(
        self, name: str, *, stop: threading.Event | None = None, poll_max: float = 0.5
    ) -> Iterator[LockRecord]:
        """Every change of ``name``'s holder or token, in log order (its own replay)."""
        state = LockState()
        last: tuple[str | None, int] | None = None
        for e in self.log.follow(0, stop=stop, poll_max=poll_max):
            o = decode_op(e.value, self.ns)
            if o is None or o.name != name:
                continue
            state.apply(o, Position(e.slot, e.index))
            rec = state.get(name)
            if (rec.holder, rec.token) != last:
                last = (rec.holder, rec.token)
                yield rec


class FencedResource:
    """An example resource guarded by a lock: it remembers the highest fencing token it has
    seen, and the owner that used it, and refuses requests with a lower token, or with that
    token from a different owner (``StaleTokenError``): one grant has one owner, so an
    equal token from someone else is not a grant it was given. Pass ``owner`` (the
    ``Locks.owner`` that got the token) to have that check; callers that never pass it are
    compared on tokens alone."""

    def __init__(self) -> None:
        self.highest = 0
        self.owner: str | None = None  # who used ``highest``
        self.writes: list[tuple[int, bytes]] = []
        self._mu = threading.Lock()  # bookkeeping only

    def write(self, token: int, data: bytes, *, owner: str | None = None) -> None:
        payload = require_bytes(data, "data")  # before any state changes
        with self._mu:
            if token < self.highest:
                raise StaleTokenError(token, self.highest)
            if token == self.highest and owner != self.owner:
                raise StaleTokenError(token, self.highest, used_by=self.owner or "unnamed")
            self.highest, self.owner = token, owner
            self.writes.append((token, payload))
