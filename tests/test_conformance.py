"""One conformance suite, run against every backend on real servers (object_store style).

Every test goes through ``passivepaxos.store.Store`` over the backend adapter, i.e. the
exact path the protocol layers use. Server-specific fault injection is behind
``Harness.wired()`` (see conftest.py).
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from passivepaxos.errors import (
    AlreadyExistsError,
    ContainerNotFoundError,
    NotFoundError,
    PreconditionFailedError,
)
from passivepaxos.store import Store
from passivepaxos.types import PutMode, Version
from tests.conftest import Harness

RACERS = 8
ROUNDS = int(os.environ.get("PPX_RACE_ROUNDS", "100"))


def _race(stores: list[Store], attempt: object) -> list[tuple[int, object]]:
    """Run ``attempt(i, store)`` in RACERS threads released together; (i, result|exc)."""
    barrier = threading.Barrier(len(stores))
    results: list[tuple[int, object]] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            out: object = attempt(i, stores[i])  # type: ignore[operator]
        except Exception as exc:
            out = exc
        with lock:
            results.append((i, out))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_create_race_has_exactly_one_winner(harness: Harness) -> None:
    url = harness.url()
    stores = [harness.store(url) for _ in range(RACERS)]
    for r in range(ROUNDS):
        key = f"race/{r:04d}"
        results = _race(
            stores, lambda i, s, key=key: s.put(key, f"racer {i}".encode(), PutMode.CREATE)
        )
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


def test_cas_race_has_exactly_one_winner(harness: Harness) -> None:
    url = harness.url()
    stores = [harness.store(url) for _ in range(RACERS)]
    version = stores[0].put("counter", b"0", PutMode.CREATE)
    for r in range(ROUNDS):
        base = version
        results = _race(
            stores,
            lambda i, s, base=base, r=r: s.put(
                "counter", f"{r}:{i}".encode(), PutMode.update(base)
            ),
        )
        winners = [(i, out) for i, out in results if isinstance(out, Version)]
        losers = [out for _, out in results if not isinstance(out, Version)]
        assert len(winners) == 1, f"round {r}: {len(winners)} winners; others {losers}"
        assert all(isinstance(e, PreconditionFailedError) for e in losers), losers
        i, version = winners[0]  # type: ignore[assignment]
        got = stores[0].get("counter")
        assert got == (f"{r}:{i}".encode(), version)


def test_every_write_gets_a_new_version(harness: Harness) -> None:
    s = harness.store()
    seen = [s.put("k", b"same", PutMode.CREATE)]
    for _ in range(3):
        seen.append(s.put("k", b"same"))  # identical bytes, overwrite
    for _ in range(3):
        seen.append(s.put("k", b"same", PutMode.update(seen[-1])))
    assert len(set(seen)) == len(seen), seen
    got = s.get("k")
    assert got is not None and got == (b"same", seen[-1])


def test_missing_key(harness: Harness) -> None:
    s = harness.store()
    assert s.get("nothing/here") is None
    s.delete("nothing/here")  # no-op
    v = s.put("there", b"x", PutMode.CREATE)
    s.delete("there")
    assert s.get("there") is None
    with pytest.raises(NotFoundError):
        s.put("nothing/here", b"x", PutMode.update(v))
    with pytest.raises(NotFoundError):
        s.delete("nothing/here", if_version=v)


def test_conditional_delete(harness: Harness, request: pytest.FixtureRequest) -> None:
    if harness.name == "gcs":
        # fake-gcs-server 1.54 deletes regardless of ifGenerationMatch (upstream #1282);
        # the adapter's 412 mapping is tested through the fault proxy in test_gcs_backend.py
        request.applymarker(
            pytest.mark.xfail(
                reason="emulator divergence: DELETE ignores ifGenerationMatch", strict=True
            )
        )
    s = harness.store()
    v1 = s.put("k", b"1", PutMode.CREATE)
    v2 = s.put("k", b"2", PutMode.update(v1))
    with pytest.raises(PreconditionFailedError):
        s.delete("k", if_version=v1)
    assert s.get("k") == (b"2", v2)
    s.delete("k", if_version=v2)
    assert s.get("k") is None


def test_list_order_and_paging_over_1000_keys(harness: Harness) -> None:
    s = harness.store()
    keys = [f"log/{i:05d}" for i in range(1050)] + ["log/z", "log/a/b", "other"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s.put(k, k.encode(), PutMode.CREATE), keys))
    listed = [m.key for m in s.list("log/")]
    expected = sorted((k for k in keys if k.startswith("log/")), key=str.encode)
    assert listed == expected
    # paging with start_after resumes strictly after the key, in order
    page, after = [], None
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


@pytest.mark.parametrize("size", [0, 8 * 1024 * 1024 + 17])
def test_empty_and_large_values(harness: Harness, size: int) -> None:
    s = harness.store()
    data = os.urandom(size)
    v = s.put("blob", data, PutMode.CREATE)
    assert s.get("blob") == (data, v)


def test_unicode_and_slash_keys(harness: Harness) -> None:
    s = harness.store()
    keys = ["a/b/c", "ünïcødé/ключ/鍵", "space key/with+plus", "emoji/🦀", "deep/" * 5 + "leaf"]
    for k in keys:
        s.put(k, k.encode(), PutMode.CREATE)
    for k in keys:
        got = s.get(k)
        assert got is not None and got[0] == k.encode()
    assert sorted(m.key for m in s.list()) == sorted(keys)


def test_missing_container_is_a_clear_error(harness: Harness) -> None:
    url = harness.missing_container_url()
    if url is None:
        pytest.skip(f"{harness.name}: there is no container that could be missing")
    s = harness.store(url)
    for op in (
        lambda: s.get("k"),
        lambda: s.put("k", b"v", PutMode.CREATE),
        lambda: list(s.list()),
    ):
        with pytest.raises(ContainerNotFoundError) as info:
            op()
        # the message names the bucket / directory at fault
        assert _container_name(url) in str(info.value)


def test_finding_10_missing_root_is_an_error_and_is_not_recreated(
    harness: Harness, request: pytest.FixtureRequest
) -> None:
    """Findings 10 and 1 (storage half): a store whose root directory / bucket / folder /
    memory space was deleted under it answers every read, write and listing with
    ``ContainerNotFoundError`` and never re-creates the root: a re-created empty store
    would vote as if it had never promised or accepted anything."""
    if harness.name == "dropbox":
        # files_upload creates missing parent folders and has no flag against it; the
        # adapter only checks the root once per backend before writing (docs/storage.md)
        request.applymarker(
            pytest.mark.xfail(reason="Dropbox uploads re-create a deleted root folder", strict=True)
        )
    url = harness.new_container_url()
    s = harness.store(url)
    v = s.put("a/k", b"v", PutMode.CREATE)
    s.put("top", b"t", PutMode.CREATE)
    assert [m.key for m in s.list()] == ["a/k", "top"]
    harness.remove_container(url)
    ops = {  # writes first: nothing has told the store yet that its root is gone
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
    assert answers == dict.fromkeys(ops, "ContainerNotFoundError")
    assert not harness.container_exists(url), "the store re-created its own root"


def _container_name(url: str) -> str:
    rest = url.split("://", 1)[1]
    return rest.strip("/").split("/")[0]


def test_permission_denied(harness: Harness) -> None:
    got = harness.denied_error()
    if got is None:
        pytest.skip(f"{harness.name}: no permissions to deny")
    assert got == "PermissionDeniedError"


def test_lost_response_on_create_tells_the_truth(harness: Harness) -> None:
    with harness.wired() as (s, inject):
        # our create took effect but the answer was lost: the store must say success
        inject.lose_next_response()
        v = s.put("slot/1", b"mine", PutMode.CREATE)
        assert s.get("slot/1") == (b"mine", v)
        # someone else's create won; our answer is lost: the store must say "exists"
        other = harness.store(s.url)
        other.put("slot/2", b"theirs", PutMode.CREATE)
        inject.lose_next_response()
        with pytest.raises(AlreadyExistsError) as info:
            s.put("slot/2", b"mine", PutMode.CREATE)
        assert info.value.current is not None and info.value.current[0] == b"theirs"
        # a CAS whose answer is lost: established by read-back
        inject.lose_next_response()
        v2 = s.put("slot/1", b"mine again", PutMode.update(v))
        assert s.get("slot/1") == (b"mine again", v2)
        assert [m.key for m in s.list("slot/")] == ["slot/1", "slot/2"]


def test_throttling_is_retried(harness: Harness) -> None:
    with harness.wired() as (s, inject):
        inject.throttle_next(2)
        v = s.put("k", b"v")
        inject.throttle_next(2)
        assert s.get("k") == (b"v", v)
        inject.throttle_next(1)
        v2 = s.put("k", b"w", PutMode.update(v))
        assert s.get("k") == (b"w", v2)
