"""A log's manifest: the list mode, format and identity chosen at ``init``, stored on
every store.

Every client must simulate the append-only list the same way, so the choice is made once
(from the capability table, or forced with ``--mode``) and recorded; a client refuses a
manifest whose format or mode it does not know rather than guess.

Identity (manifest format 2): ``init`` draws a random ``id`` (32 hex digits) and writes it
into every store's manifest; a membership change copies it to the store it adds. A store
is a member of the log only while it holds the manifest with this identity: a store that
lost its state (wiped, re-created empty, or holding another log's manifest) is not
counted toward a majority, neither by :func:`open_log` nor, for a process that opened the
log before the loss, by the proposer (:class:`MemberStore`, which re-checks with every
batch; its docstring states the one residual window). The log's hash chain starts
from the identity (``passivepaxos.log.genesis_of``), so a record of another log is foreign.
A format-1 manifest (written before identities existed) has no ``id``: such a log keeps
the old constant chain start and is still read and written; its members are the stores
holding a format-1 manifest of its mode.
"""

from __future__ import annotations

import collections
import copy
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from passivepaxos.capabilities import Capabilities, ListMode, choose_mode
from passivepaxos.consensus.keys import decided_key
from passivepaxos.errors import (
    AlreadyExistsError,
    ConfigError,
    ContainerNotFoundError,
    InvalidObjectError,
    NotAMemberError,
    PassivePaxosError,
    QuorumError,
    StoreError,
    UnsupportedError,
)
from passivepaxos.fanout import DaemonPool, each_store, wait_result
from passivepaxos.probe import PROBE_PREFIX
from passivepaxos.runtime import REAL, Runtime
from passivepaxos.store import RESENT, Resent, Store, open_store
from passivepaxos.types import ObjectMeta, PutMode, Version
from passivepaxos.urls import parse_url, split_urls

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_KEY",
    "InitResult",
    "Manifest",
    "MemberStore",
    "check_instance",
    "close_members",
    "init_log",
    "initialise",
    "member_stores",
    "open_log",
    "open_stores",
]

MANIFEST_KEY = "manifest"
MARKER_SUFFIX = decided_key("")  # "/decided": the end of every DECIDED marker key
MANIFEST_FORMAT = 2  # 2: with the log's identity ("id"); 1: before identities
_KIND = "passivepaxos-log"
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_IDENT = re.compile(r"^[0-9a-f]{32}$")
IMPLEMENTED_MODES = (ListMode.CREATE, ListMode.CAS, ListMode.BLOCKS)
T = TypeVar("T")


@dataclass(frozen=True)
class Manifest:
    mode: ListMode
    stores: tuple[str, ...]
    format: int = MANIFEST_FORMAT
    ident: str | None = None  # the log's identity (format 2); None for a format-1 log

    @staticmethod
    def new(mode: ListMode, stores: tuple[str, ...], runtime: Runtime | None = None) -> Manifest:
        """The manifest of a new log: the current format and a fresh random identity
        (128 bits from ``runtime``, default the production one)."""
        return Manifest(mode, stores, MANIFEST_FORMAT, (runtime or REAL).token_hex(16))

    def with_stores(self, stores: tuple[str, ...]) -> Manifest:
        """The same log (mode, format, identity) naming another store list."""
        return Manifest(self.mode, stores, self.format, self.ident)

    def same_log(self, other: Manifest) -> bool:
        """Whether ``other`` is a manifest of this log (identity and mode; a format-1
        manifest has no identity, and all format-1 manifests of one mode match)."""
        return (self.ident, self.mode) == (other.ident, other.mode)

    def describe(self) -> str:
        return f"id {self.ident}" if self.ident else "format 1, no id"

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "kind": _KIND,
            "format": self.format if self.ident is not None else 1,
            "mode": self.mode.value,
            "stores": list(self.stores),
        }
        if self.ident is not None:
            doc["id"] = self.ident
        return json.dumps(doc, sort_keys=True).encode()

    @staticmethod
    def decode(data: bytes, where: str) -> Manifest:
        try:
            doc: Any = json.loads(data)
            if doc.get("kind") != _KIND:
                raise ValueError("not a passivepaxos manifest")
        except (ValueError, AttributeError) as exc:
            raise InvalidObjectError(f"bad manifest: {exc}", url=where, key=MANIFEST_KEY) from None
        fmt = doc.get("format")
        if not isinstance(fmt, int) or fmt > MANIFEST_FORMAT:
            raise InvalidObjectError(
                f"manifest format {fmt!r} is newer than this client supports ({MANIFEST_FORMAT}); "
                "upgrade passivepaxos",
                url=where,
                key=MANIFEST_KEY,
            )
        try:
            mode = ListMode(doc.get("mode"))
        except ValueError:
            raise InvalidObjectError(
                f"manifest names unknown list mode {doc.get('mode')!r}", url=where, key=MANIFEST_KEY
            ) from None
        ident = doc.get("id")
        if fmt >= 2 and not (isinstance(ident, str) and _IDENT.match(ident)):
            raise InvalidObjectError(
                f"manifest format {fmt} without a valid log id", url=where, key=MANIFEST_KEY
            )
        if fmt < 2:
            ident = None
        return Manifest(mode, tuple(doc.get("stores", ())), fmt, ident)


