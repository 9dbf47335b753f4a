"""The simulated processes' roles: what each client does with the library, and what it
records of what it was told.

Every role is a plain function of an :class:`Actor` run as the root thread of its own
simulated process: it opens its own ``Log`` (the library's code, on the process's
runtime) and uses the public API only. Each records into the run's ``Observations``:
acknowledged, failed and outcome-unknown appends, every entry it read, KV and lock
operations (with call and return times on the global clock), the lock holds it believed in.
"""

from __future__ import annotations

import collections
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from passivepaxos.deadline import deadline
from passivepaxos.errors import AmbiguousWriteError, PassivePaxosError
from passivepaxos.log import Log
from passivepaxos.log.tailcache import MemoryTailCache
from passivepaxos.recipes.kv import KV
from passivepaxos.recipes.lock import (
    FencedResource,
    LockHeldError,
    LockLostError,
    Locks,
    StaleTokenError,
)
from passivepaxos.simulation.checks import Observations
from passivepaxos.simulation.runtime import SimRuntime
from passivepaxos.simulation.stores import Network

__all__ = ["ROLES", "Actor", "outcome_unknown", "read_all"]

KEYS = ("x", "y")
LOCK = "L"


def outcome_unknown(exc: BaseException) -> bool:
    """Whether an error says the write may have taken effect (else: it did not)."""
    return isinstance(exc, AmbiguousWriteError) or bool(getattr(exc, "outcome_unknown", False))


@dataclass
class Actor:
    """One simulated process and what it needs: its runtime, its share of the run's
    randomness (workload choices, apart from the library's own RNG), the log's URL."""

    name: str
    rt: SimRuntime
    rng: random.Random
    obs: Observations
    net: Network
    url: str
    ops: int
    ttl: float
    fenced: dict[str, FencedResource]
    open_log: Callable[..., Log]
    extra: dict[str, Any] = field(default_factory=dict)
    timeout: tuple[float, float] = (0.0, 0.0)
    gap: float = 0.05
    _n: int = 0

    def log(self) -> Log:
        return self.open_log(self.rt, self.name)

    def value(self) -> bytes:
        self._n += 1
        return f"{self.name}#{self._n}".encode()

    def now(self) -> float:
        return self.obs.clock()  # type: ignore[no-any-return]

    def pause(self, hi: float | None = None) -> None:
        """Think time between operations (the profile's ``gap`` unless given)."""
        self.rt.sleep(self.rng.uniform(0.0, self.gap if hi is None else hi))

    def op(self, more: float = 0.0) -> contextlib.AbstractContextManager[Any]:
        """The deadline of one operation, on this process's clock (as the CLI's --timeout):
        without one, an append retries through any outage and never reports an unknown
        outcome."""
        lo, hi = self.timeout
        if hi <= 0:
            return contextlib.nullcontext()
        return deadline(total=more + self.rng.uniform(lo, hi), clock=self.rt.monotonic)


def _append(a: Actor, log: Log, values: list[bytes]) -> None:
    try:
        with a.op():
            got = log.append_positions(values)
    except PassivePaxosError as exc:
        if not outcome_unknown(exc):
            a.obs.failed.extend((v, a.name, type(exc).__name__) for v in values)
            return
        a.obs.unknown.extend((v, a.name, type(exc).__name__) for v in values)
        token = getattr(exc, "token", None)
        if token is None or a.rng.random() < 0.3:
            return
        try:  # finish it exactly once
            with a.op():
                got = log.append_positions(values, resume=token)
        except PassivePaxosError:
            return
    for v, p in zip(values, got, strict=True):
        a.obs.ack(v, p.slot, p.index, a.name)
        a.obs.acked_at[v] = a.now()


def read_all(
    obs: Observations, log: Log, by: str, *, into: dict[tuple[int, int], bytes] | None = None
) -> dict[tuple[int, int], bytes]:
    """Read the whole log; record what was seen, and the read (it must see every entry
    acknowledged before it started). ``into``: fill this dict as the read goes (what was
    read before an error stopped it)."""
    start = obs.clock()
    got: dict[tuple[int, int], bytes] = {} if into is None else into
    obs.reading.add(by)  # its requests meanwhile are the read's, not its writer's view
    try:
        for e in log.read(0):
            obs.saw(e.slot, e.index, e.value, by)
            got[(e.slot, e.index)] = e.value
    finally:
        obs.reading.discard(by)
    obs.reads.append((start, frozenset(got.values()), by))
    obs.read_ends.append(max((slot for slot, _ in got), default=-1) + 1)
    return got


