"""Forwarding: under contention, producers hand their entries to whoever writes the next
slot instead of racing for it (issue 12; seed 004's "send to the sequencer").

The protocol (docs/log.md, "Forwarding", has the invariants and their argument):

- **Parcel.** A producer that lost a race (or lost one within ``CONTENDED_FOR`` seconds)
  creates ``inbox/<base>.<fid>`` (create-if-absent) holding its entries. ``fid`` is 128
  random bits; ``base`` is the slot after the tail the producer knew, so every slot below
  ``base`` existed before the parcel did and no record below ``base`` can hold it.
- **Fold.** A forwarding writer, before a slot it writes (its own appends while the
  inbox is due, a lease holder's appends, claims and renewals, a producer whose parcel
  waited its patience) LISTs ``inbox/``, GETs the parcels it does not know to be in the
  log, and puts them after its own entries in the record, naming each in the record's
  ``fwd`` field ``[[fid, count], ...]``.
- **At most once.** A parcel ``(base, fid)`` goes into the record proposed for slot ``m``
  only if the writer has the records of every slot ``base .. m-1`` and none names
  ``fid``. Slots are decided once and form one chain, so of two records naming ``fid``
  the later one's writer read the earlier one: it cannot be.
- **Acknowledgement.** A producer's append returns when it has read a decided record
  naming its ``fid`` (its positions are that record's slot and the parcel's offset); it
  waits a random patience of a few of its own round trips between looks, and then writes
  a slot itself, folding every pending parcel (its own included). No lease records, no
  election: whoever's patience runs out first sequences, and a producer that dies costs
  the others one patience.
- **Outcome unknown.** Once a parcel exists it may be folded at any later time, so every
  failure after its create is ``ForwardOutcomeUnknownError`` (token ``fwd:<base>.<fid>``);
  a resume first settles the parcel's name (reads it, or takes it with a withdrawn
  marker), then looks for its record from ``base``, then waits for the parcel or appends
  the values under its own write id (:meth:`Forwarder.resume`).
"""

from __future__ import annotations

import binascii
import collections
import hashlib
import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import Any

from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    ConfigError,
    DamagedSlotError,
    ForwardOutcomeUnknownError,
    InvalidObjectError,
    LeaseHeldError,
    PassivePaxosError,
    TrimmedSlotError,
)
from passivepaxos.log.context import LogContext
from passivepaxos.log.leasing import NotYet, WriterLease
from passivepaxos.log.record import (
    Position,
    Record,
    forward_unknown,
    parse_forward_token,
    resume_wid,
)
from passivepaxos.log.tail import Tail
from passivepaxos.log.writer import FencedWriter, Fold, NothingToWrite, RaceLost
from passivepaxos.retry import Backoff
from passivepaxos.snapshot import is_tombstone
from passivepaxos.types import PutMode

__all__ = [
    "INBOX",
    "Forwarder",
    "Parcel",
    "decode_parcel",
    "encode_parcel",
    "parcel_key",
]

INBOX = "inbox/"
PARCEL_KIND = "ppx-parcel"
WITHDRAWN_KIND = "ppx-parcel-withdrawn"
# a producer that lost a race goes straight to the inbox for this long (seconds, own clock)
CONTENDED_FOR = 2.0
# a fold reads at most this many records to show a parcel is not in the log yet; an older
# parcel is left for its producer's resume (docs/log.md)
FOLD_WINDOW = 1024
# patience between a producer's looks, in its own round trips (random in this range)
PATIENCE = (3.0, 6.0)
# a waiting producer writes a slot itself after this many patiences even while the log moves
SELF_FOLD_AFTER = 3
# a writer lists the inbox before every slot it writes while a listing found parcels
# within CONTENDED_FOR seconds; otherwise at most once per QUIET_LIST seconds (own clock)
QUIET_LIST = 0.2
# a forwarding producer trusts a known tail learned this many of its round trips ago
FRESH_ROUNDS = 4
# a producer gives up (outcome unknown) after this long without its parcel decided
FORWARD_WAIT = 30.0
# a folder deletes a parcel it finds already in the log this many slots back (its producer
# deletes it itself on acknowledgement; this is for producers that died first)
STALE_PARCEL = 16
# settle's first look reads the slot where most of this object's last OFFSETS_KEPT parcels
# were folded (relative to their base) before walking from the base
OFFSETS_KEPT = 16

Lead = Callable[[], AbstractContextManager[None]]  # GroupCommit.lead: no other commit of the Log
Submit = Callable[[list[bytes]], list[Position]]  # GroupCommit.submit