def open_stores(log: str, runtime: Runtime | None = None) -> list[Store]:
    """The stores of a comma-separated list, each on ``runtime`` (default the production
    one); a store named twice is refused (each store must count once toward a majority)."""
    stores = [open_store(url, runtime=runtime) for url in split_urls(log)]
    seen: set[str] = set()
    for s in stores:
        if s.url in seen:
            raise ConfigError(f"{log}: store {s.url} is named twice; each store counts once")
        seen.add(s.url)
    return stores


def _combined(stores: list[Store]) -> Capabilities:
    """What every store of the quorum can do (a mode must work on all of them)."""
    caps = [s.capabilities for s in stores]
    first = caps[0]
    return Capabilities(
        name="+".join(sorted({c.name for c in caps})),
        schemes=first.schemes,
        create=all(c.create for c in caps),
        cas=all(c.cas for c in caps),
        delete_if_version=all(c.delete_if_version for c in caps),
        consistency=first.consistency,
        strong_list=all(c.strong_list for c in caps),
        seek_list=all(c.seek_list for c in caps),
        same_name_writes_per_s=first.same_name_writes_per_s,
        max_object_bytes=first.max_object_bytes,
        usd_per_1000_writes=first.usd_per_1000_writes,
        usd_per_1000_reads=first.usd_per_1000_reads,
        implemented=all(c.implemented for c in caps),
        notes="",
    )


def _majority(n: int) -> int:
    return n // 2 + 1


def _first_object(store: Store) -> str | None:
    """The first key on ``store`` other than the manifest and the throwaway keys a
    ``backends --probe`` may have left (one LIST, stopped early)."""
    for meta in store.list(""):
        if meta.key != MANIFEST_KEY and not meta.key.startswith(PROBE_PREFIX):
            return meta.key
    return None


def _to_create(missing: list[str]) -> str:
    """What a person must create before ``init`` can reach ``missing`` (URLs whose
    directory, bucket or folder does not exist): named, not created for them (a typo in
    a path should not grow a new tree)."""
    if not missing:
        return ""
    steps = []
    for url in missing:
        u = parse_url(url)
        if u.scheme == "file":
            steps.append(f"mkdir -p {u.prefix}")
        elif u.scheme in ("s3", "gs"):
            steps.append(f"create the bucket {u.container!r} ({url})")
        else:
            steps.append(f"create {url}")
        # dropbox:// folders and memory:// names need no creating, so they never get here
    return "; create what is missing first: " + "; ".join(steps)


def _bare(exc: StoreError) -> str:
    """The error's message without the URL and key in front."""
    return PassivePaxosError.__str__(exc)


