"""The runtime seam is not bypassed (``passivepaxos/runtime.py``).

Every library module reads clocks, sleeps, draws randomness and ids, and starts
concurrent work only through a ``Runtime``: the whole-stack simulator depends on it (a
direct ``time.sleep`` or ``threading.Thread`` escapes its virtual clock and scheduler,
an unseeded RNG its replay). This file checks it statically, with ``ast``, over every
module of ``passivepaxos/`` and ``backends/``; the exceptions are listed in
``ALLOWLIST`` with their reason, and an entry that no longer needs to be there fails too
(so the list cannot rot). Then it checks dynamically that a Store, the consensus driver,
a MemberStore and the recipes' retry really use the runtime they were given.
"""

from __future__ import annotations

import ast
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from passivepaxos import frame
from passivepaxos.capabilities import ListMode
from passivepaxos.consensus import core, driver
from passivepaxos.deadline import Deadline
from passivepaxos.errors import DeadlineExceededError, NotAMemberError, TransientError
from passivepaxos.manifest import Manifest, MemberStore
from passivepaxos.recipes._entry import append_retrying, retry_backoff
from passivepaxos.retry import Backoff
from passivepaxos.runtime import RealRuntime, Task
from passivepaxos.store import RetryPolicy, Store, open_store
from passivepaxos.urls import open_backend
from passivepaxos.wrappers import FaultPlan, FaultyBackend

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("passivepaxos", "backends")

SEAM = "passivepaxos/runtime.py"  # the one module that may touch the real primitives

# module (a file, or a folder ending in "/" for every file under it) -> why it may
ALLOWLIST: dict[str, str] = {
    "passivepaxos/bench/": (
        "a tool that measures real time (latencies, throughput, wall clock of real services "
        "and real processes); never part of a simulated run"
    ),
    "passivepaxos/checker.py": (
        "the search budget of a linearizability check (timeout=) and its reported seconds "
        "are the checker's own real CPU time, which a virtual clock does not measure; the "
        "histories it checks carry whatever clock recorded them (Recorder: a runtime's)"
    ),
    "passivepaxos/consensus/explore.py": (
        "reports how long the exhaustive exploration itself ran (time.perf_counter); the "
        "schedules it explores are enumerated, never timed"
    ),
    "passivepaxos/simulation/runtime.py": (
        "the simulator's scheduler: it runs simulated threads on real threads (one at a "
        "time, handing a baton over real locks) and a real-time watchdog turns a real "
        "block (a seam bypass) into an error; it is what the seam is replaced BY"
    ),
    "passivepaxos/simulation/__main__.py": (
        "reports how long a batch of simulated runs took in real time (time.perf_counter); "
        "never read inside a run"
    ),
    "backends/local.py": (
        "a file's generation id and temp-file name must be unique across OS processes "
        "sharing the directory (uuid4); a real-filesystem backend the simulator never runs"
    ),
}

# (module, attribute) pairs that bypass the seam; None: every attribute of the module
FORBIDDEN: dict[str, frozenset[str] | None] = {
    "time": frozenset(
        {
            "time",
            "time_ns",
            "monotonic",
            "monotonic_ns",
            "sleep",
            "perf_counter",
            "perf_counter_ns",
            "process_time",
            "process_time_ns",
            "thread_time",
            "thread_time_ns",
            "clock_gettime",
            "clock_gettime_ns",
            # read the wall clock when called without a time (a formatted "now")
            "localtime",
            "gmtime",
            "ctime",
            "asctime",
            "strftime",
        }
    ),
    "random": None,  # except a seeded random.Random(seed): see _Checker
    # a blocking get/put is a real wait the simulator cannot schedule: the runtime's
    # condition (or a pool's futures) instead; importing the module at all is flagged
    "queue": None,
    "secrets": None,
    "os": frozenset({"urandom"}),
    "uuid": frozenset({"uuid1", "uuid4"}),
    "threading": frozenset(
        {
            "Thread",
            "Event",
            "Condition",
            "RLock",
            "Timer",
            "Semaphore",
            "BoundedSemaphore",
            "Barrier",
        }
    ),
    "concurrent.futures": frozenset(
        {"ThreadPoolExecutor", "ProcessPoolExecutor", "wait", "as_completed"}
    ),
    "datetime.datetime": frozenset({"now", "utcnow", "today"}),
    "datetime.date": frozenset({"today"}),
}