def _read_all(a: Actor, log: Log) -> None:
    read_all(a.obs, log, a.name)


def appender(a: Actor) -> None:
    """Appends a few small batches without the writer lease (refused while one is held).
    Half the appenders are serverless: a new ``Log`` per append and per read, as one CLI
    call or one Lambda invocation each (tail hint read at open, discovery every time); half
    of those run on a warm machine (a tail cache kept between invocations)."""
    if a.rng.random() < 0.5:
        cache = MemoryTailCache() if a.rng.random() < 0.5 else None
        for _ in range(a.ops):
            with a.open_log(a.rt, a.name, cache=cache) as log:
                _append(a, log, [a.value() for _ in range(a.rng.randint(1, 3))])
            a.pause()
            if a.rng.random() < 0.2:
                with a.open_log(a.rt, a.name, cache=cache) as log:
                    _read_all(a, log)
        return
    with a.log() as log:
        for _ in range(a.ops):
            _append(a, log, [a.value() for _ in range(a.rng.randint(1, 3))])
            a.pause()
            if a.rng.random() < 0.2:
                _read_all(a, log)


def lease_appender(a: Actor) -> None:
    """Claims the writer lease, appends, renews with a longer or shorter TTL, answers lease
    reads (each checked against every append acknowledged before it), releases."""
    with a.log() as log:
        ttl = a.ttl
        with contextlib.suppress(PassivePaxosError):
            log.claim_writer(ttl)
        for _ in range(a.ops):
            _append(a, log, [a.value() for _ in range(a.rng.randint(1, 2))])
            r = a.rng.random()
            if r < 0.25:
                new_ttl = a.ttl * a.rng.choice((0.25, 0.5, 1.0, 2.0))
                try:
                    if log.claim_writer(new_ttl, wait=False).granted:  # a renewal, new TTL
                        ttl = new_ttl
                except PassivePaxosError:
                    pass  # ambiguous or lost: the library shrinks its window itself
            elif r < 0.6:
                call = a.now()
                lr = log.lease_read()
                if lr is not None:
                    a.obs.heads.append((call, lr.head, a.name))
            a.pause(ttl / 4)
        if a.rng.random() < 0.5:
            with contextlib.suppress(PassivePaxosError):
                log.release_writer()


def claimant(a: Actor) -> None:
    """Starts late, claims the writer lease (waiting out the holder), appends once."""
    a.rt.sleep(a.rng.uniform(0.0, 2 * a.ttl))
    with a.log() as log:
        try:
            log.claim_writer(a.ttl / 2)
        except PassivePaxosError:
            return
        _append(a, log, [a.value()])
        call = a.now()
        lr = log.lease_read()
        if lr is not None:
            a.obs.heads.append((call, lr.head, a.name))


def _kv_ops(a: Actor, kv: KV, n: int, kinds: tuple[str, ...], renew: Log | None = None) -> None:
    """``n`` random operations on two keys, each recorded with its outcome."""
    last: dict[str, bytes | None] = {}
    rec = a.obs.kv
    for _ in range(n):
        key = a.rng.choice(KEYS)
        kind = a.rng.choice(kinds)
        if kind == "renew":
            if renew is not None:  # the holder renews with a longer or shorter TTL
                with contextlib.suppress(PassivePaxosError), a.op():
                    renew.claim_writer(a.ttl * a.rng.choice((0.25, 0.5, 1.0, 2.0)), wait=False)
            continue
        if kind == "get":
            h = rec.invoke(a.name, "get", key)
            call = a.now()
            try:
                with a.op():
                    v = kv.get(key)
            except PassivePaxosError:
                rec.fail(h)
                continue
            rec.ok(h, v)
            last[key] = v
            if kv.last_read == "lease":
                a.obs.lease_gets.add((a.name, call))
            a.pause(a.extra.get("gap", 0.05))
            continue
        value = a.value()
        inp: Any = value
        if kind == "cas":
            inp = (last.get(key), value)
        elif kind == "delete":
            inp = None
        h = rec.invoke(a.name, kind, key, inp)
        try:
            with a.op():
                if kind == "put":
                    kv.put(key, value)
                    out: Any = None
                elif kind == "delete":
                    out = kv.delete(key)
                else:
                    out = kv.cas(key, inp[0], value).ok
        except PassivePaxosError as exc:
            if outcome_unknown(exc):
                rec.info(h)
            else:
                rec.fail(h)
            continue
        rec.ok(h, out)
        a.pause(a.extra.get("gap", 0.05))