def _read_manifest(store: Store) -> Manifest | None:
    got = store.get(MANIFEST_KEY)
    return None if got is None else Manifest.decode(got[0], store.url)


@dataclass(frozen=True)
class InitResult:
    """What ``init`` did: the log's manifest, whether this call created it, and the
    stores that do not hold it afterwards (unreachable, or no answer while a majority
    answered): such a store gets it from a later ``init`` while the log is still empty,
    else only through ``members remove`` + ``members add``."""

    manifest: Manifest
    created: bool
    unreachable: dict[str, str]  # store URL -> why it did not get the manifest


def init_log(log: str, mode: str = "auto", runtime: Runtime | None = None) -> tuple[Manifest, bool]:
    """:func:`initialise`, as (manifest, created)."""
    got = initialise(log, mode, runtime)
    return got.manifest, got.created


def initialise(log: str, mode: str = "auto", runtime: Runtime | None = None) -> InitResult:
    """Create the manifest on every store it can reach (a majority is required).
    Idempotent for the same mode. Refuses (``ConfigError``) where log objects already
    exist without this log's manifest (a deleted manifest must not hide a log, nor a
    wiped store rejoin it), and never writes a manifest onto a store of a log that
    already holds objects: a store that lost its state rejoins only through ``members
    remove`` / ``members add``. The stores are read at once; one that does not answer
    while a majority did is left out (reported in ``unreachable``), not waited for.
    ``runtime``: the stores' (and the identity's RNG); default the production one."""
    stores = open_stores(log, runtime)
    combined = _combined(stores)
    chosen = choose_mode(combined, None if mode == "auto" else mode)
    if chosen not in IMPLEMENTED_MODES:
        raise UnsupportedError(
            f"list mode {chosen.value!r} is not implemented yet; use "
            + " or ".join(m.value for m in IMPLEMENTED_MODES),
            capability=chosen.value,
        )
    if chosen is ListMode.CAS and not combined.create:
        # each instance's cas list object is created once with create-if-absent
        raise UnsupportedError(
            "mode 'cas' also needs create-if-absent (to create each instance's list "
            f"object), which backend {combined.name!r} does not have; use blocks",
            capability="create-if-absent",
        )
    urls = tuple(s.url for s in stores)
    need = _majority(len(stores))
    errors: dict[str, str] = {}
    why: dict[str, str] = {}  # the same, without the location (InitResult.unreachable)
    there: dict[str, Manifest | None] = {}
    objects: dict[str, str] = {}
    missing: list[str] = []  # stores whose directory / bucket does not exist
    surveyed = each_store(stores, lambda s: (_read_manifest(s), _first_object(s)))
    for store, got in zip(stores, surveyed, strict=True):
        if isinstance(got, InvalidObjectError):
            raise got  # a damaged or unknown manifest: never written over
        if isinstance(got, StoreError):
            errors[store.url] = str(got)
            why[store.url] = _bare(got)
            if isinstance(got, ContainerNotFoundError):
                missing.append(store.url)
            continue
        there[store.url], first = got
        if first is not None:
            objects[store.url] = first
    if len(there) < need:
        raise QuorumError(
            f"init reached {len(there)} of {len(stores)} stores, a majority is {need}; "
            "unreachable: " + "; ".join(errors.values()) + _to_create(missing)
        )
    found = {u: m for u, m in there.items() if m is not None}
    for u, key in objects.items():
        if found.get(u) is None:
            raise ConfigError(
                f"{u}: holds objects (e.g. {key!r}) but no log manifest: refusing to create "
                "a log over them (a deleted manifest would hide the log they belong to)"
            )
    logs = {(m.ident, m.mode) for m in found.values()}
    if len(logs) > 1:
        raise ConfigError(
            f"{log}: the stores hold manifests of different logs: "
            + "; ".join(f"{u}: {m.describe()}, mode {m.mode.value}" for u, m in found.items())
        )
    if found:
        existing = next(iter(found.values()))
        if existing.mode is not chosen and mode != "auto":
            u = next(iter(found))
            raise ConfigError(
                f"{u}: already initialised with mode {existing.mode.value!r}, not {chosen.value!r}"
            )
        lists = {frozenset(m.stores) for m in found.values()}
        if frozenset(urls) not in lists:
            raise ConfigError(
                f"{log}: these stores belong to a log on {','.join(existing.stores)}; "
                "give its full store list"
            )
        wanted = existing.with_stores(urls)
        if objects:
            bare = [u for u in urls if u in there and there[u] is None]
            if bare:
                raise ConfigError(
                    f"{bare[0]}: holds no manifest while the log already holds objects (e.g. "
                    f"{next(iter(objects.values()))!r} on {next(iter(objects))}): a store "
                    "that lost its state must not rejoin by init; use `passivepaxos members "
                    "remove` and then `members add` to re-add it empty"
                )
            return InitResult(existing, False, why)
    else:
        wanted = Manifest.new(chosen, urls, stores[0].runtime)
    created, ok = False, len(found)
    for store in stores:
        if store.url not in there or there[store.url] is not None:
            continue
        try:
            _create_manifest(store, wanted)
            created, ok = True, ok + 1
        except AlreadyExistsError as exc:  # another init raced us to this store
            other = Manifest.decode(exc.current[0], store.url) if exc.current else None
            if other is None or not (other.same_log(wanted) or (not created and not found)):
                raise ConfigError(
                    f"{store.url}: another init created a different log here meanwhile "
                    f"({other.describe() if other else '?'}); run init again"
                ) from None
            wanted = other.with_stores(urls)  # the first manifest written wins
            ok += 1
        except StoreError as exc:
            errors[store.url] = str(exc)
            why[store.url] = _bare(exc)
    if ok < need:
        raise QuorumError(
            f"init reached {ok} of {len(stores)} stores, a majority is {need}; "
            "unreachable: " + "; ".join(errors.values())
        )
    return InitResult(wanted, created, why)


