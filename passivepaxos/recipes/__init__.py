"""Coordination recipes built on :class:`passivepaxos.log.Log` (docs/recipes.md).

- :mod:`.tob`: total order broadcast (``broadcast`` / ``deliver``);
- :mod:`.rsm`: a replicated state machine helper (``StateMachine``);
- :mod:`.kv`: a key-value store with compare-and-set on the state machine;
- :mod:`.lock`: named locks with fencing tokens and an example fenced resource;
- :mod:`.election`: leader election on a lock.

They add no storage code: every command is an entry of the log, decided by its order.
"""

from __future__ import annotations

from passivepaxos.recipes.election import Election
from passivepaxos.recipes.kv import KV, CasResult, Change
from passivepaxos.recipes.lock import (
    FencedResource,
    LockHeldError,
    LockLostError,
    Locks,
    LockStatus,
    StaleTokenError,
)
from passivepaxos.recipes.rsm import StateMachine
from passivepaxos.recipes.tob import Broadcast, Delivery

__all__ = [
    "KV",
    "Broadcast",
    "CasResult",
    "Change",
    "Delivery",
    "Election",
    "FencedResource",
    "LockHeldError",
    "LockLostError",
    "LockStatus",
    "Locks",
    "StaleTokenError",
    "StateMachine",
]
