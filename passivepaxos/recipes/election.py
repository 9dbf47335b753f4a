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
from collections.abc import Callable, Iterator

from passivepaxos.keepalive import KeepAlive
from passivepaxos.log import Log
from passivepaxos.recipes.lock import LockRecord, Locks, LockStatus

__all__ = ["Election"]


class Election:
    """A candidate for leader of ``name`` (see the module docstring). ``on_lost(reason)``
    is called once per term, from the keep-alive task, when the term ends without a
    ``resign``: the lock was taken over, or could not be refreshed in time."""

    def __init__(
        self,
        log: Log,
        name: str,
        *,
        ttl: float,
        candidate: str | None = None,
        on_lost: Callable[[str], object] | None = None,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.locks = Locks(log, owner=candidate)
        self.candidate = self.locks.owner
        self.term: int | None = None
        self.runtime = self.locks.runtime
        self.on_lost = on_lost
        self._keep: KeepAlive | None = None
        self.lost = self.runtime.event()  # set when the term ended without a resign

    def campaign(
        self,
        timeout: float = float("inf"),
        *,
        on_wait: Callable[[LockRecord, float], object] | None = None,
    ) -> int:
        """Become the leader (waiting up to ``timeout`` seconds); return the term (token).
        ``LockHeldError`` if another leader stayed alive that long. ``on_wait``: as for
        :meth:`Locks.acquire`, called once when the campaign starts waiting."""
        self.term = self.locks.acquire(self.name, self.ttl, wait=timeout, on_wait=on_wait)
        self._stop_keepalive()  # campaigning again: one keepalive task, never two
        self.lost.clear()
        self._keep = self.locks.keep_alive(self.name, on_lost=self._lost)
        return self.term

    def _lost(self, reason: str) -> None:
        self.lost.set()
        if self.on_lost is not None:
            self.on_lost(reason)

    def _stop_keepalive(self) -> None:
        if self._keep is not None:
            self._keep.stop()  # never waits for itself when called from its own task
            self._keep = None

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
