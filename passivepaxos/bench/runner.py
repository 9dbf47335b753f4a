"""Plans and runs a benchmark: our workloads on each store, the peers on the same moto_server,
with one progress callback; ``report.py`` turns the results into tables, targets and plots."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from passivepaxos.bench import workloads as w
from passivepaxos.bench.peers import DDB_LOCK, DELTA, DELTA_FRESH, SLATE_GET, SLATE_PUT
from passivepaxos.bench.workloads import Result, Target
from passivepaxos.errors import ConfigError

__all__ = ["AzureEnv", "BenchConfig", "S3Env", "require", "run"]

STORES = ("memory", "file", "s3", "azure")


@dataclass
class BenchConfig:
    """What to run. ``rtt`` (seconds) is added to every request of every system under test:
    by ``LatencyBackend`` on memory/file, by the proxy in front of moto_server on s3 and in
    front of azurite on azure."""

    stores: tuple[str, ...] = STORES
    rtt: float = 0.01
    n: int = 200  # operations per latency case
    peer_n: int = 50  # operations per peer case (deltalake commits are slow)
    seconds: float = 5.0  # per group-commit case
    contend_seconds: float = 30.0  # per contended case (sustained: issue 12)
    appenders: tuple[int, ...] = (1, 4, 16, 32)
    catchup: int = 100_000  # entries for the catch-up read
    per_slot: int = 100  # entries per append when writing them
    cpu_entries: int = 100_000
    ttl: float = 1.0  # lease ttl for failover
    peers: bool = True
    cli_n: int = 10  # CLI processes (and as many plain boto3 scripts) on s3

    @classmethod
    def quick(cls, **kw: Any) -> BenchConfig:
        """A run of seconds, for tests and a first look."""
        base: dict[str, Any] = dict(
            n=20,
            peer_n=5,
            seconds=1.0,
            contend_seconds=1.0,
            appenders=(1, 2),
            catchup=2_000,
            per_slot=100,
            cpu_entries=5_000,
            ttl=0.3,
            cli_n=2,
        )
        base.update(kw)
        return cls(**base)

    def validate(self) -> None:
        for s in self.stores:
            if s not in STORES:
                raise ConfigError(f"bench: unknown store {s!r} (choose from {', '.join(STORES)})")
        if (
            self.rtt < 0
            or self.n < 1
            or not self.seconds > 0
            or not self.contend_seconds > 0
            or self.catchup < self.per_slot
        ):
            raise ConfigError(
                "bench: --rtt must be >= 0, --n >= 1, --seconds and --contend-seconds > 0, "
                "--catchup >= --per-slot"
            )
        if any(a < 1 for a in self.appenders):
            raise ConfigError("bench: --appenders must be positive integers")


def require(*modules: str, what: str) -> None:
    """Refuse up front (exit 2, one line) when an optional dependency is missing, instead
    of a traceback minutes into a run."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"bench: {what} needs {' and '.join(missing)} (not installed); "
            "install the bench extra: pip install 'passivepaxos[bench]'"
        )


@dataclass
class S3Env:
    """A moto_server with the counting/delaying proxy in front and one bucket."""

    server: Any
    proxy: Any
    bucket: str
    env: dict[str, str]

    owned: bool = True  # stop the server with the proxy

    @classmethod
    def start(cls, rtt: float, server: Any = None) -> S3Env:
        """Start moto_server (unless ``server``, a running ``MotoServer``, is given)."""
        require("moto", "boto3", what="the s3 store (moto_server)")
        from passivepaxos.bench.moto import CREDS, MotoServer
        from passivepaxos.bench.proxy import FaultProxy

        owned = server is None
        if server is None:
            server = MotoServer().start()
        proxy = FaultProxy(server.url, delay=rtt).start()
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        server.client().create_bucket(Bucket=bucket)
        return cls(server, proxy, bucket, {**CREDS, "AWS_ENDPOINT_URL": proxy.url}, owned)

    def round_trip(self, samples: int = 60) -> float:
        """Median time of one small conditional create (PUT ``If-None-Match: *``, the
        request a slot append makes) through the proxy: one round trip on this s3."""
        c = self.server.client(endpoint_url=self.proxy.url)
        body = b"r" * 300
        times = []
        for i in range(samples):
            t = time.perf_counter()
            c.put_object(Bucket=self.bucket, Key=f"rtt-probe/{i}", Body=body, IfNoneMatch="*")
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    def stop(self) -> None:
        self.proxy.stop()
        if self.owned:
            self.server.stop()