# modules whose mere import is a violation (nothing in them fits the seam)
FORBIDDEN_IMPORTS = frozenset({"queue"})


def _forbidden(module: str, attr: str) -> bool:
    if module not in FORBIDDEN:
        return False
    names = FORBIDDEN[module]
    return names is None or attr in names


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


class _Checker(ast.NodeVisitor):
    """Finds references to forbidden names outside type annotations.

    Names are resolved through the module's imports (``import time as t``, ``from time
    import sleep``, ``import concurrent.futures``, ``from datetime import datetime``), so
    a reference counts however it is spelled, also through ``getattr(time, "sleep")``
    (a computed name counts as any), a module bound to a variable (``clock = time``) or a
    star import (itself the violation). Importing a forbidden name, or a module of
    ``FORBIDDEN_IMPORTS`` at all (``queue``), is itself a violation. A seeded
    ``random.Random(seed)`` is allowed (deterministic: the consensus simulator draws its
    whole run from one); ``Random()`` and ``Random(None)`` are not (OS-seeded)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[Violation] = []
        self.aliases: dict[str, str] = {}  # local name -> dotted module or module.attr
        self._seeded: set[int] = set()  # ids of random.Random nodes called with a seed

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append(Violation(self.path, getattr(node, "lineno", 0), what))

    # -- imports ---------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name in FORBIDDEN_IMPORTS:
                self._add(node, f"import {a.name}")
            if a.asname is not None:
                self.aliases[a.asname] = a.name
            else:
                top = a.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module is None or node.level:
            return
        for a in node.names:
            if a.name == "*":
                # every forbidden name of the module arrives unseen: the star itself counts
                if node.module in FORBIDDEN or node.module in FORBIDDEN_IMPORTS:
                    self._add(node, f"from {node.module} import *")
                continue
            full = f"{node.module}.{a.name}"
            self.aliases[a.asname or a.name] = full
            if _forbidden(node.module, a.name) and not (
                node.module == "random" and a.name == "Random"
            ):
                self._add(node, f"from {node.module} import {a.name}")

    def visit_Assign(self, node: ast.Assign) -> None:
        # ``clock = time``: the name now spells the module (``clock.sleep`` is time.sleep)
        dotted = self._dotted(node.value)
        if dotted is not None and (dotted in FORBIDDEN or dotted in FORBIDDEN_IMPORTS):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.aliases[target.id] = dotted
        self.generic_visit(node)

    # -- references ------------------------------------------------------------------------

    def _dotted(self, node: ast.expr) -> str | None:
        """The dotted name ``node`` refers to, resolved through the imports."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    def _check_ref(self, node: ast.expr) -> bool:
        dotted = self._dotted(node)
        if dotted is None or "." not in dotted:
            return False
        module, attr = dotted.rsplit(".", 1)
        if not _forbidden(module, attr):
            return False
        if dotted == "random.Random" and id(node) in self._seeded:
            return True  # a seeded RNG: deterministic
        self._add(node, dotted)
        return True

    def visit_Call(self, node: ast.Call) -> None:
        if self._dotted(node.func) == "random.Random" and _seeded(node):
            self._seeded.add(id(node.func))
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args:
            self._check_getattr(node)
        self.generic_visit(node)

    def _check_getattr(self, node: ast.Call) -> None:
        """``getattr(time, "sleep")`` is ``time.sleep``; ``getattr(time, name)`` with a
        computed name could be any of them, so it counts too (for a module with
        forbidden names)."""
        module = self._dotted(node.args[0])
        if module is None or module not in FORBIDDEN:
            return
        if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
            attr = node.args[1].value
            if isinstance(attr, str) and _forbidden(module, attr):
                self._add(node, f"{module}.{attr}")
        else:
            self._add(node, f"getattr({module}, ...)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not self._check_ref(node):
            self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self._check_ref(node)

    # -- annotations are types, not uses -----------------------------------------------------

    def visit_arg(self, node: ast.arg) -> None:
        return  # only its annotation is below it

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for child in (*node.decorator_list, *node.args.defaults, *node.args.kw_defaults):
            if child is not None:
                self.visit(child)
        for stmt in node.body:
            self.visit(stmt)

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)


