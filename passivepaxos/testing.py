"""The backend conformance suite, as plain functions a backend's own tests can call
(after Rust ``object_store``'s ``integration.rs``; docs/backends.md, "Testing your backend").

Every check goes through :class:`passivepaxos.store.Store` over the backend adapter, the
exact path the protocol layers use, and takes the backend under test as a *target*: either
a store factory (a callable returning a ``Store`` on a fresh, empty location each call) or
a :class:`StoreHarness`, which can also provide the hooks a few checks need (a missing
container, removing a container, denied credentials, wire-level faults). A check whose hook
is missing raises ``unittest.SkipTest`` (pytest and unittest report it as skipped); a
failed check raises ``AssertionError``.

From a third-party backend's pytest::

    import pytest
    from passivepaxos.store import Store
    from passivepaxos.testing import CHECKS

    def my_store() -> Store:
        return Store(MyBackend(bucket=..., prefix=fresh_prefix()))

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check):
        check(my_store)

or everything at once, outside any test runner: ``run_all(my_store)``. This module does
not import pytest.
"""

from __future__ import annotations

import contextlib
import itertools
import unittest
from collections.abc import Callable, Iterator
from typing import Any

from passivepaxos.errors import (
    AlreadyExistsError,
    ContainerNotFoundError,
    NotFoundError,
    PreconditionFailedError,
)
from passivepaxos.store import Store
from passivepaxos.types import PutMode, Version
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import FaultPlan, FaultyBackend

__all__ = [
    "CHECKS",
    "Injector",
    "StoreFactory",
    "StoreHarness",
    "Target",
    "as_harness",
    "check_cas_race_has_exactly_one_winner",
    "check_conditional_delete",
    "check_create_race_has_exactly_one_winner",
    "check_empty_and_large_values",
    "check_every_write_gets_a_new_version",
    "check_list_order_and_paging_over_1000_keys",
    "check_lost_response_on_create_tells_the_truth",
    "check_missing_container_is_a_clear_error",
    "check_missing_key",
    "check_missing_root_is_an_error_and_is_not_recreated",
    "check_permission_denied",
    "check_throttling_is_retried",
    "check_unicode_and_slash_keys",
    "run_all",
]

RACERS = 8
ROUNDS = 100

StoreFactory = Callable[[], Store]
"""Returns a ``Store`` on a fresh, empty location each call."""


class Injector:
    """Wire-level faults for one store, mapped by each harness onto a real mechanism (a
    fault proxy in front of an emulator, a test server's hooks) or, where there is no wire,
    onto :class:`passivepaxos.wrappers.FaultyBackend`."""

    def lose_next_response(self) -> None:
        """The next request takes effect but its answer is lost (a connection error)."""
        raise NotImplementedError

    def throttle_next(self, n: int) -> None:
        """The next ``n`` requests are refused with the service's "slow down" answer."""
        raise NotImplementedError


class _FaultyInjector(Injector):
    def __init__(self, faulty: FaultyBackend) -> None:
        self.faulty = faulty

    def lose_next_response(self) -> None:
        self.faulty.script("after")

    def throttle_next(self, n: int) -> None:
        self.faulty.script(*["throttle"] * n)


class StoreHarness:
    """A backend under test. ``url`` is required; every other hook has a default (the
    built-in schemes' ``open_backend``, faults through ``FaultyBackend``) or is optional:
    a check whose optional hook returns ``None`` is skipped."""

    name = "backend"

    def url(self) -> str:
        """A fresh, empty location (each call a new one)."""
        raise NotImplementedError

    def store(self, url: str | None = None) -> Store:
        """A ``Store`` of its own (its own connection) on ``url``, or on a fresh location."""
        return Store(open_backend(url or self.url()))

    def missing_container_url(self) -> str | None:
        """A location inside a bucket / directory / folder that does not exist."""
        return None

    def new_container_url(self) -> str | None:
        """A location inside a container of its own, which :meth:`remove_container` may
        delete (``None``: the backend has no container to delete)."""
        return None

    def remove_container(self, url: str) -> None:
        """Delete the container of ``url`` with everything in it (``rm -rf``)."""
        raise NotImplementedError

    def container_exists(self, url: str) -> bool:
        raise NotImplementedError

    def denied_error(self) -> str | None:
        """Run one write with credentials or permissions that forbid it and return the
        class name of what it raised (``"no error"`` if it succeeded)."""
        return None

    @contextlib.contextmanager
    def wired(self) -> Iterator[tuple[Store, Injector]]:
        """A store whose requests can be faulted, and the injector that faults them."""
        base = self.store()
        faulty = FaultyBackend(base.backend, FaultPlan(), seed=1)
        yield Store(faulty, retry=base.retry, runtime=base.runtime), _FaultyInjector(faulty)


