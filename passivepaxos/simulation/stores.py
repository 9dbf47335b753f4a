"""Simulated stores: ``memory://`` backends behind a network that takes virtual time and
fails the way real ones do, every fault drawn from the run's seed.

Each request of a simulated process travels (virtual latency, a scheduler switch: other
processes run meanwhile), meets its fate and takes effect; its answer is back at once
unless it is slow or lost (then more virtual time passes before the caller hears). Fates:

- ``before``: fails without effect (a refused connection, a 503);
- ``after``: takes effect, the answer is lost (a timeout after the write landed);
- ``late``: the caller times out, the write lands later (its precondition checked when it
  lands, as a service does);
- ``slow``: takes effect, the answer comes back only after a long while;
- ``throttle``: ``ThrottledError``, without effect;
- ``marker``: a DECIDED-marker write lost on its way (never lands);
- outage windows (a store refuses everything for a while) and cut links (one process's
  requests to one store are lost before or after taking effect);
- amnesia, applied by the world: a store wiped in place (as if its directory were deleted
  and re-created empty) or deleted (``ContainerNotFoundError`` for its users).

Why not ``wrappers.FaultyBackend``: it lands late writes after a number of later requests,
while here they land at a virtual time, and outages, links and latency need the scheduler
anyway. Its fault names and meanings are the same.

``Network.faults_off()`` stops every fault (latency stays): the liveness phase of a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from passivepaxos.capabilities import Capabilities
from passivepaxos.errors import ThrottledError, TransientError
from passivepaxos.simulation.runtime import Scheduler, SimRuntime
from passivepaxos.store import RetryPolicy, Store
from passivepaxos.types import Backend, ObjectMeta, PutMode, Version
from passivepaxos.urls import StoreURL, backend_module

__all__ = ["Network", "SimBackend", "StoreFaults"]

T = TypeVar("T")

_run_ids = itertools.count()

SIM_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.2, resolve_attempts=4)
"""Store retries in the simulator: few and quick (virtual time is cheap, switches not)."""


@dataclass(frozen=True)
class StoreFaults:
    """Per-request probabilities and the shapes of the timed faults."""

    before: float = 0.02
    after: float = 0.02
    late: float = 0.01
    slow: float = 0.01
    throttle: float = 0.01
    marker_loss: float = 0.25  # per DECIDED-marker write
    latency: tuple[float, float] = (0.0005, 0.005)  # one way, seconds of virtual time
    slow_by: tuple[float, float] = (0.05, 2.0)  # a slow answer's extra delay
    late_by: tuple[float, float] = (0.01, 1.0)  # when a late write lands
    outages: float = 0.3  # per store: probability of one outage window in the fault phase
    outage_len: tuple[float, float] = (0.05, 1.5)
    cuts: float = 0.1  # per process-store link: probability of one cut window
    cut_len: tuple[float, float] = (0.05, 1.0)

    @classmethod
    def none(cls) -> StoreFaults:
        return cls(0, 0, 0, 0, 0, 0, outages=0, cuts=0)


@dataclass(order=True)
class _LateWrite:
    due: float
    seq: int
    store: int = field(compare=False)
    apply: Callable[[], object] = field(compare=False)


class Network:
    """The stores of one run and the fault model between them and the processes."""

    def __init__(
        self,
        sched: Scheduler,
        n: int,
        faults: StoreFaults,
        *,
        horizon: float = 5.0,
    ) -> None:
        self.sched = sched
        self.faults = faults
        # the stores cannot list from a key: tail discovery probes (drawn by the world)
        self.probing = False
        self.rng = random.Random(f"passivepaxos-sim:{sched.seed}:network")
        run = next(_run_ids)
        self.names = [f"sim{run}-{sched.seed}-s{i}" for i in range(n)]
        self._memory = backend_module("memory")
        self.inner = [self._memory.MemoryBackend(name) for name in self.names]
        self.enabled = True
        self.outages: dict[int, tuple[float, float]] = {}
        for i in range(n):
            if self.rng.random() < faults.outages:
                start = self.rng.uniform(0, horizon)
                self.outages[i] = (start, start + self.rng.uniform(*faults.outage_len))
        self._cuts: dict[tuple[str, int], tuple[float, float] | None] = {}
        self._isolated: set[tuple[str, int]] = set()
        self.slow_writers: dict[str, float] = {}  # process -> probability a write's answer is slow
        self.lossy: dict[str, float] = {}  # process -> probability a request's answer is lost
        # processes whose requests meet no fault (an outside actor: the world's damager)
        self.quiet: set[str] = set()
        self.others: list[
            str
        ] = []  # other memory spaces of the run (another log's), reset at close
        self._late: list[_LateWrite] = []
        self._seq = itertools.count()
        self._courier: object | None = None
        self.horizon = horizon
        self.counts: dict[str, int] = {}
        self._net_rt: SimRuntime | None = None
        # what each process was told, for the checks (``Observations.observe``): called
        # with (process, op, key, answer) when a write is sent (answer None) and when a
        # read's answer reaches the process
        self.watch: Callable[[str, str, str | None, Any], None] | None = None

    # -- set-up ----------------------------------------------------------------------------

    def url(self, i: int) -> str:
        return f"memory://{self.names[i]}"

    def backend(self, i: int) -> SimBackend:
        """A new handle on store ``i`` (requests are attributed to the calling process)."""
        return SimBackend(self, i, self.inner[i])

    def store(self, rt: SimRuntime, i: int, *, retry: RetryPolicy | None = None) -> Store:
        """Store ``i`` opened by process ``rt``."""
        return Store(self.backend(i), runtime=rt, retry=retry or SIM_RETRY)

    def index_of(self, url: str) -> int | None:
        """The store a ``memory://`` URL names, if it is one of this network's."""
        if not url.startswith("memory://"):
            return None
        name = url[len("memory://") :].split("/", 1)[0].split("?", 1)[0]
        try:
            return self.names.index(name)
        except ValueError:
            return None

    @contextlib.contextmanager
    def routed(self) -> Iterator[None]:
        """While active, a store the library opens by URL (``open_store``: a log opening
        its configuration, a membership change opening the store it adds) reaches this
        network's simulated store when the URL names one; any other URL is opened as
        usual. The one place the simulator hooks into the library."""
        import passivepaxos.store as store_module

        names = vars(store_module)
        original: Callable[[str | StoreURL], Backend] = names["open_backend"]

        def open_backend(url: str | StoreURL) -> Backend:
            raw = url if isinstance(url, str) else f"{url.scheme}://{url.container}"
            i = self.index_of(raw)
            if i is None:
                return original(url)
            return self.backend(i)

        names["open_backend"] = open_backend
        try:
            yield
        finally:
            names["open_backend"] = original

    def isolate(self, proc: str, i: int) -> None:
        """Cut process ``proc`` off store ``i`` for good, even with faults off (a final
        reader that must not reach that store)."""
        self._isolated.add((proc, i))

    def start(self, net_rt: SimRuntime) -> None:
        """Start the courier that lands late writes (a thread of process ``net_rt``)."""
        self._net_rt = net_rt
        net_rt.spawn(self._deliver, name="courier")

    def faults_off(self) -> None:
        self.enabled = False
        self.sched.note("faults-off")

    def flush(self) -> None:
        """Land every pending late write now."""
        while self._late:
            w = heapq.heappop(self._late)
            self._land(w)

    def close(self) -> None:
        for name in [*self.names, *self.others]:
            self._memory.reset(name)

    # -- amnesia (applied by the world) ------------------------------------------------------

    def wipe(self, i: int) -> None:
        """Store ``i`` loses everything but keeps answering (deleted and re-created empty
        under its users' feet)."""
        self._memory.wipe(self.names[i])
        self.sched.note("wipe", i)

    def delete(self, i: int) -> None:
        """Store ``i`` is deleted: its users get ``ContainerNotFoundError``."""
        self._memory.reset(self.names[i])
        self.sched.note("delete", i)

    def recreate(self, i: int) -> None:
        """A deleted store ``i`` is created again, empty; new openers reach the new one."""
        self.inner[i] = self._memory.MemoryBackend(self.names[i])
        self.sched.note("recreate", i)

    def objects(self, i: int) -> dict[str, tuple[bytes, Version]]:
        """What store ``i`` holds now (raw framed bytes), for the checks."""
        out: dict[str, tuple[bytes, Version]] = {}
        if not self._memory.exists(self.names[i]):
            return out
        b = self._memory.MemoryBackend(self.names[i])
        for meta in b.list(""):
            got = b.get(meta.key)
            if got is not None:
                out[meta.key] = got
        return out

    # -- damage (applied by the world: an operator or another log's tool, outside the
    # library; direct on the stores, so atomic with respect to every simulated process) ---

    def slot_keys(self, i: int, slot: int) -> list[str]:
        """The keys of ``slot``'s objects on store ``i`` (one object on a single create
        store, a consensus instance's objects on a quorum)."""
        if not self._memory.exists(self.names[i]):
            return []
        key = f"log/{slot:020d}"
        b = self.inner[i]
        return [m.key for m in b.list(key) if m.key == key or m.key.startswith(key + "/")]

    def top_slot(self) -> int:
        """The highest slot any store holds an object of (-1: none)."""
        top = -1
        for i in range(len(self.names)):
            if not self._memory.exists(self.names[i]):
                continue
            for m in self.inner[i].list("log/"):
                digits = m.key[4:24]
                if digits.isdigit() and len(digits) == 20:
                    top = max(top, int(digits))
        return top

    def remove_slot(self, slot: int) -> int:
        """Delete every object of ``slot`` on every store; how many were deleted."""
        n = 0
        for i in range(len(self.names)):
            for key in self.slot_keys(i, slot):
                self.inner[i].delete(key)
                n += 1
        self.sched.note("damage-delete", slot, n)
        return n

    # -- requests --------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _deliver(self) -> None:
        s = self.sched
        while True:
            if not self._late:
                s.block(lambda: bool(self._late))
                continue
            due = self._late[0].due
            if due > s.now:
                s.sleep(due - s.now, local=False)
            while self._late and self._late[0].due <= s.now:
                self._land(heapq.heappop(self._late))

    def _land(self, w: _LateWrite) -> None:
        try:
            w.apply()
            self.sched.note("landed", w.store, w.seq)
        except Exception as exc:  # a precondition failing when it lands: no effect
            self.sched.note("landed", w.store, w.seq, type(exc).__name__)
        self._count("landed")

    def _cut(self, proc: str, i: int) -> tuple[float, float] | None:
        """The window (if any) in which the link from ``proc`` to store ``i`` is cut,
        drawn at the link's first request."""
        link = (proc, i)
        if link not in self._cuts:
            w = None
            if proc != "world" and self.rng.random() < self.faults.cuts:
                start = self.rng.uniform(0, self.horizon)
                w = (start, start + self.rng.uniform(*self.faults.cut_len))
            self._cuts[link] = w
        return self._cuts[link]

    def _fate(self, proc: str, i: int, key: str | None, write: bool) -> str | None:
        if (proc, i) in self._isolated:
            return "cut-before"
        if not self.enabled or proc in self.quiet:
            return None
        now = self.sched.now
        o = self.outages.get(i)
        if o is not None and o[0] <= now < o[1]:
            return "outage"
        c = self._cut(proc, i)
        if c is not None and c[0] <= now < c[1]:
            return "cut-before" if self.rng.random() < 0.5 else "cut-after"
        f = self.faults
        if write and proc in self.slow_writers and self.rng.random() < self.slow_writers[proc]:
            return "slow"
        if proc in self.lossy and self.rng.random() < self.lossy[proc]:
            # a write takes effect (now or later), its answer is lost
            return "late" if write and self.rng.random() < 0.5 else "after"
        if (
            write
            and key is not None
            and key.endswith("/decided")
            and self.rng.random() < f.marker_loss
        ):
            return "marker"
        r = self.rng.random()
        for name, p in (
            ("throttle", f.throttle),
            ("before", f.before),
            ("after", f.after),
            ("slow", f.slow),
            ("late", f.late if write else 0.0),
        ):
            if r < p:
                return name
            r -= p
        return None

    def request(
        self,
        i: int,
        op: str,
        key: str | None,
        apply: Callable[[], T],
        *,
        write: bool,
        url: str,
    ) -> T:
        s = self.sched
        f = self.faults
        proc = s.current_process()
        # one switch per request: it travels (other processes run meanwhile), meets its
        # fate and takes effect; the answer is back at once unless it is slow or lost
        s.sleep(self.rng.uniform(*f.latency), local=False)
        fate = self._fate(proc, i, key, write)
        s.note("req", proc, i, op, key, fate)
        if write and self.watch is not None:
            self.watch(proc, op, key, None)
        if fate is not None:
            self._count(fate)
        if fate in ("outage", "before", "cut-before", "marker"):
            raise TransientError(
                f"injected failure before the request took effect ({fate})", url=url, key=key
            )
        if fate == "throttle":
            raise ThrottledError("injected throttling", url=url, key=key, retry_after=None)
        if fate == "late":
            seq = next(self._seq)
            due = s.now + self.rng.uniform(*f.late_by)
            heapq.heappush(self._late, _LateWrite(due, seq, i, apply))
            s.note("late", i, seq, round(due, 9))
            raise TransientError("injected timeout (the write may land later)", url=url, key=key)
        lost = fate in ("after", "cut-after")
        try:
            result = apply()
        except Exception:
            if lost:
                s.sleep(self.rng.uniform(*f.latency), local=False)
                raise TransientError(
                    "injected lost response (the request took effect)", url=url, key=key
                ) from None
            raise
        if fate == "slow":
            s.sleep(self.rng.uniform(*f.slow_by), local=False)
        if lost:
            s.sleep(self.rng.uniform(*f.latency), local=False)
            raise TransientError(
                "injected lost response (the request took effect)", url=url, key=key
            )
        if not write and self.watch is not None:
            self.watch(proc, op, key, result)
        return result


