"""One seeded whole-stack run: a log on 1, 3 or 5 simulated stores, several simulated
processes using it through the library (appenders with and without the writer lease, a
claimant, KV and lock clients, a snapshotter/trimmer, a membership changer, readers),
faults for a while (store faults, crashes, pauses longer than the TTL, store amnesia,
clock drift inside or outside the lease bound, damage by an outside actor), then no faults
until every live process finishes, then final readers and the checks (``checks``).

``run(seed, profile)`` is a pure function of its arguments: the same seed replays the same
trace (``RunResult.trace_hash``), and a failing run names the one command that replays it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from passivepaxos import frame
from passivepaxos.errors import (
    ContainerNotFoundError,
    DamagedSlotError,
    InvalidObjectError,
    PassivePaxosError,
    QuorumError,
    TransientError,
)
from passivepaxos.log import Log
from passivepaxos.log.tailcache import TailCache
from passivepaxos.manifest import initialise
from passivepaxos.recipes.lock import FencedResource
from passivepaxos.runtime import Task
from passivepaxos.simulation.checks import Damage, Observations, check, lease_bound_holds
from passivepaxos.simulation.runtime import Scheduler, SimRuntime, SimulationError
from passivepaxos.simulation.stores import Network, StoreFaults
from passivepaxos.simulation.workloads import ROLES, Actor, read_all
from passivepaxos.snapshot import is_tombstone
from passivepaxos.types import PutMode

__all__ = ["PROFILES", "Profile", "RunResult", "World", "run"]


@dataclass(frozen=True)
class Profile:
    """The space one seed draws a run from."""

    name: str
    stores: tuple[int, ...] = (1, 3, 3, 5)
    modes: tuple[str, ...] = ("create", "cas", "blocks")
    faults: StoreFaults = field(default_factory=StoreFaults)
    roles: tuple[tuple[str, int, int], ...] = (
        ("appender", 1, 2),
        ("lease_appender", 0, 1),
        ("claimant", 0, 1),
        ("kv", 0, 1),
        ("lock", 0, 1),
        ("snapshotter", 0, 1),
        ("reader", 1, 1),
    )
    ops: tuple[int, int] = (1, 3)
    ttl: tuple[float, float] = (0.3, 1.2)
    crashes: int = 1  # at most this many process crashes (each restarts the role)
    pauses: int = 1  # at most this many pauses (up to 3 TTLs)
    amnesia: float = 0.0  # probability of one store wiped in place (3+ stores)
    membership: float = 0.0  # probability of a membership changer (3+ stores)
    drift: float = 0.12  # |rate - 1| of each process's clock, inside the lease bound
    outside: bool = False  # some clocks far outside the bound
    kv_lease: float = 0.5  # probability that one KV client holds the writer lease
    kv_claim: float = 0.3  # probability that a second KV client claims it late
    readd: bool = False  # the membership changer adds the removed store back once wiped
    shorten: float = 0.0  # holder role: lost-answer probability of its shorter renewal
    slow_holder: float = 0.0  # holder role: probability that a put's answer comes late
    kv_kinds: tuple[str, ...] = ()  # the operations of KV clients that do not hold the lease
    kv_gap: float = 0.0  # their think time, in TTLs (0: the default)
    stray: float = 0.0  # probability of a client naming one store of a quorum (3+ stores)
    # damage by an outside actor, one of these kinds per run (those the run's layout
    # allows: "foreign" and "tombstone" need a single create store): see World._damage
    damage: tuple[str, ...] = ()
    fresh: float = 0.0  # probability that a new appender process starts after the damage
    trim: float = 0.7  # snapshotter: probability of trimming below each snapshot
    forward: bool = False  # every Log forwards under contention (passivepaxos.log.forward)
    timeout: tuple[float, float] = (0.5, 4.0)  # each client operation's deadline (own clock)
    gap: float = 0.05  # think time between a client's operations (up to, virtual seconds)
    horizon: float = 3.0  # virtual seconds of faults
    deadline: float = 300.0  # virtual seconds for every live process to finish after


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("mixed", stray=0.3),
        Profile(
            "log",
            roles=(
                ("appender", 2, 3),
                ("lease_appender", 0, 1),
                ("claimant", 0, 1),
                ("snapshotter", 0, 1),
                ("reader", 1, 1),
            ),
            stray=0.3,
        ),
        Profile("kv", roles=(("kv", 2, 3), ("reader", 0, 1)), kv_lease=0.8),
        Profile(
            "lease",
            stores=(1, 3),
            roles=(("kv", 3, 3),),
            kv_lease=1.0,
            kv_claim=1.0,
            ops=(8, 12),
            faults=StoreFaults(before=0.03, after=0.1, slow=0.15, late=0.02, cuts=0.2),
        ),
        # finding 4's shape: the holder renews with a much shorter TTL, the record lands,
        # its answers are lost; a claimant counts the short TTL, takes over and writes; the
        # holder's other thread keeps reading by lease
        Profile(
            "renewal",
            stores=(1, 3),
            roles=(("holder", 1, 1), ("kv", 1, 1)),
            kv_lease=0.0,
            kv_claim=1.0,
            kv_kinds=("put", "put", "get"),
            kv_gap=0.05,
            shorten=0.85,
            ops=(2, 4),
            ttl=(1.0, 2.0),
            timeout=(0.5, 1.0),
            faults=StoreFaults(before=0.01, after=0.02, slow=0.02, late=0.0, outages=0.0, cuts=0.0),
            crashes=0,
            pauses=0,
        ),
        # finding 5's shape: the holder's puts land but their answers come late; another
        # client reads the new value through the log meanwhile; the holder reads by lease
        Profile(
            "inflight",
            stores=(1, 3),
            roles=(("holder", 1, 1), ("kv", 1, 1)),
            kv_lease=0.0,
            kv_claim=0.0,
            kv_kinds=("get",),
            kv_gap=0.05,
            slow_holder=0.9,
            ops=(3, 6),
            ttl=(1.0, 2.0),
            faults=StoreFaults(
                before=0.01, after=0.02, slow=0.02, slow_by=(0.2, 1.0), outages=0.0, cuts=0.0
            ),
            crashes=0,
            pauses=0,
        ),
        # finding 7's shape: a lock holder refreshes with a much shorter ttl, the entry
        # lands, its answers are lost; a rival waiting for the lock counts the short ttl
        # and takes over while the holder keeps asking valid()
        Profile(
            "refresh",
            stores=(1, 3),
            roles=(("lock_holder", 1, 1), ("lock", 1, 1)),
            shorten=0.85,
            ops=(1, 2),
            ttl=(1.0, 2.0),
            timeout=(0.5, 1.0),
            faults=StoreFaults(before=0.01, after=0.02, slow=0.02, late=0.0, outages=0.0, cuts=0.0),
            crashes=0,
            pauses=0,
        ),
        # issue 13's keep-alive: keepers renew in the background and work while valid();
        # paused past their ttl and cut from the store, a rival takes the lock over
        Profile(
            "keepalive",
            roles=(("lock_keeper", 2, 3), ("lock", 0, 1)),
            faults=StoreFaults(after=0.1, slow=0.2, cuts=0.3),
            timeout=(0.3, 1.0),
            ttl=(1.0, 2.0),
            pauses=3,
        ),
        Profile(
            "locks",
            roles=(("lock", 2, 3), ("reader", 0, 1)),
            faults=StoreFaults(after=0.1, slow=0.2, cuts=0.3),
            timeout=(0.3, 1.0),
            ttl=(1.5, 3.0),
        ),
        Profile(
            "membership",
            stores=(3, 3, 5),
            roles=(("appender", 2, 3), ("reader", 1, 1)),
            membership=1.0,
            ops=(3, 5),
            gap=0.25,
            pauses=2,
            faults=StoreFaults(cuts=0.3, marker_loss=0.4),
        ),
        # finding 1's shape: the membership schedule with a stale writer (paused across the
        # change, cut off the remaining old member when back), and the removed store,
        # wiped, added back: for the stale writer's old configuration only the kept store
        # (with the removal's DECIDED marker) and the empty re-added one answer
        Profile(
            "stale",
            stores=(3,),
            roles=(("appender", 2, 3), ("reader", 1, 1)),
            membership=1.0,
            readd=True,
            horizon=6.0,  # the stale writer is back at 3-4.5 s: its cut link must still cut
            ops=(3, 5),
            gap=0.25,
            pauses=0,
            crashes=0,
            faults=StoreFaults(cuts=0.1, outages=0.0, marker_loss=0.2),
        ),
        Profile(
            "amnesia",
            stores=(3, 3, 5),
            roles=(("appender", 2, 3), ("reader", 1, 1)),
            amnesia=1.0,
            ops=(4, 6),
            gap=0.3,
        ),
        Profile(
            "drift",
            outside=True,
            roles=(("lease_appender", 1, 1), ("kv", 1, 1), ("lock", 1, 1), ("appender", 0, 1)),
        ),
        Profile(
            "storm",
            stores=(3, 3, 5),
            faults=StoreFaults(
                before=0.05,
                after=0.08,
                late=0.04,
                slow=0.03,
                throttle=0.02,
                marker_loss=0.4,
                outages=0.5,
                cuts=0.3,
            ),
            roles=(("appender", 3, 3), ("reader", 1, 1)),
            crashes=0,
            pauses=2,
        ),
        # issue 10's findings 11 and 13: an outside actor deletes a middle slot, copies
        # another log's record past the tail, or deletes / corrupts a tombstone after a
        # trim; a fresh appender (a new process, e.g. a CLI append) starts after it. No
        # late writes: a request landing after the damage would blur who wrote what
        Profile(
            "damage",
            stores=(1, 1, 3),
            modes=("create", "create", "cas", "blocks"),
            roles=(("appender", 2, 3), ("snapshotter", 1, 1), ("reader", 1, 1)),
            faults=StoreFaults(late=0.0, outages=0.15, cuts=0.05),
            damage=("delete", "foreign", "tombstone"),
            fresh=0.9,
            trim=1.0,
            ops=(2, 4),
        ),
        # issue 12's forwarding: producers hand entries to whoever writes (parcels in the
        # inbox, folded at most once), a lease holder folding for them, snapshots and trims
        Profile(
            "forward",
            stores=(1,),
            modes=("create",),
            roles=(
                ("appender", 3, 5),
                ("lease_appender", 0, 1),
                ("snapshotter", 0, 1),
                ("reader", 1, 1),
            ),
            forward=True,
            ops=(3, 6),
            gap=0.02,
        ),
        # issue 12's pipelining: producers with appends in flight (append_async), maybe
        # under the lease, beside plain appenders, a snapshotter and a reader
        Profile(
            "pipeline",
            roles=(
                ("pipeliner", 1, 2),
                ("appender", 0, 2),
                ("claimant", 0, 1),
                ("snapshotter", 0, 1),
                ("reader", 1, 1),
            ),
            ops=(2, 4),
        ),
        # issue 12's stable leader: lease holders on quorums open each slot after their
        # own with a leader's ACCEPT (consensus core: "Leader's accept"), beside claimants
        # taking over, plain appenders, membership changes (the removed store wiped and
        # added back) and stores wiped in place
        Profile(
            "leader",
            stores=(3, 3, 5),
            modes=("create", "cas"),
            roles=(
                ("lease_appender", 1, 2),
                ("kv", 0, 1),
                ("claimant", 1, 2),
                ("appender", 0, 1),
                ("reader", 1, 1),
            ),
            kv_lease=1.0,
            membership=0.5,
            readd=True,
            amnesia=0.3,
            ops=(3, 6),
            pauses=3,  # holders paused past their TTL: a claimant takes their next slot
            faults=StoreFaults(cuts=0.3, outages=0.5, marker_loss=0.4),
        ),
        Profile("calm", faults=StoreFaults.none(), crashes=0, pauses=0),
        # issue 14's review: threads of one process sharing a Log's group-commit rounds,
        # each append under a deadline shorter than a slow round (not in the rotation: it
        # would shift every rotation seed's profile)
        Profile(
            "group",
            roles=(("group_appender", 1, 2), ("appender", 0, 1), ("reader", 1, 1)),
            ops=(2, 4),
            timeout=(0.05, 0.6),
        ),
    )
}
ROTATION = (
    "mixed",
    "log",
    "kv",
    "locks",
    "membership",
    "amnesia",
    "drift",
    "storm",
    "lease",
    "renewal",
    "inflight",
    "refresh",
    "stale",
    "damage",
    "forward",
    "pipeline",
    "leader",
)
"""``--profile all``: seed ``s`` runs ``ROTATION[s % len(ROTATION)]``."""


def profile_for(seed: int, name: str) -> Profile:
    if name == "all":
        return PROFILES[ROTATION[seed % len(ROTATION)]]
    return PROFILES[name]


@dataclass
class RunResult:
    seed: int
    profile: str
    mutation: str | None
    plan: dict[str, Any]
    violations: list[str]
    notes: list[str]
    trace_hash: str
    steps: int
    virtual: float
    trace: list[str] = field(default_factory=list)

    def replay(self) -> str:
        m = f" --mutation {self.mutation}" if self.mutation else ""
        return f"python -m passivepaxos.simulation --seed {self.seed} --profile {self.profile}{m}"

    def describe(self) -> str:
        head = f"seed {self.seed} [{self.profile}] {self.plan}"
        if not self.violations:
            return f"{head}: ok"
        body = "\n  ".join(self.violations[:12])
        return f"{head}: {len(self.violations)} violation(s)\n  {body}\n  replay: {self.replay()}"


_PREFIX = {"lock_holder": "lh"}  # process names: the role's first two letters unless here
_EXPECTED = (QuorumError, TransientError, ContainerNotFoundError)


class World:
    def __init__(self, seed: int, profile: Profile, *, mutation: str | None = None) -> None:
        self.seed = seed
        self.profile = profile
        self.mutation = mutation
        self.sched = Scheduler(seed, switch=0.5, watchdog=5.0, max_steps=400_000, max_time=5_000.0)
        self.rng = random.Random(f"passivepaxos-sim:{seed}:world:{profile.name}")
        rng = self.rng
        p = profile
        self.n = rng.choice(p.stores)
        self.mode = rng.choice(p.modes)
        self.ttl = rng.uniform(*p.ttl)
        self.net = Network(self.sched, self.n + 1, p.faults, horizon=p.horizon)
        # half the runs on stores that cannot list from a key (file://, Dropbox): tail
        # discovery probes instead of listing (issue 12's re-review: the damage profile
        # had never run the probing path on one store)
        self.net.probing = self.rng.random() < 0.5
        self.members = list(range(self.n))
        self.spare = self.n
        self.url = ",".join(self.net.url(i) for i in self.members)
        self.obs = Observations(lambda: self.sched.now)
        self.net.watch = self.obs.observe  # what each process was told (damage checks)
        self.fenced: dict[str, FencedResource] = {}
        self.tasks: dict[str, tuple[Task, SimRuntime]] = {}
        self.roles: dict[str, str] = {}
        self.rates: list[float] = []
        self.plan: dict[str, Any] = {"stores": self.n, "mode": self.mode, "ttl": round(self.ttl, 3)}
        if self.net.probing:
            self.plan["discovery"] = "probe"
        self.world = self.sched.process("world")
        self.final: dict[tuple[int, int], bytes] | None = None
        self._incarnations: dict[str, int] = {}
        self._stale: tuple[float, int] | None = None
        self.damage_kind: str | None = None
        if p.damage:
            single = self.n == 1 and self.mode == "create"
            kinds = [k for k in p.damage if single or k == "delete"]
            self.damage_kind = rng.choice(kinds)
            self.plan["damage"] = self.damage_kind

    # -- processes ---------------------------------------------------------------------------

    def open_log(
        self, rt: SimRuntime, name: str, url: str | None = None, cache: TailCache | None = None
    ) -> Log:
        """Open the log as a process does (``Log.open`` on its URL list: the manifest, and
        on one store the tail hint beside it; ``cache``: a warm machine's tail cache). A
        new ``Log`` knows nothing its process's earlier ones were told (a serverless
        appender's next call is a new process): the damage checks count from here."""
        url = url or self.url
        hit = cache.load(url) if cache is not None else None  # (no request: local)
        # "open", the cached tail slot (-1: a cold start)
        self.obs.views.setdefault(name, []).append(
            (self.sched.now, "open", -1 if hit is None else hit.slot)
        )
        return Log.open(
            url,
            runtime=rt,
            writer_id=name,
            fetch_ahead=2,
            tail_cache=cache,
            forward=self.profile.forward,
        )

    def _rate(self) -> float:
        p = self.profile
        if p.outside and self.rng.random() < 0.5:
            return self.rng.choice((0.55, 0.7, 1.45, 1.7))
        return 1.0 + self.rng.uniform(-p.drift, p.drift)

    def _start(self, role: str, base: str, extra: dict[str, Any] | None = None) -> None:
        k = self._incarnations.get(base, 0)
        self._incarnations[base] = k + 1
        name = base if k == 0 else f"{base}.{k}"
        rate = self._rate()
        self.rates.append(rate)
        rt = self.sched.process(name, offset=self.rng.uniform(0, 1000), drift=rate - 1.0)
        actor = Actor(
            name,
            rt,
            random.Random(f"passivepaxos-sim:{self.seed}:actor:{name}"),
            self.obs,
            self.net,
            self.url,
            self.rng.randint(*self.profile.ops),
            self.ttl,
            self.fenced,
            self.open_log,
            dict(extra or {}),
            self.profile.timeout,
            self.profile.gap,
        )
        self.roles[name] = role
        self.obs.started[name] = self.sched.now
        task = rt.spawn(self._body, actor, role, name=name)
        self.tasks[name] = (task, rt)

    def _body(self, actor: Actor, role: str) -> None:
        try:
            ROLES[role](actor)
        except _EXPECTED:
            pass
        except DamagedSlotError as exc:
            if not self.obs.damage:  # after injected damage: expected (the checks judge it)
                self.obs.errors.append(f"{actor.name} ({role}): {type(exc).__name__}: {exc}")
        except PassivePaxosError as exc:
            self.obs.errors.append(f"{actor.name} ({role}): {type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug: report it with the run
            self.obs.errors.append(f"{actor.name} ({role}) raised {type(exc).__name__}: {exc}")
        self.obs.finished.add(actor.name)

    # -- the run -------------------------------------------------------------------------------

    def _main(self) -> None:
        net, p, rng = self.net, self.profile, self.rng
        net.start(self.world)
        net.enabled = False
        initialise(self.url, self.mode, runtime=self.world)
        net.enabled = True
        counts: dict[str, int] = {}
        for role, lo, hi in p.roles:
            for i in range(rng.randint(lo, hi)):
                extra: dict[str, Any] = {}
                if role == "kv" and i == 0 and rng.random() < p.kv_lease:
                    extra["lease"] = True
                    if p.name == "lease":
                        extra["gap"] = self.ttl / 3
                        # finding 5's shape: the holder's writes land, their answers come
                        # late, while others read through the log and it reads by lease
                        self.net.slow_writers[f"{role[:2]}{i}"] = 0.5
                elif role == "kv" and i == (1 if p.kv_lease else 0) and rng.random() < p.kv_claim:
                    extra["claim"] = True
                elif role == "kv" and p.name == "lease":
                    extra["gap"] = self.ttl / 3
                if role == "lock_holder":
                    extra["shorten"] = p.shorten
                elif role == "lock" and p.shorten:
                    extra["delay"] = True
                if role == "holder":
                    extra.update(shorten=p.shorten, slow=p.slow_holder, gap=self.ttl / 10)
                elif role == "kv" and p.kv_kinds:
                    extra["kinds"] = p.kv_kinds
                    if p.shorten:  # a claimant that starts waiting early
                        extra["claim_after"] = 0.3
                if role == "kv" and p.kv_gap:
                    extra["gap"] = p.kv_gap * self.ttl
                if role == "snapshotter":
                    extra["trim"] = p.trim
                    if p.damage:
                        extra["through"] = 0.5
                self._start(role, f"{_PREFIX.get(role, role[:2])}{i}", extra)
                counts[role] = counts.get(role, 0) + 1
        if self.n >= 3 and rng.random() < p.stray:
            self._start("stray", "st")
            counts["stray"] = 1
        if self.n >= 3 and rng.random() < p.membership:
            extra = {"spare": self.spare, "members": list(self.members)}
            if self.n == 3:
                extra["keep"] = self._stale_writer_schedule()
            if p.readd:
                extra["readd"] = True
            self._start("members", "mc", extra)
            counts["members"] = 1
        self.plan["roles"] = counts
        self.world.spawn(self._faults, name="faults")
        if self._stale is not None:
            self.world.spawn(self._stale_writer, name="stale")
        if self.damage_kind is not None:
            self.world.spawn(self._damage, name="damage")
        self.world.sleep(p.horizon)
        net.faults_off()
        end = self.sched.now + p.deadline
        for task, _ in list(self.tasks.values()):
            if self.sched.now < end:
                task.join(end - self.sched.now)
        for name, (task, rt) in self.tasks.items():
            if task.is_alive() and not rt.crashed:
                self.obs.stuck[name] = self.sched.where(name)
                rt.crash()
        net.flush()
        self._one_leader_per_slot()
        self._final_reads()

    def _one_leader_per_slot(self) -> None:
        """The leader's precondition, checked on the stores themselves: at most one
        leader's ACCEPT (a round-0 ballot) per slot, whoever sent it (consensus core:
        "Leader's accept"). Reads the memory behind the network: no scheduling, no
        randomness, so the run's schedule is the same with or without it."""
        from passivepaxos.consensus import core

        ids: dict[str, set[str]] = {}
        for b in self.net.inner:
            for m in b.list("log/"):
                parts = m.key.split("/")
                if len(parts) != 3 or parts[2] not in ("list", f"{0:020d}"):
                    continue
                got = b.get(m.key)
                if got is None:
                    continue
                try:
                    payload = frame.unpack(got[0]).payload
                except InvalidObjectError:
                    continue  # damage by an outside actor: judged by the damage checks
                if parts[2] == "list":
                    entries = core.decode_cas_list(payload) or []
                    first = core.msg_from_obj(entries[0]) if entries else None
                else:
                    first = core.decode_msg(payload)
                # a round-0 ACCEPT with an id (ZERO, one store's fast path, has none)
                if (
                    first is not None
                    and first.kind == "A"
                    and first.ballot[0] == 0
                    and first.ballot[1]
                ):
                    ids.setdefault(parts[1], set()).add(first.ballot[1])
        for slot, who in sorted(ids.items()):
            if len(who) > 1:
                self.obs.errors.append(
                    f"two leaders' ACCEPTs at slot {int(slot)}: ballot ids {sorted(who)}"
                )

    def _faults(self) -> None:
        p, rng, sched = self.profile, self.rng, self.sched
        events: list[tuple[float, str]] = []
        events += [(rng.uniform(0, p.horizon), "crash") for _ in range(rng.randint(0, p.crashes))]
        events += [(rng.uniform(0, p.horizon), "pause") for _ in range(rng.randint(0, p.pauses))]
        # one store losing its state per run: a membership changer wipes the store it
        # removed, so a run with one gets no wipe in place (two of three stores wiped is
        # beyond what any quorum survives); the draw is made either way (same schedules)
        if self.n >= 3 and rng.random() < p.amnesia:
            at = rng.uniform(0.5 * p.horizon, p.horizon)
            if "members" not in self.roles.values():
                events.append((at, "amnesia"))
        events.sort()
        for at, what in events:
            if at > sched.now:
                self.world.sleep(at - sched.now)
            live = [
                n
                for n, (t, rt) in self.tasks.items()
                if t.is_alive() and not rt.crashed and self.roles[n] != "members"
            ]
            if what == "amnesia":
                self._amnesia()
            elif live and what == "crash":
                name = rng.choice(live)
                self.tasks[name][1].crash()
                self.obs.crashed.add(name)
                self.plan.setdefault("crashed", []).append(name)
                if rng.random() < 0.7:
                    base = name.split(".")[0]
                    self._start(self.roles[name], base)
            elif live and what == "pause":
                name = rng.choice(live)
                d = self.ttl * rng.uniform(0.5, 3.0)
                self.tasks[name][1].pause(d)
                self.plan.setdefault("paused", []).append(name)

    def _stale_writer_schedule(self) -> int:
        """Finding 1's schedule around a membership change on 3 stores: store ``b`` is away
        early (slots are decided on the other two, ``a`` and the one to be removed); a
        writer ``X`` is paused from early on until after the removal (its tail is stale);
        when it is back, its link to ``a`` is cut, so for its stale slot it reaches only
        ``b`` (which got the removal's copy of the DECIDED marker) and the removed store,
        wiped. Returns ``b`` (the member changer keeps it)."""
        rng, net = self.rng, self.net
        b = rng.choice(self.members)
        start = rng.uniform(0.1, 0.4)
        net.outages[b] = (start, start + rng.uniform(0.5, 1.2))
        # (stale profile: paused later, once it has appended while b was away, so that its
        # next append proposes right after its own known tail; membership: draws unchanged)
        late = rng.uniform(0.2, 0.5) if self.profile.readd else 0.05
        self._stale = (start + late, b)
        return b

    def _stale_writer(self) -> None:
        assert self._stale is not None
        at, b = self._stale
        if at > self.sched.now:
            self.world.sleep(at - self.sched.now)
        writers = [
            n for n, r in self.roles.items() if r == "appender" and not self.tasks[n][1].crashed
        ]
        if not writers:
            return
        x = self.rng.choice(writers)
        back = self.rng.uniform(3.0, 4.5)
        self.tasks[x][1].pause(back)
        removed = self.obs.removed
        self.world.sleep(back - 0.01)
        a = [i for i in self.members if i != b and i not in removed]
        for i in a:
            self.net._cuts[(x, i)] = (self.sched.now, self.sched.now + self.rng.uniform(0.5, 2.0))
        self.plan["stale"] = x

    def _amnesia(self) -> None:
        """Finding 9's schedule: store ``c`` was away (recent slots are on ``a`` and ``b``
        only, their markers not on ``c``); ``b`` is wiped (or re-created empty); ``c`` is
        back and ``a`` goes away for a while, so a writer with a stale tail finds only the
        empty ``b`` and ``c`` for the slots ``a`` and ``b`` decided."""
        rng, net, now = self.rng, self.net, self.sched.now
        a, b, c = rng.sample(self.members, 3)
        net.outages[c] = (max(0.0, now - rng.uniform(0.3, 1.5)), now)
        net.wipe(b)
        net.outages[a] = (now, now + rng.uniform(0.3, 1.5))
        self.plan["wiped"] = b

    # -- damage (issue 10's findings 11 and 13) -------------------------------------------

    def _damage(self) -> None:
        """An outside actor (an operator, another log's tool) damages the log once, at a
        random time of the fault horizon (retrying every 0.1 s while the log is too short
        or not yet trimmed), and a fresh appender may start after it. The damage is done on
        the stores directly, atomically: no simulated process runs meanwhile."""
        p, rng, sched = self.profile, self.rng, self.sched
        at = rng.uniform(0.2, 0.7) * p.horizon
        self.world.sleep(at)
        rt = self.sched.process("damager")
        self.net.quiet.add("damager")
        kind = self.damage_kind
        done: Damage | None = None
        while done is None and sched.now < p.horizon - 0.1:
            if kind == "delete":
                done = self._delete_slot(rt)
            elif kind == "foreign":
                done = self._copy_foreign(rt)
            else:
                done = self._damage_tombstone()
            if done is None:
                self.world.sleep(0.1)
        if done is None:
            self.plan["damage"] = f"{kind}: not done (log too short or never trimmed)"
            return
        self.obs.damage.append(done)
        self.plan["damage"] = f"{done.kind} slot {done.slot} at t={done.at:.3f}"
        later = rng.uniform(0.0, 0.3)
        if rng.random() < p.fresh and sched.now + later < p.horizon - 0.05:
            self.world.sleep(later)  # (started inside the horizon: the main thread joins it)
            self._start("appender", "fr")

    def _delete_slot(self, rt: SimRuntime) -> Damage | None:
        """Delete every object of a middle slot ``k`` (one of the last few with two slots
        after it) on every store, after reading its entries (to tell a refill from them)."""
        top = self.net.top_slot()
        if top < 2:
            return None
        k = self.rng.randint(max(0, top - 4), top - 2)
        try:
            with self.open_log(rt, "damager") as log:
                entries = tuple(e.value for e in log.read(k, to_slot=k) if e.slot == k)
        except PassivePaxosError:
            return None
        # atomic from here: no runtime call
        if self._late() or not any(self.net.slot_keys(i, k + 1) for i in range(self.n)):
            return None
        if self.n == 1 and self._tombstone_at(k):
            return None  # trimmed meanwhile: that is the tombstone kind's business
        if not self.net.remove_slot(k):
            return None
        return Damage("delete", k, self.sched.now, entries)

    def _tombstone_at(self, slot: int) -> bool:
        got = self.net.inner[0].get(f"log/{slot:020d}")
        return got is not None and is_tombstone(frame.unpack(got[0]).payload)

    def _copy_foreign(self, rt: SimRuntime) -> Damage | None:
        """Copy another log's record of slot ``top + 1`` onto ours (one create store),
        when that slot is still free; the other log is written on demand, fault-free."""
        name = f"{self.net.names[0]}-other"
        url = f"memory://{name}"
        if name not in self.net.others:
            self.net.others.append(name)
            initialise(url, "create", runtime=rt)
        with self.open_log(rt, "damager", url) as other:
            have = other.head()
            for _ in range(4):
                want = self.net.top_slot() + 1
                while have < want:
                    have = other.append([f"other#{have + 1}".encode()])[0]
                # atomic from here: no runtime call
                if self._late():
                    return None
                top = self.net.top_slot()
                if top + 1 > have:
                    continue  # our log grew meanwhile: write more of the other one
                key = f"log/{top + 1:020d}"
                src = self.net._memory.MemoryBackend(name).get(key)
                if top < 0 or src is None:
                    return None
                self.net.inner[0].put(key, src[0], PutMode.OVERWRITE)
                self.sched.note("damage-foreign", top + 1)
                return Damage("foreign", top + 1, self.sched.now)
        return None

    def _late(self) -> bool:
        """The fault horizon has passed: the final readers may be reading, and damage
        done now would be damage they were never meant to see (review of issue 12: seed
        100 of damage deleted a slot under the final read)."""
        return self.sched.now >= self.profile.horizon

    def _damage_tombstone(self) -> Damage | None:
        """Delete a tombstone trim left (one create store), or corrupt it (a field changed,
        its checksum left as it was, in a valid frame)."""
        if self._late():
            return None
        b = self.net.inner[0]
        tombs = []
        for m in b.list("log/"):
            got = b.get(m.key)
            if got is not None and is_tombstone(frame.unpack(got[0]).payload):
                tombs.append(m.key)
        if not tombs:
            return None
        # the last one half of the time (when it is the tail, a writer lands in its hole)
        key = tombs[-1] if self.rng.random() < 0.5 else self.rng.choice(tombs)
        slot = int(key[4:24])
        if self.rng.random() < 0.5:
            b.delete(key)
            self.sched.note("damage-tombstone-deleted", slot)
            return Damage("tombstone-deleted", slot, self.sched.now)
        got = b.get(key)
        assert got is not None
        fr = frame.unpack(got[0])
        doc = json.loads(fr.payload)
        doc["writer"] = "mallory"
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        left = frame.pack(data, fr.write_id)
        b.put(key, left, PutMode.OVERWRITE)
        self.sched.note("damage-tombstone-corrupted", slot)
        return Damage("tombstone-corrupted", slot, self.sched.now, left=left)

    def _healed(self, d: Damage) -> bool:
        """Whether a valid tombstone is back at a damaged tombstone's slot (a trim's
        OVERWRITE in flight during the damage, retried after its answer was lost)."""
        if not d.kind.startswith("tombstone"):
            return False
        got = self.net.inner[0].get(f"log/{d.slot:020d}")
        if got is None or got[0] == d.left:
            return False
        return is_tombstone(frame.unpack(got[0]).payload)

    def _final_reads(self) -> None:
        """A final reader reads everything and verifies the chain; with 3+ stores one more
        reader per store is cut off that store (readers must agree whichever stores they
        reach)."""
        rt = self.sched.process("final")
        try:
            with self.open_log(rt, "final") as log:
                if self.obs.damage:  # the read may stop at the damage: keep what it read
                    final: dict[tuple[int, int], bytes] = {}
                    try:
                        read_all(self.obs, log, "final", into=final)
                    except DamagedSlotError as exc:
                        self.obs.final_stop = (exc.slot, exc.reason)
                    self.obs.verified = log.verify().to_json()
                    self.final = final
                    self.obs.damage[0].healed = self._healed(self.obs.damage[0])
                    return  # one final reader: the others would stop at the damage too
                final = read_all(self.obs, log, "final")
                report = log.verify()
                if report.damaged:
                    self.obs.verify.append(str(report.to_json()))
                self.final = final
        except PassivePaxosError as exc:
            self.obs.errors.append(
                f"final read failed with faults off: {type(exc).__name__}: {exc}"
            )
            return
        if self.n < 3:
            return
        wiped = self.plan.get("wiped")
        # one more reader, cut off one store (a random one: all of them would double a
        # run's cost): readers must agree whichever majority they reach
        cut = [i for i in self.members if i != wiped and i not in self.obs.removed]
        for i in self.rng.sample(cut, min(1, len(cut))):
            name = f"final-{i}"
            rt = self.sched.process(name)
            self.net.isolate(name, i)
            try:
                with self.open_log(rt, name) as log:
                    read_all(self.obs, log, name)
            except PassivePaxosError:
                continue  # with one store out and another wiped, reads may fail: no guarantee

    def run(self) -> RunResult:
        failure: str | None = None
        with self.net.routed():
            try:
                self.sched.run(self._main, process=self.world)
            except SimulationError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                failure = f"the world itself raised {type(exc).__name__}: {exc}"
            finally:
                self.net.close()
        self.plan["inside_bound"] = inside = lease_bound_holds(self.rates)
        violations = check(self.obs, inside_bound=inside, final=self.final)
        if failure is not None:
            violations.insert(0, failure)
        return RunResult(
            self.seed,
            self.profile.name,
            self.mutation,
            self.plan,
            violations,
            self.obs.notes,
            self.sched.trace_hash(),
            self.sched.steps,
            self.sched.now,
        )


def run(
    seed: int,
    profile: str = "all",
    *,
    mutation: str | None = None,
    trace: bool = False,
    apply_mutation: Callable[[str], Any] | None = None,
) -> RunResult:
    """One seeded run (``profile`` "all": the rotation picks it from the seed)."""
    prof = profile_for(seed, profile)
    w = World(seed, prof, mutation=mutation)
    res = w.run()
    if trace:
        res.trace = list(w.sched.format_trace())
    return replace(res)