class _FactoryHarness(StoreHarness):
    """A harness over a plain store factory: another ``Store`` on a location shares the
    adapter of the first (a factory cannot open a second connection to its location)."""

    def __init__(self, factory: StoreFactory) -> None:
        self.factory = factory
        self.name = getattr(factory, "__name__", "backend")
        self._made: dict[str, Store] = {}

    def url(self) -> str:
        s = self.factory()
        self._made[s.url] = s
        return s.url

    def store(self, url: str | None = None) -> Store:
        if url is None:
            s = self.factory()
            self._made[s.url] = s
            return s
        base = self._made[url]
        return Store(base.backend, retry=base.retry, runtime=base.runtime)


Target = StoreHarness | StoreFactory


def as_harness(target: Target) -> StoreHarness:
    return target if isinstance(target, StoreHarness) else _FactoryHarness(target)


def _raises(kind: type[BaseException], fn: Callable[[], object]) -> Any:
    """The ``kind`` exception ``fn()`` raises; ``AssertionError`` if it raises none."""
    try:
        got = fn()
    except kind as exc:
        return exc
    raise AssertionError(f"expected {kind.__name__}, got {got!r}")


def _race(stores: list[Store], attempt: Callable[[int, Store], object]) -> list[tuple[int, object]]:
    """Run ``attempt(i, store)`` on one task per store, released together; (i, result|exc)."""
    rt = stores[0].runtime
    ready = rt.condition()
    go = rt.event()
    arrived = [0]
    results: list[tuple[int, object]] = []
    lock = rt.lock()

    def run(i: int) -> None:
        with ready:
            arrived[0] += 1
            ready.notify_all()
        go.wait()
        try:
            out: object = attempt(i, stores[i])
        except Exception as exc:
            out = exc
        with lock:
            results.append((i, out))

    tasks = [rt.spawn(run, i, name=f"racer-{i}") for i in range(len(stores))]
    with ready:
        while arrived[0] < len(stores):
            ready.wait(1.0)
    go.set()
    for t in tasks:
        t.join()
    return results


# -- the checks ----------------------------------------------------------------------------


def check_create_race_has_exactly_one_winner(
    target: Target, *, racers: int = RACERS, rounds: int = ROUNDS
) -> None:
    """``racers`` stores create the same key at once, ``rounds`` times: exactly one wins,
    every other is told ``AlreadyExistsError`` carrying the winner's value."""
    h = as_harness(target)
    url = h.url()
    stores = [h.store(url) for _ in range(racers)]
    for r in range(rounds):
        key = f"race/{r:04d}"

        def create(i: int, s: Store, key: str = key) -> object:
            return s.put(key, f"racer {i}".encode(), PutMode.CREATE)

        results = _race(stores, create)
        winners = [i for i, out in results if isinstance(out, Version)]
        losers = [out for _, out in results if not isinstance(out, Version)]
        assert len(winners) == 1, f"round {r}: winners {winners}, others {losers}"
        assert all(isinstance(e, AlreadyExistsError) for e in losers), losers
        got = stores[0].get(key)
        assert got is not None and got[0] == f"racer {winners[0]}".encode()
        # the losers were told who won, without another request of their own
        for e in losers:
            assert isinstance(e, AlreadyExistsError) and e.current is not None
            assert e.current[0] == got[0]


def check_cas_race_has_exactly_one_winner(
    target: Target, *, racers: int = RACERS, rounds: int = ROUNDS
) -> None:
    """``racers`` stores compare-and-swap the same version at once: exactly one wins, every
    other is told ``PreconditionFailedError``."""
    h = as_harness(target)
    url = h.url()
    stores = [h.store(url) for _ in range(racers)]
    version = stores[0].put("counter", b"0", PutMode.CREATE)
    for r in range(rounds):

        def swap(i: int, s: Store, base: Version = version, r: int = r) -> object:
            return s.put("counter", f"{r}:{i}".encode(), PutMode.update(base))

        results = _race(stores, swap)
        winners = [(i, out) for i, out in results if isinstance(out, Version)]
        losers = [out for _, out in results if not isinstance(out, Version)]
        assert len(winners) == 1, f"round {r}: {len(winners)} winners; others {losers}"
        assert all(isinstance(e, PreconditionFailedError) for e in losers), losers
        i, version = winners[0]
        got = stores[0].get("counter")
        assert got == (f"{r}:{i}".encode(), version)


def check_every_write_gets_a_new_version(target: Target) -> None:
    """Identical bytes written again (overwrite, compare-and-swap) get a new version."""
    s = as_harness(target).store()
    seen = [s.put("k", b"same", PutMode.CREATE)]
    for _ in range(3):
        seen.append(s.put("k", b"same"))  # identical bytes, overwrite
    for _ in range(3):
        seen.append(s.put("k", b"same", PutMode.update(seen[-1])))
    assert len(set(seen)) == len(seen), seen
    got = s.get("k")
    assert got is not None and got == (b"same", seen[-1])