def kv_client(a: Actor) -> None:
    """put / get / cas / delete on two keys. ``lease``: it holds the writer lease (its gets
    are lease reads), renews it now and then with another TTL, and a second thread of the
    same process reads while the first writes. ``claim``: it claims the lease late
    (waiting the holder's TTL out), then works."""
    with a.log() as log:
        kv = KV(log, lease_reads=True, retries=2)
        if a.extra.get("claim"):
            a.rt.sleep(a.rng.uniform(0.0, a.extra.get("claim_after", 2.0) * a.ttl))
            with contextlib.suppress(PassivePaxosError):
                log.claim_writer(a.ttl)
        if not a.extra.get("lease"):
            kinds: tuple[str, ...] = ("put", "get", "get", "cas", "delete")
            if a.extra.get("kinds"):
                kinds = a.extra["kinds"]
            elif a.extra.get("gap"):  # a reader beside a lease holder: mostly reads, spread out
                kinds = ("get", "get", "get", "put")
            _kv_ops(a, kv, a.ops, kinds)
            return
        with contextlib.suppress(PassivePaxosError), a.op():
            log.claim_writer(a.ttl)
        reader = a.rt.spawn(_kv_ops, a, kv, a.ops, ("get",), name=f"{a.name}-reader")
        _kv_ops(a, kv, a.ops, ("put", "get", "cas", "renew"), renew=log)
        reader.join()


def lease_holder(a: Actor) -> None:
    """A KV client holding the writer lease, shaped for issue 10's findings 4 and 5: one
    thread puts (``slow``: the probability that a write's answer comes late although it
    landed, so others read the value through the log while the holder waits) and then
    (``shorten``) renews once with a much shorter TTL while its answers are likely lost
    (the record lands, the holder cannot tell) and stays idle a TTL, so a claimant may
    count the short TTL and take over; the other thread reads by lease all along."""
    with a.log() as log:
        kv = KV(log, lease_reads=True, retries=2)
        with contextlib.suppress(PassivePaxosError), a.op():
            log.claim_writer(a.ttl)
        done: list[bool] = []

        def reads() -> None:
            while not done:
                _kv_ops(a, kv, 1, ("get",))
                a.pause(a.extra.get("gap", a.ttl / 8))

        reader = a.rt.spawn(reads, name=f"{a.name}-reader")
        shorten: float = a.extra.get("shorten", 0.0)
        slow: float = a.extra.get("slow", 0.0)
        for _ in range(a.ops):
            if slow:
                a.net.slow_writers[a.name] = slow
            _kv_ops(a, kv, 1, ("put",))
            a.net.slow_writers.pop(a.name, None)
            if shorten and a.rng.random() < 0.8:
                a.net.lossy[a.name] = shorten
                short = deadline(total=a.rng.uniform(0.02, 0.2), clock=a.rt.monotonic)
                with contextlib.suppress(PassivePaxosError), short:
                    log.claim_writer(a.ttl * a.rng.uniform(0.1, 0.3), wait=False)
                a.net.lossy.pop(a.name, None)
                a.rt.sleep(a.rng.uniform(0.5, 1.0) * a.ttl)  # idle: a claimant may take over
            else:
                a.pause(a.extra.get("gap", a.ttl / 8))
        done.append(True)
        reader.join()