class SimBackend:
    """One process's view of one store: every request goes through the network."""

    def __init__(self, net: Network, index: int, inner: Any) -> None:
        self.net = net
        self.index = index
        self.inner = inner
        self.url: str = inner.url

    @property
    def capabilities(self) -> Capabilities:
        caps: Capabilities = self.inner.capabilities
        if self.net.probing:  # a store that cannot list from a key (file://, Dropbox)
            caps = dataclasses.replace(caps, seek_list=False)
        return caps

    def close(self) -> None:
        pass

    def get(self, key: str) -> tuple[bytes, Version] | None:
        inner = self.inner
        got: tuple[bytes, Version] | None = self.net.request(
            self.index, "get", key, lambda: inner.get(key), write=False, url=self.url
        )
        return got

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        inner = self.inner
        data = bytes(data)
        version: Version = self.net.request(
            self.index,
            f"put:{mode.kind.value}",
            key,
            lambda: inner.put(key, data, mode),
            write=True,
            url=self.url,
        )
        return version

    def delete(self, key: str, if_version: Version | None = None) -> None:
        inner = self.inner
        self.net.request(
            self.index,
            "delete",
            key,
            lambda: inner.delete(key, if_version),
            write=True,
            url=self.url,
        )

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        inner = self.inner
        items: list[ObjectMeta] = self.net.request(
            self.index,
            "list",
            prefix,
            lambda: list(inner.list(prefix, start_after)),
            write=False,
            url=self.url,
        )
        return iter(items)
