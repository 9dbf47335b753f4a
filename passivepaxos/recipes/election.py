"""Leader election on a lock (:mod:`passivepaxos.recipes.lock`).

The leader of ``name`` is the holder of the lock ``name``; its term is the lock's fencing
token, which strictly increases from leader to leader. ``campaign`` acquires the lock
(waiting while another leader is alive) and keeps it refreshed in a background task (of the
log's runtime, ``passivepaxos.runtime``: a thread in production);
``resign`` releases it. ``is_leader`` is the *local* belief, valid only within 0.75 x ttl of
our own clock after the last successful refresh (see the lock module for the clock-drift
argument and its clock assumptions); a leader that acts on shared resources must pass its
term as a fencing token. Each ``Election`` object is a candidate of its own unless
``candidate`` names one (two objects naming the same candidate are one leader).

Failures: a leader that cannot refresh (crash, partition, store outage) is replaced by a
campaigner after the ttl of that campaigner's own clock; its refreshes then fail
(``LockLostError``) and ``is_leader`` turns False. A store outage stalls campaigns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextvars import ContextVar

from passivepaxos.errors import ConfigError, PassivePaxosError
from passivepaxos.log import Log
from passivepaxos.recipes._entry import spawn_detached
from passivepaxos.recipes.lock import LockLostError, Locks, LockStatus
from passivepaxos.runtime import EventLike, Task

__all__ = ["Election"]

# the Election whose keepalive task runs in this context (set by the task itself: a task
# runs in a copy of its starter's context, so this marks that task only)
_keepalive_of: ContextVar[Election | None] = ContextVar("ppx_election_keepalive", default=None)


class Election:
    def __init__(self, log: Log, name: str, *, ttl: float, candidate: str | None = None) -> None:
        self.name = name
        self.ttl = ttl
        self.locks = Locks(log, owner=candidate)
        self.candidate = self.locks.owner
        self.term: int | None = None
        self.runtime = self.locks.runtime
        self._stop = self.runtime.event()
        self._thread: Task | None = None  # the keepalive (a thread in production)
        self.lost = self.runtime.event()  # set when a refresh found the lock taken over

    def campaign(self, timeout: float = float("inf")) -> int:
        """Become the leader (waiting up to ``timeout`` seconds); return the term (token).
        ``LockHeldError`` if another leader stayed alive that long."""
        self.term = self.locks.acquire(self.name, self.ttl, wait=timeout)
        self._stop_keepalive()  # campaigning again: one keepalive thread, never two
        self.lost.clear()
        self._stop = self.runtime.event()
        self._thread = spawn_detached(
            self.runtime, self._keepalive, self._stop, name="ppx-election"
        )
        return self.term

    def _keepalive(self, stop: EventLike) -> None:
        _keepalive_of.set(self)
        while not stop.wait(self.ttl / 3):
            try:
                self.locks.refresh(self.name)
            except (LockLostError, ConfigError):
                # lost, or no longer held by this object (released / refused): nothing
                # left to keep alive
                self.lost.set()
                return
            except PassivePaxosError:
                continue

    def _stop_keepalive(self) -> None:
        self._stop.set()
        if self._thread is not None:
            if _keepalive_of.get() is not self:  # the keepalive never waits for itself
                self._thread.join()
            self._thread = None

    def is_leader(self) -> bool:
        return not self.lost.is_set() and self.locks.valid(self.name)

    def resign(self) -> None:
        """Stop refreshing and release the lock (if still ours)."""
        self._stop_keepalive()
        if self.term is not None:
            self.locks.release(self.name, self.term)
            self.term = None

    def leader(self) -> LockStatus:
        """The current leader (``holder``) and term (``token``), read through the log."""
        return self.locks.status(self.name)

    def observe(self, *, stop: threading.Event | None = None) -> Iterator[tuple[str | None, int]]:
        """(leader, term) at every change, in log order; ``None`` leader: nobody leads."""
        for rec in self.locks.follow_lock(self.name, stop=stop):
            yield rec.holder, rec.token