def check_missing_key(target: Target) -> None:
    """A missing key reads as ``None``, deletes as a no-op, and refuses conditional
    writes and deletes with ``NotFoundError``."""
    s = as_harness(target).store()
    assert s.get("nothing/here") is None
    s.delete("nothing/here")  # no-op
    v = s.put("there", b"x", PutMode.CREATE)
    s.delete("there")
    assert s.get("there") is None
    _raises(NotFoundError, lambda: s.put("nothing/here", b"x", PutMode.update(v)))
    _raises(NotFoundError, lambda: s.delete("nothing/here", if_version=v))


def check_conditional_delete(target: Target) -> None:
    """A delete conditioned on an old version is refused; on the current one, it deletes."""
    s = as_harness(target).store()
    v1 = s.put("k", b"1", PutMode.CREATE)
    v2 = s.put("k", b"2", PutMode.update(v1))
    _raises(PreconditionFailedError, lambda: s.delete("k", if_version=v1))
    assert s.get("k") == (b"2", v2)
    s.delete("k", if_version=v2)
    assert s.get("k") is None


def check_list_order_and_paging_over_1000_keys(target: Target) -> None:
    """Listing returns keys in byte order across service pages, ``start_after`` resumes
    strictly after a key, and sizes are the stored (framed) sizes."""
    s = as_harness(target).store()
    keys = [f"log/{i:05d}" for i in range(1050)] + ["log/z", "log/a/b", "other"]
    pool = s.runtime.pool(16, "conformance")
    try:
        list(pool.map(lambda k: s.put(k, k.encode(), PutMode.CREATE), keys))
    finally:
        pool.shutdown()
    listed = [m.key for m in s.list("log/")]
    expected = sorted((k for k in keys if k.startswith("log/")), key=str.encode)
    assert listed == expected
    page: list[str] = []
    after: str | None = None
    while True:
        chunk = [m.key for m in itertools.islice(s.list("log/", start_after=after), 300)]
        if not chunk:
            break
        page += chunk
        after = chunk[-1]
    assert page == expected
    assert [m.key for m in s.list("log/0104", start_after="log/01045")] == [
        f"log/{i:05d}" for i in range(1046, 1050)
    ]
    sizes = {m.key: m.size for m in s.list("log/0000")}
    assert sizes["log/00000"] > len(b"log/00000")  # framed size, never 0


def check_empty_and_large_values(
    target: Target, *, sizes: tuple[int, ...] = (0, 8 * 1024 * 1024 + 17)
) -> None:
    """An empty value and one over 8 MiB round-trip byte for byte."""
    h = as_harness(target)
    for size in sizes:
        s = h.store()
        data = s.runtime.token_bytes(size) if size else b""
        v = s.put("blob", data, PutMode.CREATE)
        assert s.get("blob") == (data, v), f"a value of {size} bytes"


def check_unicode_and_slash_keys(target: Target) -> None:
    """Keys with non-ASCII characters, spaces, '+' and many '/' round-trip and list."""
    s = as_harness(target).store()
    keys = ["a/b/c", "ünïcødé/ключ/鍵", "space key/with+plus", "emoji/🦀", "deep/" * 5 + "leaf"]
    for k in keys:
        s.put(k, k.encode(), PutMode.CREATE)
    for k in keys:
        got = s.get(k)
        assert got is not None and got[0] == k.encode()
    assert sorted(m.key for m in s.list()) == sorted(keys)


def _container_name(url: str) -> str:
    rest = url.split("://", 1)[1]
    return rest.strip("/").split("/")[0]


def check_missing_container_is_a_clear_error(target: Target) -> None:
    """A store whose bucket / directory / folder does not exist answers reads, writes and
    listings with ``ContainerNotFoundError`` naming it."""
    h = as_harness(target)
    url = h.missing_container_url()
    if url is None:
        raise unittest.SkipTest(f"{h.name}: there is no container that could be missing")
    s = h.store(url)
    ops: list[Callable[[], object]] = [
        lambda: s.get("k"),
        lambda: s.put("k", b"v", PutMode.CREATE),
        lambda: list(s.list()),
    ]
    for op in ops:
        exc = _raises(ContainerNotFoundError, op)
        assert _container_name(url) in str(exc), str(exc)  # names the container at fault