def lock_holder(a: Actor) -> None:
    """A lock client shaped for issue 10's finding 7: it acquires, then refreshes once with
    a much shorter ttl while its answers are likely lost (``shorten``: the probability per
    request; the refresh lands, the holder cannot tell), then keeps asking ``valid()``
    (each True a belief, checked against a rival's) and writes fenced while it believes."""
    with a.log() as log:
        locks = Locks(log, owner=a.name, poll=a.ttl / 4, retries=2)
        res = a.fenced.setdefault(LOCK, FencedResource())
        rec = a.obs.locks
        h = rec.invoke(a.name, "acquire", LOCK, a.name)
        try:
            with a.op():
                token = locks.acquire(LOCK, a.ttl, wait=0.0)
        except PassivePaxosError as exc:
            rec.info(h) if outcome_unknown(exc) else rec.fail(h)
            return
        start = rec.ok(h, token).ret
        h = rec.invoke(a.name, "refresh", LOCK, (a.name, token))
        a.net.lossy[a.name] = a.extra.get("shorten", 0.0)
        try:
            with deadline(total=a.rng.uniform(0.02, 0.2), clock=a.rt.monotonic):
                locks.refresh(LOCK, a.ttl * a.rng.uniform(0.1, 0.3))
            rec.ok(h, True)
        except LockLostError:
            rec.ok(h, False)
        except PassivePaxosError as exc:
            rec.info(h) if outcome_unknown(exc) else rec.fail(h)
        a.net.lossy.pop(a.name, None)
        end = a.rt.monotonic() + a.ttl
        while a.rt.monotonic() < end:
            if locks.valid(LOCK):
                a.obs.believe(LOCK, a.name, token, start)
                with contextlib.suppress(StaleTokenError):
                    res.write(token, a.value(), owner=a.name)
                    a.obs.fenced.append((LOCK, token, a.name))
            a.pause(a.ttl / 10)


def _acquire(
    a: Actor, locks: Locks, ttl: float, least: float
) -> tuple[int, float | None] | bool | None:
    """One recorded acquire of ``LOCK``, waiting a random ``least .. 2 ttl``: (token, when
    the grant was recorded); ``False``: held or failed (paused half a ttl, try again);
    ``None``: outcome unknown (the caller stops: it may hold the lock)."""
    rec = a.obs.locks
    h = rec.invoke(a.name, "acquire", LOCK, a.name)
    try:
        wait = a.rng.uniform(least, 2 * ttl)
        with a.op(more=wait):
            token = locks.acquire(LOCK, ttl, wait=wait)
    except LockHeldError:
        rec.ok(h, None)
        a.pause(ttl / 2)
        return False
    except PassivePaxosError as exc:
        if outcome_unknown(exc):
            rec.info(h)
            return None
        rec.fail(h)
        a.pause(ttl / 2)
        return False
    return token, rec.ok(h, token).ret


def _release(a: Actor, locks: Locks, token: int) -> bool:
    """One recorded release of ``LOCK``; ``False`` when it failed or its outcome is
    unknown (the caller stops)."""
    rec = a.obs.locks
    h = rec.invoke(a.name, "release", LOCK, (a.name, token))
    try:
        with a.op():
            released = locks.release(LOCK, token)
        rec.ok(h, released)
    except PassivePaxosError as exc:
        rec.info(h) if outcome_unknown(exc) else rec.fail(h)
        return False
    return True


def lock_keeper(a: Actor) -> None:
    """Issue 13's keep-alive: acquire, keep the lock alive in a background task
    (``Locks.keep_alive``), and work (fenced writes) while ``KeepAlive.valid()`` says so,
    until it reports the loss or its time is up; then release. The world pauses
    processes past their ttl and cuts stores, so a rival takes the lock over: each True of
    ``valid()`` is a belief the checker holds against the rival's grant, and a keeper whose
    loss is never reported stays stuck (liveness)."""
    if a.extra.get("delay"):
        a.rt.sleep(a.rng.uniform(0.05, 0.2) * a.ttl)
    with a.log() as log:
        locks = Locks(log, owner=a.name, retries=2)
        res = a.fenced.setdefault(LOCK, FencedResource())
        for _ in range(a.ops):
            ttl = a.ttl
            got = _acquire(a, locks, ttl, 0.0)
            if got is None:
                return  # it may hold the lock: a next acquire would be a renewal
            if not isinstance(got, tuple):
                continue
            token, start = got
            lost: list[str] = []
            keep = locks.keep_alive(LOCK, on_lost=lost.append)
            end = a.rt.monotonic() + ttl * a.rng.uniform(1.0, 4.0)
            try:
                while not keep.lost.is_set() and a.rt.monotonic() < end:
                    if keep.valid():
                        a.obs.believe(LOCK, a.name, token, start)
                        with contextlib.suppress(StaleTokenError):
                            res.write(token, a.value(), owner=a.name)
                            a.obs.fenced.append((LOCK, token, a.name))
                    a.pause(ttl / 10)
            finally:
                keep.stop()
            if lost:
                # never released (it may be the rival's by now), and not acquired again:
                # if it is still ours, a next acquire would be a renewal (lock_client)
                return
            if not _release(a, locks, token):
                return  # it may still hold the lock: a next acquire would be a renewal
            a.pause()


