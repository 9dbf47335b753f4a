"""Run the pure protocol generators of ``core`` against real stores.

Each yielded batch runs in parallel, as tasks of the stores' runtime; a ``StoreError``
becomes that operation's result (the core decides what a failure means), anything else is
a bug and propagates. A batch completes when all its operations have answered or, after a grace
period, when a majority of its stores have: a slow store does not hold up a decision.
Time, sleeps, randomness and tasks come from the stores' runtime (``passivepaxos.runtime``:
the simulator runs this same code on a virtual one), or from one passed as ``runtime=``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from passivepaxos import telemetry
from passivepaxos.capabilities import ListMode
from passivepaxos.consensus import core
from passivepaxos.errors import QuorumError, StoreError, StragglerError, UnsupportedError
from passivepaxos.fanout import (
    STRAGGLER_GRACE,
    DaemonPool,
    each_store,
    runtime_of,
    settle,
    wait_result,
)
from passivepaxos.retry import Backoff
from passivepaxos.runtime import Runtime
from passivepaxos.store import Store
from passivepaxos.types import require_bytes

__all__ = [
    "DaemonPool",
    "begin_batch",
    "each_store",
    "execute",
    "learn",
    "propose",
    "run",
    "runtime_of",
    "settle",
    "wait_result",
]

T = TypeVar("T")


def execute(
    stores: Sequence[Store], op: core.Op, sleep: Callable[[float], None] | None = None
) -> object:
    """One operation; a ``StoreError`` is returned, not raised. A ``Sleep`` sleeps with
    ``sleep``, default the stores' runtime's."""
    try:
        if isinstance(op, core.Get):
            return stores[op.store].get(op.key)
        if isinstance(op, core.Put):
            return stores[op.store].put(op.key, op.data, op.mode)
        if isinstance(op, core.List):
            return [m.key for m in stores[op.store].list(op.prefix, op.start_after)]
        (sleep or runtime_of(stores).sleep)(op.seconds)
        return None
    except StoreError as exc:
        return exc


_MARKER = core.decided_key("")  # the end of every DECIDED marker key


def begin_batch(
    stores: Sequence[Store], batch: Sequence[core.Op], previous: Sequence[Store] | None = None
) -> list[Store]:
    """The stores to send ``batch`` to: each store wrapped for a membership check
    (``manifest.MemberStore``) that the batch sends a checked request is replaced by a view
    of its own (``for_batch``), so the batch's first checked request to each instance sends
    a fresh manifest GET beside it, and no other batch (a later one, another thread's) can
    reuse that check. A pause between two batches (phase 1 and phase 2 of one round, a
    retry) therefore cannot let a store wiped meanwhile count with a check made before the
    wipe (simulation seed 35768 of ``amnesia``).

    A DECIDED marker is a fact only when its store is this log's: marker GETs are checked
    like every read (a store re-used by another log holds that log's markers under the
    same keys). A marker PUT (a fact being recorded, not a vote) goes through the
    ``previous`` batch's view of its store: phase 2's check, one round trip earlier, keeps
    it out of a store that is not a member, at no extra request.
    """
    out = list(stores)
    fresh: set[int] = set()
    for op in batch:
        if isinstance(op, core.Sleep):
            continue
        if isinstance(op, core.Put) and op.key.endswith(_MARKER):
            if previous is not None and op.store not in fresh:
                out[op.store] = previous[op.store]
            continue
        if op.store in fresh:
            continue
        for_batch = getattr(stores[op.store], "for_batch", None)
        if for_batch is not None:
            out[op.store] = for_batch()
            fresh.add(op.store)
    return out


def run(
    gen: core.Proc[core.R],
    stores: Sequence[Store],
    *,
    sleep: Callable[[float], None] | None = None,
    straggler_grace: float = STRAGGLER_GRACE,
    runtime: Runtime | None = None,
) -> core.R:
    """Drive ``gen`` to completion and return its result.

    A batch ends when every operation answered, or once a majority of the stores it
    touches have answered and the rest have had ``max(straggler_grace, 2 x the time the
    majority took)`` more: a slow store then gets a ``TransientError`` result, which the
    core counts as a lost message (its request may still land later, which the protocols
    already tolerate), so one slow store does not slow every round. ``runtime`` (default
    the stores', :func:`runtime_of`) runs the batches and, unless ``sleep`` is given, the
    core's ``Sleep``s."""
    rt = runtime or runtime_of(stores)
    pause = sleep or rt.sleep
    pool = DaemonPool(rt)  # a hung store's request must not hold the process at exit
    sending: list[Store] | None = None
    try:
        batch = next(gen)
        while True:
            sending = begin_batch(stores, batch, sending)
            if len(batch) == 1:
                results = [execute(sending, batch[0], pause)]
            else:
                results = _run_batch(pool, sending, batch, pause, straggler_grace)
            batch = gen.send(results)
    except StopIteration as stop:
        result: core.R = stop.value
        return result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _run_batch(
    pool: DaemonPool,
    stores: Sequence[Store],
    batch: Sequence[core.Op],
    sleep: Callable[[float], None],
    grace: float,
) -> list[object]:
    futs = [pool.submit(execute, stores, op, sleep) for op in batch]
    settle(futs, [getattr(op, "store", -1) for op in batch], grace, runtime=pool.runtime)
    results: list[object] = []
    for op, fut in zip(batch, futs, strict=True):
        if fut.done():
            results.append(fut.result())
        else:
            url = stores[op.store].url if hasattr(op, "store") else "?"
            results.append(StragglerError("no answer while a majority did", url=url))
    return results


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
        # a cas list is created once per instance and store with create-if-absent, then
        # only swapped (see core: "Cas lists"); every store in our table with CAS has both
        for cap, what in (("cas", "compare-and-swap"), ("create", "create-if-absent")):
            missing = [s.url for s in stores if not getattr(s.capabilities, cap)]
            if missing:
                raise UnsupportedError(
                    f"cas lists need {what}, which is not supported by: " + ", ".join(missing),
                    capability=what,
                )
    return m


def propose(
    stores: Sequence[Store],
    instance: str,
    value: bytes,
    proposer_id: str,
    mode: ListMode | str = ListMode.CREATE,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] | None = None,
    backoff: Backoff | None = None,
    runtime: Runtime | None = None,
    lead: bool = False,
) -> bytes:
    """Propose ``value`` for ``instance``; return the decided value (maybe another's).

    Raises ``QuorumError`` naming the unreachable stores when no majority answers before
    ``value`` was sent for acceptance (it is then not decided), ``OutcomeUnknownError``
    (an ``AmbiguousWriteError``) when that happens after: it may be decided; and
    ``TypeError`` (nothing written) when ``value`` is not bytes-like. Pass the stores of
    a manifest-opened quorum through ``manifest.member_stores`` (identity checks).

    ``runtime`` (default the stores', :func:`runtime_of`) supplies the tasks, clock, sleeps
    and the proposer's RNG unless ``rng``/``sleep`` are given; ``backoff`` the pause
    between contended rounds (default ``core.ROUND_BACKOFF``). ``lead``: open with a
    leader's ACCEPT (one request per store, no marker) on create or cas lists of several
    stores; the caller guarantees no other call does so for ``instance`` (core: "Leader's
    accept"). Ignored in blocks mode."""
    value = require_bytes(value, "value")
    m = _mode(stores, mode)
    names = [s.url for s in stores]
    rt = runtime or runtime_of(stores)
    rng = rng or rt.rng
    gen: core.Proc[bytes]
    if m is not ListMode.BLOCKS:
        gen = core.passive_proposer(
            names, instance, value, proposer_id, rng, backoff=backoff, mode=m.value, lead=lead
        )
    else:
        gen = core.disk_proposer(names, instance, value, proposer_id, rng, backoff=backoff)
    # no ``instance`` attribute: it is an object key (``log/<slot>``) or the caller's name
    with telemetry.operation("propose", stores, rt.monotonic, mode=m.value) as op:
        decided = run(gen, stores, sleep=sleep, runtime=rt)
        op.set("won", decided == value)
    return decided


def learn(
    stores: Sequence[Store],
    instance: str,
    mode: ListMode | str = ListMode.CREATE,
    *,
    finish: bool = False,
    proposer_id: str = "learner",
    rng: random.Random | None = None,
    sleep: Callable[[float], None] | None = None,
    runtime: Runtime | None = None,
) -> bytes | None:
    """The decided value of ``instance``, or ``None`` when it is provably undecided (a
    majority of the stores answered in full and none holds a marker or an accepted value).

    When the read cannot tell (``core.UNKNOWN``: stores unreachable, or a value accepted
    but not seen chosen), ``finish=True`` finishes the instance with ``core.finisher``
    (a proposer phase that adopts the highest accepted value and invents none; it writes)
    and returns its answer; read-only (the default) raises ``QuorumError`` instead. Never
    ``None`` for "could not tell".

    Stores of a log opened from its manifest must be passed through
    ``manifest.member_stores`` (as ``propose`` callers do): a finisher counting a store
    that lost its state (wiped) can decide a second value. ``runtime``: as for
    :func:`propose`."""
    m = _mode(stores, mode)
    names = [s.url for s in stores]
    rt = runtime or runtime_of(stores)
    got = run(core.learner(names, instance, m.value), stores, sleep=sleep, runtime=rt)
    if got.state == core.DECIDED:
        return got.value
    if got.state == core.UNDECIDED:
        return None
    if not finish:
        raise QuorumError(
            f"cannot tell whether {instance} was decided: no marker, and no majority of "
            f"{len(stores)} stores shows it chosen or holds nothing for it; learn with "
            "finish=True to complete the instance"
        )
    gen = core.finisher(names, instance, m.value, proposer_id, rng or rt.rng)
    return run(gen, stores, sleep=sleep, runtime=rt)