def _seeded(call: ast.Call) -> bool:
    """Whether ``random.Random(...)`` is given a seed: ``Random()`` and ``Random(None)``
    (or ``seed=None``) draw theirs from the OS."""
    given = [*call.args, *(k.value for k in call.keywords if k.arg in (None, "x", "seed"))]
    if not given:
        return False
    first = given[0]
    return not (isinstance(first, ast.Constant) and first.value is None)


def _modules() -> Iterator[Path]:
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _violations(path: Path) -> list[Violation]:
    rel = path.relative_to(ROOT).as_posix()
    checker = _Checker(rel)
    checker.visit(ast.parse(path.read_text(), filename=rel))
    return checker.found


def _allowed_by(rel: str) -> str | None:
    for key in ALLOWLIST:
        if rel == key or (key.endswith("/") and rel.startswith(key)):
            return key
    return None


def _scan() -> tuple[list[Violation], dict[str, list[Violation]]]:
    """(violations outside the seam and the allowlist, violations per allowlist entry)."""
    bad: list[Violation] = []
    used: dict[str, list[Violation]] = {k: [] for k in ALLOWLIST}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel == SEAM:
            continue
        found = _violations(path)
        key = _allowed_by(rel)
        if key is None:
            bad.extend(found)
        else:
            used[key].extend(found)
    return bad, used


def test_no_module_bypasses_the_runtime_seam() -> None:
    bad, _ = _scan()
    assert not bad, (
        "these bypass passivepaxos.runtime (use the object's runtime: clocks, sleep, rng, "
        "token_bytes, spawn, pool, lock/rlock/condition/event, wait), or add the module "
        "to ALLOWLIST with the reason:\n" + "\n".join(map(str, bad))
    )


def test_allowlist_has_no_stale_entries() -> None:
    _, used = _scan()
    stale = [k for k, found in used.items() if not found]
    assert not stale, f"allowlisted but no longer bypassing the seam: remove {stale}"
    for key, why in ALLOWLIST.items():
        assert why.strip(), f"{key}: an allowlist entry needs its reason"
        assert (ROOT / key).exists(), f"{key}: no such module"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time\ntime.sleep(1)", ["time.sleep"]),
        ("import time as t\nx = t.monotonic", ["time.monotonic"]),
        ("from time import perf_counter", ["from time import perf_counter"]),
        ("import random\nrandom.random()", ["random.random"]),
        ("import random\nr = random.Random()", ["random.Random"]),
        ("import random\nr = random.Random(4)", []),
        ("import random\nr = random.Random(None)", ["random.Random"]),
        ("import random\nr = random.Random(x=None)", ["random.Random"]),
        ("import random\nr = random.Random(seed)", []),
        ("from time import *\nsleep(1)", ["from time import *"]),
        ("from os.path import *", []),
        ('import time\ngetattr(time, "sleep")(1)', ["time.sleep"]),
        ('import time as t\ngetattr(t, "monotonic_ns")()', ["time.monotonic_ns"]),
        ('import time\ngetattr(time, "strptime")', []),
        ("import time\ngetattr(time, name)", ["getattr(time, ...)"]),
        ('import os\ngetattr(os, "urandom")(4)', ["os.urandom"]),
        ('import threading\ngetattr(threading, "Thread")', ["threading.Thread"]),
        ("import time\nclock = time\nclock.sleep(1)", ["time.sleep"]),
        ("import time\ntime.localtime()", ["time.localtime"]),
        ("import time\ntime.ctime()", ["time.ctime"]),
        ("import time\ntime.process_time()", ["time.process_time"]),
        ("import time\ntime.perf_counter_ns()", ["time.perf_counter_ns"]),
        ("import time\ntime.monotonic_ns()", ["time.monotonic_ns"]),
        ("import time\ntime.time_ns()", ["time.time_ns"]),
        ("import queue\nq = queue.Queue()\nq.get()", ["import queue", "queue.Queue"]),
        ("from queue import Queue", ["from queue import Queue"]),
        ("import queue as q", ["import queue"]),
        ("from random import Random\nr = Random()", ["random.Random"]),
        ("import os\nos.urandom(8)", ["os.urandom"]),
        ("import uuid\nuuid.uuid4()", ["uuid.uuid4"]),
        ("import threading\nthreading.Thread(target=f)", ["threading.Thread"]),
        ("import threading\nx = threading.Lock()", []),
        ("from threading import Event", ["from threading import Event"]),
        ("import concurrent.futures\nconcurrent.futures.wait([])", ["concurrent.futures.wait"]),
        (
            "from concurrent.futures import ThreadPoolExecutor",
            ["from concurrent.futures import ThreadPoolExecutor"],
        ),
        ("from concurrent.futures import Future\nf = Future()", []),
        ("from datetime import datetime\ndatetime.now()", ["datetime.datetime.now"]),
        ("import threading\ndef f(e: threading.Event) -> threading.Thread: ...", []),
        ("import threading\nx: threading.Event | None = None", []),
        ("import threading\ndef f(e=threading.Event()): ...", ["threading.Event"]),
        ("import time\ndef f(clock=time.monotonic): ...", ["time.monotonic"]),
        (
            "from dataclasses import field\nimport threading\n"
            "class A:\n    e: threading.Event = field(default_factory=threading.Event)",
            ["threading.Event"],
        ),
    ],
)
def test_the_checker_sees_every_spelling(source: str, expected: list[str]) -> None:
    checker = _Checker("x.py")
    checker.visit(ast.parse(source))
    assert [v.what for v in checker.found] == expected


