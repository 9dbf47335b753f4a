"""``Log``: the facade over the log's components (see :mod:`passivepaxos.log`)."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from passivepaxos.capabilities import ListMode
from passivepaxos.consensus import driver
from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    ConfigError,
    DamagedSlotError,
    InvalidObjectError,
    MembershipConflictError,
    PassivePaxosError,
    QuorumError,
    StoreError,
    UnsupportedError,
)
from passivepaxos.lease import (
    EMPTY,
    ClaimResult,
    HolderLease,
    LeaseHeldError,
    LeaseLostError,
    LeaseMeta,
    LeaseRead,
    LeaseState,
    WriterStatus,
    check_ttl,
)
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import (
    Entry,
    Position,
    Record,
    bare,
    chain_hash,
    parse_resume_token,
    record_hash,
    resume_wid,
    slot_instance,
    tombstone_of,
    why_unknown,
)
from passivepaxos.log.slots import SlotIO
from passivepaxos.log.tail import HINT_KEY, Tail
from passivepaxos.manifest import Manifest, open_log
from passivepaxos.membership_data import ConfigChange
from passivepaxos.retry import Backoff
from passivepaxos.runtime import REAL, ConditionLike, EventLike, Runtime
from passivepaxos.snapshot import (
    SNAPSHOT_PREFIX,
    CompactedError,
    DamagedSnapshotError,
    SnapshotInfo,
    Tombstone,
    TrimmedSlotError,
    TrimRefusedError,
    decode_snapshot,
    encode_snapshot,
    is_tombstone,
    snapshot_key,
    snapshot_slot_of,
)
from passivepaxos.store import Store
from passivepaxos.types import PutMode, require_bytes

__all__ = ["HINT_KEY", "Log", "TrimResult", "VerifyReport", "default_writer_id"]

_EARLY_WINDOW = 8  # read-ahead of a read's first slots (see _raw_records)
# an append backs off after its first _BACKOFFS lost races, then races every slot (so it
# cannot be kept out forever by writers that keep winning); see _commit
_BACKOFFS = 6
# after an unclear create, read back at 0.04, 0.08, ... 0.64 s (see _resolve_create)
_READ_BACK = Backoff(0.02, 1.0, floor=1.0)
# the objects under log/ a log makes (see _check_layout), besides the hint
_SINGLE_SLOT = re.compile(r"^log/\d{20}$")
_QUORUM_SLOT = {
    ListMode.CREATE: re.compile(r"^log/\d{20}/(\d{20}|decided)$"),
    ListMode.CAS: re.compile(r"^log/\d{20}/(list|decided)$"),
    ListMode.BLOCKS: re.compile(r"^log/\d{20}/(blocks/.+|decided)$"),
}


# -- reports -------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    ok: bool
    slots: int = 0  # slots checked and found intact
    entries: int = 0
    bad_slot: int | None = None
    reason: str | None = None
    error: str | None = None  # the full one-line error for a damaged slot
    snapshot: int | None = None  # the newest snapshot's slot (checked), if any
    trimmed: bool = False  # slots up to ``snapshot`` were checked through the snapshot
    bad_snapshot: int | None = None  # a damaged snapshot object's slot
    # stores that could not be checked (URL -> why): ``ok`` is then false with no bad
    # slot, and the log may still be readable (a majority answered the walk)
    unchecked: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def damaged(self) -> bool:
        return self.bad_slot is not None or self.bad_snapshot is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "slots": self.slots,
            "entries": self.entries,
            "head": None if self.damaged else self.slots - 1,
            "bad_slot": self.bad_slot,
            "reason": self.reason,
            "error": self.error,
            "snapshot": self.snapshot,
            "trimmed": self.trimmed,
            "bad_snapshot": self.bad_snapshot,
            "unchecked": sorted(self.unchecked),
        }


@dataclass(frozen=True)
class TrimResult:
    trimmed: int  # slot objects replaced by tombstones by this call
    before: int
    snapshot: int  # the covering snapshot's slot

    def to_json(self) -> dict[str, Any]:
        return {"trimmed": self.trimmed, "before": self.before, "snapshot": self.snapshot}


class _Pending:
    """One ``append`` call waiting in the group-commit queue (fields guarded by the log's
    ``_glock``). ``wake`` exists only while the caller waits for another leader."""

    __slots__ = ("done", "error", "lead", "result", "values", "wake")

    def __init__(self, values: list[bytes]) -> None:
        self.values = values
        self.result: list[Position] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False  # leadership handed to this caller by the previous leader
        self.wake: ConditionLike | None = None


class _NotYet(Exception):
    """claim_writer(wait=False): the lease is held; ``remaining`` seconds (own clock)."""

    def __init__(self, state: LeaseState, tail: int, remaining: float) -> None:
        super().__init__("not yet")
        self.state, self.tail, self.remaining = state, tail, remaining


def default_writer_id(runtime: Runtime = REAL) -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{runtime.token_hex(4)}"


# -- the log -------------------------------------------------------------------------------


class Log:
    """A shared log over one store or a quorum (see the module docstring)."""

    def __init__(
        self,
        stores: Sequence[Store],
        mode: ListMode | str,
        *,
        url: str | None = None,
        writer_id: str | None = None,
        fetch_ahead: int = 32,
        max_batch_entries: int = 1000,
        max_batch_bytes: int = 4 << 20,
        hint_every: int = 32,
        hint_interval: float = 5.0,
        hint_min_interval: float = 1.0,
        wait_expired_lease: bool = True,
        backoff_max: float = 2.0,
        manifest: Manifest | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        if not stores:
            raise ConfigError("a log needs at least one store")
        stores = list(stores)
        # clocks (monotonic: hint rate limit and all writer-lease timing; wall: only written
        # into lease records for display), sleep, randomness, ids and concurrency
        rt: Runtime = runtime or stores[0].runtime
        fetch_ahead = max(1, fetch_ahead)
        self._c = LogContext(
            stores,
            ListMode(mode),
            url=url or ",".join(s.url for s in stores),
            writer_id=writer_id or default_writer_id(rt),
            runtime=rt,
            manifest=manifest,
            fetch_ahead=fetch_ahead,
            pool=rt.pool(fetch_ahead, "ppx-log"),
            fanout=None if len(stores) == 1 else driver.DaemonPool(rt),
        )
        self._io = SlotIO(self._c)
        self._cfg = ConfigView(self._c, self._io)
        self.max_batch_entries = max_batch_entries
        self.max_batch_bytes = max_batch_bytes
        self.wait_expired_lease = wait_expired_lease
        # contention without a lease: a loser sleeps a random share of its last attempt's
        # time x 2^losses (at most backoff_max s), then jumps to the tail (see _commit)
        self.backoff_max = backoff_max
        self._tail = Tail(
            self._c,
            self._cfg,
            hint_every=hint_every,
            hint_interval=hint_interval,
            hint_min_interval=hint_min_interval,
        )
        self._snap_slots: list[int] | None = None  # snapshot listing (see _slot_entries)
        # the highest snapshot slot this object has seen (listed, written, or named by a
        # tombstone): every slot up to it was decided, so a write there is refused (_commit)
        self._snap_seen = -1
        self._end_probed = -1  # highest end slot a read probed past (see _raw_records)
        self._lease: HolderLease | None = None  # set while this object holds the lease
        self.slot_writes = 0  # slot decisions attempted by this object (stats)
        # group commit (guarded by _glock): one leader at a time commits the queue; a
        # waiting caller sleeps on its own condition, woken once (its result, or the
        # leadership handed on to it); _lead() callers (claim, renew, ...) wait on _cond
        self._glock = rt.lock()
        self._cond = rt.condition(self._glock)
        self._queue: collections.deque[_Pending] = collections.deque()
        self._leading = False
        self._lead_waiters = 0

    @classmethod
    def open(cls, log_url: str, **kwargs: Any) -> Log:
        # the stores run on the log's runtime (a simulated process's clock and RNG)
        stores, manifest = open_log(log_url, runtime=kwargs.get("runtime"))
        return cls(stores, manifest.mode, url=log_url, manifest=manifest, **kwargs)

    @classmethod
    def from_manifest(cls, stores: Sequence[Store], manifest: Manifest, **kwargs: Any) -> Log:
        return cls(stores, manifest.mode, manifest=manifest, **kwargs)

    # -- what the log is (shared with its components) ---------------------------------------

    @property
    def stores(self) -> list[Store]:
        """The store set in effect at the newest slot this object knows of."""
        return self._c.stores

    @property
    def mode(self) -> ListMode:
        return self._c.mode

    @property
    def url(self) -> str:
        return self._c.url

    @property
    def writer_id(self) -> str:
        return self._c.writer_id

    @property
    def runtime(self) -> Runtime:
        """Clocks, sleep, randomness and concurrency (recipes on this log use it too)."""
        return self._c.runtime

    @property
    def manifest(self) -> Manifest | None:
        return self._c.manifest

    @property
    def ident(self) -> str | None:
        return self._c.ident

    @property
    def fetch_ahead(self) -> int:
        return self._c.fetch_ahead

    @property
    def genesis(self) -> str:
        """The ``prev`` of slot 0 (see ``LogContext.genesis``)."""
        return self._c.genesis

    @property
    def hint_every(self) -> int:
        return self._tail.hint_every

    @property
    def hint_interval(self) -> float:
        return self._tail.hint_interval

    @property
    def hint_min_interval(self) -> float:
        return self._tail.hint_min_interval

    def head(self) -> int:
        """The last slot of the log (``-1`` when empty). Reads the hint, then probes
        ``h+1, h+2, h+4, ... h+32`` at once (further rounds if all exist) and narrows the
        gap found, 6 probes a round; never lists."""
        return self._tail.head()

    def close(self) -> None:
        self._io.close()
        self._tail.close()
        self._c.pool.shutdown(wait=True)
        if self._c.fanout is not None:
            self._c.fanout.shutdown(wait=True)

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- deciding and reading one slot (the only mode-aware code) ---------------------------

    # -- membership (passivepaxos.membership has the design and the safety argument) -------

    @property
    def single_create(self) -> bool:
        return self._c.single_create

    def members(self) -> tuple[str, ...]:
        """The log's current store set, read through the log to its tail."""
        if not self._cfg.membership():
            self._tail.head()
        if self._cfg.membership():
            self._cfg.walk_to(1 << 62)
        return self._cfg.current()

    def origin(self) -> tuple[str, ...]:
        """The store set slot 0 was decided on."""
        return self._cfg.origin_set

    def known_stores(self) -> list[Store]:
        return list(self._cfg.opened.values())

    def config_history(self) -> list[tuple[int, ConfigChange]]:
        return self._cfg.history()

    def copy_decided_markers(self, upto: int, targets: Sequence[Store]) -> int:
        """Make sure every slot ``0..upto`` has a DECIDED marker on ``targets`` (a majority
        of them per slot, else ``QuorumError``); returns the markers written."""
        return self._cfg.copy_decided_markers(upto, targets)

    def append_config(self, change: ConfigChange) -> int:
        """Append a configuration record (see :mod:`passivepaxos.membership`); its slot.
        Raises ``MembershipConflictError`` when the store set changed meanwhile."""
        with self._lead():
            self._tail.observe()
            return self._commit([], config=change)

    # -- tail discovery --------------------------------------------------------------------

    # -- appending -------------------------------------------------------------------------

    def append(self, values: Sequence[bytes], *, resume: str | None = None) -> list[int]:
        """Append ``values`` (one slot, maybe shared with concurrent calls); return one slot
        number per value, in order. An append whose outcome cannot be established raises
        ``AppendOutcomeUnknownError``; pass its ``token`` as ``resume`` (with the same
        values) to finish it exactly once (see :meth:`append_positions`)."""
        return [p.slot for p in self.append_positions(values, resume=resume)]

    def append_positions(
        self, values: Sequence[bytes], *, resume: str | None = None
    ) -> list[Position]:
        """Append ``values``; return each one's ``Position(slot, index)``, established.
        ``values`` is a sequence of bytes-like values, one per entry; anything else raises
        ``TypeError`` before any request.

        ``resume``: the token of an ``AppendOutcomeUnknownError`` from an earlier append of
        the same ``values``. The slot it names is established first, the resume proposing
        its own record of ``values`` there if it is free: if the earlier record (or a
        resume's) is decided there, its positions are returned and nothing more is written;
        if another record is, the earlier one can never be decided there (a record names
        its slot and its predecessor's hash) and the values are appended now: they end up
        in the log exactly once, provided resumes of one token run one after another (two
        at the same time can both append: docs/log.md). A resume that cannot establish the
        outcome raises ``AppendOutcomeUnknownError`` again (docs/log.md)."""
        if isinstance(values, bytes | bytearray | memoryview | str):
            raise TypeError(
                "values must be a sequence of bytes values, one per entry (e.g. [b'x']), "
                f"not a single {type(values).__name__}"
            )
        try:
            items = list(values)
        except TypeError:
            raise TypeError(
                f"values must be a sequence of bytes values, not {type(values).__name__}"
            ) from None
        vals = [require_bytes(v, f"entry {i} of values") for i, v in enumerate(items)]
        if resume is not None:
            return self._resume(vals, resume)
        if not vals:
            return []
        p = _Pending(vals)
        with self._glock:
            self._queue.append(p)
            if self._leading:
                p.wake = self.runtime.condition(self._glock)
                try:
                    while not p.done and not p.lead:
                        p.wake.wait()
                except BaseException:  # interrupted while waiting: withdraw
                    p.wake = None
                    if not p.done:
                        self._queue.remove(p)
                        if p.lead:
                            self._hand_on()
                    raise
                p.wake = None
            else:
                self._leading = True
        if not p.done:  # we lead (taken, or handed on to us): commit until ours is done
            try:
                while not p.done:
                    self._lead_round()
            finally:
                with self._glock:
                    if not p.done:  # interrupted: never commit it later for a gone caller
                        with contextlib.suppress(ValueError):
                            self._queue.remove(p)
                    self._hand_on()
        if p.error is not None:
            raise p.error
        assert p.result is not None
        return p.result

    def _hand_on(self) -> None:
        """Give up leadership (``_glock`` held): to a waiting ``_lead()`` caller first (it
        would starve under a steady stream of appends otherwise), else to the oldest queued
        append (woken alone, no thundering herd), else to nobody."""
        if self._lead_waiters:
            self._leading = False
            self._cond.notify_all()
            return
        for q in self._queue:
            if q.wake is not None:
                self._leading = True
                q.lead = True
                q.wake.notify()
                return
        self._leading = False

    def _lead_round(self) -> None:
        with self._glock:
            batch: list[_Pending] = []
            n = size = 0
            queue = self._queue
            while queue:
                nxt = queue[0]
                k, b = len(nxt.values), sum(map(len, nxt.values))
                if batch and (n + k > self.max_batch_entries or size + b > self.max_batch_bytes):
                    break
                batch.append(queue.popleft())
                n, size = n + k, size + b
        if not batch:
            return
        try:
            slot = self._commit(
                batch[0].values if len(batch) == 1 else [v for q in batch for v in q.values]
            )
        except BaseException as exc:
            self._settle(batch, None, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._settle(batch, slot, None)
        self._tail.maybe_write_hint()

    def _settle(self, batch: list[_Pending], slot: int | None, exc: BaseException | None) -> None:
        index = 0
        with self._glock:
            for q in batch:
                if slot is not None:
                    q.result = [Position(slot, i) for i in range(index, index + len(q.values))]
                q.error = exc
                if isinstance(exc, AppendOutcomeUnknownError):
                    q.error = exc.at(index)  # each caller resumes its own values
                index += len(q.values)
                q.done = True
                if q.wake is not None:
                    q.wake.notify()

    def _commit(
        self,
        entries: list[bytes],
        *,
        op: str | None = None,
        ttl: float = 0.0,
        wait: bool = True,
        config: ConfigChange | None = None,
        wid: str | None = None,
    ) -> int:
        """Write one slot holding ``entries``; return its number. Retries on the next slot
        after losing a race; a winner carrying our write id is our own earlier write.
        Writer lease (:mod:`passivepaxos.lease`): the holder writes only right after its own
        record and raises ``LeaseLostError`` (entries not written) when that slot goes to
        anyone else; others refuse, or wait out an apparently expired lease, while the tail
        says someone else holds it. ``op``: ``"claim"`` (ClaimWriter) or ``"release"``."""
        # 128 random bits, as uuid4 gave (minus 6 fixed ones); a resumed append reuses its id
        wid = wid or self.runtime.token_hex(16)
        frame_wid = self.runtime.token_bytes(16)
        slot, prev, state = self._tail_for_write()
        losses = 0
        while True:
            with self._c.state:
                seen = self._snap_seen
            if slot <= seen:
                # Our view of the tail is older than a snapshot we know of (slot 0..seen
                # were all decided), or the tail we found is inside the trimmed prefix:
                # never write there (one GET, only on this path; see _below_snapshot).
                if self._below_snapshot(slot, seen, wid) is not None:
                    return slot  # our own earlier attempt, landed and then trimmed
                last, found = self._tail.discover(slot)
                assert found is not None  # slot exists (_below_snapshot checked it)
                slot, prev, state = last + 1, chain_hash(found, last), self._state_of(last, found)
                continue
            plan = self._plan(slot - 1, state, op, ttl, wait)
            if plan is None:  # waited for a lease to expire: the tail may have moved
                slot, prev, state = self._tail_for_write()
                continue
            epoch, meta = plan
            current, conf = self._cfg.config_at(slot)
            if config is not None and config.from_ != current:
                raise MembershipConflictError(
                    f"{self.url}: the stores changed meanwhile (now {','.join(current)}): "
                    "another membership change was committed first; one change at a time"
                )
            rec = Record(
                slot,
                prev,
                self.writer_id,
                epoch,
                wid,
                tuple(entries),
                lease=meta,
                config=config,
                conf=conf,
            )
            self.slot_writes += 1
            started = self.runtime.monotonic()
            mine = rec.encode()
            try:
                decided = self._cfg.decide(slot, mine, frame_wid)
            except AmbiguousWriteError as exc:
                raise self._unknown(slot, wid, exc) from exc
            if decided is mine or decided == mine:
                # our own bytes were decided: nothing to parse (we built them), no race
                self._cfg.note(decided)
                self._tail.learned(slot, decided, record_hash(decided), chained=True)
                self._wrote(slot, epoch, meta, started)
                return slot
            if is_tombstone(decided):
                self._stale_at_tombstone(slot, decided, wid)
                # our own write, landed then trimmed: maybe an earlier send's
                self._wrote(slot, epoch, meta, self._earliest_send(started))
                return slot
            self._cfg.note(decided)
            winner = self._c.decode(decided, slot, prev)
            self._tail.learned(slot, decided, chained=True)
            if winner.wid == wid:  # our write id, other bytes: an earlier send landed
                self._wrote(slot, epoch, meta, self._earliest_send(started))
                return slot
            won = winner.lease_state
            with self._c.state:
                lease = self._lease
                if lease is not None and (won.holder, won.epoch) != (self.writer_id, lease.epoch):
                    self._lease = None
            if lease is not None and (won.holder, won.epoch) != (self.writer_id, lease.epoch):
                raise LeaseLostError(self.url, slot, winner.writer, won, lease.epoch)
            losses += 1
            if self.backoff_max > 0 and op is None and config is None and losses <= _BACKOFFS:
                # Contention: racing again at once for the next slot loses again to the
                # winner, who learns its own hash one round trip earlier; every loss costs
                # a create and a read. Back off (randomized, exponential in the losses of
                # this append) and then jump to the tail, so the slots go to one writer at
                # a time and the losers spend few requests meanwhile.
                took = max(self.runtime.monotonic() - started, 1e-4)
                pause = Backoff(took, self.backoff_max, floor=0.5).delay(
                    min(losses, 8), self.runtime.rng
                )
                self.runtime.sleep(pause)
                # The winner went on at about one slot per attempt time: read the slot it
                # should have reached and try right after it (one GET; a wrong guess costs
                # one lost race, cheaper than searching for the exact tail every time).
                guess = slot + max(1, int(pause / took))
                got = self._tail.exists(guess)
                if got is not None:
                    self._tail.learned(guess, got)
                    jump: tuple[int, bytes | None] = (guess, got)
                else:
                    jump = self._tail.discover(slot)
            elif losses % 4 == 0:  # far behind: jump to the tail instead of walking to it
                jump = self._tail.discover(slot)
            else:
                jump = (slot, None)
            last, found = jump
            if found is not None and last > slot:
                self._check_chained(last, found)
                slot, prev, state = last + 1, chain_hash(found, last), self._state_of(last, found)
                continue
            slot, prev, state = slot + 1, record_hash(decided), won

    def _below_snapshot(self, slot: int, seen: int, wid: str) -> int | None:
        """``_commit`` is about to write ``slot`` although a snapshot at slot ``seen >=
        slot`` exists. Read the slot: a record (our view was stale: the caller jumps to the
        tail) returns ``None``; a tombstone is ``_stale_at_tombstone`` (raises
        ``TrimmedSlotError``, or returns ``slot`` when it was our own write); a missing
        slot is damage (a deleted tombstone or record): ``DamagedSlotError``, nothing
        written, since a record created there would be acknowledged and never read."""
        data = self._cfg.fetch(slot)
        if data is None:
            url, key = self._c.where(slot)
            raise DamagedSlotError(
                slot,
                f"missing below the snapshot at slot {seen} (a trimmed slot's tombstone, or "
                "a record, was deleted): nothing was written; tombstones must never be "
                "deleted (run `passivepaxos verify`)",
                url=url,
                key=key,
            )
        if is_tombstone(data):
            self._stale_at_tombstone(slot, data, wid)
            return slot
        self._tail.learned(slot, data)
        return None

    def _unknown(
        self, slot: int, wid: str, cause: PassivePaxosError, *, index: int = 0
    ) -> AppendOutcomeUnknownError:
        """The record aimed at ``slot`` may be decided there (its ACCEPT or create may have
        landed) and it could not be established: never "not written" (``QuorumError``)."""
        url, key = self._c.where(slot)
        return AppendOutcomeUnknownError(
            f"append outcome unknown: the entries may be in the log at slot {slot} "
            f"({why_unknown(cause)}); resume with token {slot}:{index}:{wid}",
            slot=slot,
            index=index,
            wid=wid,
            url=url,
            key=key,
        )

    def _resume(self, values: list[bytes], token: str) -> list[Position]:
        """``append_positions(values, resume=token)``: see there. Any failure before the
        outcome is established is ``AppendOutcomeUnknownError`` with the same token (or,
        once the values were sent to a new slot, that slot's token)."""
        slot, index, wid = parse_resume_token(token)
        if not values:
            raise ConfigError("resume: give the same values as the append being resumed")
        try:
            with self._lead():
                return self._resume_led(values, slot, index, wid)
        except (AppendOutcomeUnknownError, ConfigError):
            raise
        except PassivePaxosError as exc:
            raise self._unknown(slot, wid, exc, index=index) from exc

    def _resume_led(self, values: list[bytes], slot: int, index: int, wid: str) -> list[Position]:
        """Establish slot ``slot`` by proposing there a record of ``values`` under the
        resume's own write id (built on slot ``slot - 1``, like the original): the
        original record (``wid``, values at ``index``) or the resume's own record decided
        there is this append; any other record decided there means the original can never
        be decided (one record per slot, and it names its slot), so the values are appended
        anew under the resume's write id. Its write id is derived from the token, so that
        two callers of one group-commit slot never take each other's record as theirs and
        a second resume of the same token recognises the first one's record."""
        mine = resume_wid(wid, index)
        k = len(values)
        got = self._cfg.fetch(slot)
        while got is None:  # provably free now: decide it (a late landing still wins)
            got = self._propose_exact(values, slot, index, wid, mine)
        if is_tombstone(got):
            url, key = self._c.where(slot)
            t = tombstone_of(got, slot, url=url, key=key)
            self._saw_snapshot(t.snap)
            if t.wid in (wid, mine):  # ours, trimmed since: its entries are in the snapshot
                at = index if t.wid == wid else 0
                self._found_own(slot, t.lease_state)
                return [Position(slot, at + i) for i in range(k)]
        else:
            self._tail.learned(slot, got)
            rec = self._c.decode(got, slot, None)
            if rec.wid in (wid, mine):
                at = index if rec.wid == wid else 0
                if list(rec.entries[at : at + k]) != values:
                    raise ConfigError(
                        f"resume: slot {slot} holds this append's record, but not these "
                        "values at its position; give the same values as the append being "
                        "resumed"
                    )
                self._found_own(slot, rec.lease_state)
                return [Position(slot, at + i) for i in range(k)]
        # another record is decided at the token's slot: the original can never be
        # decided. An earlier resume of this token may have appended the values after it
        # (and returned): look for its record up to the tail (reads every slot in between).
        found = self._find_own(slot + 1, mine)
        if found is not None:
            at_slot, state, entries = found
            if entries is not None and list(entries[:k]) != values:
                raise ConfigError(
                    f"resume: slot {at_slot} holds this append's resumed record, but not "
                    "these values; give the same values as the append being resumed"
                )
            self._found_own(at_slot, state)
            return [Position(at_slot, i) for i in range(k)]
        # append the values now (an unknown outcome names the new slot's token)
        new = self._commit(list(values), wid=mine)
        return [Position(new, i) for i in range(k)]

    def _find_own(
        self, start: int, mine: str
    ) -> tuple[int, LeaseState, tuple[bytes, ...] | None] | None:
        """The first slot from ``start`` to the tail holding a record (or tombstone: no
        entries) with write id ``mine``; ``None`` when there is none (the tail is then
        known)."""
        slot = start
        while True:
            slots = list(range(slot, slot + 8))
            got = self._tail.exists_many(slots)
            for s in slots:
                data = got[s]
                if data is None:
                    return None
                if is_tombstone(data):
                    url, key = self._c.where(s)
                    t = tombstone_of(data, s, url=url, key=key)
                    self._saw_snapshot(t.snap)
                    if t.wid == mine:
                        return s, t.lease_state, None
                    continue
                self._tail.learned(s, data)
                rec = self._c.decode(data, s, None)
                if rec.wid == mine:
                    return s, rec.lease_state, rec.entries
            slot += 8

    def _propose_exact(
        self, values: list[bytes], slot: int, index: int, wid: str, mine: str
    ) -> bytes | None:
        """Propose at exactly ``slot`` (found free) a record of ``values`` with write id
        ``mine``; return the record decided there (``None``: waited out a lease, look
        again). Follows the writer lease like ``_commit``."""
        with self._c.state:
            seen = self._snap_seen
        if slot <= seen:
            url, key = self._c.where(slot)
            raise DamagedSlotError(
                slot,
                f"missing below the snapshot at slot {seen} (a trimmed slot's tombstone was "
                "deleted): nothing was written by the resume",
                url=url,
                key=key,
            )
        if slot == 0:
            before: bytes | None = None
            prev = self.genesis
        else:
            before = self._predecessor(
                slot, f"missing while the resumed slot {slot} was written to"
            )
            prev = chain_hash(before, slot - 1)
        plan = self._plan(slot - 1, self._state_of(slot - 1, before), None, 0.0, True)
        if plan is None:
            return self._cfg.fetch(slot)
        epoch, meta = plan
        _, conf = self._cfg.config_at(slot)
        rec = Record(slot, prev, self.writer_id, epoch, mine, tuple(values), lease=meta, conf=conf)
        data = rec.encode()
        self.slot_writes += 1
        try:
            return self._cfg.decide(slot, data, self.runtime.token_bytes(16))
        except AmbiguousWriteError as exc:
            raise self._unknown(slot, wid, exc, index=index) from exc

    def _found_own(self, slot: int, state: LeaseState) -> None:
        """A decided record at ``slot`` carries this append's write id, but it may be an
        earlier send's (it landed late), not the bytes just sent: a claimant may have
        watched it since *that* send. If it holds our lease, count the read window from
        the earliest send of ours whose outcome was still unknown, never later."""
        with self._c.state:
            lease = self._lease
            if lease is None or (state.holder, state.epoch) != (self.writer_id, lease.epoch):
                return
            if state.ttl is None:  # our release
                self._lease = None
                return
            if lease.pending is not None and slot >= lease.last_slot:
                lease.wrote(slot, lease.pending_since, state.ttl, state.wall or 0.0)

    def _earliest_send(self, started: float) -> float:
        """When the earliest send of ours that may have produced a record carrying our
        write id started: ``started``, or an earlier send still of unknown outcome."""
        with self._c.state:
            lease = self._lease
            return started if lease is None else min(started, lease.pending_since)

    def _stale_at_tombstone(self, slot: int, data: bytes, wid: str) -> None:
        """Our create of ``slot`` found a tombstone: the slot was decided long ago and then
        trimmed. Return only if the trimmed record was our own (an earlier ambiguous attempt
        of this very append, its entries are in the snapshot); otherwise forget the stale
        view of the tail (and any lease) and raise ``TrimmedSlotError``: never acknowledged."""
        url, key = self._c.where(slot)
        t = tombstone_of(data, slot, url=url, key=key)
        self._saw_snapshot(t.snap)
        if t.wid == wid:
            return
        with self._c.state:
            self._tail.known = None
            self._tail.known_data = None
            self._lease = None
            self._tail.recent.clear()
            self._tail.recent_bytes = 0
            self._snap_slots = None
        raise TrimmedSlotError(slot, t.snap, self.url)

    # -- writer lease (see passivepaxos.lease) --------------------------------------------

    def _tail_for_write(self) -> tuple[int, str, LeaseState]:
        """(next slot, its ``prev`` hash, lease state after the tail) from what we know;
        discovers the tail only when nothing is known."""
        with self._c.state:
            known, data, chained = self._tail.known, self._tail.known_data, self._tail.known_chained
        if known is None:
            last, data = self._tail.discover()
            known = (last, self.genesis if data is None else chain_hash(data, last))
            chained = False
            if last < 0:
                # The log looks empty: once per fresh process, list the snapshots (one
                # LIST): a snapshot means slot 0 was decided, so its name being free is a
                # deleted tombstone, and _commit refuses to write there (finding 13).
                # Best effort: a writer not allowed to list is no worse off than before.
                with contextlib.suppress(StoreError, QuorumError):
                    self.snapshot_slots()
        if known[0] >= 0 and data is not None and not chained:
            self._check_chained(known[0], data)
        prev = known[1] if known[0] >= 0 else self.genesis
        return known[0] + 1, prev, self._state_of(known[0], data)

    def _check_chained(self, slot: int, data: bytes) -> None:
        """Before building on record ``data`` of ``slot`` (found by discovery, not read in
        order): check that it names its predecessor's hash (the chain start for slot 0), so
        a record copied from another log or rewritten is never appended to (an entry acked
        there could never be read). Costs one read of slot ``slot - 1`` unless held.
        Raises ``DamagedSlotError`` naming the slot."""
        if is_tombstone(data):
            return
        if slot == 0:
            prev = self.genesis
        else:
            hit = self._tail.cached(slot - 1)
            if hit is not None:
                prev = hit[0]
            else:
                before = self._predecessor(
                    slot, f"missing while slot {slot} exists (a gap in the log)"
                )
                prev = chain_hash(before, slot - 1)
        self._c.decode(data, slot, prev)
        self._tail.learned(slot, data, chained=True)

    def _predecessor(self, slot: int, missing: str) -> bytes:
        """The stored record of slot ``slot - 1``, which must exist for ``slot`` to be
        built on or checked; ``DamagedSlotError`` (reason ``missing``) naming it if not."""
        before = self._cfg.fetch(slot - 1)
        if before is None:
            url, key = self._c.where(slot - 1)
            raise DamagedSlotError(slot - 1, missing, url=url, key=key)
        return before

    def _state_of(self, slot: int, data: bytes | None, *, fast: bool = True) -> LeaseState:
        if slot < 0 or data is None:
            return EMPTY
        with self._c.state:
            lease = self._lease
        if fast and lease is not None and lease.last_slot == slot:  # our own record: no parse
            return LeaseState(self.writer_id, lease.epoch, lease.ttl, lease.wall)
        if is_tombstone(data):  # a trimmed tail keeps its lease state in the tombstone
            url, key = self._c.where(slot)
            t = tombstone_of(data, slot, url=url, key=key)
            self._saw_snapshot(t.snap)
            return t.lease_state
        return self._c.decode(data, slot, None).lease_state

    def _plan(
        self, tail: int, state: LeaseState, op: str | None, ttl: float, wait: bool
    ) -> tuple[int, LeaseMeta | None] | None:
        """(epoch, lease field) of the record to write after ``tail``; ``None`` after
        waiting (re-plan). Raises LeaseLostError / LeaseHeldError / _NotYet."""
        with self._c.state:
            lease = self._lease
            lost = lease is not None and (state.holder, state.epoch) != (
                self.writer_id,
                lease.epoch,
            )
            if lost:
                self._lease = None
        if lease is not None:
            if lost:
                raise LeaseLostError(self.url, tail + 1, state.holder, state, lease.epoch)
            meta = (
                LeaseMeta("release")
                if op == "release"
                else LeaseMeta("hold", ttl if op == "claim" else lease.ttl, self.runtime.wall())
            )
            # The record may land even if we never learn it did, and a claimant may then
            # count its ttl: shrink the read window to it *before* sending, and serve no
            # lease read until its outcome is known (lease.HolderLease).
            with self._c.state:
                lease.sending(tail + 1, meta.ttl, self.runtime.monotonic())
            return lease.epoch, meta
        if op == "release":  # pragma: no cover - release_writer checks first
            raise ConfigError("release: this process does not hold the writer lease")
        if op == "claim":
            plan: tuple[int, LeaseMeta | None] = (
                state.epoch + 1,
                LeaseMeta("claim", ttl, self.runtime.wall()),
            )
        else:
            plan = (state.epoch, None)
        if state.holder is None:
            return plan
        held_ttl = state.ttl if state.ttl is not None else ttl
        with self._c.state:
            remaining = self._tail.watch.remaining(tail, held_ttl, self.runtime.monotonic())
        if remaining <= 0:  # the tail stayed unchanged for a full TTL of our own time
            return plan
        if op == "claim":
            if not wait:
                raise _NotYet(state, tail, remaining)
        elif not (
            self.wait_expired_lease
            and state.expires is not None
            and self.runtime.wall() >= state.expires
        ):
            raise LeaseHeldError(self.url, state, remaining=remaining)
        self._wait_tail(tail, remaining, held_ttl)
        return None

    def _wait_tail(self, tail: int, remaining: float, ttl: float) -> None:
        """Sleep until tail ``tail`` has been unchanged for ``ttl`` (own clock), polling it
        every ``ttl/10`` so that a change restarts the wait promptly."""
        poll = Backoff(max(0.002, ttl / 10), max(0.002, ttl / 10), floor=1.0)
        while remaining > 0:
            self.runtime.sleep(min(remaining, poll.delay(0, self.runtime.rng)))
            if self._tail.observe() != tail:
                return
            with self._c.state:
                remaining = self._tail.watch.remaining(tail, ttl, self.runtime.monotonic())

    def _wrote(self, slot: int, epoch: int, meta: LeaseMeta | None, started: float) -> None:
        if meta is None:
            return
        with self._c.state:
            if meta.op == "claim":
                self._lease = HolderLease(epoch, meta.ttl, slot, started, meta.wall)
            elif meta.op == "release":
                self._lease = None
            elif self._lease is not None:
                self._lease.wrote(slot, started, meta.ttl, meta.wall)

    @contextlib.contextmanager
    def _lead(self) -> Iterator[None]:
        """Be the group-commit leader (no append of this object runs meanwhile)."""
        with self._glock:
            self._lead_waiters += 1
            try:
                while self._leading:
                    self._cond.wait()
            except BaseException:  # interrupted: do not leave queued appends asleep
                self._lead_waiters -= 1
                if not self._leading:
                    self._hand_on()
                raise
            self._lead_waiters -= 1
            self._leading = True
        try:
            yield
        finally:
            with self._glock:
                self._hand_on()

    def claim_writer(self, ttl: float, *, wait: bool = True) -> ClaimResult:
        """ClaimWriter: append a claim record (epoch + 1, the fencing token) once nobody
        holds the lease, or once the tail has stayed unchanged for the holder's TTL of our
        own monotonic time. ``wait=False``: return at once with ``granted=False`` and the
        remaining time instead of waiting. Claiming while holding renews (same epoch, new
        ttl)."""
        check_ttl(ttl)  # bounded: a huge ttl would lock others out for good
        with self._lead():
            with self._c.state:
                holding = self._lease is not None
            if not holding:
                self._tail.observe()  # claims are rare: start from the real tail
            try:
                slot = self._commit([], op="claim", ttl=ttl, wait=wait)
            except _NotYet as n:
                st = n.state
                return ClaimResult(
                    False, st.holder, st.epoch, st.ttl, st.expires, n.tail, n.remaining
                )
        with self._c.state:
            lease = self._lease
        assert lease is not None
        return ClaimResult(
            True, self.writer_id, lease.epoch, lease.ttl, lease.wall + lease.ttl, slot
        )

    def renew(self) -> int:
        """The holder renews its lease with an empty record (one request); returns its slot.
        Raises ``LeaseLostError`` if the lease was lost meanwhile."""
        with self._lead():
            with self._c.state:
                if self._lease is None:
                    raise ConfigError("renew: this process does not hold the writer lease")
            slot = self._commit([])
        self._tail.maybe_write_hint()
        return slot

    def release_writer(self) -> int | None:
        """Give the lease up at once with a release record (others may append or claim
        without waiting); ``None`` if this process did not hold it."""
        with self._lead():
            with self._c.state:
                if self._lease is None:
                    return None
            return self._commit([], op="release")

    def writer_status(self) -> WriterStatus:
        """WriterStatus: holder, epoch, ttl, expiry ESTIMATE (the holder's wall clock at its
        last record + ttl) and whether this object holds it. Reads the tail."""
        head = self._tail.observe()
        with self._c.state:
            data = (
                self._tail.known_data
                if self._tail.known is not None and self._tail.known[0] == head
                else None
            )
            lease = self._lease
        state = self._state_of(head, data, fast=False)
        mine = lease is not None and (state.holder, state.epoch) == (self.writer_id, lease.epoch)
        return WriterStatus(state.holder, state.epoch, state.ttl, state.expires, mine, head)

    def lease_read(self) -> LeaseRead | None:
        """A lease read: the current head without I/O, served only by the holder, only
        while no record of its own is in flight or of unknown outcome (it may be visible
        to others already), and only while 0.75 x TTL of its own time has not passed since
        it started its last successful write (the TTL of the shortest record it has sent
        since, if lower); ``None`` otherwise (use :meth:`head`). A record of unknown
        outcome is resolved once this object learns its slot (a read that reaches it, or
        the next write)."""
        self._settle_pending()
        with self._c.state:
            lease = self._lease
            now = self.runtime.monotonic()
            if lease is None or not lease.can_read(now):
                return None
            if self._tail.known is None or self._tail.known[0] != lease.last_slot:
                return None  # we learned of someone else's record: not exclusive any more
            return LeaseRead(lease.last_slot, lease.epoch, lease.read_deadline() - now)

    def _settle_pending(self) -> None:
        """If our last record of unknown outcome was for the tail we have learned since,
        and it is ours, take it as our last write (no I/O: the tail is already read)."""
        with self._c.state:
            lease, known, data = self._lease, self._tail.known, self._tail.known_data
            if lease is None or lease.pending is None or known is None or data is None:
                return
            slot = known[0]
            if slot != lease.pending:
                return
        try:
            state = self._state_of(slot, data, fast=False)
        except PassivePaxosError:  # unreadable: stay unsettled (lease reads refused)
            return
        if (state.holder, state.epoch) != (self.writer_id, lease.epoch) or state.ttl is None:
            return  # not ours (lost, or released): lease_read refuses; a write will tell
        with self._c.state:
            if self._lease is lease and lease.pending == slot:
                lease.settle(slot, state.ttl, state.wall or 0.0)

    # -- reading ---------------------------------------------------------------------------

    def read(
        self, from_slot: int = 0, limit: int | None = None, *, to_slot: int | None = None
    ) -> Iterator[Entry]:
        """Entries from slot ``from_slot`` to the current end (or through slot ``to_slot``,
        fetching nothing beyond it), in order; ``limit`` caps the number of entries. Slots
        up to the newest snapshot's slot ``s`` are served from the snapshot (one LIST of
        ``snapshot/`` on this object's first read, one GET); slots ``s+1..`` are fetched
        up to ``fetch_ahead`` at a time and validated, the chain checked from the
        snapshot's anchor; records this object already holds (its own writes, its recent
        reads) are not fetched again. Raises ``CompactedError`` for ``from_slot <= s``
        when the snapshot holds application state instead of entries."""
        count = 0
        if limit is not None and limit <= 0:
            return
        for slot, entries in self._slot_entries(from_slot, follow=False, to_slot=to_slot):
            for i, v in enumerate(entries):
                yield Entry(slot, i, v)
                count += 1
                if limit is not None and count >= limit:
                    return

    def follow(
        self,
        from_slot: int = 0,
        *,
        poll_min: float = 0.05,
        poll_max: float = 2.0,
        stop: EventLike | None = None,
    ) -> Iterator[Entry]:
        """Like :meth:`read`, then keep polling for new slots (backoff ``poll_min`` doubling
        to ``poll_max``, reset on progress) until ``stop`` is set."""
        for slot, entries in self._slot_entries(
            from_slot, follow=True, poll=(poll_min, poll_max), stop=stop
        ):
            for i, v in enumerate(entries):
                yield Entry(slot, i, v)

    def _slot_entries(
        self,
        from_slot: int,
        *,
        follow: bool,
        poll: tuple[float, float] = (0.05, 2.0),
        stop: EventLike | None = None,
        to_slot: int | None = None,
    ) -> Iterator[tuple[int, tuple[bytes, ...]]]:
        """(slot, entries) from ``from_slot`` on: from the newest snapshot while it covers
        the slot, then from the log. A tombstone met on the way (trimmed meanwhile) restarts
        from the (re-listed) newest snapshot, which must cover it."""
        if from_slot < 0:
            raise ConfigError("--from must be a slot number >= 0")
        slot = from_slot
        # the listing is cached per object: a snapshot written since only matters for
        # slots trimmed since, and those read as tombstones, which re-list (below)
        with self._c.state:
            slots = self._snap_slots
        if slots is None:
            slots = self.snapshot_slots()
            with self._c.state:
                self._snap_slots = slots
        covered = bool(slots) and (
            slot <= slots[-1] or (slot == slots[-1] + 1 and self._tail.cached(slot - 1) is None)
        )
        snap = self._load_snapshot(slots[-1]) if covered else None
        while True:
            start_prev: str | None = None
            if snap is not None and slot <= snap.slot:
                if snap.slots is None:
                    raise CompactedError(slot, snap.slot, self.url)
                for s in range(slot, snap.slot + 1):
                    yield s, snap.slots[s]
                slot = snap.slot + 1
            if snap is not None and slot == snap.slot + 1:
                start_prev = snap.hash
            try:
                for s, rec, _ in self._raw_records(
                    slot,
                    follow=follow,
                    poll=poll,
                    stop=stop,
                    start_prev=start_prev,
                    reuse=True,
                    to_slot=to_slot,
                ):
                    yield s, rec.entries
                    slot = s + 1
                return
            except TrimmedSlotError as exc:
                with self._c.state:
                    self._snap_slots = None
                snap = self._covering_snapshot(exc.slot)

    def _covering_snapshot(self, slot: int) -> SnapshotInfo:
        """The newest snapshot, which must cover trimmed slot ``slot``."""
        newest = self.newest_snapshot()
        if newest is None or newest.slot < slot:
            url, key = self._c.where(slot)
            raise DamagedSlotError(
                slot,
                "trimmed, but no snapshot covers it"
                + ("" if newest is None else f" (newest snapshot: slot {newest.slot})"),
                url=url,
                key=key,
            )
        return newest

    def _prev_of(self, from_slot: int, *, reuse: bool = False) -> str | None:
        """The hash the record of ``from_slot`` must name; ``None`` (not checked) when
        slot ``from_slot - 1`` does not exist yet (reading from beyond the end)."""
        if from_slot <= 0:
            return self.genesis
        hit = self._tail.cached(from_slot - 1) if reuse else None
        if hit is not None:
            return hit[0]
        data = self._cfg.fetch(from_slot - 1)
        if data is None:
            return None
        if is_tombstone(data):
            url, key = self._c.where(from_slot - 1)
            return tombstone_of(data, from_slot - 1, url=url, key=key).hash
        self._c.decode(data, from_slot - 1, None)
        return record_hash(data)

    def _records(
        self,
        from_slot: int,
        *,
        follow: bool,
        poll: tuple[float, float] = (0.05, 2.0),
        stop: EventLike | None = None,
        on_slot: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[int, Record]]:
        """(slot, record) from the log itself (no snapshot; a tombstone raises
        ``TrimmedSlotError``)."""
        for slot, rec, _ in self._raw_records(
            from_slot, follow=follow, poll=poll, stop=stop, on_slot=on_slot
        ):
            yield slot, rec

    def _raw_records(
        self,
        from_slot: int,
        *,
        follow: bool,
        poll: tuple[float, float] = (0.05, 2.0),
        stop: EventLike | None = None,
        on_slot: Callable[[int], None] | None = None,
        start_prev: str | None = None,
        reuse: bool = False,
        to_slot: int | None = None,
    ) -> Iterator[tuple[int, Record, bytes]]:
        """``reuse`` (reads, not verify): records this object has already seen (written,
        read) are not fetched again, and once it has probed past an end of the log (the
        slot after a missing one is missing too: no gap), a later read that stops at a
        missing slot beyond that end does not probe again; a slot deleted there would
        still show as a broken chain at the next write, and ``verify`` always probes."""
        if from_slot < 0:
            raise ConfigError("--from must be a slot number >= 0")
        prev = self._prev_of(from_slot, reuse=reuse) if start_prev is None else start_prev
        fetch = self._tail.fetch_reuse if reuse else self._cfg.fetch
        # (``to_slot``: stop after that slot, and never fetch beyond it)
        slot = from_slot
        ahead: dict[int, Future[bytes | None]] = {}
        pace = Backoff(poll[0], poll[1], floor=1.0)  # fixed doubling, reset on progress
        idle = 0  # polls in a row that found nothing new
        first_end = True
        # read-ahead: 1, 2, 4, 8 slots while slots exist, then (a long catch-up) one more
        # per 8 slots read, up to fetch_ahead: the GETs wasted past the end stay within 8
        # or 1/8 of the slots read
        window = 1
        run = 0  # slots read since the last time the end was reached
        try:
            while True:
                if to_slot is not None and slot > to_slot:
                    return
                hit = self._tail.cached(slot) if reuse else None
                if hit is not None:  # seen already: no request, and no read-ahead growth
                    ahead.pop(slot, None)
                    rec = self._c.decode(hit[1], slot, prev)
                    prev = hit[0]
                    if on_slot is not None:
                        on_slot(slot)
                    yield slot, rec, hit[1]
                    slot += 1
                    continue
                last = slot + window if to_slot is None else min(slot + window, to_slot + 1)
                for s in range(slot, last):
                    if s not in ahead:
                        ahead[s] = self._c.pool.submit(fetch, s)
                data = ahead.pop(slot).result()
                if data is None:
                    probe = first_end and not (reuse and 0 <= self._end_probed <= slot)
                    data = self._confirm_end(slot, ahead, probe=probe)
                    first_end = False
                    if data is None and probe:
                        with self._c.state:
                            self._end_probed = max(self._end_probed, slot)
                if data is None:
                    if not follow or (stop is not None and stop.is_set()):
                        return
                    for f in ahead.values():
                        f.cancel()
                    ahead.clear()
                    window, run = 1, 0
                    delay = pace.delay(idle, self.runtime.rng)
                    if stop is not None:
                        if stop.wait(delay):
                            return
                    else:
                        self.runtime.sleep(delay)
                    idle += 1
                    continue
                idle = 0
                run += 1
                window = min(
                    self.fetch_ahead,
                    window * 2 if window < _EARLY_WINDOW else max(window, run // 8),
                )
                rec = self._c.decode(data, slot, prev)
                prev = record_hash(data)
                self._tail.learned(slot, data, prev, chained=True)
                if on_slot is not None:
                    on_slot(slot)
                yield slot, rec, data
                slot += 1
        finally:
            for f in ahead.values():
                f.cancel()

    def _confirm_end(
        self, slot: int, ahead: dict[int, Future[bytes | None]], probe: bool
    ) -> bytes | None:
        """``slot`` looked missing. If a later slot exists (prefetched ones, else slot+1
        when ``probe``), either ``slot`` was decided meanwhile (re-read) or it is a gap:
        damage, never skipped."""
        later = None
        for s in sorted(ahead):
            f = ahead[s]
            if f.cancelled():
                continue
            if f.exception() is None and f.result() is not None:
                later = s
                break
        if later is None and not ahead and probe and self._cfg.fetch(slot + 1) is not None:
            later = slot + 1
        if later is None:
            return None
        data = self._cfg.fetch(slot)
        if data is None:
            url, key = self._c.where(slot)
            raise DamagedSlotError(
                slot, f"missing while slot {later} exists (a gap in the log)", url=url, key=key
            )
        return data

    # -- verification ----------------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Check the newest snapshot (checksum, its anchor, and for an entries snapshot its
        entries against every untrimmed slot up to it) and walk the whole chain from slot 0:
        first the tombstones ``trim`` left (a prefix of the log: format, checksum, slot
        number, a covering snapshot, the chain through each one's ``hash`` / ``prev``),
        then the records. A slot missing below the newest snapshot (a deleted tombstone or
        record), a tombstone after a record that is still there (a slot written again after
        its tombstone was deleted) and a gap are damage. Damage gives ``ok=False`` with the
        first bad slot (or snapshot) and the reason; a walk that cannot read a slot (no
        majority) raises. A store whose objects cannot be listed (unreachable while a
        majority answered the walk) is not checked: ``ok=False`` with no bad slot and the
        store named in ``unchecked``, never "intact". ``progress`` is called with each
        slot number checked. Costs one GET per slot, tombstones included."""
        report = VerifyReport(ok=True)
        try:
            snap = self.newest_snapshot()
            report.snapshot = None if snap is None else snap.slot
            start, prev = 0, self.genesis
            differs: int | None = None  # the first slot whose entries the snapshot differs in
            while True:
                start, prev, snap = self._verify_tombstones(start, prev, snap, report, progress)
                last: tuple[int, str] | None = None  # the last record checked: slot, hash
                try:
                    for slot, rec, data in self._raw_records(
                        start, follow=False, on_slot=progress, start_prev=prev
                    ):
                        report.slots = slot + 1
                        report.entries += len(rec.entries)
                        if snap is not None and slot <= snap.slot:
                            if snap.slots is not None and snap.slots[slot] != rec.entries:
                                # reported after the walk: a record written into a deleted
                                # tombstone's slot differs too, and that is the record's fault
                                differs = slot if differs is None else differs
                            if slot == snap.slot:
                                self._check_anchor(snap, data)
                        last = (slot, record_hash(data))
                    break
                except TrimmedSlotError as exc:
                    # a tombstone after the records checked: a trim running meanwhile (the
                    # record before it is a tombstone now), else damage
                    if last is not None:
                        start, prev = self._after_record(last, exc.slot)
                    else:
                        start = exc.slot  # the slot became a tombstone since phase 1 read it
            if snap is not None and report.slots <= snap.slot:
                url, key = self._c.where(report.slots)
                raise DamagedSlotError(
                    report.slots,
                    f"missing while the snapshot at slot {snap.slot} exists",
                    url=url,
                    key=key,
                )
            # a damaged tail could hide behind a missing slot: look beyond the end
            end = report.slots
            hint = self._tail.read_hint()
            for probe in sorted({end + 1, end + 2, end + 4, hint}):
                if probe > end and self._cfg.fetch(probe) is not None:
                    url, key = self._c.where(end)
                    raise DamagedSlotError(
                        end,
                        f"missing while slot {probe} exists (a gap in the log)",
                        url=url,
                        key=key,
                    )
            if snap is not None and differs is not None:
                raise self._bad_snapshot(
                    snap, f"its entries of slot {differs} differ from the log's"
                )
            report.unchecked = self._check_layout(report.slots)
            if report.unchecked:
                names = "; ".join(f"{u} ({e})" for u, e in report.unchecked.items())
                return dataclasses.replace(
                    report,
                    ok=False,
                    reason="could not check every store",
                    error=f"could not check {len(report.unchecked)} store(s): {names}",
                )
        except DamagedSlotError as exc:
            return dataclasses.replace(
                report, ok=False, bad_slot=exc.slot, reason=exc.reason, error=str(exc)
            )
        except DamagedSnapshotError as exc:
            return dataclasses.replace(
                report, ok=False, bad_snapshot=exc.slot, reason=exc.reason, error=str(exc)
            )
        return report

    def _check_layout(self, end: int) -> dict[str, str]:
        """Every object under ``log/`` on the log's stores must be one this log's layout
        makes (its mode, one store or a quorum); anything else (another mode's slots after
        the manifest was rewritten, a log re-created over an old one) is damage, raised as
        ``DamagedSlotError`` naming one such object. One LIST of ``log/`` per store (all
        at once); returns the current members that could not be listed, URL -> why (the
        walk above already needed a majority, so the log may still be readable)."""
        if self._c.single_create:
            pattern, layout = _SINGLE_SLOT, "single-store create"
        else:
            pattern, layout = _QUORUM_SLOT[self.mode], f"{self.mode.value}-mode quorum"
        stores = list(self._cfg.opened.values())
        unchecked: dict[str, str] = {}
        for store, metas in zip(
            stores, driver.each_store(stores, lambda s: list(s.list("log/"))), strict=True
        ):
            if isinstance(metas, StoreError):
                if store in self.stores:  # a store a membership change removed may be gone
                    unchecked[store.url] = bare(metas)
                continue
            for m in metas:
                if m.key == HINT_KEY or pattern.match(m.key):
                    continue
                digits = re.match(r"^log/(\d{20})", m.key)
                slot = int(digits.group(1)) if digits else end
                raise DamagedSlotError(
                    slot,
                    f"object {m.key!r} on {store.url} is not part of a {layout} log (its "
                    "manifest names another mode, or another log's objects are here)",
                    url=store.url,
                    key=m.key,
                )
        return unchecked

    def _verify_tombstones(
        self,
        start: int,
        prev: str,
        snap: SnapshotInfo | None,
        report: VerifyReport,
        progress: Callable[[int], None] | None,
    ) -> tuple[int, str, SnapshotInfo | None]:
        """``verify``'s walk over the tombstones from slot ``start`` (whose ``prev`` must
        be ``prev``): each one valid, for its own slot, covered by a snapshot, chained (its
        ``prev``, when it has one, is the previous slot's hash; at the snapshot's slot its
        ``hash`` is the anchor). Returns the first slot that is not a tombstone, the hash
        its record must name and the newest snapshot (re-listed if a tombstone names a
        newer one: a trim ran meanwhile). A slot missing at or below the snapshot's slot
        is damage: every slot up to it was decided, and trim never deletes."""
        ahead: dict[int, Future[bytes | None]] = {}
        slot = start
        window = 1  # doubles while tombstones are found (an untrimmed log costs no extra GET)
        try:
            while True:
                # read ahead while tombstones may follow (only slots <= the snapshot's)
                top = slot + 1 if snap is None else min(slot + window, snap.slot + 1)
                for s in range(slot, max(top, slot + 1)):
                    if s not in ahead:
                        ahead[s] = self._c.pool.submit(self._cfg.fetch, s)
                data = ahead.pop(slot).result()
                url, key = self._c.where(slot)
                if data is None:
                    if snap is not None and slot <= snap.slot:
                        raise DamagedSlotError(
                            slot,
                            f"missing below the snapshot at slot {snap.slot} (a trimmed "
                            "slot's tombstone, or a record, was deleted; tombstones must "
                            "never be deleted)",
                            url=url,
                            key=key,
                        )
                    return slot, prev, snap
                if not is_tombstone(data):
                    return slot, prev, snap
                t = tombstone_of(data, slot, url=url, key=key)
                if snap is None or t.snap > snap.slot:
                    snap = self.newest_snapshot()
                    report.snapshot = None if snap is None else snap.slot
                if snap is None or t.snap > snap.slot:
                    raise DamagedSlotError(
                        slot,
                        f"trimmed against the snapshot at slot {t.snap}, but "
                        + (
                            "there is no snapshot"
                            if snap is None
                            else f"the newest snapshot is at slot {snap.slot}"
                        ),
                        url=url,
                        key=key,
                    )
                if t.prev is not None and t.prev != prev:
                    raise DamagedSlotError(
                        slot,
                        "broken hash chain: the tombstone's previous hash does not match "
                        + ("the genesis value" if slot == 0 else f"slot {slot - 1}'s record"),
                        url=url,
                        key=key,
                    )
                if slot == snap.slot and t.hash != snap.hash:
                    raise self._bad_snapshot(
                        snap,
                        f"its anchor hash does not match slot {slot}'s record (kept by its "
                        "tombstone)",
                    )
                prev = t.hash
                report.trimmed = True
                report.slots = slot + 1
                report.entries += 0 if snap.slots is None else len(snap.slots[slot])
                if progress is not None:
                    progress(slot)
                slot += 1
                window = min(self.fetch_ahead, window * 2)
        finally:
            for f in ahead.values():
                f.cancel()

    def _after_record(self, last: tuple[int, str], slot: int) -> tuple[int, str]:
        """``verify`` met a tombstone at ``slot`` right after the record it checked at
        ``last[0]`` (hash ``last[1]``). Trim replaces a prefix in slot order, so the
        record's slot must be a tombstone by now (a trim running meanwhile; go on from
        ``slot``); a record still there is a slot written again after its tombstone was
        deleted (for example by a stale writer): damage, named."""
        rslot, digest = last
        url, key = self._c.where(rslot)
        data = self._cfg.fetch(rslot)
        if data is None or not is_tombstone(data):
            raise DamagedSlotError(
                rslot,
                f"a record below the trimmed slot {slot}: trim replaces a prefix of the log, "
                "so this slot's tombstone was deleted (or never written) and the slot "
                "written again, by a writer whose view of the log was stale: a record no "
                "reader sees (tombstones must never be deleted)",
                url=url,
                key=key,
            )
        if tombstone_of(data, rslot, url=url, key=key).hash != digest:
            raise DamagedSlotError(
                rslot,
                "its tombstone does not keep the hash of the record trimmed",
                url=url,
                key=key,
            )
        return slot, digest

    def _check_anchor(self, snap: SnapshotInfo, data: bytes) -> None:
        if record_hash(data) != snap.hash:
            raise self._bad_snapshot(
                snap, f"its anchor hash does not match slot {snap.slot}'s record"
            )

    def _bad_snapshot(self, snap: SnapshotInfo, reason: str) -> DamagedSnapshotError:
        url = self.stores[0].url if len(self.stores) == 1 else self.url
        return DamagedSnapshotError(snap.slot, reason, url=url, key=snap.key)

    # -- snapshots and trim (see passivepaxos.snapshot) -------------------------------------

    def snapshot_slots(self) -> list[int]:
        """The slots of the snapshot objects, ascending: one LIST of the small ``snapshot/``
        prefix per store (never of the log). On a quorum: the union over the stores that
        answer; a majority must answer."""
        if len(self.stores) == 1:
            metas = [list(self.stores[0].list(SNAPSHOT_PREFIX))]
        else:
            metas, errors = [], []
            for got in driver.each_store(self.stores, lambda st: list(st.list(SNAPSHOT_PREFIX))):
                if isinstance(got, StoreError):
                    errors.append(str(got))
                else:
                    metas.append(got)
            if len(metas) < len(self.stores) // 2 + 1:
                raise QuorumError(
                    f"cannot list the snapshots of {self.url}: no majority of stores "
                    f"answered: {'; '.join(errors)}"
                )
        found = {snapshot_slot_of(m.key) for ms in metas for m in ms}
        slots = sorted(s for s in found if s is not None)
        if slots:
            self._saw_snapshot(slots[-1])
        return slots

    def _saw_snapshot(self, slot: int) -> None:
        """A snapshot at ``slot`` exists (or existed): slots ``0..slot`` were decided."""
        with self._c.state:
            self._snap_seen = max(self._snap_seen, slot)

    def newest_snapshot(self) -> SnapshotInfo | None:
        """The newest snapshot (highest slot), validated; ``None`` if there is none. A
        damaged newest snapshot raises ``DamagedSnapshotError`` naming it (never skipped)."""
        slots = self.snapshot_slots()
        return self._load_snapshot(slots[-1]) if slots else None

    def _load_snapshot(self, slot: int) -> SnapshotInfo:
        key = snapshot_key(slot)
        errors: list[str] = []
        # all stores at once: a hung one is not waited for once a majority answered
        for store, got in zip(
            self.stores, driver.each_store(self.stores, lambda s: s.get(key)), strict=True
        ):
            if isinstance(got, InvalidObjectError):
                raise DamagedSnapshotError(
                    slot, f"unreadable object ({bare(got)})", url=store.url, key=key
                ) from None
            if isinstance(got, StoreError):
                if len(self.stores) == 1:
                    raise got
                errors.append(str(got))
                continue
            if got is not None:
                return decode_snapshot(got[0], slot, url=store.url, key=key)
        url = self.stores[0].url if len(self.stores) == 1 else self.url
        raise DamagedSnapshotError(
            slot,
            "listed but could not be read" + (f": {'; '.join(errors)}" if errors else ""),
            url=url,
            key=key,
        )

    def snapshot(self, state: bytes | None = None, *, slot: int | None = None) -> SnapshotInfo:
        """Write the snapshot ``snapshot/<s:020d>`` and return it.

        ``state=None``: an entries snapshot at the current head slot ``s`` holding every
        entry of slots 0..s, built from the newest snapshot plus the slots after it (so it
        costs reading only those). ``state``: the application's state after slot ``slot``
        (default: the current head; pass the slot your state has applied). Written with
        create-if-absent where the store has it; an existing snapshot at the same slot with
        the same anchor is returned instead (first writer wins). On a quorum it is written
        to every store and a majority must succeed (``QuorumError`` otherwise)."""
        if state is None:
            if slot is not None:
                raise ConfigError("slot= is only for application-state snapshots")
            base = self.newest_snapshot()
            if base is not None and base.slots is None:
                raise ConfigError(
                    f"{self.url}: the newest snapshot (slot {base.slot}) holds application "
                    "state: an entries snapshot cannot be built from it; pass state="
                )
            acc: list[tuple[bytes, ...]] = [] if base is None else list(base.slots or ())
            last, anchor = (-1, self.genesis) if base is None else (base.slot, base.hash)
            for s, rec, data in self._raw_records(last + 1, follow=False, start_prev=anchor):
                acc.append(rec.entries)
                last, anchor = s, record_hash(data)
            if last < 0:
                raise ConfigError(f"{self.url}: the log is empty: nothing to snapshot")
            if base is not None and last == base.slot:
                return base
            blob = encode_snapshot(last, anchor, slots=acc, state=None)
        else:
            last = self._tail.head() if slot is None else slot
            if last < 0:
                raise ConfigError(f"{self.url}: the log is empty: nothing to snapshot")
            got = self._cfg.fetch(last)
            if got is None:
                raise ConfigError(
                    f"{self.url}: slot {last} does not exist (head is {self._tail.head()})"
                )
            if not is_tombstone(got):
                self._c.decode(got, last, None)
            anchor = chain_hash(got, last)
            blob = encode_snapshot(last, anchor, slots=None, state=require_bytes(state, "state"))
        return self._put_snapshot(last, anchor, blob)

    def _put_snapshot(self, slot: int, anchor: str, blob: bytes) -> SnapshotInfo:
        key = snapshot_key(slot)
        with self._c.state:
            self._snap_slots = None  # our next read lists again and finds this one
        self._saw_snapshot(slot)

        def one(store: Store) -> SnapshotInfo:
            mode = PutMode.CREATE if store.capabilities.create else PutMode.OVERWRITE
            try:
                store.put(key, blob, mode)
            except AlreadyExistsError as exc:
                if exc.current is None:
                    raise
                there = decode_snapshot(exc.current[0], slot, url=store.url, key=key)
                if there.hash != anchor:
                    raise DamagedSnapshotError(
                        slot, "its anchor hash differs from slot's record", url=store.url, key=key
                    ) from None
                return there
            return decode_snapshot(blob, slot, url=store.url, key=key)

        if len(self.stores) == 1:
            return one(self.stores[0])
        assert self._c.fanout is not None
        futs = [self._c.fanout.submit(one, s) for s in self.stores]
        done: list[SnapshotInfo] = []
        errors: list[str] = []
        self._c.runtime.wait(futs)  # the fan-out's futures are waited for through the runtime
        for f in futs:
            try:
                done.append(f.result())
            except (StoreError, QuorumError) as exc:
                errors.append(str(exc))
        if len(done) < len(self.stores) // 2 + 1:
            raise QuorumError(
                f"snapshot at slot {slot} of {self.url}: written to {len(done)} of "
                f"{len(self.stores)} stores, a majority is needed: {'; '.join(errors)}"
            )
        return done[0]

    def trim(self, before: int) -> TrimResult:
        """Trim slots ``0..before-1``: OVERWRITE each slot object with a tombstone (never
        delete it: the name stays taken, so a stale writer's create of it fails and is never
        acknowledged). Refuses (``TrimRefusedError``) unless a snapshot at slot
        ``>= before - 1`` exists; checks, before destroying a slot, that its record chains
        correctly and (for an entries snapshot) that its entries equal the snapshot's.
        Only on one store in create mode (``UnsupportedError`` otherwise). Costs about
        log2(before) GETs to find the first untrimmed slot, then a GET and a PUT per slot
        trimmed."""
        if not self._c.single_create:
            raise UnsupportedError(
                f"{self.url}: trim needs a single store in create mode (this log is "
                f"{'a quorum of ' + str(len(self.stores)) + ' stores' if len(self.stores) > 1 else 'in ' + self.mode.value + ' mode'}): "
                "a slot there is a consensus instance of several objects, which cannot be "
                "tombstoned safely yet (a slow proposer could complete it again). Snapshots "
                "work here; only trim does not",
                capability="trim",
            )
        if before < 0:
            raise ConfigError("--before must be a slot number >= 0")
        snap = self.newest_snapshot()
        if snap is None or snap.slot < before - 1:
            have = "no snapshot" if snap is None else f"the newest snapshot is at slot {snap.slot}"
            raise TrimRefusedError(
                f"{self.url}: refusing to trim before slot {before}: {have}; a snapshot at "
                f"slot >= {before - 1} must exist first (run `passivepaxos snapshot`), so that "
                "no entry is lost"
            )
        if before == 0:
            return TrimResult(0, before, snap.slot)
        store = self.stores[0]
        # tombstones form a prefix (each trim goes up in order): find its end
        lo, lo_data, hi = -1, b"", before
        while hi - lo > 1:
            mid = (lo + hi) // 2
            got = self._cfg.fetch(mid)
            if got is None:
                url, key = self._c.where(mid)
                raise DamagedSlotError(mid, "missing below a snapshot (a gap)", url=url, key=key)
            if is_tombstone(got):
                lo, lo_data = mid, got
            else:
                hi = mid
        prev = self.genesis if lo < 0 else chain_hash(lo_data, lo)
        count = 0
        futs = {
            i: self._c.pool.submit(self._cfg.fetch, i)
            for i in range(lo + 1, min(before, lo + 1 + self.fetch_ahead))
        }
        for i in range(lo + 1, before):
            nxt = i + self.fetch_ahead
            if nxt < before:
                futs[nxt] = self._c.pool.submit(self._cfg.fetch, nxt)
            data = futs.pop(i).result()
            if data is None:
                url, key = self._c.where(i)
                raise DamagedSlotError(i, "missing below a snapshot (a gap)", url=url, key=key)
            if is_tombstone(data):  # a concurrent trim got here first
                prev = chain_hash(data, i)
                continue
            rec = self._c.decode(data, i, prev)
            h = record_hash(data)
            if snap.slots is not None and snap.slots[i] != rec.entries:
                raise self._bad_snapshot(snap, f"its entries of slot {i} differ from the log's")
            if i == snap.slot and h != snap.hash:
                raise self._bad_snapshot(
                    snap, f"its anchor hash does not match slot {snap.slot}'s record"
                )
            t = Tombstone(i, snap.slot, h, rec.writer, rec.epoch, rec.wid, rec.lease, rec.prev)
            store.put(slot_instance(i), t.encode(), PutMode.OVERWRITE)
            count += 1
            prev = h
        return TrimResult(count, before, snap.slot)
