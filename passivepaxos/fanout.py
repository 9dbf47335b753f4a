"""Requests to every store of a set at once, not waiting for a hung minority: the fan-out
under the consensus driver, the manifest and the quorum reads of the log (hints,
snapshots, membership markers). Kept apart from the Paxos core so that a single-store
log never imports it (a CLI call's start pays for what it imports).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from passivepaxos.errors import StoreError, StragglerError
from passivepaxos.runtime import FIRST_COMPLETED, REAL, Runtime
from passivepaxos.store import Store

__all__ = [
    "STRAGGLER_GRACE",
    "DaemonPool",
    "each_store",
    "runtime_of",
    "settle",
    "wait_result",
]

STRAGGLER_GRACE = 0.25  # seconds a batch waits for its stragglers once a majority answered
T = TypeVar("T")


def runtime_of(stores: Sequence[object]) -> Runtime:
    """The runtime a store set runs under: its first store's (the stores of one process
    share one), the production runtime for none or for store-likes without one."""
    for s in stores:
        rt: Runtime | None = getattr(s, "runtime", None)
        if rt is not None:
            return rt
    return REAL


class DaemonPool:
    """``submit`` runs each call as a fresh task of ``runtime`` (``runtime.spawn``: a daemon
    thread in production, in the caller's context, so an ambient deadline applies). A store
    that never answers then holds neither the caller (see :func:`settle`) nor the
    interpreter at exit, as the non-daemon workers of a ``ThreadPoolExecutor`` would (they
    are joined at exit). Wait for its futures with ``runtime.wait`` (:func:`settle`,
    :func:`wait_result`), never by blocking on an unfinished one directly."""

    def __init__(self, runtime: Runtime | None = None) -> None:
        self.runtime: Runtime = runtime or REAL

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        fut: Future[T] = Future()

        def body() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiter, like an executor does
                fut.set_exception(exc)

        self.runtime.spawn(body, name="ppx-quorum")
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop: an unfinished call is a straggler nobody waits for."""


def wait_result(fut: Future[T], runtime: Runtime) -> T:
    """``fut.result()``, waited for through ``runtime`` (whose waits the simulator
    schedules; blocking on the future itself would stall a simulated process)."""
    runtime.wait([fut])
    return fut.result()


def settle(
    futs: Sequence[Future[Any]],
    groups: Sequence[int],
    grace: float,
    *,
    runtime: Runtime | None = None,
) -> None:
    """Wait until every future is done or, once every future of a majority of the
    ``groups`` (one group per store) is done, for ``max(grace, 2 x the time that took)``
    more: a store that is slow or hung then costs at most that grace. Clock and waits are
    ``runtime``'s (default: the production runtime)."""
    rt = runtime or REAL
    start = rt.monotonic()
    by_group: dict[int, list[Future[Any]]] = {}
    for g, fut in zip(groups, futs, strict=True):
        by_group.setdefault(g, []).append(fut)
    need = len(by_group) // 2 + 1
    pending = set(futs)
    until: float | None = None
    while pending:
        timeout = None if until is None else max(0.0, until - rt.monotonic())
        done, pending = rt.wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        if not done:
            break  # the grace period is over
        if until is None:
            answered = sum(all(f.done() for f in fs) for fs in by_group.values())
            if answered >= need:
                now = rt.monotonic()
                until = now + max(grace, 2 * (now - start))


def each_store(
    stores: Sequence[Store],
    fn: Callable[[Store], T],
    *,
    grace: float = STRAGGLER_GRACE,
    runtime: Runtime | None = None,
) -> list[T | StoreError]:
    """``fn(store)`` on every store at once; each store's result or ``StoreError`` (a
    store with no answer once a majority answered and the grace passed gets a
    ``StragglerError``). Any other exception propagates. The quorum reads that must
    not wait for a hung minority (manifests, membership markers, hints) use this. Tasks,
    clock and waits: ``runtime``, default the stores' (:func:`runtime_of`)."""
    if len(stores) == 1:
        try:
            return [fn(stores[0])]
        except StoreError as exc:
            return [exc]
    rt = runtime or runtime_of(stores)
    pool = DaemonPool(rt)
    futs = [pool.submit(fn, s) for s in stores]
    settle(futs, range(len(stores)), grace, runtime=rt)
    out: list[T | StoreError] = []
    for store, fut in zip(stores, futs, strict=True):
        if not fut.done():
            out.append(StragglerError("no answer while a majority did", url=store.url))
            continue
        failed = fut.exception()
        if failed is None:
            out.append(fut.result())
        elif isinstance(failed, StoreError):
            out.append(failed)
        else:
            raise failed
    return out
