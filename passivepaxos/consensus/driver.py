"""Run the pure protocol generators of ``core`` against real stores.

Each yielded batch runs in parallel on a thread pool; a ``StoreError`` becomes that
operation's result (the core decides what a failure means), anything else is a bug and
propagates. A batch completes when all its operations have answered, so a store that is
slow (rather than failing) slows every round: there is no hedging yet.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from passivepaxos.capabilities import ListMode
from passivepaxos.consensus import core
from passivepaxos.errors import StoreError, UnsupportedError
from passivepaxos.store import Store

__all__ = ["execute", "learn", "propose", "run"]


def execute(stores: Sequence[Store], op: core.Op, sleep: Callable[[float], None]) -> object:
    """One operation; a ``StoreError`` is returned, not raised."""
    try:
        if isinstance(op, core.Get):
            return stores[op.store].get(op.key)
        if isinstance(op, core.Put):
            return stores[op.store].put(op.key, op.data, op.mode)
        if isinstance(op, core.List):
            return [m.key for m in stores[op.store].list(op.prefix, op.start_after)]
        sleep(op.seconds)
        return None
    except StoreError as exc:
        return exc


def run(
    gen: core.Proc[core.R],
    stores: Sequence[Store],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> core.R:
    """Drive ``gen`` to completion and return its result."""
    with ThreadPoolExecutor(max_workers=max(4, 2 * len(stores))) as pool:
        try:
            batch = next(gen)
            while True:
                if len(batch) == 1:
                    results = [execute(stores, batch[0], sleep)]
                else:
                    futs = [pool.submit(execute, stores, op, sleep) for op in batch]
                    results = [f.result() for f in futs]
                batch = gen.send(results)
        except StopIteration as stop:
            result: core.R = stop.value
            return result


def _mode(stores: Sequence[Store], mode: ListMode | str) -> ListMode:
    m = ListMode(mode)
    if m is ListMode.CREATE:
        missing = [s.url for s in stores if not s.capabilities.create]
        if missing:
            raise UnsupportedError(
                "create-if-absent is not supported by: " + ", ".join(missing),
                capability="create",
            )
    elif m is ListMode.CAS:
        raise UnsupportedError("consensus over cas lists is not implemented yet", capability="cas")
    return m


def propose(
    stores: Sequence[Store],
    instance: str,
    value: bytes,
    proposer_id: str,
    mode: ListMode | str = ListMode.CREATE,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    backoff: core.Backoff | None = None,
) -> bytes:
    """Propose ``value`` for ``instance``; return the decided value (maybe another's).

    Raises ``QuorumError`` naming the unreachable stores when no majority answers."""
    m = _mode(stores, mode)
    names = [s.url for s in stores]
    rng = rng or random.Random()
    gen: core.Proc[bytes]
    if m is ListMode.CREATE:
        gen = core.passive_proposer(names, instance, value, proposer_id, rng, backoff=backoff)
    else:
        gen = core.disk_proposer(names, instance, value, proposer_id, rng, backoff=backoff)
    return run(gen, stores, sleep=sleep)


def learn(
    stores: Sequence[Store], instance: str, mode: ListMode | str = ListMode.CREATE
) -> bytes | None:
    """Read-only: the decided value of ``instance`` or ``None`` if none is known."""
    m = _mode(stores, mode)
    return run(core.learner([s.url for s in stores], instance, m.value), stores)
