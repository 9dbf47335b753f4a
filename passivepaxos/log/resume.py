"""Resuming an append whose outcome was unknown (``append(values, resume=token)``).

The token ``<slot>:<index>:<wid>`` names the only slot the earlier record can ever be
decided at (a record names its slot and its predecessor's hash). The resume establishes
that slot, proposing its own record of the values there if it is free: the earlier
record (or a resume's) decided there is this append; any other record means the values
are appended anew, once (under a write id derived from the token, so a second resume
recognises the first one's record).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from passivepaxos.errors import (
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    ConfigError,
    DamagedSlotError,
    PassivePaxosError,
)
from passivepaxos.lease import LeaseState
from passivepaxos.log.compaction import Compaction
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import (
    Position,
    Record,
    chain_hash,
    parse_resume_token,
    resume_wid,
    tombstone_of,
)
from passivepaxos.log.tail import Tail
from passivepaxos.log.writer import FencedWriter
from passivepaxos.snapshot import is_tombstone

__all__ = ["Resumer"]


class Resumer:
    """Finishes one unknown append exactly once (resumes of one token run one at a time)."""

    def __init__(
        self, c: LogContext, cfg: ConfigView, tail: Tail, snaps: Compaction, writer: FencedWriter
    ) -> None:
        self.c = c
        self.cfg = cfg
        self.tail = tail
        self.snaps = snaps
        self.writer = writer

    def resume(
        self,
        values: list[bytes],
        token: str,
        lead: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> list[Position]:
        """``append_positions(values, resume=token)``: see there. Any failure before the
        outcome is established is ``AppendOutcomeUnknownError`` with the same token (or,
        once the values were sent to a new slot, that slot's token)."""
        slot, index, wid = parse_resume_token(token)
        if not values:
            raise ConfigError("resume: give the same values as the append being resumed")
        try:
            with lead():
                return self.resume_led(values, slot, index, wid)
        except (AppendOutcomeUnknownError, ConfigError):
            raise
        except PassivePaxosError as exc:
            raise self.writer.unknown(slot, wid, exc, index=index) from exc

    def resume_led(self, values: list[bytes], slot: int, index: int, wid: str) -> list[Position]:
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
        got = self.cfg.fetch(slot)
        while got is None:  # provably free now: decide it (a late landing still wins)
            got = self.propose_exact(values, slot, index, wid, mine)
        if is_tombstone(got):
            url, key = self.c.where(slot)
            t = tombstone_of(got, slot, url=url, key=key)
            self.snaps.saw(t.snap)
            if t.wid in (wid, mine):  # ours, trimmed since: its entries are in the snapshot
                at = index if t.wid == wid else 0
                self.writer.leasing.found_own(slot, t.lease_state)
                return [Position(slot, at + i) for i in range(k)]
        else:
            self.tail.learned(slot, got)
            rec = self.c.decode(got, slot, None)
            if rec.wid in (wid, mine):
                at = index if rec.wid == wid else 0
                if list(rec.entries[at : at + k]) != values:
                    raise ConfigError(
                        f"resume: slot {slot} holds this append's record, but not these "
                        "values at its position; give the same values as the append being "
                        "resumed"
                    )
                self.writer.leasing.found_own(slot, rec.lease_state)
                return [Position(slot, at + i) for i in range(k)]
        # another record is decided at the token's slot: the original can never be
        # decided. An earlier resume of this token may have appended the values after it
        # (and returned): look for its record up to the tail (reads every slot in between).
        found = self.find_own(slot + 1, mine)
        if found is not None:
            at_slot, state, entries = found
            if entries is not None and list(entries[:k]) != values:
                raise ConfigError(
                    f"resume: slot {at_slot} holds this append's resumed record, but not "
                    "these values; give the same values as the append being resumed"
                )
            self.writer.leasing.found_own(at_slot, state)
            return [Position(at_slot, i) for i in range(k)]
        # append the values now (an unknown outcome names the new slot's token)
        new = self.writer.commit(list(values), wid=mine)
        return [Position(new, i) for i in range(k)]

    def find_own(
        self, start: int, mine: str
    ) -> tuple[int, LeaseState, tuple[bytes, ...] | None] | None:
        """The first slot from ``start`` to the tail holding a record (or tombstone: no
        entries) with write id ``mine``; ``None`` when there is none (the tail is then
        known)."""
        slot = start
        while True:
            slots = list(range(slot, slot + 8))
            got = self.tail.exists_many(slots)
            for s in slots:
                data = got[s]
                if data is None:
                    # the end of the log, unless a later slot exists: then slot s is a
                    # hole (damage), and appending anew would fill it (simulator seed
                    # 18255 of damage): DamagedSlotError, nothing written. A record
                    # decided there meanwhile is searched like the rest.
                    data = self.tail.end_checked(s, dict(got))
                    if data is None:
                        return None
                if is_tombstone(data):
                    url, key = self.c.where(s)
                    t = tombstone_of(data, s, url=url, key=key)
                    self.snaps.saw(t.snap)
                    if t.wid == mine:
                        return s, t.lease_state, None
                    continue
                self.tail.learned(s, data)
                rec = self.c.decode(data, s, None)
                if rec.wid == mine:
                    return s, rec.lease_state, rec.entries
            slot += 8

    def propose_exact(
        self, values: list[bytes], slot: int, index: int, wid: str, mine: str
    ) -> bytes | None:
        """Propose at exactly ``slot`` (found free) a record of ``values`` with write id
        ``mine``; return the record decided there (``None``: waited out a lease, look
        again). Follows the writer lease like ``FencedWriter.commit``."""
        with self.c.state:
            seen = self.snaps.seen
        if slot <= seen:
            url, key = self.c.where(slot)
            raise DamagedSlotError(
                slot,
                f"missing below the snapshot at slot {seen} (a trimmed slot's tombstone was "
                "deleted): nothing was written by the resume",
                url=url,
                key=key,
            )
        if slot == 0:
            before: bytes | None = None
            prev = self.c.genesis
        else:
            before = self.writer.predecessor(
                slot, f"missing while the resumed slot {slot} was written to"
            )
            prev = chain_hash(before, slot - 1)
        leasing = self.writer.leasing
        plan = leasing.plan(slot - 1, leasing.state_of(slot - 1, before), None, 0.0, True)
        if plan is None:
            return self.cfg.fetch(slot)
        epoch, meta = plan
        _, conf = self.cfg.config_at(slot)
        rec = Record(
            slot, prev, self.c.writer_id, epoch, mine, tuple(values), lease=meta, conf=conf
        )
        data = rec.encode()
        self.writer.slot_writes += 1
        try:
            return self.cfg.decide(slot, data, self.c.runtime.token_bytes(16))
        except AmbiguousWriteError as exc:
            raise self.writer.unknown(slot, wid, exc, index=index) from exc