def lock_client(a: Actor) -> None:
    """acquire (waiting a while), work while ``valid()`` (fenced writes), refresh with a
    longer or shorter ttl, release."""
    if a.extra.get("delay"):  # a rival that starts just after the holder
        a.rt.sleep(a.rng.uniform(0.05, 0.2) * a.ttl)
    with a.log() as log:
        # the library's default pause between looks while waiting: a tenth of the holder's ttl
        locks = Locks(log, owner=a.name, retries=2)
        res = a.fenced.setdefault(LOCK, FencedResource())
        rec = a.obs.locks
        for _ in range(a.ops):
            ttl = a.ttl * a.rng.choice((0.5, 1.0))
            got = _acquire(a, locks, ttl, ttl if a.extra.get("delay") else 0.0)
            if got is None:
                return  # it may hold the lock: a next acquire would be a renewal
            if not isinstance(got, tuple):
                continue
            token, start = got
            for _ in range(a.rng.randint(1, 5)):
                if locks.valid(LOCK):
                    a.obs.believe(LOCK, a.name, token, start)
                    try:
                        res.write(token, a.value(), owner=a.name)
                        a.obs.fenced.append((LOCK, token, a.name))
                    except StaleTokenError:
                        pass
                a.pause(ttl / 3)
                if a.rng.random() < 0.4:
                    new_ttl = ttl * a.rng.choice((0.25, 1.0, 2.0))
                    h = rec.invoke(a.name, "refresh", LOCK, (a.name, token))
                    try:
                        with a.op():
                            locks.refresh(LOCK, new_ttl)
                        rec.ok(h, True)
                        ttl = new_ttl
                    except LockLostError:
                        rec.ok(h, False)
                        break
                    except PassivePaxosError as exc:
                        rec.info(h) if outcome_unknown(exc) else rec.fail(h)
            if locks.valid(LOCK):
                a.obs.believe(LOCK, a.name, token, start)
            if not _release(a, locks, token):
                return  # it may still hold the lock: a next acquire would be a renewal
            a.pause()


def pipeliner(a: Actor) -> None:
    """One producer with several appends in flight (``Log.append_async``, depth 1-8),
    maybe under the writer lease: every value is recorded in call order (the log must
    hold its values in that order), and each future's outcome as for ``append``."""
    with a.log() as log:
        if a.rng.random() < 0.3:
            with contextlib.suppress(PassivePaxosError):
                log.claim_writer(a.ttl)
        depth = a.rng.choice((1, 2, 4, 8))
        segment = 0  # the pipeline restarts (restart_pipeline) after a failure it saw
        order = a.obs.pipelines.setdefault(f"{a.name}/{segment}", [])
        inflight: collections.deque[tuple[bytes, Any]] = collections.deque()
        broken = False

        def settle() -> None:
            nonlocal broken
            v, fut = inflight.popleft()
            try:
                (pos,) = fut.result()
            except PassivePaxosError as exc:
                bucket = a.obs.unknown if outcome_unknown(exc) else a.obs.failed
                bucket.append((v, a.name, type(exc).__name__))
                broken = True
                return
            a.obs.ack(v, pos.slot, pos.index, a.name)
            a.obs.acked_at[v] = a.now()

        for _ in range(a.ops * 3):
            if broken and not inflight:  # every earlier one settled: start a new pipeline
                log.restart_pipeline()
                broken = False
                segment += 1
                order = a.obs.pipelines.setdefault(f"{a.name}/{segment}", [])
            v = a.value()
            order.append(v)
            inflight.append((v, log.append_async([v])))
            if len(inflight) >= depth:
                settle()
            if a.rng.random() < 0.3:
                a.pause()
        while inflight:
            settle()