def _create_manifest(store: Store, manifest: Manifest) -> None:
    """Create-if-absent where the store has it; else read, then write (a store without
    conditional writes cannot arbitrate two first inits racing with different modes; the
    later reader of a mixed quorum refuses it: see ``open_log``)."""
    if store.capabilities.create:
        store.put(MANIFEST_KEY, manifest.encode(), PutMode.CREATE)
        return
    got = store.get(MANIFEST_KEY)
    if got is not None:
        raise AlreadyExistsError("manifest exists", url=store.url, key=MANIFEST_KEY, current=got)
    store.put(MANIFEST_KEY, manifest.encode())


def _configurations(
    stores: list[Store], members: list[Manifest]
) -> tuple[list[tuple[str, ...]], QuorumError | None]:
    """The store lists that are (or were) a configuration of the log: the lists its
    manifests name, and those of its membership markers (``members/``); and why the
    markers could not be read, if they could not (the list may then be incomplete)."""
    from passivepaxos.membership_data import read_markers

    out = [m.stores for m in members]
    try:
        for origin, cfg in read_markers(stores):
            out.extend((origin, cfg.from_, cfg.to))
    except QuorumError as exc:
        return out, exc
    return out, None


def _same_list(given: tuple[str, ...], listed: tuple[str, ...]) -> bool:
    if set(given) == set(listed):
        return True
    if len(given) != len(listed):
        return False
    try:  # a list written before URL normalisation changed: compare normalised forms
        return set(given) == {open_store(u).url for u in listed}
    except (ConfigError, UnsupportedError, StoreError):
        return False


