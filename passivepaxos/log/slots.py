"""Slot I/O: decide or learn ONE slot on a given store set (the only mode-aware code).

- one store in ``create`` mode: ONE create-if-absent of ``log/<i:020d>``; a loser finds
  the winner's record in ``AlreadyExistsError.current``; an unclear create is read back
  (:meth:`SlotIO.resolve_create`), never reported as "not written";
- a quorum (any mode) or one ``cas`` / ``blocks`` store: consensus on instance
  ``log/<i:020d>`` (``consensus.driver.propose``); learning runs ``core.learner`` and, when
  it cannot tell, ``core.finisher`` (adopt the highest accepted value, invent none).

Which store set a slot uses is not decided here: the configuration view
(:mod:`passivepaxos.log.config`) passes it in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    DamagedSlotError,
    InvalidObjectError,
    QuorumError,
    StoreError,
    StragglerError,
    TransientError,
)
from passivepaxos.fanout import STRAGGLER_GRACE
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import bare, slot_instance, why_unknown
from passivepaxos.manifest import MemberStore
from passivepaxos.retry import Backoff
from passivepaxos.store import Store
from passivepaxos.types import PutMode

if TYPE_CHECKING:
    from passivepaxos.consensus import core

__all__ = ["SlotIO"]

# _consensus: the Paxos core and driver are imported by the methods that run them (a quorum,
# or a cas / blocks store) on their first call, never by a single create store: ~3.5 ms of
# every CLI process's start with bytecode compiled (issue 12: the CLI imports only what the
# URL needs).

# after an unclear create, read back at 0.04, 0.08, ... 0.64 s (see resolve_create)
_READ_BACK = Backoff(0.02, 1.0, floor=1.0)


class SlotIO:
    """Requests for one slot at a time; no view of the log beyond that slot."""

    def __init__(self, c: LogContext) -> None:
        self.c = c
        self.members: dict[str, MemberStore] = {}
        self.members_lock = c.runtime.lock()  # voters runs on the read-ahead threads too

    def close(self) -> None:
        for m in list(self.members.values()):
            m.close()

    def get(self, slot: int) -> bytes | None:
        """One create store: the object of ``slot``, ``None`` if absent."""
        key = slot_instance(slot)
        try:
            got = self.c.stores[0].get(key)
        except InvalidObjectError as exc:
            raise DamagedSlotError(
                slot, f"unreadable object ({bare(exc)})", url=self.c.stores[0].url, key=key
            ) from None
        return None if got is None else got[0]

    def create(self, slot: int, data: bytes, frame_wid: bytes) -> bytes:
        """One create store: try to make ``data`` the record of ``slot``; the record there."""
        instance = slot_instance(slot)
        store = self.c.stores[0]
        try:
            store.put(instance, data, PutMode.CREATE, write_id=frame_wid)
            return data
        except AlreadyExistsError as exc:
            if exc.current is not None:
                return exc.current[0]
        except (AmbiguousWriteError, TransientError) as exc:
            return self.resolve_create(slot, data, frame_wid, exc)
        got = self.get(slot)
        if got is None:  # vanished (trimmed?): never report a result not established
            raise AmbiguousWriteError(
                f"slot {slot}: create refused but no record found", url=store.url, key=instance
            )
        return got

    def propose(
        self, slot: int, stores: Sequence[Store], data: bytes, *, lead: bool = False
    ) -> bytes:
        """Consensus on ``slot``'s instance over ``stores``; the record decided there.
        ``lead``: open with a leader's ACCEPT (the caller is the slot's only leader)."""
        from passivepaxos.consensus import driver  # see _consensus

        return driver.propose(
            self.voters(stores),
            slot_instance(slot),
            data,
            self.c.writer_id,
            self.c.mode,
            rng=self.c.runtime.rng,
            sleep=self.c.runtime.sleep,
            lead=lead,
        )

    def voters(self, stores: Sequence[Store]) -> Sequence[Store]:
        """The stores a proposal counts, each checked to still hold this log's manifest
        (:class:`MemberStore`: one GET per store and batch of a slot's requests, in
        parallel with that batch) when the log was opened from its manifest and is a
        quorum. Every decision and every learn of a slot goes through here."""
        if self.c.manifest is None or len(stores) < 2:
            return stores
        out = []
        with self.members_lock:
            for s in stores:
                m = self.members.get(s.url)
                if m is None or m.inner is not s:
                    if m is not None:
                        m.close()
                    m = self.members[s.url] = MemberStore(s, self.c.manifest)
                out.append(m)
        return out

    def resolve_create(self, slot: int, data: bytes, frame_wid: bytes, cause: StoreError) -> bytes:
        """After an unclear create: read back; resend the identical bytes while the slot is
        free (they can only land on this slot); give up with ``AmbiguousWriteError``. The
        create was sent, so *any* store failure from here on (a plain deadline or transient
        error of a read-back included) leaves the outcome unknown, never "not written"; the
        pauses between read-backs are cut to the time the store's deadline leaves."""
        store = self.c.stores[0]
        key = slot_instance(slot)
        window = store._window()  # the deadline the create ran under, if any
        for attempt in range(1, 6):
            pause = _READ_BACK.delay(attempt, self.c.runtime.rng)
            if window is not None and window.left() <= pause:
                break  # no time left for another read-back
            self.c.runtime.sleep(pause)
            try:
                got = self.get(slot)
                if got is not None:
                    return got
                store.put(key, data, PutMode.CREATE, write_id=frame_wid)
                return data
            except AlreadyExistsError as exc:
                if exc.current is not None:
                    return exc.current[0]
            except StoreError as exc:
                cause = exc
        raise AmbiguousWriteError(
            f"the create was sent but not confirmed: {why_unknown(cause)}",
            url=store.url,
            key=key,
        ) from cause

    def learn(self, slot: int, stores: Sequence[Store]) -> bytes | None:
        """The record decided at ``slot``, or ``None`` only when the slot is provably
        undecided: ``core.learner`` found a majority of its stores answering in full and
        holding nothing for it (no marker, nothing accepted). When the learner cannot tell
        (a store down, a value accepted but not seen chosen) the slot is *finished*:
        ``core.finisher`` runs a proposer phase that adopts the highest accepted value and
        invents none, so it returns the record or proves the slot empty; without a
        majority it raises ``QuorumError``. Never "absent" for "could not tell". (Before
        finishing it reads once more, about one round trip later: a decision in flight
        usually completes meanwhile, and a finisher's PREPARE would cost its writer a
        round.)"""
        from passivepaxos.consensus import core, driver  # see _consensus

        instance = slot_instance(slot)
        names = [s.url for s in stores]
        started = self.c.runtime.monotonic()
        # the learner and the finisher count a store only while it holds this log's
        # manifest, like a proposal (voters): a wiped store's empty lists must not read
        # as "nothing accepted" nor vote in the finisher's rounds
        stores = self.voters(stores)
        got, errors = self.run_core(core.learner(names, instance, self.c.mode.value), stores)
        if got.state == core.UNKNOWN and len(errors) <= len(stores) // 2:
            # Most often a decision in flight (its ACCEPTs landing one by one): read once
            # more after about one round trip before finishing the instance, whose PREPARE
            # would cost that writer a round. Only liveness depends on this pause.
            took = max(0.005, self.c.runtime.monotonic() - started)
            self.c.runtime.sleep(Backoff(took, 0.25, floor=1.0).delay(0, self.c.runtime.rng))
            got, errors = self.run_core(core.learner(names, instance, self.c.mode.value), stores)
        if got.state == core.DECIDED:
            return got.value
        invalid = [e for e in errors.values() if isinstance(e, InvalidObjectError)]
        if invalid:
            raise DamagedSlotError(
                slot, f"unreadable object ({bare(invalid[0])})", url=invalid[0].url, key=instance
            )
        if got.state == core.UNDECIDED:
            return None
        n = len(stores)
        if n - len(errors) < n // 2 + 1:
            bad = "; ".join(str(e) for e in errors.values())
            raise QuorumError(
                f"cannot read slot {slot} of {self.c.url}: no majority of stores answered: {bad}"
            )
        finish = core.finisher(
            names, instance, self.c.mode.value, self.c.writer_id, self.c.runtime.rng
        )
        try:
            value: bytes | None = driver.run(finish, stores, sleep=self.c.runtime.sleep)
        except QuorumError as exc:
            raise QuorumError(f"cannot read slot {slot} of {self.c.url}: {exc}") from None
        return value

    def run_core(
        self, gen: core.Proc[core.R], stores: Sequence[Store]
    ) -> tuple[core.R, dict[int, StoreError]]:
        """Drive a core generator over ``stores`` (batches in parallel on the fan-out
        pool); its result and the last error of each store that failed."""
        from passivepaxos.consensus import core, driver  # see _consensus

        errors: dict[int, StoreError] = {}
        sending: list[Store] | None = None
        try:
            batch = next(gen)
            while True:
                ops = list(batch)
                sending = driver.begin_batch(stores, ops, sending)
                if self.c.fanout is not None and len(ops) > 1:
                    futs = [
                        self.c.fanout.submit(driver.execute, sending, op, self.c.runtime.sleep)
                        for op in ops
                    ]
                    # Under a deadline a store with no answer once a majority answered is a
                    # straggler after a grace (waiting for a hung one would only spend the
                    # deadline). Without one every answer is waited for: cutting a store
                    # that is merely slow turns "decided" into "could not tell", and readers
                    # then finish slots writers are still deciding (duelling: a busy quorum
                    # log with a membership change ran 40x slower when it always cut).
                    if any(st._window() is not None for st in stores):
                        groups = [getattr(op, "store", -1) for op in ops]
                        driver.settle(futs, groups, STRAGGLER_GRACE, runtime=self.c.runtime)
                    else:
                        self.c.runtime.wait(futs)
                    results = [
                        f.result()
                        if f.done()
                        else StragglerError(
                            "no answer while a majority did",
                            url=stores[getattr(op, "store", 0)].url,
                        )
                        for op, f in zip(ops, futs, strict=True)
                    ]
                else:
                    results = [driver.execute(sending, op, self.c.runtime.sleep) for op in ops]
                for op, r in zip(ops, results, strict=True):
                    if isinstance(r, StoreError) and isinstance(
                        op, core.Get | core.Put | core.List
                    ):
                        errors[op.store] = r
                batch = gen.send(results)
        except StopIteration as stop:
            result: core.R = stop.value
        return result, errors
