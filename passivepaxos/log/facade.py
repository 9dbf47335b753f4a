"""``Log``: the facade over the log's components (the overview is :mod:`passivepaxos.log`).

``Log`` builds one of each component, wires them (each gets only the components below
it) and delegates; it owns no protocol logic of its own. The components, bottom up:
``context`` (what they share), ``slots`` (one slot's I/O), ``config`` (which store set a
slot uses), ``tail`` (known tail, hint, discovery), ``compaction`` (snapshots, trim),
``reader``, ``leasing`` (the writer lease), ``writer`` (the fenced writer), ``resume``, ``batch`` (group commit) and
``verify``; docs/architecture.md says what each owns.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from passivepaxos import fanout, telemetry
from passivepaxos.capabilities import ListMode
from passivepaxos.errors import ConfigError, LeaseLostError
from passivepaxos.keepalive import KeepAlive
from passivepaxos.lease import ClaimResult, LeaseRead, WriterStatus, check_ttl
from passivepaxos.log.batch import GroupCommit, Pending
from passivepaxos.log.compaction import Compaction, TrimResult
from passivepaxos.log.config import ConfigView
from passivepaxos.log.context import LogContext
from passivepaxos.log.forward import Forwarder
from passivepaxos.log.leasing import NotYet, WriterLease
from passivepaxos.log.reader import Reader
from passivepaxos.log.record import Entry, Position, Record, parse_forward_token
from passivepaxos.log.resume import Resumer
from passivepaxos.log.slots import SlotIO
from passivepaxos.log.tail import HINT_KEY, Tail
from passivepaxos.log.tailcache import FileTailCache, MemoryTailCache, TailCache
from passivepaxos.log.verify import Verifier, VerifyReport
from passivepaxos.log.writer import FencedWriter, Fold
from passivepaxos.manifest import Manifest, open_log, open_stores
from passivepaxos.membership_data import ConfigChange
from passivepaxos.runtime import REAL, EventLike, Runtime
from passivepaxos.snapshot import SnapshotInfo
from passivepaxos.store import Store
from passivepaxos.types import require_bytes

__all__ = ["HINT_KEY", "Log", "TrimResult", "VerifyReport", "default_writer_id"]


def default_writer_id(runtime: Runtime = REAL) -> str:
    """``host-pid-random``: unique per Log object, readable in lease and lock messages."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{runtime.token_hex(4)}"


_MEMORY_TAILS = MemoryTailCache()  # tail_cache="memory": one per process


def _tail_cache(spec: TailCache | str | None) -> TailCache | None:
    """``Log.open``'s ``tail_cache``; ``None``: ``$PASSIVEPAXOS_TAIL_CACHE`` (``memory`` or
    ``file``; unset or empty: no cache), so a CLI call can use one without a flag."""
    if spec is None:
        spec = os.environ.get("PASSIVEPAXOS_TAIL_CACHE") or None
    if spec is None or not isinstance(spec, str):
        return spec
    if spec == "memory":
        return _MEMORY_TAILS
    if spec == "file":
        return FileTailCache()
    raise ConfigError(
        f"tail cache {spec!r} (tail_cache= or $PASSIVEPAXOS_TAIL_CACHE): expected 'memory', "
        "'file' or a TailCache"
    )


# -- the log -------------------------------------------------------------------------------