_KEY = re.compile(r"^inbox/(\d{20})\.([0-9a-f]{32})$")


def parcel_key(base: int, fid: str) -> str:
    return f"{INBOX}{base:020d}.{fid}"


@dataclass(frozen=True)
class Parcel:
    base: int
    fid: str
    entries: tuple[bytes, ...]


def encode_parcel(base: int, fid: str, entries: list[bytes]) -> bytes:
    body: dict[str, Any] = {
        "kind": PARCEL_KIND,
        "base": base,
        "fid": fid,
        "entries": [binascii.b2a_base64(e, newline=False).decode() for e in entries],
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["sum"] = hashlib.sha256(raw).hexdigest()
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _withdrawn(base: int, fid: str) -> bytes:
    return json.dumps({"kind": WITHDRAWN_KIND, "base": base, "fid": fid}, sort_keys=True).encode()


def decode_parcel(data: bytes, key: str) -> Parcel | None:
    """The parcel stored under ``key``; ``None`` for a withdrawn one; ``ValueError`` naming
    what is wrong when the object is not a parcel of that name (never folded)."""
    m = _KEY.match(key)
    if m is None:
        raise ValueError(f"{key}: not a parcel name")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{key}: not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{key}: not a parcel")
    if doc.get("kind") == WITHDRAWN_KIND:
        if doc.get("base") != int(m[1]) or doc.get("fid") != m[2]:
            raise ValueError(f"{key}: a withdrawn marker naming another parcel")
        return None
    body = dict(doc)
    given = body.pop("sum", None)
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    if doc.get("kind") != PARCEL_KIND or given != hashlib.sha256(raw).hexdigest():
        raise ValueError(f"{key}: not a parcel, or a bad checksum")
    if body.get("base") != int(m[1]) or body.get("fid") != m[2]:
        raise ValueError(f"{key}: its contents name another parcel")
    raw_entries = body.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise ValueError(f"{key}: no entries")
    try:
        entries = tuple(binascii.a2b_base64(e, strict_mode=True) for e in raw_entries)
    except (binascii.Error, TypeError):
        raise ValueError(f"{key}: bad entry encoding") from None
    return Parcel(int(m[1]), m[2], entries)


class Forwarder:
    """A ``Log``'s forwarding: its producer side (:meth:`append`) and its folds."""

    def __init__(
        self,
        c: LogContext,
        tail: Tail,
        writer: FencedWriter,
        leasing: WriterLease,
        *,
        max_entries: int,
        max_bytes: int,
    ) -> None:
        if len(c.stores) != 1 or not c.stores[0].capabilities.create:
            raise ConfigError(
                f"{c.url}: forwarding needs a single-store log on a store with "
                "create-if-absent (docs/log.md, Forwarding)"
            )
        self.c = c
        self.store = c.stores[0]
        self.tail = tail
        self.writer = writer
        self.leasing = leasing
        self.max_entries, self.max_bytes = max_entries, max_bytes
        # guarded by c.state: the parcel ids of the records this object has looked at, by
        # slot (FOLD_WINDOW of them), and when this object last lost a race
        self.fids: dict[int, tuple[str, ...]] = {}
        self.contended_at: float | None = None
        self.list_after = 0.0  # monotonic time before which a quiet writer does not LIST
        self.parcels_at = -1e18  # when a listing last found parcels (own clock)
        self.rtt = 0.0  # the last parcel create's time: this object's round trip, roughly
        # how many slots after its base each of this object's recent parcels was folded
        # (guarded by c.state): where settle looks first (likely_offset)
        self.offsets: collections.deque[int] = collections.deque(maxlen=OFFSETS_KEPT)
        self.parcels_folded = 0  # stats: parcels this object folded into its records
        # inbox names not to GET again: withdrawn markers, damaged or foreign objects, and
        # parcels whose stale-parcel delete was tried once (guarded by c.state)
        self.skip: set[str] = set()

    # -- the producer --------------------------------------------------------------------

    def append(self, vals: list[bytes], submit: Submit, lead: Lead) -> list[Position]:
        """Append ``vals``: through group commit (``submit``, whose rounds are
        :meth:`commit_round`) as the lease holder, or when not contended recently; by a
        parcel once a round lost its race (nothing of it written) or a lease is held."""
        now = self.c.runtime.monotonic()
        with self.c.state:
            quiet = self.contended_at is None or now - self.contended_at > CONTENDED_FOR
        lost = False
        if quiet or self.leasing.holding() is not None:
            try:
                return submit(vals)
            except RaceLost:
                lost = True  # nothing written; the tail known is the lost slot, of any age
            except (LeaseHeldError, NotYet):
                pass  # nothing written: forward instead
        with self.c.state:
            self.contended_at = self.c.runtime.monotonic()
        return self.forward(vals, lead, probe=lost)

    def commit_round(self, entries: list[bytes]) -> int:
        """One group-commit round of a forwarding ``Log``: the holder's record (folding
        the inbox when due), or a direct try that gives up after one lost race
        (``RaceLost``: its callers forward their values)."""
        fold = self.folder(own=len(entries)) if self.inbox_due() else None
        if self.leasing.holding() is not None:
            slot = self.writer.commit(entries, fold=fold)
        else:
            slot = self.writer.commit(entries, wait=False, lose_limit=1, fold=fold)
        if fold is not None:
            self.note_held(slot)
        return slot

    def note_held(self, slot: int) -> None:
        """After our commit of ``slot`` was decided: note the parcels its record took, so
        that the next listing, which still shows them until their producers delete them,
        does not GET them again (a second GET per parcel while a writer kept sequencing).
        Only from the record held in memory, never a request: the append is decided, and
        nothing here may turn it into an error (a GET of a record another thread's reads
        pushed out of the cache failed, and the decided append was reported a retryable
        failure: the outside review's finding 1). Not held: the next listing GETs them."""
        hit = self.tail.cached(slot)
        if hit is None or is_tombstone(hit[1]):
            return
        with suppress(PassivePaxosError):  # decoded before, when it was learned
            self.note(slot, self.c.decode(hit[1], slot, None))

    def forward(self, vals: list[bytes], lead: Lead, *, probe: bool = False) -> list[Position]:
        """Create a parcel of ``vals`` and wait for it (:meth:`settle`). Its ``base`` is
        the slot after the known tail. Unless that tail was learned within a few round
        trips (a producer that was just acknowledged, appending again), it may be far
        behind (a lease refusal reads nothing; after a lost race, ``probe``, the known tail
        is the lost slot, however old the view was): one GET of the slot after it, and a
        discovery from there if it exists (a base far behind would cost every folder a
        read per slot in between)."""
        now = self.c.runtime.monotonic()
        with self.c.state:
            known = self.tail.known
            learned = self.tail.watch.since if known is not None else None
            recent = learned is not None and now - learned < FRESH_ROUNDS * self.rtt
        if known is None:
            last, _ = self.tail.discover()
        else:
            last = known[0]
            if (probe or not recent) and self.tail.exists(last + 1) is not None:
                last, _ = self.tail.discover(last + 1)
        base = last + 1
        fid = self.c.runtime.token_hex(16)
        key = parcel_key(base, fid)
        started = self.c.runtime.monotonic()
        try:
            self.store.put(key, encode_parcel(base, fid, vals), PutMode.CREATE)
        except AmbiguousWriteError as exc:
            raise self.unknown(base, fid, exc) from exc
        except KeyboardInterrupt as exc:  # the create may have landed: say how to finish
            exc.add_note(f"the entries were forwarded: resume with token fwd:{base}.{fid}")
            raise
        rtt = max(self.c.runtime.monotonic() - started, 1e-3)
        with self.c.state:
            self.rtt = rtt
        return self.settle(base, fid, len(vals), rtt, lead)

    def settle(self, base: int, fid: str, n: int, rtt: float, lead: Lead) -> list[Position]:
        """Wait for parcel ``(base, fid)`` (``n`` entries) to be decided; write a slot
        folding it (and every other pending parcel) when it is not after a patience."""
        rt = self.c.runtime
        give_up = rt.monotonic() + FORWARD_WAIT
        nxt = base
        idle = 0  # patiences in a row without our parcel decided
        # a fixed range, not exponential: the sequencer's cycle does not grow with our wait
        lo, hi = PATIENCE
        patience = Backoff(rtt * hi, rtt * hi, floor=lo / hi)
        guess = self.likely_offset()
        try:
            while True:
                rt.sleep(patience.delay(0, rt.rng))
                before = nxt
                found = None
                if guess > 0:  # first look only: one GET where the parcel most likely is
                    found, guess = self.peek(base + guess, fid), 0
                if found is None:
                    found, nxt = self.scan(nxt, fid)
                idle += 1
                # the log moved: someone is writing, and a writer that folds will take the
                # parcel with its next slot; write one ourselves only when nobody wrote
                # during the patience, or after SELF_FOLD_AFTER of them anyway (the writer
                # may not fold: an old client, or a holder without forwarding)
                if found is None and (nxt == before or idle >= SELF_FOLD_AFTER):
                    found = self.fold_myself(fid, base, lead)
                    idle = 0
                if found is not None:
                    self.discard(parcel_key(base, fid))
                    with self.c.state:
                        self.offsets.append(found.slot - base)
                    return [Position(found.slot, found.index + i) for i in range(n)]
                if rt.monotonic() > give_up:
                    raise PassivePaxosError(
                        f"not decided within {FORWARD_WAIT:g} s (a writer that does not "
                        "forward holds the lease?)"
                    )
        except PassivePaxosError as exc:
            raise self.unknown(base, fid, exc) from exc
        except KeyboardInterrupt as exc:  # the parcel exists: say how to finish it
            exc.add_note(f"the entries were forwarded: resume with token fwd:{base}.{fid}")
            raise

    def fold_myself(self, fid: str, base: int, lead: Lead) -> Position | None:
        """Write one slot folding the pending parcels; where parcel ``fid`` is, if known.
        Slot ``base - 1`` exists (the parcel was written after it): read it first when
        this object's view of the tail is older (a resume's, say), so the write goes past
        it."""
        with self.c.state:
            known = self.tail.known
        if base > 0 and (known is None or known[0] < base - 1):
            self.record(base - 1)
        try:
            with lead():
                slot = self.writer.commit(
                    [], wait=False, fold=self.folder(own=0, mine=fid), lose_limit=1
                )
        except (NothingToWrite, LeaseHeldError, NotYet, RaceLost):
            return self.where(fid)  # another record has it, or a holder will fold it
        self.tail.committed()
        with suppress(TrimmedSlotError):
            self.record(slot)  # our own record, held: noted for where()
        with self.c.state:  # we sequenced: our next append writes (and folds) directly
            self.contended_at = None
        return self.where(fid)

    def likely_offset(self) -> int:
        """The most common fold offset among this object's recent parcels (``0``: none
        yet, or most were folded at their base, where the walk starts anyway). Under
        sustained contention a parcel lands a slot or two past its base (the sequencer's
        slots in flight when it was created do not hold it); reading that slot first
        saves the walk through the ones before it (at most one record names a parcel, so
        finding it anywhere settles where it is)."""
        with self.c.state:
            counts = collections.Counter(self.offsets)
        return max(counts, key=lambda k: (counts[k], -k)) if counts else 0

    def peek(self, slot: int, fid: str) -> Position | None:
        """Where parcel ``fid`` is if slot ``slot``'s decided record names it (one GET
        unless held); ``None`` otherwise: not there yet, another record, or anything the
        read raised (a guess only; the walk from the base that follows is what reports a
        damaged or unreadable slot it needs: a damaged slot past the one holding the parcel
        made a decided append outcome unknown, the outside review's finding 2)."""
        try:
            rec = self.record(slot)
        except PassivePaxosError:
            return None
        index = None if rec is None else rec.parcel_at(fid)
        return None if index is None else Position(slot, index)

    def scan(self, slot: int, fid: str, wid: str | None = None) -> tuple[Position | None, int]:
        """Read records from ``slot`` while they exist; (where parcel ``fid`` is, or the
        record with write id ``wid``; the slot after the last one read)."""
        while True:
            rec = self.record(slot)
            if rec is None:
                return None, slot
            index = 0 if wid is not None and rec.wid == wid else rec.parcel_at(fid)
            if index is not None:
                return Position(slot, index), slot + 1
            slot += 1

    def where(self, fid: str) -> Position | None:
        """Where parcel ``fid`` is among the records this object has looked at (at most
        one record names it)."""
        slot = self.folded(fid)
        if slot is None:
            return None
        try:
            rec = self.record(slot)
        except TrimmedSlotError:
            return None  # in the log, its position no longer readable
        index = None if rec is None else rec.parcel_at(fid)
        return None if index is None else Position(slot, index)

    def folded(self, fid: str) -> int | None:
        """The slot of a record this object has seen naming ``fid``, if any (no I/O)."""
        with self.c.state:
            for slot, fids in self.fids.items():
                if fid in fids:
                    return slot
        return None

    # -- folding -------------------------------------------------------------------------

    def folder(self, *, own: int, mine: str | None = None, empty_ok: bool = False) -> Fold:
        """The ``fold`` of one commit: the inbox is listed and read once, at its first
        attempt; each attempt keeps the parcels not yet in the log below its slot.
        ``mine``: the caller's own parcel, folded however far behind its base is (its
        producer has read the records since); ``empty_ok``: the record is written even
        with nothing to fold (a claim, a renewal)."""
        listing: list[Parcel] | None = None

        def fold(slot: int) -> tuple[list[bytes], tuple[tuple[str, int], ...]]:
            nonlocal listing
            if listing is None:
                listing = self.pending(slot, mine)
            extra: list[bytes] = []
            fwd: list[tuple[str, int]] = []
            size = 0
            for p in listing:
                window = None if p.fid == mine else FOLD_WINDOW
                if p.base > slot or not self.absent(p.fid, p.base, slot, window):
                    continue
                b = sum(map(len, p.entries))
                if fwd and (
                    own + len(extra) + len(p.entries) > self.max_entries
                    or size + b > self.max_bytes
                ):
                    break
                extra.extend(p.entries)
                fwd.append((p.fid, len(p.entries)))
                size += b
            if not fwd and own == 0 and not empty_ok:
                raise NothingToWrite
            with self.c.state:
                self.parcels_folded += len(fwd)
            return extra, tuple(fwd)

        return fold

    def inbox_due(self) -> bool:
        """Whether a writer's own append should LIST the inbox first: while a listing
        found parcels within ``CONTENDED_FOR`` seconds, always; else at most every
        ``QUIET_LIST`` seconds (a low-rate writer with an empty inbox pays one LIST per
        append at most, a busy one one per 0.2 s)."""
        now = self.c.runtime.monotonic()
        with self.c.state:
            return now >= self.list_after or now - self.parcels_at < CONTENDED_FOR

    def pending(self, slot: int, mine: str | None = None) -> list[Parcel]:
        """The inbox's parcels not known to be in the log (one LIST, then the unknown ones'
        GETs in parallel). A parcel found in the log well behind ``slot`` is deleted in the
        background (its producer died before it could). Objects that are not parcels are
        left alone and never folded (and not read again by this object). ``mine``: the
        caller's own parcel, listed however far behind its base is."""
        todo: list[tuple[str, int, str]] = []
        for meta in self.store.list(INBOX):
            m = _KEY.match(meta.key)
            with self.c.state:
                skipped = meta.key in self.skip
            if m is None or skipped:
                continue
            base, fid = int(m[1]), m[2]
            at = self.folded(fid)
            if at is not None:
                if at < slot - STALE_PARCEL:
                    with self.c.state:
                        self.skip.add(meta.key)  # one try: deletes may be denied
                    self.discard(meta.key)
                continue
            if slot - base <= FOLD_WINDOW or fid == mine:
                todo.append((meta.key, base, fid))
        got = self.c.pool.map(self.get_parcel, [k for k, _, _ in todo])
        out = [p for p in got if p is not None]
        now = self.c.runtime.monotonic()
        with self.c.state:
            self.list_after = now + QUIET_LIST
            if out:
                self.parcels_at = now
        return out

    def get_parcel(self, key: str) -> Parcel | None:
        """The parcel stored under ``key``; ``None`` (and never asked again by this
        object) for a withdrawn name and for an object that is not a parcel of that name
        (damaged or foreign: left where it is, never folded); ``None`` when it is gone
        (acknowledged and deleted meanwhile)."""
        try:
            got = self.store.get(key)
            p = None if got is None else decode_parcel(got[0], key)
        except (InvalidObjectError, ValueError):
            p = None
        if p is None:  # a parcel's name is never written again except as withdrawn
            with self.c.state:
                self.skip.add(key)
        return p

    def absent(self, fid: str, base: int, slot: int, window: int | None = FOLD_WINDOW) -> bool:
        """Whether this object can show that no record of ``base .. slot-1`` names
        ``fid`` (it reads the ones it has not seen; a trimmed or unreadable one: no);
        more than ``window`` records to read: no."""
        if window is not None and slot - base > window:
            return False
        for s in range(base, slot):
            with self.c.state:
                fids = self.fids.get(s)
            if fids is None:
                try:
                    rec = self.record(s)
                except (TrimmedSlotError, DamagedSlotError):
                    return False
                if rec is None:
                    return False  # below the slot it writes: must exist (a hole)
                fids = rec.parcel_ids
            if fid in fids:
                return False
        return True

    # -- records ---------------------------------------------------------------------------

    def record(self, slot: int) -> Record | None:
        """The decided record of ``slot`` (``None``: not there yet), noted."""
        hit = self.tail.cached(slot)
        data = hit[1] if hit is not None else self.writer.cfg.fetch(slot)
        if data is None:
            return None
        if is_tombstone(data):
            url, _ = self.c.where(slot)
            raise TrimmedSlotError(slot, -1, url)
        rec = self.c.decode(data, slot, None)
        if hit is None:
            self.tail.learned(slot, data)
        self.note(slot, rec)
        return rec

    def note(self, slot: int, rec: Record) -> None:
        with self.c.state:
            self.fids[slot] = rec.parcel_ids
            while len(self.fids) > FOLD_WINDOW:
                del self.fids[min(self.fids)]

    def discard(self, key: str) -> None:
        """Delete a parcel that is in the log, in the background (best effort: a folder
        skips parcels it finds in the log, and deletes stale ones)."""

        def rm() -> None:
            with suppress(PassivePaxosError):
                self.store.delete(key)

        with suppress(RuntimeError):  # the Log is closing (its pool shut down): left for folders
            self.c.pool.submit(rm)

    # -- outcome unknown, and resume -----------------------------------------------------

    def unknown(self, base: int, fid: str, exc: PassivePaxosError) -> ForwardOutcomeUnknownError:
        key = parcel_key(base, fid)
        if isinstance(exc, TrimmedSlotError):  # its own text says "nothing was written"
            exc = PassivePaxosError(
                f"the log was trimmed at slot {exc.slot}, at or after the parcel's base: "
                "whether the entries were folded can no longer be read there (a snapshot "
                "does not name parcels); look for them in the snapshot's state"
            )
        return forward_unknown(
            base, fid, f"{type(exc).__name__}: {exc}", url=self.store.url, key=key
        )

    def resume(self, vals: list[bytes], token: str, lead: Lead) -> list[Position]:
        """Finish a forwarded append exactly once (one resume of a token at a time).

        First the parcel's *name* is settled: its object is read, or, when absent, taken
        by a withdrawn marker (create-if-absent), so that no parcel can appear under it
        later. Only then is the log read from ``base``: a record naming the parcel (a
        parcel is deleted only after a record naming it was decided, so one deleted
        before the marker is found), or an earlier resume's own record (write id
        ``resume_wid(fid, 0)``). Found: its positions. Else a parcel still there is
        settled (folded by us if nobody does); else (withdrawn) the values are appended
        under the resume's write id."""
        parsed = parse_forward_token(token)
        assert parsed is not None
        base, fid = parsed
        key = parcel_key(base, fid)
        rwid = resume_wid(fid, 0)
        parcel: Parcel | None = None
        try:
            for _ in range(3):  # a parcel is deleted at most once, a marker never
                got = self.store.get(key)
                if got is not None:
                    parcel = decode_parcel(got[0], key)  # None: withdrawn
                    break
                try:
                    self.store.put(key, _withdrawn(base, fid), PutMode.CREATE)
                    break
                except AlreadyExistsError:
                    continue  # created meanwhile: read what it is
            else:
                raise PassivePaxosError(f"{key} keeps changing")
            found, _ = self.scan(base, fid, rwid)
        except (PassivePaxosError, ValueError) as exc:
            err = exc if isinstance(exc, PassivePaxosError) else ConfigError(str(exc))
            raise self.unknown(base, fid, err) from exc
        if found is not None:
            self.same_values(found, vals, token)
            if parcel is not None:  # never a withdrawn marker: it keeps the name taken
                self.discard(key)
            return [Position(found.slot, found.index + i) for i in range(len(vals))]
        if parcel is not None:
            if list(parcel.entries) != vals:
                raise ConfigError(
                    f"resume {token}: the values differ from the ones forwarded in {key}"
                )
            return self.settle(base, fid, len(vals), 0.01, lead)
        # withdrawn (now or by an earlier resume whose record is not in the log): the
        # parcel can never be created, so appending the values is their only copy
        with lead():
            slot = self.writer.commit(vals, wid=rwid)
        self.tail.committed()
        return [Position(slot, i) for i in range(len(vals))]

    def same_values(self, at: Position, vals: list[bytes], token: str) -> None:
        """A resume must be given the forwarded values: ``ConfigError`` naming the slot
        when the record there holds others (nothing is written)."""
        rec = self.record(at.slot)
        if rec is None or list(rec.entries[at.index : at.index + len(vals)]) != vals:
            raise ConfigError(
                f"resume {token}: the values differ from the ones forwarded, which are in "
                f"the log at slot {at.slot} from index {at.index}"
            )
