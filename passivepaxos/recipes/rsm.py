"""A replicated state machine on the log: apply every entry once, in log order.

``StateMachine(log, apply)`` keeps a cursor (the last entry applied) and feeds ``apply``
each entry after it, in the log's order, exactly once per ``StateMachine`` object. Every
process that runs the same deterministic ``apply`` over the same log therefore reaches the
same state after the same entry: that is all a replicated state machine needs, because the
log already decides the order (one slot at a time, no gaps, hash-chained).

Linearizable reads: :meth:`StateMachine.sync`
-------------------------------------------
Two ways to make a read reflect every write that completed before it started:

1. append a no-op "read marker" and apply up to it; or
2. read to a tail *discovered after the read started*.

We use (2). :meth:`Log.read` fetches slot after slot and stops at the first slot it finds
missing; that GET was issued after ``sync()`` began. A write that completed before
``sync()`` began has its slot (and, since the log has no gaps, every slot before it)
already stored, so the first missing slot lies beyond it and the read applies it. So
``sync()`` is linearizable without writing anything. (2) is cheaper (GETs only, no slot
consumed, no race with writers) and, decisively, works while another process holds the
log's writer lease: a marker append by a non-holder is refused with ``LeaseHeldError``.

Lease reads: :meth:`StateMachine.lease_sync`
-------------------------------------------
While *this* process holds the log's writer lease and :meth:`Log.lease_read` answers (the
read window, 0.75 x TTL of our own clock after the start of our last write, or less after
a shorter renewal; never while a record of ours is in flight or of unknown outcome),
nobody else can have appended after the head it reports, so applying up to that head is
enough: no request at all once we have applied it. Otherwise it returns ``False`` and the
caller falls back to :meth:`sync`.

Snapshots (the hook)
--------------------
If the log's newest snapshot holds *application state* (``Log.snapshot(state=...)``)
and the cursor is inside it, the entries cannot be read any more
(``CompactedError``): the state machine then calls ``restore(state, slot)`` (the
constructor argument) with the snapshot's bytes and continues after ``slot``. Without
``restore`` the ``CompactedError`` propagates. :meth:`StateMachine.snapshot` writes such a
snapshot from ``state()`` at a slot boundary the machine has fully applied.
"""

from __future__ import annotations

from collections.abc import Callable

from passivepaxos.errors import ConfigError, ResultCompactedError
from passivepaxos.log import Entry, Log, Position
from passivepaxos.recipes._entry import runtime_of
from passivepaxos.runtime import Runtime
from passivepaxos.snapshot import CompactedError, SnapshotInfo

__all__ = ["ResultCompactedError", "StateMachine", "new_id"]


def new_id(runtime: Runtime) -> str:
    """A fresh request / message id (128 random bits of ``runtime``, hex)."""
    return runtime.token_hex(16)


class StateMachine:
    """Apply the log's entries, in order, once each (see the module docstring).

    ``apply(entry)`` must be deterministic and must not raise for entries it does not
    understand (other recipes may share the log): ignore them. If ``apply`` raises, the
    entry counts as *not* applied and the exception propagates; the next catch-up retries
    it. Thread-safe: ``apply`` is never called concurrently."""

    def __init__(
        self,
        log: Log,
        apply: Callable[[Entry], None],
        *,
        restore: Callable[[bytes, int], None] | None = None,
        from_slot: int = 0,
    ) -> None:
        self.log = log
        self._apply = apply
        self._restore = restore
        # held across the log reads of a catch-up: a runtime lock, never a plain one
        self._mutex = runtime_of(log).rlock()
        self._next_slot = from_slot  # first slot not yet fully applied
        self._applied: Position | None = None  # the last entry applied
        self._done_slot = from_slot - 1  # every entry of slots <= this is applied

    @property
    def applied(self) -> Position | None:
        """Position of the last entry applied (``None``: none yet)."""
        with self._mutex:
            return self._applied

    @property
    def applied_slot(self) -> int:
        """Every entry of slots ``<= applied_slot`` has been applied."""
        with self._mutex:
            return self._done_slot

    def _skip(self, e: Entry) -> bool:
        return self._applied is not None and (e.slot, e.index) <= (
            self._applied.slot,
            self._applied.index,
        )

    def catch_up(self, through: Position | None = None, *, through_slot: int | None = None) -> None:
        """Apply entries up to the log's current end; or stop once the entry at ``through``
        is applied; or once every slot ``<= through_slot`` is applied."""
        with self._mutex:
            if through is not None and self._applied is not None and through <= self._applied:
                return
            if through_slot is not None and self._done_slot >= through_slot:
                return
            while True:
                try:
                    self._run(through, through_slot)
                    return
                except CompactedError as exc:
                    self._load_state(exc.snapshot)

    def _run(self, through: Position | None, through_slot: int | None) -> None:
        last_slot = None
        # fetch nothing past the slot we have to reach
        ends = [
            b for b in (None if through is None else through.slot, through_slot) if b is not None
        ]
        bound = min(ends, default=None)
        for e in self.log.read(self._next_slot, to_slot=bound):
            if last_slot is not None and e.slot != last_slot:
                self._done_slot = max(self._done_slot, e.slot - 1)
            last_slot = e.slot
            self._next_slot = e.slot  # until the slot is done, re-read it (skipping)
            if self._skip(e):
                continue
            self._apply(e)
            self._applied = Position(e.slot, e.index)
            if through is not None and self._applied >= through:
                return
        # reached the end found by the read: every slot before it is complete
        if last_slot is not None:
            self._done_slot = max(self._done_slot, last_slot)
            self._next_slot = max(self._next_slot, last_slot + 1)
        if through_slot is not None:
            # slots up to through_slot with no entries (lease records) are complete too
            self._done_slot = max(self._done_slot, through_slot)
            self._next_slot = max(self._next_slot, through_slot + 1)

    def _load_state(self, covering: int) -> None:
        if self._restore is None:
            raise CompactedError(self._next_slot, covering, self.log.url)
        snap = self.log.newest_snapshot()
        if snap is None or snap.state is None or snap.slot < covering:
            raise CompactedError(self._next_slot, covering, self.log.url)
        self._restore(snap.state, snap.slot)
        self._next_slot = snap.slot + 1
        self._done_slot = snap.slot
        self._applied = Position(snap.slot, 1 << 62)  # everything of slot s is in the state

    def sync(self) -> None:
        """Linearizable catch-up: apply every entry whose append completed before this call
        started (and maybe more). GETs only; never writes (module docstring)."""
        self.catch_up()

    def lease_sync(self) -> bool:
        """If this process holds the log's writer lease inside its read window, apply up to
        the head it reports (no request once applied) and return True; else False."""
        lr = self.log.lease_read()
        if lr is None:
            return False
        self.catch_up(through_slot=lr.head)
        return True

    def barrier(self, *, lease: bool = True) -> str:
        """A linearizable read barrier: the lease path when possible (``lease``), else
        :meth:`sync`. Returns ``"lease"`` or ``"log"``: which one was used."""
        if lease and self.lease_sync():
            return "lease"
        self.sync()
        return "log"

    def snapshot(self, state: Callable[[], bytes]) -> SnapshotInfo:
        """Write an application-state snapshot of this machine at the last slot it has
        fully applied (``state()`` is called under the machine's lock)."""
        with self._mutex:
            if self._done_slot < 0:
                raise ConfigError("nothing applied yet: nothing to snapshot")
            return self.log.snapshot(state(), slot=self._done_slot)