class Log:
    """A shared log over one store or a quorum (see :mod:`passivepaxos.log`).
    ``on_lease_wait(holder, seconds)``: called before an append waits out another
    holder's expired lease, or a claim waits for a live one (the CLI says so on stderr)."""

    def __init__(
        self,
        stores: Sequence[Store],
        mode: ListMode | str,
        *,
        url: str | None = None,
        writer_id: str | None = None,
        fetch_ahead: int = 32,
        max_batch_entries: int = 1000,
        max_batch_bytes: int = 4 << 20,
        hint_every: int = 32,
        hint_min_interval: float = 1.0,
        wait_expired_lease: bool = True,
        backoff_max: float = 2.0,
        forward: bool = False,
        manifest: Manifest | None = None,
        runtime: Runtime | None = None,
        on_lease_wait: Callable[[str | None, float], object] | None = None,
    ) -> None:
        if not stores:
            raise ConfigError("a log needs at least one store")
        stores = list(stores)
        # clocks (monotonic: hint rate limit and all writer-lease timing; wall: only written
        # into lease records for display), sleep, randomness, ids and concurrency
        rt: Runtime = runtime or stores[0].runtime
        fetch_ahead = max(1, fetch_ahead)
        self._c = LogContext(
            stores,
            ListMode(mode),
            url=url or ",".join(s.url for s in stores),
            writer_id=writer_id or default_writer_id(rt),
            runtime=rt,
            manifest=manifest,
            fetch_ahead=fetch_ahead,
            pool=rt.pool(fetch_ahead, "ppx-log"),
            fanout=None if len(stores) == 1 else fanout.DaemonPool(rt),
        )
        self._io = SlotIO(self._c)
        self._cfg = ConfigView(self._c, self._io)
        self._tail = Tail(
            self._c,
            self._cfg,
            hint_every=hint_every,
            hint_min_interval=hint_min_interval,
        )
        self._snaps = Compaction(self._c, self._cfg)
        self._reader = Reader(self._c, self._cfg, self._tail, self._snaps)
        self._leasing = WriterLease(
            self._c,
            self._tail,
            self._snaps,
            wait_expired_lease=wait_expired_lease,
            on_wait=on_lease_wait,
        )
        self._writer = FencedWriter(
            self._c, self._cfg, self._tail, self._snaps, self._leasing, backoff_max=backoff_max
        )
        self._verifier = Verifier(self._c, self._cfg, self._tail, self._snaps, self._reader)
        self._resumer = Resumer(self._c, self._cfg, self._tail, self._snaps, self._writer)
        # forwarding (passivepaxos.log.forward): off by default; a single create store only
        self._forward = (
            Forwarder(
                self._c,
                self._tail,
                self._writer,
                self._leasing,
                max_entries=max_batch_entries,
                max_bytes=max_batch_bytes,
            )
            if forward
            else None
        )
        self._batch = GroupCommit(
            rt,
            self._writer.commit if self._forward is None else self._forward.commit_round,
            self._tail.committed,
            max_batch_entries=max_batch_entries,
            max_batch_bytes=max_batch_bytes,
            in_doubt=self._writer.in_doubt,
        )

    @classmethod
    def open(cls, log_url: str, *, tail_cache: TailCache | str | None = None, **kwargs: Any) -> Log:
        """Open the log at ``log_url`` (its manifest, and on one store the tail hint in
        the same round trip). ``tail_cache``: start from the tail an earlier ``Log`` of
        this log left on this machine and keep it there (``"memory"``: this process,
        ``"file"``: the temp directory, or a :class:`TailCache`; default
        ``$PASSIVEPAXOS_TAIL_CACHE``, else none); a warm first append is then 2 requests
        (manifest, create) when nobody else wrote meanwhile (docs/log.md)."""
        # the stores run on the log's runtime (a simulated process's clock and RNG)
        stores = open_stores(log_url, kwargs.get("runtime"))
        return cls.open_on(stores, log_url, tail_cache=tail_cache, **kwargs)

    @classmethod
    def open_on(
        cls,
        stores: Sequence[Store],
        log_url: str,
        *,
        tail_cache: TailCache | str | None = None,
        **kwargs: Any,
    ) -> Log:
        """:meth:`open` on stores the caller opened for ``log_url`` (one per URL of the
        list, in order), e.g. wrapped to count requests or add latency
        (:mod:`passivepaxos.wrappers`)."""
        stores = list(stores)
        cache = _tail_cache(tail_cache)
        cached = cache.load(log_url) if cache is not None else None
        hint = None
        if len(stores) == 1 and cached is None:
            # the tail hint is read beside the manifest (one round trip for both): a fresh
            # process's first append needs both (Tail.read_hint takes it)
            pool = stores[0].runtime.pool(1, "ppx-open")
            hint = pool.submit(stores[0].get, HINT_KEY)
            pool.shutdown(wait=False)
        stores, manifest = open_log(log_url, runtime=kwargs.get("runtime"), stores=stores)
        log = cls(stores, manifest.mode, url=log_url, manifest=manifest, **kwargs)
        log._tail.hint_prefetch = hint
        if cache is not None:
            log._tail.warm(cache, cached)
        return log

    @classmethod
    def from_manifest(cls, stores: Sequence[Store], manifest: Manifest, **kwargs: Any) -> Log:
        return cls(stores, manifest.mode, manifest=manifest, **kwargs)

    # -- what the log is (shared with its components) ---------------------------------------

    @property
    def stores(self) -> list[Store]:
        """The store set in effect at the newest slot this object knows of."""
        return self._c.stores

    @property
    def mode(self) -> ListMode:
        return self._c.mode

    @property
    def url(self) -> str:
        return self._c.url

    @property
    def writer_id(self) -> str:
        return self._c.writer_id

    @property
    def runtime(self) -> Runtime:
        """Clocks, sleep, randomness and concurrency (recipes on this log use it too)."""
        return self._c.runtime

    @property
    def manifest(self) -> Manifest | None:
        return self._c.manifest

    @property
    def ident(self) -> str | None:
        return self._c.ident

    @property
    def fetch_ahead(self) -> int:
        return self._c.fetch_ahead

    @property
    def genesis(self) -> str:
        """The ``prev`` of slot 0 (see ``LogContext.genesis``)."""
        return self._c.genesis

    @property
    def hint_every(self) -> int:
        return self._tail.hint_every

    @property
    def hint_min_interval(self) -> float:
        return self._tail.hint_min_interval

    def head(self) -> int:
        """The last slot of the log (``-1`` when empty). Reads the hint, then, on one
        create store whose backend lists strongly, LISTs the slots from it (one request);
        otherwise probes ``h, h+1, h+2, h+4, ... h+32`` at once (further rounds if all
        exist) and narrows the gap found, 6 probes a round."""
        return self._tail.head()

    def close(self) -> None:
        self._batch.close()  # the queued append_async calls finish first
        self._io.close()
        self._tail.close()
        self._c.pool.shutdown(wait=True)
        if self._c.fanout is not None:
            self._c.fanout.shutdown(wait=True)

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- deciding and reading one slot (the only mode-aware code) ---------------------------

    # -- membership (passivepaxos.membership has the design and the safety argument) -------

    @property
    def single_create(self) -> bool:
        return self._c.single_create

    def members(self) -> tuple[str, ...]:
        """The log's current store set, read through the log to its tail."""
        if not self._cfg.membership():
            self._tail.head()
        if self._cfg.membership():
            self._cfg.walk_to(1 << 62)
        return self._cfg.current()

    def origin(self) -> tuple[str, ...]:
        """The store set slot 0 was decided on."""
        return self._cfg.origin_set

    def known_stores(self) -> list[Store]:
        return list(self._cfg.opened.values())

    def config_history(self) -> list[tuple[int, ConfigChange]]:
        return self._cfg.history()

    def copy_decided_markers(self, upto: int, targets: Sequence[Store]) -> int:
        """Make sure every slot ``0..upto`` has a DECIDED marker on ``targets`` (a majority
        of them per slot, else ``QuorumError``); returns the markers written."""
        return self._cfg.copy_decided_markers(upto, targets)

    def append_config(self, change: ConfigChange) -> int:
        """Append a configuration record (see :mod:`passivepaxos.membership`); its slot.
        Raises ``MembershipConflictError`` when the store set changed meanwhile."""
        with self._batch.lead():
            self._tail.observe()
            return self._writer.commit([], config=change)

    # -- tail discovery --------------------------------------------------------------------

    # -- appending -------------------------------------------------------------------------

    def append(self, values: Sequence[bytes], *, resume: str | None = None) -> list[int]:
        """Append ``values`` (one slot, maybe shared with concurrent calls); return one slot
        number per value, in order. An append whose outcome cannot be established raises
        ``AppendOutcomeUnknownError``; pass its ``token`` as ``resume`` (with the same
        values) to finish it exactly once (see :meth:`append_positions`)."""
        return [p.slot for p in self.append_positions(values, resume=resume)]

    def append_positions(
        self, values: Sequence[bytes], *, resume: str | None = None
    ) -> list[Position]:
        """Append ``values``; return each one's ``Position(slot, index)``, established.
        ``values`` is a sequence of bytes-like values, one per entry; anything else raises
        ``TypeError`` before any request.

        ``resume``: the token of an ``AppendOutcomeUnknownError`` from an earlier append of
        the same ``values``. The slot it names is established first, the resume proposing
        its own record of ``values`` there if it is free: if the earlier record (or a
        resume's) is decided there, its positions are returned and nothing more is written;
        if another record is, the earlier one can never be decided there (a record names
        its slot and its predecessor's hash) and the values are appended now: they end up
        in the log exactly once, provided resumes of one token run one after another (two
        at the same time can both append: docs/log.md). A resume that cannot establish the
        outcome raises ``AppendOutcomeUnknownError`` again (docs/log.md)."""
        vals = self._values(values)
        with telemetry.operation("append", self._c.url, self.runtime.monotonic) as op:
            op.set("entries", len(vals))
            positions = self._append_positions(vals, resume)
            op.slots([p.slot for p in positions])
        return positions

    def _append_positions(self, vals: list[bytes], resume: str | None) -> list[Position]:
        if resume is not None:
            if parse_forward_token(resume) is not None:
                if self._forward is None:
                    raise ConfigError(
                        f"resume token {resume!r} is a forwarded append's: open the log "
                        "with forward=True (CLI: --forward) to resume it"
                    )
                return self._forward.resume(vals, resume, self._batch.lead)
            return self._resumer.resume(vals, resume, self._batch.lead)
        if not vals:
            return []
        if self._forward is not None:
            return self._forward.append(vals, self._batch.submit, self._batch.lead)
        return self._batch.submit(vals)

    def append_async(self, values: Sequence[bytes]) -> Future[list[Position]]:
        """Queue ``values`` for appending and return at once a future of their positions
        (``Position(slot, index)`` each), so that one producer can keep many appends in
        flight: the queued appends share slots (group commit: each round trip writes
        everything queued meanwhile, up to ``max_batch_entries``), their order in the log
        is the order of the calls, and the futures complete in that order. A failure is
        the future's exception, as ``append_positions`` would raise it (outcome unknown:
        resume with its token); it breaks the pipeline: the async appends queued behind
        it, and every later one until :meth:`restart_pipeline`, are not written
        (``PipelineAbortedError``), so the log never holds a later value of the pipeline
        without an earlier one that failed. ``close()`` refuses new ones and waits for
        the queued ones. Not with forwarding (``ConfigError``)."""
        vals = self._values(values)
        if self._forward is not None:
            raise ConfigError("append_async: not with forward=True (use append)")
        if not vals:
            done: Future[list[Position]] = Future()
            done.set_result([])
            return done
        submit = functools.partial(self._batch.submit_async, vals)
        return telemetry.track(
            "append", self._c.url, self.runtime.monotonic, submit, entries=len(vals)
        )

    @staticmethod
    def _values(values: Sequence[bytes]) -> list[bytes]:
        """The entries of ``values``; ``TypeError`` before any request unless it is a
        sequence of bytes-like values."""
        if isinstance(values, bytes | bytearray | memoryview | str):
            raise TypeError(
                "values must be a sequence of bytes values, one per entry (e.g. [b'x']), "
                f"not a single {type(values).__name__}"
            )
        try:
            items = list(values)
        except TypeError:
            raise TypeError(
                f"values must be a sequence of bytes values, not {type(values).__name__}"
            ) from None
        return [require_bytes(v, f"entry {i} of values") for i, v in enumerate(items)]

    def restart_pipeline(self) -> None:
        """Accept ``append_async`` calls again after a failure broke the pipeline (handle
        the failure first: resume an append whose outcome is unknown, then append the
        aborted values again, in order)."""
        self._batch.restart_pipeline()

    # -- writer lease (see passivepaxos.lease) --------------------------------------------

    def _lead(self) -> contextlib.AbstractContextManager[None]:
        """Be the group-commit leader (no append of this object runs meanwhile)."""
        return self._batch.lead()

    # -- group commit internals (tests drive them directly) ---------------------------------

    @property
    def _queue(self) -> collections.deque[Pending]:
        return self._batch.queue

    @property
    def _leading(self) -> bool:
        return self._batch.leading

    @_leading.setter
    def _leading(self, value: bool) -> None:
        self._batch.leading = value

    def _lead_round(self) -> None:
        self._batch.lead_round()

    def claim_writer(self, ttl: float, *, wait: bool = True, shared: bool = False) -> ClaimResult:
        """ClaimWriter: append a claim record (epoch + 1, the fencing token) once nobody
        holds the lease, or once the tail has stayed unchanged for the holder's TTL of our
        own monotonic time. ``wait=False``: return at once with ``granted=False`` and the
        remaining time instead of waiting. Claiming while holding renews (same epoch, new
        ttl). ``shared``: later processes naming this ``writer_id`` may take the lease up
        (:meth:`adopt_writer`; the CLI's claims); no process serves lease reads under it."""
        check_ttl(ttl)  # bounded: a huge ttl would lock others out for good
        with telemetry.operation("writer.claim", self._c.url, self.runtime.monotonic) as op:
            got = self._claim_writer(ttl, wait, shared)
            op.result(got.granted)
            op.slots([got.slot] if got.granted else [])
        return got

    def _claim_writer(self, ttl: float, wait: bool, shared: bool) -> ClaimResult:
        with self._batch.lead():
            self._leasing.claim_shared = shared
            if self._leasing.holding() is None:
                self._tail.observe()  # claims are rare: start from the real tail
            try:
                slot = self._writer.commit([], op="claim", ttl=ttl, wait=wait, fold=self._fold())
            except NotYet as n:
                st = n.state
                return ClaimResult(
                    False, st.holder, st.epoch, st.ttl, st.expires, n.tail, n.remaining
                )
        lease = self._leasing.holding()
        assert lease is not None
        return ClaimResult(
            True, self.writer_id, lease.epoch, lease.ttl, lease.wall + lease.ttl, slot
        )

    def renew(self) -> int:
        """The holder renews its lease with an empty record (one request); returns its slot.
        Raises ``LeaseLostError`` if the lease was lost meanwhile."""
        with telemetry.operation("writer.renew", self._c.url, self.runtime.monotonic) as op:
            slot = self._renew()
            op.slots([slot])
        return slot

    def _renew(self) -> int:
        with self._batch.lead():
            if self._leasing.holding() is None:
                raise ConfigError("renew: this process does not hold the writer lease")
            slot = self._writer.commit([], fold=self._fold())
        self._tail.committed()
        return slot

    def _fold(self) -> Fold | None:
        """A forwarding holder's claim or renewal folds the inbox too (when due): a holder
        that only renews would otherwise keep producers waiting."""
        if self._forward is None or not self._forward.inbox_due():
            return None
        return self._forward.folder(own=0, empty_ok=True)

    def adopt_writer(self) -> bool:
        """Hold the writer lease that the log's tail record gives this ``writer_id``, if
        it does and it was claimed ``shared`` (a named owner in a new process: the CLI's
        ``--owner``); ``False`` if the lease is someone else's, free, or not shared.
        Processes sharing it all write as the holder (the log still decides each slot
        once) and none serves lease reads. Reads the tail."""
        with self._batch.lead():
            head = self._tail.observe()
            state = self._leasing.state_of(head, self._tail.record_at(head), fast=False)
            return self._leasing.adopt(head, state)

    def keep_writer(
        self, *, every: float | None = None, on_lost: Callable[[str], object] | None = None
    ) -> KeepAlive:
        """Renew the writer lease (held by this object) every ``every`` seconds (default
        ttl/3) in a background task until ``stop()``. The returned :class:`KeepAlive` is
        a context manager; its ``lost`` event is set and ``on_lost(reason)`` called once
        when a renewal finds the lease taken (``LeaseLostError``) or the holder's window
        (0.75 x ttl after its last established write, :meth:`lease_read`'s) ran out
        before a renewal succeeded. Nothing is released on stop."""
        lease = self._leasing.holding()
        if lease is None:
            raise ConfigError("keep_writer: this process does not hold the writer lease")

        def valid_until() -> float:
            held = self._leasing.holding()
            if held is None or held.epoch != lease.epoch:
                return -math.inf
            with self._c.state:
                return held.read_deadline()

        return KeepAlive(
            self.runtime,
            renew=self.renew,
            valid_until=valid_until,
            every=lease.ttl / 3 if every is None else every,
            what=f"the writer lease of {self.url} (epoch {lease.epoch})",
            fatal=(LeaseLostError, ConfigError),
            on_lost=on_lost,
            name="ppx-writer-keepalive",
        ).start()

    def release_writer(self) -> int | None:
        """Give the lease up at once with a release record (others may append or claim
        without waiting); ``None`` if this process did not hold it."""
        with telemetry.operation("writer.release", self._c.url, self.runtime.monotonic) as op:
            slot = self._release_writer()
            op.slots([] if slot is None else [slot])
        return slot

    def _release_writer(self) -> int | None:
        with self._batch.lead():
            if self._leasing.holding() is None:
                return None
            slot = self._writer.commit([], op="release")
        self._tail.maybe_write_hint(force=True)  # the next writer starts from the tail
        self._tail.remember()
        return slot

    def writer_status(self) -> WriterStatus:
        """WriterStatus: holder, epoch, ttl, expiry ESTIMATE (the holder's wall clock at its
        last record + ttl) and whether this object holds it. Reads the tail."""
        head = self._tail.observe()
        data = self._tail.record_at(head)
        lease = self._leasing.holding()
        state = self._leasing.state_of(head, data, fast=False)
        mine = lease is not None and (state.holder, state.epoch) == (self.writer_id, lease.epoch)
        return WriterStatus(state.holder, state.epoch, state.ttl, state.expires, mine, head)

    def lease_read(self) -> LeaseRead | None:
        """A lease read: the current head without I/O, served only by the holder, only
        while no record of its own is in flight or of unknown outcome (it may be visible
        to others already), and only while 0.75 x TTL of its own time has not passed since
        it started its last successful write (the TTL of the shortest record it has sent
        since, if lower); ``None`` otherwise (use :meth:`head`). A record of unknown
        outcome is resolved once this object learns its slot (a read that reaches it, or
        the next write)."""
        return self._leasing.lease_read()

    @property
    def slot_writes(self) -> int:
        """Slot decisions attempted by this object (stats)."""
        return self._writer.slot_writes

    @property
    def backoff_max(self) -> float:
        return self._writer.backoff_max

    @property
    def wait_expired_lease(self) -> bool:
        return self._leasing.wait_expired_lease

    def _commit(self, entries: list[bytes], **kw: Any) -> int:
        """``FencedWriter.commit`` (tests write special records through it)."""
        return self._writer.commit(entries, **kw)

    # -- reading ---------------------------------------------------------------------------

    def read(
        self, from_slot: int = 0, limit: int | None = None, *, to_slot: int | None = None
    ) -> Iterator[Entry]:
        """Entries from slot ``from_slot`` to the current end (or through slot ``to_slot``,
        fetching nothing beyond it), in order; ``limit`` caps the number of entries. Slots
        up to the newest snapshot's slot ``s`` are served from the snapshot (one LIST of
        ``snapshot/`` on this object's first read, one GET); slots ``s+1..`` are fetched
        up to ``fetch_ahead`` at a time and validated, the chain checked from the
        snapshot's anchor; records this object already holds (its own writes, its recent
        reads) are not fetched again. Raises ``CompactedError`` for ``from_slot <= s``
        when the snapshot holds application state instead of entries."""
        count = 0
        if limit is not None and limit <= 0:
            return
        for slot, entries in self._reader.slot_entries(from_slot, follow=False, to_slot=to_slot):
            for i, v in enumerate(entries):
                yield Entry(slot, i, v)
                count += 1
                if limit is not None and count >= limit:
                    return

    def follow(
        self,
        from_slot: int = 0,
        *,
        poll_min: float = 0.05,
        poll_max: float = 2.0,
        stop: EventLike | None = None,
    ) -> Iterator[Entry]:
        """Like :meth:`read`, then keep polling for new slots (backoff ``poll_min`` doubling
        to ``poll_max``, reset on progress) until ``stop`` is set."""
        for slot, entries in self._reader.slot_entries(
            from_slot, follow=True, poll=(poll_min, poll_max), stop=stop
        ):
            for i, v in enumerate(entries):
                yield Entry(slot, i, v)

    # -- verification ----------------------------------------------------------------------

    # -- snapshots and trim (see passivepaxos.snapshot) -------------------------------------

    # -- verification (passivepaxos.log.verify) ------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Check the newest snapshot (checksum, its anchor, and for an entries snapshot its
        entries against every untrimmed slot up to it) and walk the whole chain from slot 0:
        first the tombstones ``trim`` left (a prefix of the log: format, checksum, slot
        number, a covering snapshot, the chain through each one's ``hash`` / ``prev``),
        then the records. A slot missing below the newest snapshot (a deleted tombstone or
        record), a tombstone after a record that is still there (a slot written again after
        its tombstone was deleted) and a gap are damage. Damage gives ``ok=False`` with the
        first bad slot (or snapshot) and the reason; a walk that cannot read a slot (no
        majority) raises. A store whose objects cannot be listed (unreachable while a
        majority answered the walk) is not checked: ``ok=False`` with no bad slot and the
        store named in ``unchecked``, never "intact". ``progress`` is called with each
        slot number checked. On one store, forwarding's ``inbox/`` is listed and read
        too: parcels are counted (folded, pending) with the withdrawn markers, and an
        object there that is not a parcel of its name is damage (``bad_inbox``, key ->
        why; folders skip it, so this is what reports it). Costs one GET per slot,
        tombstones included, and one LIST plus a GET per inbox object."""
        return self._verifier.run(progress)

    # -- snapshots and trim (passivepaxos.log.compaction) ----------------------------------

    def snapshot_slots(self) -> list[int]:
        """The slots of the snapshot objects, ascending: one LIST of the small ``snapshot/``
        prefix per store (never of the log). On a quorum: the union over the stores that
        answer; a majority must answer."""
        return self._snaps.slots()

    def newest_snapshot(self) -> SnapshotInfo | None:
        """The newest snapshot (highest slot), validated; ``None`` if there is none. A
        damaged newest snapshot raises ``DamagedSnapshotError`` naming it (never skipped)."""
        return self._snaps.newest()

    def snapshot(self, state: bytes | None = None, *, slot: int | None = None) -> SnapshotInfo:
        """Write the snapshot ``snapshot/<s:020d>`` and return it.

        ``state=None``: an entries snapshot at the current head slot ``s`` holding every
        entry of slots 0..s, built from the newest snapshot plus the slots after it (so it
        costs reading only those). ``state``: the application's state after slot ``slot``
        (default: the current head; pass the slot your state has applied). Written with
        create-if-absent where the store has it; an existing snapshot at the same slot with
        the same anchor is returned instead (first writer wins). On a quorum it is written
        to every store and a majority must succeed (``QuorumError`` otherwise)."""
        return self._snaps.write(state, slot=slot, records=self._reader.raw_records, head=self.head)

    def trim(self, before: int) -> TrimResult:
        """Trim slots ``0..before-1``: OVERWRITE each slot object with a tombstone (never
        delete it: the name stays taken, so a stale writer's create of it fails and is never
        acknowledged). Refuses (``TrimRefusedError``) unless a snapshot at slot
        ``>= before - 1`` exists; checks, before destroying a slot, that its record chains
        correctly and (for an entries snapshot) that its entries equal the snapshot's.
        Only on one store in create mode (``UnsupportedError`` otherwise). Costs about
        log2(before) GETs to find the first untrimmed slot, then a GET and a PUT per slot
        trimmed."""
        return self._snaps.trim(before)

    def _records(self, from_slot: int, *, follow: bool = False) -> Iterator[tuple[int, Record]]:
        """(slot, record) from the log itself (tests look at the records)."""
        return self._reader.records(from_slot, follow=follow)