@dataclass
class AzureEnv:
    """azurite (npm; installed into a cache directory on first use) with the counting and
    delaying proxy in front and one container; the same shape as :class:`S3Env` (``bucket``
    is the container), so a ``Target`` uses either."""

    server: Any
    proxy: Any
    bucket: str
    env: dict[str, str]
    owned: bool = True

    @classmethod
    def start(cls, rtt: float, server: Any = None) -> AzureEnv:
        """Start azurite (unless ``server``, a running ``Azurite``, is given)."""
        require("azure.storage.blob", what="the azure store (azurite)")
        from passivepaxos.bench.azurite import ACCOUNT, Azurite, connection_string
        from passivepaxos.bench.proxy import FaultProxy

        owned = server is None
        if server is None:
            server = Azurite().start()
        proxy = FaultProxy(server.url.removesuffix("/" + ACCOUNT), delay=rtt).start()
        container = f"bench-{uuid.uuid4().hex[:8]}"
        server.create_container(container)
        env = {"AZURE_STORAGE_CONNECTION_STRING": connection_string(f"{proxy.url}/{ACCOUNT}")}
        return cls(server, proxy, container, env, owned)

    def round_trip(self, samples: int = 60) -> float:
        """Median time of one small conditional create (Put Blob ``If-None-Match: *``)
        through the proxy: one round trip on this azure."""
        from passivepaxos.bench.azurite import ACCOUNT

        body = b"r" * 300
        times = []
        with self.server.service(f"{self.proxy.url}/{ACCOUNT}") as svc:
            container = svc.get_container_client(self.bucket)
            for i in range(samples):
                t = time.perf_counter()
                container.upload_blob(f"rtt-probe/{i}", body, overwrite=False)
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    def stop(self) -> None:
        self.proxy.stop()
        if self.owned:
            self.server.stop()


@dataclass
class Step:
    label: str
    run: Callable[[], list[Result]]


@dataclass
class BenchRun:
    config: BenchConfig
    machine: dict[str, Any]
    round_trips: dict[str, float]
    results: list[Result] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        from passivepaxos.bench import report

        cfg = asdict(self.config)
        return {
            "config": cfg,
            "machine": self.machine,
            "round_trips_ms": {k: round(v * 1000, 3) for k, v in self.round_trips.items()},
            "results": [r.to_json() for r in self.results],
            "skipped": self.skipped,
            "targets": report.targets(self),
            "ratios": report.ratios(self),
            "cost_usd_per_million_ops": report.costs(self),
            "seconds": round(self.seconds, 1),
        }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "passivepaxos": _version("passivepaxos"),
        "moto": _version("moto"),
        "boto3": _version("boto3"),
        "deltalake": _version("deltalake"),
        "slatedb": _version("slatedb"),
        "date": time.strftime("%Y-%m-%d"),
    }


def _many(fn: Callable[..., list[Result]], *args: Any) -> Callable[[], list[Result]]:
    return lambda: fn(*args)


def _one(fn: Callable[..., Result], *args: Any, **kw: Any) -> Callable[[], list[Result]]:
    return lambda: [fn(*args, **kw)]