def open_log(
    log: str, runtime: Runtime | None = None, *, stores: list[Store] | None = None
) -> tuple[list[Store], Manifest]:
    """Open the stores of ``log`` and the manifest a majority of them hold.

    ``log`` must be exactly a configuration of the log (the list it was created on, or
    one a membership change made), else ``ConfigError`` naming the full list: a subset
    would run another protocol (a single store takes the one-store path) on the same
    objects. Only stores holding the manifest with the log's identity count toward the
    majority; one without (wiped, re-created empty, another log's) is reported, never
    counted. The stores come back in the order of the matching configuration, each on
    ``runtime`` (default the production one); ``stores``: ``open_stores(log, runtime)``
    already done by the caller."""
    stores = open_stores(log, runtime) if stores is None else stores
    found: dict[str, Manifest] = {}
    errors: dict[str, str] = {}
    missing: list[str] = []
    # all at once: a hung minority costs a short grace, not the whole deadline
    for store, raw in zip(stores, each_store(stores, lambda s: s.get(MANIFEST_KEY)), strict=True):
        if isinstance(raw, StoreError):
            errors[store.url] = str(raw)
            continue
        if raw is None:
            missing.append(store.url)
        else:
            found[store.url] = Manifest.decode(raw[0], store.url)
    need = _majority(len(stores))
    if not found:
        if errors and not missing:
            raise QuorumError("no store answered: " + "; ".join(errors.values()))
        if errors:
            raise QuorumError("no manifest found; unreachable: " + "; ".join(errors.values()))
        raise ConfigError(f"{log}: no log here; create it with: passivepaxos init {log}")
    (ident, count), *rest = Counter(m.ident for m in found.values()).most_common()
    if rest and rest[0][1] == count:
        raise InvalidObjectError(
            f"{log}: the stores hold manifests of different logs: "
            + "; ".join(f"{u}: {m.describe()}" for u, m in found.items())
        )
    members = {u: m for u, m in found.items() if m.ident == ident}
    modes = Counter(m.mode for m in members.values())
    if len(modes) > 1:
        raise InvalidObjectError(
            f"{log}: stores disagree on the list mode ({dict((k.value, v) for k, v in modes.items())})"
        )
    manifest = Counter(members.values()).most_common(1)[0][0]
    given = tuple(s.url for s in stores)
    match = next((c for c in manifest_lists(members) if _same_list(given, c)), None)
    if match is None:
        configurations, unread = _configurations(stores, list(members.values()))
        match = next((c for c in configurations if _same_list(given, c)), None)
        if match is None and unread is not None:
            # the list may be an earlier configuration named only by the markers: not
            # established either way, so not "bad input" (simulator seed 68 of stale)
            raise QuorumError(
                f"{log}: cannot tell whether this is a store list of the log (its stores "
                f"are now {','.join(manifest.stores)}): the membership markers could not "
                f"be read: {unread}"
            )
    if match is None:
        raise ConfigError(
            f"{log} is not the store list of this log; its stores are "
            f"{','.join(manifest.stores)}: give its full store list"
        )
    if len(members) < need:
        problems = [f"{u}: unreachable ({e})" for u, e in errors.items()]
        problems += [f"{u}: holds no manifest (wiped or re-created empty?)" for u in missing]
        problems += [
            f"{u}: holds another log's manifest ({m.describe()})"
            for u, m in found.items()
            if u not in members
        ]
        raise QuorumError(
            f"{log}: only {len(members)} of {len(stores)} stores hold this log's manifest "
            f"({manifest.describe()}), a majority is {need}; a store that lost its state never "
            "counts until re-added by `members remove` + `members add`: " + "; ".join(problems)
        )
    if manifest.mode not in IMPLEMENTED_MODES:
        raise UnsupportedError(
            f"{log}: list mode {manifest.mode.value!r} is not supported by this client"
        )
    order = {u: i for i, u in enumerate(match)}
    stores.sort(key=lambda s: order.get(s.url, len(order)))
    return stores, manifest


def manifest_lists(members: dict[str, Manifest]) -> list[tuple[str, ...]]:
    return list(dict.fromkeys(m.stores for m in members.values()))


