"""Group commit: concurrent appends of one ``Log`` object share a slot.

One caller at a time leads: it takes the queue (up to ``max_batch_entries`` values and
``max_batch_bytes`` bytes), writes it as ONE record through the fenced writer, hands each
caller its positions (or its share of the error: an unknown outcome names each caller's
own index, so each resumes its own values) and then hands leadership on, to a waiting
``lead()`` caller first (claim, renew, release, a resume, a membership change), else to
the oldest queued append (woken alone), else to nobody.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator

from passivepaxos.errors import AppendOutcomeUnknownError
from passivepaxos.log.record import Position
from passivepaxos.runtime import ConditionLike, Runtime

__all__ = ["GroupCommit", "Pending"]


class Pending:
    """One ``append`` call waiting in the group-commit queue (fields guarded by the
    batcher's ``lock``). ``wake`` exists only while the caller waits for another leader."""

    __slots__ = ("done", "error", "lead", "result", "values", "wake")

    def __init__(self, values: list[bytes]) -> None:
        self.values = values
        self.result: list[Position] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False  # leadership handed to this caller by the previous leader
        self.wake: ConditionLike | None = None


class GroupCommit:
    """The queue of one ``Log`` object's appends and its leadership."""

    def __init__(
        self,
        runtime: Runtime,
        commit: Callable[[list[bytes]], int],
        after: Callable[[], None],
        *,
        max_batch_entries: int,
        max_batch_bytes: int,
    ) -> None:
        self.runtime = runtime
        self.commit = commit  # writes one record; its slot
        self.after = after  # after a successful commit (the tail hint)
        self.max_batch_entries = max_batch_entries
        self.max_batch_bytes = max_batch_bytes
        # guarded by lock: one leader at a time commits the queue; a waiting caller sleeps
        # on its own condition, woken once (its result, or the leadership handed on to
        # it); lead() callers wait on cond
        self.lock = runtime.lock()
        self.cond = runtime.condition(self.lock)
        self.queue: collections.deque[Pending] = collections.deque()
        self.leading = False
        self.lead_waiters = 0

    def submit(self, vals: list[bytes]) -> list[Position]:
        """Append ``vals`` (non-empty) in one slot, maybe shared; their positions."""
        p = Pending(vals)
        with self.lock:
            self.queue.append(p)
            if self.leading:
                p.wake = self.runtime.condition(self.lock)
                try:
                    while not p.done and not p.lead:
                        p.wake.wait()
                except BaseException:  # interrupted while waiting: withdraw
                    p.wake = None
                    if not p.done:
                        self.queue.remove(p)
                        if p.lead:
                            self.hand_on()
                    raise
                p.wake = None
            else:
                self.leading = True
        if not p.done:  # we lead (taken, or handed on to us): commit until ours is done
            try:
                while not p.done:
                    self.lead_round()
            finally:
                with self.lock:
                    if not p.done:  # interrupted: never commit it later for a gone caller
                        with contextlib.suppress(ValueError):
                            self.queue.remove(p)
                    self.hand_on()
        if p.error is not None:
            raise p.error
        assert p.result is not None
        return p.result

    def hand_on(self) -> None:
        """Give up leadership (``lock`` held): to a waiting ``lead()`` caller first (it
        would starve under a steady stream of appends otherwise), else to the oldest queued
        append (woken alone, no thundering herd), else to nobody."""
        if self.lead_waiters:
            self.leading = False
            self.cond.notify_all()
            return
        for q in self.queue:
            if q.wake is not None:
                self.leading = True
                q.lead = True
                q.wake.notify()
                return
        self.leading = False

    def lead_round(self) -> None:
        with self.lock:
            batch: list[Pending] = []
            n = size = 0
            queue = self.queue
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
            slot = self.commit(
                batch[0].values if len(batch) == 1 else [v for q in batch for v in q.values]
            )
        except BaseException as exc:
            self.settle(batch, None, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.settle(batch, slot, None)
        self.after()

    def settle(self, batch: list[Pending], slot: int | None, exc: BaseException | None) -> None:
        index = 0
        with self.lock:
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

    @contextlib.contextmanager
    def lead(self) -> Iterator[None]:
        """Be the group-commit leader (no append of this object runs meanwhile)."""
        with self.lock:
            self.lead_waiters += 1
            try:
                while self.leading:
                    self.cond.wait()
            except BaseException:  # interrupted: do not leave queued appends asleep
                self.lead_waiters -= 1
                if not self.leading:
                    self.hand_on()
                raise
            self.lead_waiters -= 1
            self.leading = True
        try:
            yield
        finally:
            with self.lock:
                self.hand_on()