def _plan(
    cfg: BenchConfig, targets: dict[str, Target], s3: S3Env | None, run: BenchRun
) -> list[Step]:
    steps = [
        Step(f"cpu: append {b}/call (memory)", _one(w.cpu_throughput, b, cfg.cpu_entries))
        for b in (1, 10, 100, 1000)
    ]
    for name, t in targets.items():
        steps += [
            Step(f"append, lease holder ({name})", _one(w.append_holder, t, cfg.n)),
            Step(f"append, fresh process ({name})", _one(w.append_fresh, t, max(1, cfg.n // 4))),
            *(
                Step(
                    f"append, lease holder on a {k}-store quorum ({name})",
                    _one(w.quorum_holder, t, k, max(2, cfg.n // 4)),
                )
                for k in (3, 5)
                if name not in w.PROXIED
            ),
            *(
                Step(
                    f"append, fresh process, hint {lag} behind ({name})",
                    _one(w.append_fresh_lag, t, lag, max(2, cfg.n // 20)),
                )
                for lag in (0, 8, 64)
            ),
            Step(f"append, warm start ({name})", _one(w.append_warm, t, max(2, cfg.n // 4))),
            Step(
                f"append, lease holder at a low rate ({name})",
                _one(w.holder_low_rate, t, max(2, cfg.n // 2)),
            ),
            Step(f"group commit, 16 threads ({name})", _one(w.group_commit, t, 16, cfg.seconds)),
            *(
                Step(
                    f"{w.pipelined_case(d)} ({name})",
                    _one(w.pipelined, t, d, cfg.n * (1 if d == 1 else 4)),
                )
                for d in (1, 4, 16)
            ),
            Step(f"kv put/get ({name})", _many(w.kv_cases, t, cfg.n)),
            Step(f"lock acquire/release ({name})", _one(w.lock_cycle, t, max(1, cfg.n // 2))),
            Step(
                f"catch-up of {cfg.catchup:,} entries ({name})",
                _many(w.catch_up, t, cfg.catchup, cfg.per_slot),
            ),
            Step(f"failover ({name})", _one(w.failover, t, cfg.ttl)),
            Step(f"lock takeover ({name})", _one(w.lock_takeover, t, cfg.ttl)),
        ]
        if name == "s3":
            steps.append(
                Step("CLI append vs a put_object script (s3)", _many(w.cli_wall, t, cfg.cli_n))
            )
        if name in w.PROXIED and "file" in cfg.stores:
            steps.append(
                Step(
                    f"append, lease holder on a quorum of 2 directories and {name}",
                    _one(w.quorum_holder, t, 3, max(2, cfg.n // 4), mixed=True),
                )
            )
        if name == "memory":
            run.skipped.append(
                {"case": "contended append (memory)", "reason": "memory:// lives in one process"}
            )
            continue
        steps += [
            Step(
                f"contended append, {k} processes ({name})",
                _one(w.contended, t, k, cfg.contend_seconds),
            )
            for k in cfg.appenders
        ]
        steps += [
            Step(
                f"{w.contended_case(k, True)} ({name})",
                _one(w.contended, t, k, cfg.contend_seconds, forward=True),
            )
            for k in cfg.appenders
            if k > 1
        ]
    if s3 is not None and cfg.peers:
        steps += _peer_steps(cfg, s3, run)
    return steps


def _peer_steps(cfg: BenchConfig, s3: S3Env, run: BenchRun) -> list[Step]:
    from passivepaxos.bench import peers

    missing = peers.available()
    endpoint = s3.proxy.url
    rtt = run.round_trips.get("s3", 0.0)

    def peer(case: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> list[Result]:
        """One peer run; requests are those between its ready and done hooks."""
        counted: list[Any] = []
        prefix = uuid.uuid4().hex[:10]
        pr = fn(
            endpoint,
            s3.bucket,
            prefix,
            *args,
            on_ready=s3.proxy.reset,
            on_done=lambda: counted.append(s3.proxy.counts()),
            **kw,
        )
        store = "s3" if pr.where.startswith(("s3", "dynamodb")) else "file"
        return [
            Result(
                pr.system,
                store,
                case,
                pr.ops,
                pr.wall,
                list(pr.latencies),
                counted[0] if counted else s3.proxy.counts(),
                rtt=rtt,
                note=pr.note,
            )
        ]

    steps: list[Step] = []
    if missing.get("deltalake") is None:
        steps += [
            Step(
                "deltalake append, long-lived writer (s3)",
                lambda: peer(DELTA, peers.delta_append, cfg.peer_n),
            ),
            Step(
                "deltalake append, fresh process (s3)",
                lambda: peer(DELTA_FRESH, peers.delta_append, max(1, cfg.peer_n // 2), fresh=True),
            ),
        ]
    else:
        run.skipped.append({"case": "deltalake", "reason": str(missing["deltalake"])})
    if missing.get("slatedb") is None:
        steps += [
            Step(
                "slatedb put + durable (s3)", lambda: peer(SLATE_PUT, peers.slatedb_put, cfg.peer_n)
            ),
            Step("slatedb get (s3)", lambda: peer(SLATE_GET, peers.slatedb_get, cfg.peer_n)),
        ]
    else:
        run.skipped.append({"case": "slatedb", "reason": str(missing["slatedb"])})
    if missing.get("dynamodb-lock") is None:
        steps.append(
            Step(
                "python-dynamodb-lock acquire+release (dynamodb on moto_server)",
                lambda: peer(DDB_LOCK, peers.dynamodb_lock, max(1, cfg.n // 2)),
            )
        )
    else:
        run.skipped.append({"case": "dynamodb-lock", "reason": str(missing["dynamodb-lock"])})
    return steps


Progress = Callable[[str, int, int], None]  # (label of the step starting, done, total)


def run(
    cfg: BenchConfig,
    progress: Progress | None = None,
    *,
    moto: Any = None,
    azurite: Any = None,
) -> BenchRun:
    """Run every planned step; ``moto``: a running ``MotoServer`` to use for s3,
    ``azurite``: a running ``Azurite`` to use for azure."""
    cfg.validate()
    s3 = S3Env.start(cfg.rtt, moto) if "s3" in cfg.stores else None
    try:
        az = AzureEnv.start(cfg.rtt, azurite) if "azure" in cfg.stores else None
    except BaseException:
        if s3 is not None:
            s3.stop()
        raise
    servers: dict[str, S3Env | AzureEnv] = {}
    if s3 is not None:
        servers["s3"] = s3
    if az is not None:
        servers["azure"] = az
    targets = {name: Target(name, cfg.rtt, s3=servers.get(name)) for name in cfg.stores}
    round_trips = {name: cfg.rtt for name in cfg.stores if name not in servers}
    try:
        for name, env in servers.items():
            round_trips[name] = env.round_trip()
            targets[name].rtt = round_trips[name]
        out = BenchRun(cfg, machine(), round_trips)
        steps = _plan(cfg, targets, s3, out)
        t0 = time.perf_counter()
        for i, step in enumerate(steps):
            if progress is not None:
                progress(step.label, i, len(steps))
            out.results.extend(step.run())
        if progress is not None:
            progress("done", len(steps), len(steps))
        out.seconds = time.perf_counter() - t0
        return out
    finally:
        for t in targets.values():
            t.close()
        for env in servers.values():
            env.stop()