class _Standing:
    """Whether a store's last membership check found it not a member (shared by the
    views of one ``MemberStore``)."""

    __slots__ = ("suspect",)

    def __init__(self) -> None:
        self.suspect = False


class MemberStore(Store):
    """A store whose answers count for one log only while it holds that log's manifest.

    A process that opened the log before a store lost its state (wiped, or its directory
    re-created empty) would otherwise count that store's fresh "nothing here" state as a
    vote and decide a slot a second time. So the proposer wraps each store of a quorum in
    this class, and each request's answer is replaced by ``NotAMemberError`` unless a GET
    of the manifest, sent in parallel with it (no extra round trip), finds the log's
    identity and mode.

    Which requests share one check: the consensus driver sends every batch through
    :meth:`for_batch` views (``driver.begin_batch``), and within one batch the requests to
    one instance (a slot) share one check, started with the first of them; a request
    outside a batch gets a check of its own. So a check never outlives its batch: a store
    wiped before a batch was sent never counts in it, however long the process paused
    between batches (a check reused from phase 1 let a store wiped during a pause accept a
    stale ACCEPT: simulation seed 35768 of ``amnesia``), and no other thread's batch can
    borrow it. A call that needed more than one request (the store's retries after a
    transient error, a conditional write's read-backs) is checked once more after its
    answer, since its last request may have been sent long after the check. A failed check
    fails the rest of its batch; a check that could not be made (store error) is repeated
    by the next request.

    DECIDED markers are checked like every read: a marker is a fact only on a store of this
    log (a store re-used by another log holds that log's markers under the same keys). A
    store whose last check failed is sent nothing until a check passes (its requests wait
    for their check: one round trip more, on that store only), so nothing of this log is
    written into another log's store.

    Residual windows, which only a GET sent *after* every answer (one more round trip per
    batch) could close: a store wiped while one request is in flight, after its check GET
    was served and before the request was; a write the store resent during a backoff in
    which it was wiped or re-used (the re-check refuses the answer, but the write has
    landed); and a store emptied object by object whose manifest goes last (docs/log.md
    tells operators to remove a store before emptying it)."""

    _KEEP = 64  # instances whose check result is kept

    def __init__(self, inner: Store, manifest: Manifest) -> None:
        super().__init__(
            inner.backend,
            retry=inner.retry,
            sleep=inner._sleep,
            rng=inner._rng,
            deadline=inner.deadline,
            runtime=inner.runtime,
        )
        # the wrapper may be made on a worker thread: keep the deadline the store was
        # opened under, not the (absent) one of the thread that wraps it
        self._opened_under = inner._opened_under
        self.inner = inner
        self.manifest = manifest
        # a runtime lock: a check is started (a runtime task) while it is held
        self._lock = self.runtime.lock()
        self._checks: collections.OrderedDict[str, Future[None]] = collections.OrderedDict()
        # daemon tasks: a check hung on this store must not hold the process at exit
        self._pool = DaemonPool(self.runtime)
        self._view = False  # a view of one batch (for_batch) remembers its checks
        # shared by every view: the last check found the store not a member, so the next
        # request waits for its own check before it is sent (nothing is written into a
        # store that holds another log, or none); one round trip more, on that store only
        self._standing = _Standing()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _check(self) -> None:
        token = RESENT.set(None)  # a check's own requests are not the checked call's
        try:
            got = _read_manifest(self.inner)
        except InvalidObjectError as exc:
            self._standing.suspect = True
            raise NotAMemberError(
                f"unreadable manifest ({exc}): not counted as a member",
                url=self.url,
                key=MANIFEST_KEY,
            ) from None
        finally:
            RESENT.reset(token)
        self._standing.suspect = got is None or not got.same_log(self.manifest)
        if got is None or not got.same_log(self.manifest):
            what = "holds no manifest" if got is None else f"holds another log ({got.describe()})"
            raise NotAMemberError(
                f"{what}, not this log's ({self.manifest.describe()}): a store that lost its "
                "state is not counted; re-add it with `members remove` + `members add`",
                url=self.url,
                key=MANIFEST_KEY,
            )

    @staticmethod
    def _instance(key: str) -> str:
        """The consensus instance of an object key (``<instance>/<slot>``, ``/list``,
        ``/decided``, ``/blocks/...``); any instance name, not only two-part ones."""
        if key.endswith("/blocks/"):  # the LIST prefix of a Disk Paxos instance
            return key[: -len("/blocks/")]
        parts = key.split("/")
        if len(parts) >= 4 and parts[-3] == "blocks":  # <instance>/blocks/<owner>/<seq>
            return "/".join(parts[:-3])
        return key.rsplit("/", 1)[0]

    def for_batch(self) -> MemberStore:
        """A view of this store for one batch of requests: it shares everything but the
        remembered checks, so the batch's first checked request to an instance starts a
        fresh check, and no other batch (another thread's, a later one) can reuse it."""
        view = copy.copy(self)
        view._checks = collections.OrderedDict()
        view._view = True
        return view

    def _started(self, key: str) -> Future[None]:
        if not self._view:  # a request outside a batch: a check of its own
            return self._pool.submit(self._check)
        instance = self._instance(key)
        with self._lock:
            fut = self._checks.get(instance)
            if fut is not None and fut.done():
                exc = fut.exception()
                if exc is not None and not isinstance(exc, NotAMemberError):
                    fut = None  # could not check: check again
            if fut is None:
                fut = self._pool.submit(self._check)
                self._checks[instance] = fut
                while len(self._checks) > self._KEEP:
                    self._checks.popitem(last=False)
            return fut

    def _guard(self, key: str, op: Callable[[], T]) -> T:
        fut = self._started(key)
        if self._standing.suspect or (fut.done() and fut.exception() is not None):
            # not a member at the last look (or this batch's check already failed): send
            # nothing before a check passes
            wait_result(fut, self.runtime)
        resent = Resent()
        token = RESENT.set(resent)
        try:
            out = op()
        except StoreError:
            RESENT.reset(token)
            wait_result(fut, self.runtime)  # a failed check hides what the store said
            if resent.n:
                self._recheck()
            raise
        RESENT.reset(token)
        wait_result(fut, self.runtime)
        if resent.n:
            # a retry or a read-back: the answer may come from a request sent long after
            # the check (a store wiped during the backoff), so check once more, after it
            self._recheck()
        return out

    def _recheck(self) -> None:
        """The check after an answer that needed a resent request; a store error of the
        check itself leaves the answer as it is (the first check passed)."""
        try:
            self._check()
        except NotAMemberError:
            raise
        except StoreError:
            pass

    def get(self, key: str) -> tuple[bytes, Version] | None:
        return self._guard(key, lambda: self.inner.get(key))

    def put(
        self,
        key: str,
        data: bytes,
        mode: PutMode = PutMode.OVERWRITE,
        *,
        write_id: bytes | None = None,
    ) -> Version:
        return self._guard(key, lambda: self.inner.put(key, data, mode, write_id=write_id))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        metas = self._guard(prefix, lambda: [*self.inner.list(prefix, start_after)])
        return iter(metas)


def member_stores(stores: Sequence[Store], manifest: Manifest | None) -> list[Store]:
    """``stores`` as a proposal or a finishing read must count them: each wrapped in a
    :class:`MemberStore` when a quorum was opened from its manifest (one store, or no
    manifest: as given). Close the wrappers with :func:`close_members`."""
    if manifest is None or len(stores) < 2:
        return list(stores)
    return [MemberStore(s, manifest) for s in stores]


def close_members(stores: Sequence[Store]) -> None:
    for s in stores:
        if isinstance(s, MemberStore):
            s.close()


def check_instance(name: str) -> str:
    if not _INSTANCE.match(name):
        raise ConfigError(
            f"bad instance name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return f"consensus/{name}"