def group_appender(a: Actor) -> None:
    """Several threads of one process append through one ``Log`` object, each under its
    own short deadline, so that their appends share group-commit rounds and a waiter's
    time often runs out while a round carrying its values is in flight (it must then wait
    for that round's answer, never report "nothing was written": an outside review of
    issue 14 found a waiter that did, and whose values then landed)."""
    with a.log() as log:

        def worker() -> None:
            for _ in range(a.ops):
                _append(a, log, [a.value() for _ in range(a.rng.randint(1, 2))])
                a.pause()

        threads = [a.rt.spawn(worker, name=f"{a.name}-g{i}") for i in range(3)]
        for t in threads:
            t.join()


def snapshotter(a: Actor) -> None:
    """Snapshots the log's entries and trims below the snapshot, a couple of times."""
    with a.log() as log:
        for _ in range(2):
            a.rt.sleep(a.rng.uniform(0.1, 1.0))
            try:
                snap = log.snapshot()
                if a.rng.random() < a.extra.get("trim", 0.7):
                    # ``through``: sometimes the snapshot's own slot too (then the tail
                    # itself may be a tombstone)
                    through = a.extra.get("through", 0.0)
                    log.trim(snap.slot + (1 if through and a.rng.random() < through else 0))
            except PassivePaxosError:
                continue


def reader(a: Actor) -> None:
    """Reads the whole log a few times (every entry it sees is checked against every
    other reader's)."""
    with a.log() as log:
        for _ in range(3):
            a.rt.sleep(a.rng.uniform(0.05, 1.0))
            try:
                _read_all(a, log)
            except PassivePaxosError:
                continue


def member_changer(a: Actor) -> None:
    """Adds the spare store, then removes a store, then deletes the removed store and
    re-creates it empty (as docs/log.md allows once a removal completed)."""
    from passivepaxos.membership import change

    spare: int = a.extra["spare"]
    members: list[int] = a.extra["members"]
    a.rt.sleep(a.rng.uniform(0.05, 1.0))
    with a.log() as log:
        try:
            change(log, "add", a.net.url(spare))
        except PassivePaxosError:
            return
        a.rt.sleep(a.rng.uniform(0.05, 1.0))
        gone = a.rng.choice([m for m in members if m != a.extra.get("keep")] or members)
        try:
            change(log, "remove", a.net.url(gone))
        except PassivePaxosError:
            return
    a.obs.removed.append(gone)
    a.rt.sleep(a.rng.uniform(0.0, 0.5))
    a.net.wipe(gone)
    if a.extra.get("readd"):
        # the wiped store joins again through a membership change (now it may vote: for
        # the new configuration, and for an old one a stale writer still proposes on)
        a.rt.sleep(a.rng.uniform(0.05, 0.3))
        with a.log() as log:
            try:
                change(log, "add", a.net.url(gone))
            except PassivePaxosError:
                return


def stray(a: Actor) -> None:
    """A misconfigured client: it names only one store of the quorum (the library must
    refuse: a part of a configuration would run another protocol on the same objects)."""
    a.rt.sleep(a.rng.uniform(0.0, 1.0))
    one = a.url.split(",")[a.rng.randrange(len(a.url.split(",")))]
    try:
        log = a.open_log(a.rt, a.name, one)
    except PassivePaxosError:
        return  # refused: right
    with log:
        for _ in range(a.ops):
            _append(a, log, [a.value()])


ROLES: dict[str, Callable[[Actor], None]] = {
    "appender": appender,
    "lease_appender": lease_appender,
    "claimant": claimant,
    "kv": kv_client,
    "holder": lease_holder,
    "lock_holder": lock_holder,
    "lock": lock_client,
    "lock_keeper": lock_keeper,
    "snapshotter": snapshotter,
    "pipeliner": pipeliner,
    "group_appender": group_appender,
    "reader": reader,
    "members": member_changer,
    "stray": stray,
}