# -- the seam is used: a runtime with a virtual clock that records what it is asked -----------


class CountingRuntime(RealRuntime):
    """Real threads and locks; a virtual monotonic clock that only ``sleep`` advances; a
    seeded RNG; deterministic ids; and a record of every sleep, spawn and wait."""

    def __init__(self, seed: int = 7) -> None:
        super().__init__(seed)
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.spawned: list[str] = []
        self.waits = 0
        self.ids = 0
        self._mu = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._mu:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def token_bytes(self, n: int = 16) -> bytes:
        with self._mu:
            self.ids += 1
            return self.ids.to_bytes(n, "big")

    def token_hex(self, n: int = 16) -> str:
        return self.token_bytes(n).hex()

    def spawn(self, fn: Callable[..., object], /, *args: Any, name: str) -> Task:
        with self._mu:
            self.spawned.append(name)
        return super().spawn(fn, *args, name=name)

    def wait(
        self, futures: Any, timeout: float | None = None, return_when: str = "ALL_COMPLETED"
    ) -> Any:
        with self._mu:
            self.waits += 1
        return super().wait(futures, timeout, return_when)


def _mem() -> str:
    return f"memory://seam-{uuid.uuid4().hex[:10]}"


def _failing_store(
    rt: CountingRuntime, failures: int, attempts: int = 6
) -> tuple[Store, FaultyBackend]:
    fb = FaultyBackend(open_backend(_mem()), FaultPlan())
    fb.script(*(["before"] * failures))
    return Store(fb, retry=RetryPolicy(attempts=attempts), runtime=rt), fb


def test_store_backoff_sleeps_on_its_runtime_with_its_rng() -> None:
    rt = CountingRuntime(seed=11)
    store, _ = _failing_store(rt, failures=3)
    assert store.get("k") is None
    assert len(rt.sleeps) == 3
    # the one backoff policy, drawn from the runtime's seeded RNG
    expected_rng = random.Random(11)
    policy = Backoff(0.05, 2.0)
    assert rt.sleeps == [policy.delay(i, expected_rng) for i in range(3)]
    # and the same seed replays the same pauses
    again = CountingRuntime(seed=11)
    s2, _ = _failing_store(again, failures=3)
    s2.get("k")
    assert again.sleeps == rt.sleeps


def test_store_write_ids_come_from_its_runtime() -> None:
    rt = CountingRuntime()
    store = open_store(_mem(), runtime=rt)
    assert store.runtime is rt
    store.put("k", b"v")
    got = store.get_object("k")
    assert got is not None and got.write_id == (1).to_bytes(16, "big")
    raw = store.backend.get("k")
    assert raw is not None and frame.unpack(raw[0]).write_id == got.write_id


def test_store_deadline_runs_on_virtual_time() -> None:
    """A deadline on the runtime's clock passes when that clock says so, not the real one."""
    rt = CountingRuntime()
    store = Store(open_backend(_mem()), deadline=Deadline(5.0, clock=rt.monotonic), runtime=rt)
    store.put("k", b"v")  # well inside the 5 virtual seconds
    rt.sleep(6.0)  # no real time passes
    with pytest.raises(DeadlineExceededError):
        store.get("k")