def check_missing_root_is_an_error_and_is_not_recreated(target: Target) -> None:
    """A store whose root (directory / bucket / folder / memory space) was deleted under it
    answers every read, write and listing with ``ContainerNotFoundError`` and never
    re-creates the root: a re-created empty store would vote as if it had never promised
    or accepted anything (findings 10 and 1, storage half)."""
    h = as_harness(target)
    url = h.new_container_url()
    if url is None:
        raise unittest.SkipTest(f"{h.name}: no container of its own to remove")
    s = h.store(url)
    v = s.put("a/k", b"v", PutMode.CREATE)
    s.put("top", b"t", PutMode.CREATE)
    assert [m.key for m in s.list()] == ["a/k", "top"]
    h.remove_container(url)
    ops: dict[str, Callable[[], object]] = {  # writes first: nothing told the store yet
        "create": lambda: s.put("a/new", b"n", PutMode.CREATE),
        "create at top": lambda: s.put("new", b"n", PutMode.CREATE),
        "overwrite": lambda: s.put("b/c/d", b"o"),
        "update": lambda: s.put("a/k", b"w", PutMode.update(v)),
        "delete if version": lambda: s.delete("a/k", if_version=v),
        "delete": lambda: s.delete("top"),
        "get existing": lambda: s.get("a/k"),
        "get missing": lambda: s.get("never/written"),
        "list": lambda: list(s.list()),
        "list prefix": lambda: list(s.list("a/")),
    }
    answers = {}
    for name, op in ops.items():
        try:
            answers[name] = f"answered {op()!r}"
        except ContainerNotFoundError:
            answers[name] = "ContainerNotFoundError"
        except Exception as exc:  # any other answer is a failure too
            answers[name] = f"{type(exc).__name__}: {exc}"
    assert answers == dict.fromkeys(ops, "ContainerNotFoundError"), answers
    assert not h.container_exists(url), "the store re-created its own root"


def check_permission_denied(target: Target) -> None:
    """A write the credentials do not allow raises ``PermissionDeniedError``."""
    h = as_harness(target)
    got = h.denied_error()
    if got is None:
        raise unittest.SkipTest(f"{h.name}: no permissions to deny")
    assert got == "PermissionDeniedError", got


def check_lost_response_on_create_tells_the_truth(target: Target) -> None:
    """A conditional write whose answer was lost is established by reading back: our
    create that landed is a success, someone else's is ``AlreadyExistsError`` with their
    value, a compare-and-swap that landed is a success."""
    h = as_harness(target)
    with h.wired() as (s, inject):
        inject.lose_next_response()
        v = s.put("slot/1", b"mine", PutMode.CREATE)
        assert s.get("slot/1") == (b"mine", v)
        other = h.store(s.url)
        other.put("slot/2", b"theirs", PutMode.CREATE)
        inject.lose_next_response()
        exc = _raises(AlreadyExistsError, lambda: s.put("slot/2", b"mine", PutMode.CREATE))
        assert exc.current is not None and exc.current[0] == b"theirs"
        inject.lose_next_response()
        v2 = s.put("slot/1", b"mine again", PutMode.update(v))
        assert s.get("slot/1") == (b"mine again", v2)
        assert [m.key for m in s.list("slot/")] == ["slot/1", "slot/2"]


def check_throttling_is_retried(target: Target) -> None:
    """Throttled requests ("slow down") are retried until they go through."""
    h = as_harness(target)
    with h.wired() as (s, inject):
        inject.throttle_next(2)
        v = s.put("k", b"v")
        inject.throttle_next(2)
        assert s.get("k") == (b"v", v)
        inject.throttle_next(1)
        v2 = s.put("k", b"w", PutMode.update(v))
        assert s.get("k") == (b"w", v2)


CHECKS: list[Callable[[Target], None]] = [
    check_create_race_has_exactly_one_winner,
    check_cas_race_has_exactly_one_winner,
    check_every_write_gets_a_new_version,
    check_missing_key,
    check_conditional_delete,
    check_list_order_and_paging_over_1000_keys,
    check_empty_and_large_values,
    check_unicode_and_slash_keys,
    check_missing_container_is_a_clear_error,
    check_missing_root_is_an_error_and_is_not_recreated,
    check_permission_denied,
    check_lost_response_on_create_tells_the_truth,
    check_throttling_is_retried,
]
"""Every check, in order; each takes a target (a store factory or a ``StoreHarness``)."""


def run_all(target: Target) -> dict[str, str]:
    """Run every check on ``target``; returns ``{check name: "passed" | "skipped: why"}``
    and raises ``AssertionError`` naming every check that failed (after running all)."""
    h = as_harness(target)
    outcome: dict[str, str] = {}
    failed: list[str] = []
    for check in CHECKS:
        name = check.__name__
        try:
            check(h)
        except unittest.SkipTest as exc:
            outcome[name] = f"skipped: {exc}"
        except Exception as exc:
            outcome[name] = f"failed: {type(exc).__name__}: {exc}"
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            outcome[name] = "passed"
    if failed:
        raise AssertionError(f"{h.name}: {len(failed)} check(s) failed: " + "; ".join(failed))
    return outcome
