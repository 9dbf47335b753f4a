"""Group commit: concurrent appends of one ``Log`` object share a slot.

One caller at a time leads: it takes the queue (up to ``max_batch_entries`` values and
``max_batch_bytes`` bytes), writes it as ONE record through the fenced writer, hands each
caller its positions (or its share of the error: an unknown outcome names each caller's
own index, so each resumes its own values) and then hands leadership on, to a waiting
``lead()`` caller first (claim, renew, release, a resume, a membership change), else to
the oldest queued append (woken alone), else to nobody.

``submit_async`` (``Log.append_async``) queues an append and returns a future: one worker
runs the queued appends' turns in call order, so a producer can have many appends in
flight, they share slots as they queue up, and their futures complete in log order. When
a slot holding async appends fails, the pipeline *breaks*: the async appends still queued
behind it, and every later one until ``restart_pipeline()``, are not written
(``PipelineAbortedError``), so the log never holds a later value of a pipeline without an
earlier one that failed.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from passivepaxos import deadline as deadlines
from passivepaxos.errors import (
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    ConfigError,
    DeadlineExceededError,
    PassivePaxosError,
    PipelineAbortedError,
)
from passivepaxos.log.record import Position
from passivepaxos.runtime import ConditionLike, Pool, Runtime

__all__ = ["GroupCommit", "Pending"]


class Pending:
    """One ``append`` call waiting in the group-commit queue (fields guarded by the
    batcher's ``lock``). ``wake`` exists only while the caller waits for another leader."""

    __slots__ = ("done", "error", "lead", "limit", "piped", "result", "taken", "values", "wake")

    def __init__(self, values: list[bytes], *, piped: bool = False) -> None:
        self.values = values
        self.piped = piped  # queued by submit_async
        self.result: list[Position] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False  # leadership handed to this caller by the previous leader
        # taken off the queue into a leader's round: its values may land from now on, so
        # the caller waits for the round's answer, never withdraws
        self.taken = False
        self.wake: ConditionLike | None = None
        self.limit = deadlines.current()  # the caller's deadline (made in its thread)


class GroupCommit:
    """The queue of one ``Log`` object's appends and its leadership."""

    def __init__(
        self,
        runtime: Runtime,
        commit: Callable[[list[bytes]], int],
        after: Callable[[], None],
        *,
        in_doubt: Callable[[], AppendOutcomeUnknownError | None] = lambda: None,
        max_batch_entries: int,
        max_batch_bytes: int,
    ) -> None:
        self.runtime = runtime
        self.commit = commit  # writes one record; its slot
        self.after = after  # after a successful commit (the tail hint)
        # after an interrupt (Ctrl-C) inside commit: the record it may have sent, as an
        # unknown outcome for the round's other callers (None: nothing was sent)
        self.in_doubt = in_doubt
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
        self.pipe: Pool | None = None  # submit_async's one worker, made on first use
        self.broken: BaseException | None = None  # the failure that broke the pipeline
        self.closed = False

    def submit(self, vals: list[bytes]) -> list[Position]:
        """Append ``vals`` (non-empty) in one slot, maybe shared; their positions."""
        return self.run(Pending(vals), enqueue=True)

    def submit_async(self, vals: list[bytes]) -> Future[list[Position]]:
        """Queue ``vals`` now (their place in the log follows the calls' order) and return
        a future of their positions; one worker runs the queued turns in order."""
        p = Pending(vals, piped=True)
        with self.lock:
            if self.closed:
                raise ConfigError("append_async: the log is closed (nothing was written)")
            if self.broken is not None:
                done: Future[list[Position]] = Future()
                done.set_exception(self.aborted(self.broken))
                return done
            if self.pipe is None:
                self.pipe = self.runtime.pool(1, "ppx-pipeline")
            pipe = self.pipe
            self.queue.append(p)
            try:
                return pipe.submit(self.run, p)
            except BaseException:
                self.queue.remove(p)  # never written later for a caller told "error"
                raise

    def restart_pipeline(self) -> None:
        """After a failure broke the pipeline: accept async appends again."""
        with self.lock:
            self.broken = None

    def close(self) -> None:
        """Refuse new async appends; wait for the queued ones (their futures complete).
        Without any async append so far, no lock is taken (the flag alone refuses later
        ones): a close is then exactly what it was before pipelining, which keeps the
        simulator's schedules, and their seeds' power, as they were (taking the lock here
        moved issue 10's finding 1 from seed 14 of ``stale`` to seed 1929)."""
        self.closed = True
        if self.pipe is None:
            return
        with self.lock:
            pipe = self.pipe
        if pipe is not None:
            pipe.shutdown(wait=True)

    def run(self, p: Pending, *, enqueue: bool = False) -> list[Position]:
        """Wait for ``p`` (queued now if ``enqueue``, in the same critical section as the
        look at the leadership) to be written by the leader, or lead until it is."""
        with self.lock:
            if enqueue:
                self.queue.append(p)
            if p.done:
                pass
            elif self.leading:
                p.wake = self.runtime.condition(self.lock)
                limit = deadlines.current()
                try:
                    while not p.done:
                        left = None if limit is None else limit.left()
                        if not p.taken and left is not None and left <= 0:
                            # still queued (no round took it): nothing of it was sent; not
                            # written, withdrawn below (also when the lead was handed to
                            # it: a caller out of time never leads a round for the others)
                            assert limit is not None
                            raise DeadlineExceededError(
                                f"{limit.describe()} passed while the append waited for "
                                "another append's round: nothing was written"
                            )
                        if p.lead:
                            break
                        # taken by a round: its answer settles us (the leader's own
                        # deadline bounds the round), however long our own time is
                        p.wake.wait() if left is None or p.taken else p.wake.wait(left)
                except BaseException as exc:  # interrupted while waiting: withdraw
                    p.wake = None
                    if not p.done:
                        if p.piped and not p.taken and isinstance(exc, Exception):
                            # not written: the pipeline's later values must not land alone
                            self.abort_piped(exc)
                        # a round that took it may still write it (an interrupt, not a
                        # deadline, got here): nothing more can be done for it
                        with contextlib.suppress(ValueError):
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
                nxt.taken = True
                batch.append(queue.popleft())
                n, size = n + k, size + b
        if not batch:
            return
        # a round that carries other callers' values is not stopped by the leader's own
        # cancellation (passivepaxos.aio), only once all its callers are cancelled
        alone = len(batch) == 1
        try:
            with (
                contextlib.nullcontext()
                if alone
                else deadlines.round_scope([q.limit for q in batch])
            ):
                slot = self.commit(
                    batch[0].values if alone else [v for q in batch for v in q.values]
                )
        except Exception as exc:
            self.settle(batch, None, exc)
            return
        except BaseException as exc:  # an interrupt: the round's record may be in the log
            try:
                doubt = self.in_doubt()
            except BaseException:  # interrupted again: the round's callers must not hang
                self.settle(
                    batch,
                    None,
                    AmbiguousWriteError(
                        "append outcome unknown: the append leading its round was "
                        "interrupted while it sent the round's record"
                    ),
                )
                raise
            if doubt is not None:
                exc.add_note(f"the round's record may be in the log: {doubt}")
            self.settle(
                batch,
                None,
                doubt
                or PassivePaxosError(
                    "append not written: the append leading its round was interrupted "
                    "before it sent anything"
                ),
            )
            raise
        self.settle(batch, slot, None)
        self.after()

    def settle(self, batch: list[Pending], slot: int | None, exc: BaseException | None) -> None:
        """Give each caller of a round its positions or its share of the error."""
        index = 0
        with self.lock:
            if exc is not None and any(q.piped for q in batch):
                self.abort_piped(exc)
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

    def abort_piped(self, exc: BaseException) -> None:
        """(``lock`` held) A slot holding async appends failed: the pipeline breaks; the
        async appends queued behind it are not written (``PipelineAbortedError``), nor
        any later one until ``restart_pipeline``."""
        self.broken = exc
        for q in [q for q in self.queue if q.piped]:
            self.queue.remove(q)
            q.error = self.aborted(exc)
            q.done = True
            if q.wake is not None:
                q.wake.notify()

    @staticmethod
    def aborted(exc: BaseException) -> PipelineAbortedError:
        return PipelineAbortedError(
            "append not written: an earlier append_async of this Log failed "
            f"({type(exc).__name__}: {exc}); handle that (resume it if its outcome is "
            "unknown), then call restart_pipeline() and append again",
            exc,
        )

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
