"""The backend capability table: one declaration read by the code, the docs and the CLI.

The list-simulation mode of a log is chosen from it (create > cas > blocks), ``docs/backends.md``
is generated from it (``scripts/gen_docs.py``; a test fails when the file is stale), and
``passivepaxos backends`` prints it. Figures are list prices and documented service limits;
``notes`` says where a figure comes from or what an adapter does about a quirk.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from passivepaxos.errors import ConfigError, UnsupportedError

__all__ = [
    "BACKENDS",
    "Capabilities",
    "ListMode",
    "capabilities_for",
    "choose_mode",
    "render_markdown",
]


class ListMode(enum.Enum):
    """How an append-only list is simulated on a store (recorded in a log's manifest)."""

    CREATE = "create"  # numbered objects, first creator of slot i owns it
    CAS = "cas"  # compare-and-swap on a segment/head object
    BLOCKS = "blocks"  # one single-writer block per proposer (Disk Paxos)


@dataclass(frozen=True, slots=True)
class Capabilities:
    name: str
    schemes: tuple[str, ...]
    create: bool  # create-if-absent that exactly one racer wins
    cas: bool  # update-if-version-matches
    delete_if_version: bool
    consistency: str
    # a LIST shows every write acknowledged before it started, in key order
    strong_list: bool
    # a LIST can start at a key without the store reading every key before it, so its cost
    # does not grow with the log; with strong_list, tail discovery lists once from the hint
    # instead of probing (passivepaxos.log.tail)
    seek_list: bool
    same_name_writes_per_s: float | None  # None: no documented per-object limit
    max_object_bytes: int | None  # largest object one request may write; None: no limit
    usd_per_1000_writes: float
    usd_per_1000_reads: float
    implemented: bool
    notes: str

    def modes(self) -> list[ListMode]:
        """The list modes this store can run, best first."""
        out = []
        if self.create:
            out.append(ListMode.CREATE)
        if self.cas:
            out.append(ListMode.CAS)
        out.append(ListMode.BLOCKS)  # needs only read-after-write consistency
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["schemes"] = list(self.schemes)
        d["modes"] = [m.value for m in self.modes()]
        return d


_GiB = 1 << 30
_MiB = 1 << 20

BACKENDS: tuple[Capabilities, ...] = (
    Capabilities(
        name="memory",
        schemes=("memory",),
        create=True,
        cas=True,
        delete_if_version=True,
        consistency="linearizable (one process)",
        strong_list=True,
        seek_list=True,
        same_name_writes_per_s=None,
        max_object_bytes=None,
        usd_per_1000_writes=0.0,
        usd_per_1000_reads=0.0,
        implemented=True,
        notes="A dict under a lock; for tests, simulation and benchmarks of client CPU.",
    ),
    Capabilities(
        name="local",
        schemes=("file",),
        create=True,
        cas=True,
        delete_if_version=True,
        consistency="linearizable on one host",
        strong_list=True,
        seek_list=False,
        same_name_writes_per_s=None,
        max_object_bytes=None,
        usd_per_1000_writes=0.0,
        usd_per_1000_reads=0.0,
        implemented=True,
        notes=(
            "create = temp file + fsync + os.link (EEXIST loses) + fsync dir; "
            "CAS/overwrite/delete under flock + os.replace + fsync dir; new sub-directories "
            "are fsynced into their parent. A directory fsync failing after the change took "
            "effect is AmbiguousWriteError (visible, durability unknown). One host only: not NFS."
        ),
    ),
    Capabilities(
        name="s3",
        schemes=("s3",),
        create=True,
        cas=True,
        delete_if_version=True,
        consistency="strong read-after-write",
        strong_list=True,
        seek_list=True,
        same_name_writes_per_s=None,
        max_object_bytes=5 * _GiB,
        usd_per_1000_writes=0.005,
        usd_per_1000_reads=0.0004,
        implemented=True,
        notes=(
            "PutObject IfNoneMatch='*' (412 = exists), IfMatch=ETag (412 = moved, 404 = "
            "missing), DeleteObject IfMatch; 409 ConditionalRequestConflict = retry, never "
            "'lost'. ~3,500 PUT/s per prefix. Needs botocore >= 1.35.69 (boto3 >= 1.35.69)."
        ),
    ),
    Capabilities(
        name="s3-compatible",
        schemes=("s3",),
        create=False,
        cas=False,
        delete_if_version=False,
        consistency="read-after-write (required)",
        strong_list=False,
        seek_list=True,
        same_name_writes_per_s=None,
        max_object_bytes=5 * _GiB,
        usd_per_1000_writes=0.004,
        usd_per_1000_reads=0.0004,
        implemented=True,
        notes=(
            "Stores without conditional PUT (older MinIO/Ceph, B2 S3 API): "
            "s3://bucket/prefix?conditional=off; only blocks mode (Disk Paxos). "
            "Prices vary by vendor (B2 shown)."
        ),
    ),
    Capabilities(
        name="gcs",
        schemes=("gs",),
        create=True,
        cas=True,
        delete_if_version=True,
        consistency="strong read-after-write",
        strong_list=True,
        seek_list=True,
        same_name_writes_per_s=1.0,
        max_object_bytes=5 * 1024 * _GiB,
        usd_per_1000_writes=0.005,
        usd_per_1000_reads=0.0004,
        implemented=True,
        notes=(
            "if_generation_match=0 creates, =generation swaps (412 = lost); "
            "~1 write/s per object name, so never CAS a hot head object."
        ),
    ),
    Capabilities(
        name="dropbox",
        schemes=("dropbox",),
        create=True,
        cas=True,
        delete_if_version=True,
        consistency="strong per path",
        strong_list=False,
        seek_list=False,
        same_name_writes_per_s=None,
        max_object_bytes=150 * _MiB,
        usd_per_1000_writes=0.0,
        usd_per_1000_reads=0.0,
        implemented=True,
        notes=(
            "files_upload WriteMode.add + autorename=False + strict_conflict=True creates, "
            "WriteMode.update(rev) swaps, delete_v2(parent_rev); identical bytes are not a "
            "conflict (our frames carry a unique write id); 429 too_many_write_operations "
            "backed off per Retry-After. Priced per seat, not per request."
        ),
    ),
    Capabilities(
        name="azure",
        schemes=("az",),
        create=True,
        cas=True,
        delete_if_version=True,
        consistency="strong read-after-write",
        strong_list=True,
        seek_list=False,
        same_name_writes_per_s=None,
        max_object_bytes=5000 * _MiB,
        usd_per_1000_writes=0.0065,
        usd_per_1000_reads=0.0005,
        implemented=True,
        notes=(
            "Put Blob If-None-Match: * creates (409 BlobAlreadyExists = lost), If-Match: ETag "
            "swaps (412 = moved or missing: one properties request tells which), Delete Blob "
            "If-Match; SDK retries off (retry_total=0). ~500 requests/s per blob, 20,000/s "
            "per account; 503 ServerBusy backed off per Retry-After. List Blobs cannot start "
            "at a key. Hot tier: $0.065 per 10k writes and lists, $0.005 per 10k reads."
        ),
    ),
)


def capabilities_for(name: str) -> Capabilities:
    for caps in BACKENDS:
        if caps.name == name:
            return caps
    raise ConfigError(f"unknown backend {name!r}; known: {', '.join(c.name for c in BACKENDS)}")


def choose_mode(caps: Capabilities, forced: ListMode | str | None = None) -> ListMode:
    """Pick the best list mode, or check a forced one, naming the missing capability."""
    if forced is None or forced == "auto":
        return caps.modes()[0]
    try:
        mode = ListMode(forced) if isinstance(forced, str) else forced
    except ValueError:
        raise ConfigError(f"unknown mode {forced!r}; choose auto, create, cas or blocks") from None
    if mode not in caps.modes():
        missing = "create-if-absent" if mode is ListMode.CREATE else "compare-and-swap"
        raise UnsupportedError(
            f"mode {mode.value!r} needs {missing}, which backend {caps.name!r} does not have",
            capability=missing,
        )
    return mode


def _fmt_rate(v: float | None) -> str:
    return "no limit" if v is None else f"~{v:g}/s"


def _fmt_size(v: int | None) -> str:
    if v is None:
        return "no limit"
    if v >= 1024 * _GiB:
        return f"{v / (1024 * _GiB):g} TiB"
    if v >= _GiB and v % _GiB == 0:
        return f"{v // _GiB} GiB"
    return f"{v / _MiB:g} MiB"


def _yes(v: bool) -> str:
    return "yes" if v else "no"


TABLE_COLUMNS = (
    "backend",
    "URL",
    "create",
    "CAS",
    "delete-if-version",
    "consistency",
    "strong LIST",
    "LIST from a key",
    "same-name writes",
    "max object",
    "$/1k writes",
    "$/1k reads",
    "modes",
    "available",
)


def table_rows() -> list[list[str]]:
    """The table as strings, shared by the CLI and the generated docs."""
    return [
        [
            c.name,
            ", ".join(f"{s}://" for s in c.schemes),
            _yes(c.create),
            _yes(c.cas),
            _yes(c.delete_if_version),
            c.consistency,
            _yes(c.strong_list),
            _yes(c.seek_list),
            _fmt_rate(c.same_name_writes_per_s),
            _fmt_size(c.max_object_bytes),
            f"{c.usd_per_1000_writes:g}",
            f"{c.usd_per_1000_reads:g}",
            " > ".join(m.value for m in c.modes()),
            "yes" if c.implemented else "planned",
        ]
        for c in BACKENDS
    ]


def render_markdown() -> str:
    lines = [
        "# Backends and their capabilities",
        "",
        "<!-- generated by scripts/gen_docs.py from passivepaxos/capabilities.py; do not edit -->",
        "",
        "The list mode of a log is the first of its `modes` (create > cas > blocks) unless",
        "`init --mode` forces another; a forced mode the store cannot run is refused with an",
        "error naming the missing capability. Prices are list prices in USD (us-east-1 /",
        "Standard class), for cost estimates only. *strong LIST*: a listing shows every",
        "write acknowledged before it started; *LIST from a key*: the store starts a listing",
        "at a key without reading the keys before it. With both, a fresh process finds the",
        "tail with one LIST from the tail hint instead of probing slots (`docs/log.md`); a",
        "local directory is read whole by a listing, so discovery probes there (cheap GETs).",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows()]
    lines += ["", "## Notes", ""]
    lines += [f"- **{c.name}**: {c.notes}" for c in BACKENDS]
    lines += ["", *TESTING_DOC.splitlines()]
    lines.append("")
    return "\n".join(lines)


TESTING_DOC = """## Testing your backend

The conformance suite every built-in backend passes is a library module,
`passivepaxos.testing` (it does not import pytest), so a backend kept elsewhere can run it
from its own tests, as Rust `object_store`'s `integration.rs` is used. Each check is a plain
function of a *target*: a store factory (a callable that returns a `Store` on a fresh, empty
location each call) or a `StoreHarness` subclass, which can also provide the hooks some
checks need. `CHECKS` lists them all; a failed check raises `AssertionError`, a check whose
hook is missing raises `unittest.SkipTest` (pytest and unittest report it as skipped).

<!-- not-run: MyBackend and fresh_prefix stand for your adapter and its test location -->
```python
import pytest
from passivepaxos.store import Store
from passivepaxos.testing import CHECKS, run_all

def my_store() -> Store:
    return Store(MyBackend(bucket="test", prefix=fresh_prefix()))

@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(check):
    check(my_store)

# or, outside a test runner: {check name: "passed" | "skipped: ..."}, AssertionError
# naming every failed check
run_all(my_store)
```

What is checked: exactly one winner of a create race and of a compare-and-swap race (8
stores released together, 100 rounds), the losers told the winner's value; a new version
for every write, identical bytes included; missing keys (`None`, no-op delete,
`NotFoundError` for conditional writes); conditional delete; listing in byte order across
service pages with `start_after`; empty and > 8 MiB values; non-ASCII, space, `+` and deep
`/` keys; a lost answer to a create / compare-and-swap established by reading back;
throttling retried. With a store factory, a second store on a location shares the first
one's adapter, and faults (a lost answer, throttling) are injected by
`passivepaxos.wrappers.FaultyBackend` around it.

`StoreHarness` hooks (override what your backend can do): `url()` (a fresh location) and
`store(url)` (a `Store` of its own on it); `missing_container_url()` for "a missing bucket is
a clear error"; `new_container_url()`, `remove_container(url)` and `container_exists(url)`
for "a deleted root is an error and is never re-created" (a re-created empty store would
vote as if it had never promised anything); `denied_error()` for permission errors;
`wired()` for faults injected on the real wire (a proxy, a test server's hooks) instead of
`FaultyBackend`. The built-in backends' harnesses (real servers: moto, fake-gcs-server,
azurite, a Dropbox API server) are in `tests/conftest.py`; `tests/test_conformance.py` is the shim
that runs every check on each of them."""