def test_store_backoff_is_cut_to_a_virtual_deadline() -> None:
    rt = CountingRuntime(seed=3)
    fb = FaultyBackend(open_backend(_mem()), FaultPlan(before=1.0))
    store = Store(
        fb,
        retry=RetryPolicy(attempts=50, base_delay=1.0, max_delay=1.0),
        deadline=Deadline(3.0, clock=rt.monotonic),
        runtime=rt,
    )
    with pytest.raises(DeadlineExceededError):
        store.get("k")
    assert sum(rt.sleeps) <= 3.0  # it never slept past the deadline


def test_driver_quorum_work_goes_through_the_runtime() -> None:
    rt = CountingRuntime()
    stores = [open_store(_mem(), runtime=rt) for _ in range(3)]
    assert driver.runtime_of(stores) is rt
    assert driver.propose(stores, "i", b"v", "p") == b"v"
    assert driver.learn(stores, "i") == b"v"
    assert rt.spawned and set(rt.spawned) == {"ppx-quorum"}
    assert rt.waits > 0
    n = len(rt.spawned)
    got = driver.each_store(stores, lambda s: s.get("nothing"))
    assert got == [None, None, None]
    assert len(rt.spawned) == n + 3


def test_driver_sleeps_of_the_core_go_to_the_runtime() -> None:
    rt = CountingRuntime()
    stores = [open_store(_mem(), runtime=rt) for _ in range(3)]

    def gen() -> Any:
        yield [core.Sleep(0.25)]
        yield [core.Sleep(0.5), core.Get(0, "x"), core.Get(1, "x")]
        return "done"

    assert driver.run(gen(), stores) == "done"
    assert sorted(rt.sleeps) == [0.25, 0.5]


def test_member_store_shares_its_inner_store_runtime() -> None:
    rt = CountingRuntime()
    inner = open_store(_mem(), runtime=rt)
    m = Manifest.new(ListMode.CREATE, ("a",), rt)
    assert m.ident == (1).to_bytes(16, "big").hex()  # the identity is the runtime's draw
    member = MemberStore(inner, m)
    assert member.runtime is rt
    before = len(rt.spawned)
    with pytest.raises(NotAMemberError):  # the store holds no manifest
        member.get("log/0/x")
    assert len(rt.spawned) == before + 1  # the check ran as a runtime task
    member.close()


class _FakeLog:
    """What append_retrying needs of a Log, with a runtime."""

    def __init__(self, runtime: CountingRuntime, failures: int) -> None:
        self.runtime = runtime
        self.failures = failures

    def append_positions(self, data: list[bytes]) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise TransientError("injected", url="memory://x")
        return ["pos"]


def test_recipe_retries_sleep_on_the_log_runtime_with_the_one_policy() -> None:
    rt = CountingRuntime(seed=5)
    log = _FakeLog(rt, failures=4)
    got: Any = append_retrying(log, b"x", retries=5, delay=0.05)  # type: ignore[arg-type]
    assert got == "pos"
    rng = random.Random(5)
    policy = retry_backoff(0.05)
    assert rt.sleeps == [policy.delay(i, rng) for i in range(4)]
    for i, s in enumerate(rt.sleeps):  # floor 0.5, doubling, capped at 8 x delay
        c = min(0.4, 0.05 * 2**i)
        assert 0.5 * c <= s <= c


def test_a_keepalive_does_not_inherit_the_deadline_it_was_started_under() -> None:
    """Tasks run in their starter's context (an ambient deadline applies to quorum
    requests), but a lock's keepalive outlives the call that starts it: refreshes cut by
    that call's deadline would let the lock lapse while its holder still works."""
    import time

    from passivepaxos.deadline import deadline
    from passivepaxos.log import Log
    from passivepaxos.manifest import init_log
    from passivepaxos.recipes.lock import Locks

    url = _mem()
    init_log(url)
    with Log.open(url, writer_id="A") as log:
        locks = Locks(log, owner="A")
        # a ttl of 1.5 s tolerates a keepalive starved for about a second on a loaded
        # machine; with refreshes cut at the 0.4 s deadline the lock lapses by ~1.5 s
        with deadline(0.4), locks.hold("x", ttl=1.5):
            time.sleep(2.2)  # well past the deadline: refreshes every 0.5 s must go on
            assert locks.valid("x")
