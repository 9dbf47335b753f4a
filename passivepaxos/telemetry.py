"""Metrics and traces through OpenTelemetry: the one module that talks to it.

``opentelemetry-api`` is optional (``pip install 'passivepaxos[otel]'``). Without it every
function here is a no-op that costs a function call: :data:`ENABLED` is false,
:func:`operation` hands out one shared do-nothing object, :func:`metered` returns the
request it was given. With it, the library reports to the *global* ``MeterProvider`` and
``TracerProvider`` (``opentelemetry.metrics.get_meter("passivepaxos", version)``, the same
for the tracer), so an application configures the SDK the usual OpenTelemetry way, before
or after importing passivepaxos: the instruments are created on first use from OTel's
proxy meter, which forwards to a provider set later. :func:`configure` points the library
at providers of its own instead (tests; an application that keeps separate providers).

The hooks in the other modules are one-line calls into here, at the narrowest layer that
knows the fact: the ``Store`` (each backend request, conflicts, how an ambiguous write was
resolved), ``Log`` (append, the writer lease), the fenced writer (a slot lost to another
record), the consensus driver (propose), the lock recipe and ``KeepAlive``. Durations are
read from the clock the caller passes (its runtime's ``monotonic``), never from the
system clock, so the simulator's runs stay deterministic. The names, units and attributes
are listed in docs/observability.md.

No attribute ever carries a credential, a value or a payload: a store is named by its
scheme and container only (:func:`store_label`: no user info, no path below the
container, no query), an error by its class name only (never its message).

Telemetry never fails the library: every entry point here catches ``Exception`` raised
by OpenTelemetry (a provider whose ``get_meter`` raises, an instrument whose ``add``
raises, a span processor raising in ``on_end``, ``OTEL_PYTHON_*_PROVIDER`` naming a
provider that is not installed) and logs a warning once (logger
``passivepaxos.telemetry``); the meter or tracer that could not be had is replaced by
OpenTelemetry's no-op one. ``BaseException`` (``KeyboardInterrupt``, a simulated process
being stopped) is never caught.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from passivepaxos.urls import parse_url

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace

    ENABLED = True
except ImportError:  # the optional dependency is absent: every hook is a no-op
    ENABLED = False

__all__ = [
    "ENABLED",
    "METRICS",
    "SPANS",
    "Operation",
    "ambiguous",
    "annotate",
    "backend_label",
    "configure",
    "conflict",
    "first_page_refused",
    "keepalive_lost",
    "lease_claim",
    "lease_lost",
    "metered",
    "operation",
    "slot_lost",
    "store_label",
    "track",
]

T = TypeVar("T")

NAME = "passivepaxos"

# name -> (instrument kind, unit, description): docs/observability.md lists the same
METRICS: dict[str, tuple[str, str, str]] = {
    "passivepaxos.storage.requests": (
        "counter",
        "{request}",
        "Requests sent to a storage backend, by backend, operation and outcome",
    ),
    "passivepaxos.storage.request.duration": (
        "histogram",
        "s",
        "Time of one storage request (a listing: until its first page)",
    ),
    "passivepaxos.storage.conflicts": (
        "counter",
        "{write}",
        "Conditional writes that lost: another writer's object or version is there",
    ),
    "passivepaxos.storage.ambiguous_writes": (
        "counter",
        "{write}",
        "Writes whose answer was lost, by how the store resolved them",
    ),
    "passivepaxos.log.races_lost": (
        "counter",
        "{slot}",
        "Slots an append proposed a record for that went to another record",
    ),
    "passivepaxos.log.append.duration": (
        "histogram",
        "s",
        "Time of one Log.append / append_positions call",
    ),
    "passivepaxos.consensus.propose.duration": (
        "histogram",
        "s",
        "Time of one consensus propose (a log slot on a quorum, or an instance)",
    ),
    "passivepaxos.lease.claims": (
        "counter",
        "{claim}",
        "Writer-lease claims and lock acquires, by kind and result",
    ),
    "passivepaxos.lease.losses": (
        "counter",
        "{loss}",
        "Writer leases and locks found lost (taken over or released) by a write",
    ),
    "passivepaxos.keepalive.lost": (
        "counter",
        "{grant}",
        "Grants a KeepAlive declared lost, by grant and reason",
    ),
    "passivepaxos.lock.waits": (
        "counter",
        "{wait}",
        "Lock acquires that waited for another holder, by result",
    ),
    "passivepaxos.lock.wait.duration": (
        "histogram",
        "s",
        "How long a lock acquire waited for another holder",
    ),
}

# span name -> what it covers: docs/observability.md lists the same
SPANS: dict[str, str] = {
    "passivepaxos.append": "Log.append / append_positions",
    "passivepaxos.propose": "consensus propose (consensus.driver.propose)",
    "passivepaxos.writer.claim": "Log.claim_writer",
    "passivepaxos.writer.renew": "Log.renew",
    "passivepaxos.writer.release": "Log.release_writer",
    "passivepaxos.lock.acquire": "Locks.acquire",
    "passivepaxos.lock.refresh": "Locks.refresh",
    "passivepaxos.lock.release": "Locks.release",
}

# attribute names
BACKEND = "passivepaxos.backend"
STORE = "passivepaxos.store"
OPERATION = "passivepaxos.operation"
OUTCOME = "passivepaxos.outcome"
RESOLUTION = "passivepaxos.resolution"
KIND = "passivepaxos.kind"
RESULT = "passivepaxos.result"
REASON = "passivepaxos.reason"
ERROR_TYPE = "error.type"


class _HasURL(Protocol):
    @property
    def url(self) -> str: ...


class _Store(Protocol):
    """What :func:`metered` and friends read of a ``Store`` (its URL, its runtime's clock)."""

    @property
    def url(self) -> str: ...

    runtime: Any


Where = str | Sequence[_HasURL]  # a (comma-joined) URL, or stores

# -- labels --------------------------------------------------------------------------------


def _label_parts(url: str) -> tuple[str, str]:
    """(scheme, container) of one store URL as ``urls.parse_url`` reads it: the scheme
    lower-cased; the container is the normalised path for ``file`` and ``dropbox`` (whose
    path is the store), the bucket / container / memory name otherwise. A URL it refuses
    (a scheme it does not know, a wrapper's URL) is split the same way by hand. Never
    user info, a prefix below the container, a query or a fragment."""
    try:
        parsed = parse_url(url)
        scheme = parsed.scheme
        if scheme in ("file", "dropbox"):
            return scheme, parsed.prefix
        return scheme, parsed.container.rpartition("@")[2]
    except Exception:
        pass
    scheme = url.partition("://")[0].lower()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced '[' in the host: no container to be had
        return scheme, ""
    host = parts.netloc.rpartition("@")[2]
    if host and not (scheme in ("file", "dropbox") and host.lower() == "localhost"):
        return scheme, host
    return scheme, parts.path.rstrip("/") or "/"


@functools.lru_cache(maxsize=512)
def store_label(url: str) -> str:
    """``scheme://container`` of a store URL: no user info, no prefix below the container,
    no query or fragment. A URL whose store is a path (``file:///dir``,
    ``file://localhost/dir``, ``dropbox:///path``) is named by that path, its container.
    A quorum (URLs joined by ``,``): each, joined."""
    if "," in url:
        return ",".join(store_label(u) for u in url.split(","))
    scheme, container = _label_parts(url.strip())
    return f"{scheme}://{container}"


@functools.lru_cache(maxsize=512)
def backend_label(url: str) -> str:
    """The scheme(s) of a store URL, lower-cased (``s3``; ``file,s3`` for a quorum of
    both, sorted)."""
    return ",".join(sorted({_label_parts(u.strip())[0] for u in url.split(",")}))


def _url_of(where: Where) -> str:
    if isinstance(where, str):
        return where
    return ",".join(s.url for s in where)


def _error_type(exc: BaseException) -> str:
    return type(exc).__name__


# the outcome of one request from the error it raised (the classes of passivepaxos.errors,
# by name: of the library's modules this one imports passivepaxos.urls only)
_OUTCOMES = (
    ("ThrottledError", "throttled"),
    ("ConflictError", "conflict"),
    ("NotFoundError", "not_found"),
    ("ContainerNotFoundError", "container_not_found"),
    ("PermissionDeniedError", "denied"),
    ("InvalidObjectError", "invalid"),
    ("TransientError", "transient"),
    ("DeadlineExceededError", "deadline"),
)


def _outcome(exc: BaseException) -> str:
    names = {c.__name__ for c in type(exc).__mro__}
    for name, outcome in _OUTCOMES:
        if name in names:
            return outcome
    return "error"


# -- providers and instruments -------------------------------------------------------------

_meter_provider: Any = None  # None: the global one
_tracer_provider: Any = None
_mu = threading.Lock()  # creating the instruments only (no runtime call under it)
_inst: _Instruments | None = None
_tracer_obj: Any = None
_log = logging.getLogger(__name__)
_warned = False  # a telemetry failure was logged (once per configure)


def _failed(exc: Exception) -> None:
    """OpenTelemetry raised ``exc`` in a hook: what it was reporting is dropped, the
    library goes on. The first such failure is logged as a warning, with its traceback."""
    global _warned
    if _warned:
        return
    _warned = True
    with contextlib.suppress(Exception):  # a logging filter raising: still nothing escapes
        _log.warning(
            "passivepaxos: OpenTelemetry raised %s; what it was reporting is dropped (a "
            "meter or tracer it could not make is a no-op one from now on), later "
            "failures are not logged, the library goes on unaffected",
            type(exc).__name__,
            exc_info=exc,
        )


@functools.cache
def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version(NAME)
    except Exception:  # not installed (a source checkout on sys.path)
        return None


class _Instruments:
    def __init__(self, meter: Any) -> None:
        made: dict[str, Any] = {}
        for name, (kind, unit, description) in METRICS.items():
            create = meter.create_counter if kind == "counter" else meter.create_histogram
            made[name] = create(name, unit=unit, description=description)
        self.requests = made["passivepaxos.storage.requests"]
        self.request_duration = made["passivepaxos.storage.request.duration"]
        self.conflicts = made["passivepaxos.storage.conflicts"]
        self.ambiguous = made["passivepaxos.storage.ambiguous_writes"]
        self.races_lost = made["passivepaxos.log.races_lost"]
        self.append_duration = made["passivepaxos.log.append.duration"]
        self.propose_duration = made["passivepaxos.consensus.propose.duration"]
        self.claims = made["passivepaxos.lease.claims"]
        self.losses = made["passivepaxos.lease.losses"]
        self.keepalive_lost = made["passivepaxos.keepalive.lost"]
        self.lock_waits = made["passivepaxos.lock.waits"]
        self.lock_wait_duration = made["passivepaxos.lock.wait.duration"]


def _instruments() -> _Instruments:
    """The instruments, made on first use; OpenTelemetry's no-op ones if the meter
    provider (or its meter) raised making them."""
    global _inst
    inst = _inst
    if inst is not None:
        return inst
    with _mu:
        if _inst is None:
            try:
                if _meter_provider is not None:
                    meter = _meter_provider.get_meter(NAME, _version())
                else:
                    meter = _metrics.get_meter(NAME, _version() or "")
                _inst = _Instruments(meter)
            except Exception as exc:
                _failed(exc)
                _inst = _Instruments(_metrics.NoOpMeter(NAME))
        return _inst


def _tracer() -> Any:
    """The tracer, got on first use; OpenTelemetry's no-op one if the provider raised."""
    global _tracer_obj
    tracer = _tracer_obj
    if tracer is not None:
        return tracer
    with _mu:
        if _tracer_obj is None:
            try:
                if _tracer_provider is not None:
                    _tracer_obj = _tracer_provider.get_tracer(NAME, _version())
                else:
                    _tracer_obj = _trace.get_tracer(NAME, _version())
            except Exception as exc:
                _failed(exc)
                _tracer_obj = _trace.NoOpTracer()
        return _tracer_obj


def configure(*, meter_provider: Any = None, tracer_provider: Any = None) -> None:
    """Report to these providers instead of the global ones (``None``: the global one
    again). OpenTelemetry's global providers can be set once per process; tests, and an
    application that keeps the library's telemetry apart, pass theirs here."""
    global _meter_provider, _tracer_provider, _inst, _tracer_obj, _warned
    with _mu:
        _meter_provider, _tracer_provider = meter_provider, tracer_provider
        _inst, _tracer_obj = None, None
        _warned = False


# -- storage requests (the Store) ----------------------------------------------------------


class _FirstPage:
    """A listing's pages, reporting the request when its first page is in (or failed)."""

    __slots__ = ("_done", "_it", "_report")

    def __init__(self, it: Iterator[Any], report: Callable[[BaseException | None], None]) -> None:
        self._it, self._report, self._done = it, report, False

    def __iter__(self) -> _FirstPage:
        return self

    def __next__(self) -> Any:
        if self._done:
            return next(self._it)
        try:
            item = next(self._it)
        except StopIteration:
            self._finish(None)
            raise
        except BaseException as exc:
            self._finish(exc)
            raise
        self._finish(None)
        return item

    def _finish(self, exc: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self._report(exc)


def _metered(store: _Store, op: str, fn: Callable[[], T]) -> Callable[[], T]:
    def call() -> T:
        clock = store.runtime.monotonic
        started = clock()

        def report(exc: BaseException | None) -> None:
            try:
                took = clock() - started
                outcome = "ok" if exc is None else _outcome(exc)
                attrs = {BACKEND: backend_label(store.url), OPERATION: op, OUTCOME: outcome}
                inst = _instruments()
                inst.requests.add(1, attrs)
                inst.request_duration.record(took, attrs)
                span = _trace.get_current_span()
                if span.is_recording():
                    span.add_event(
                        "passivepaxos.storage.request", {**attrs, "passivepaxos.seconds": took}
                    )
            except Exception as failure:
                _failed(failure)

        try:
            result = fn()
        except BaseException as exc:
            report(exc)
            raise
        if op == "list":
            pages: Any = result
            listing: Any = _FirstPage(iter(pages), report)
            return listing  # type: ignore[no-any-return]
        report(None)
        return result

    return call


def metered(store: _Store, op: str | None, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` (one request of ``store``'s backend: ``op`` is ``get``, ``put:create``,
    ``put:update``, ``put:overwrite``, ``delete`` or ``list``, the names
    ``wrappers.CountingBackend`` counts under) reporting itself when called: counted, timed
    on the store's runtime clock, its outcome from the error it raised; an event on the
    current span. ``op=None`` (not a request) or telemetry off: ``fn`` itself."""
    if not ENABLED or op is None:
        return fn
    return _metered(store, op, fn)


def first_page_refused(pages: object, exc: BaseException) -> None:
    """The first page of a listing (``pages``: what the :func:`metered` ``list`` request
    returned) was never asked for: ``exc``, the deadline passed first. The listing was
    sent (the backend counted it, a backend that lists eagerly has even fetched it), so
    it is reported now, with ``exc``'s outcome. A no-op once its first page reported."""
    if ENABLED and isinstance(pages, _FirstPage):
        pages._finish(exc)


def conflict(store: _HasURL, op: str) -> None:
    """A conditional write of ``store`` (``op``) lost: someone else's write is there."""
    if ENABLED:
        try:
            attrs = {BACKEND: backend_label(store.url), OPERATION: op}
            _instruments().conflicts.add(1, attrs)
        except Exception as exc:
            _failed(exc)


def ambiguous(store: _HasURL, op: str, resolution: str) -> None:
    """A write of ``store`` got no clear answer and the store settled it by reading back:
    ``landed`` (our write id is there), ``resent`` (the precondition still held: the same
    bytes go again), ``lost`` (another writer's object is there) or ``unknown``
    (``AmbiguousWriteError``: it could not tell)."""
    if ENABLED:
        try:
            attrs = {BACKEND: backend_label(store.url), OPERATION: op, RESOLUTION: resolution}
            _instruments().ambiguous.add(1, attrs)
            span = _trace.get_current_span()
            if span.is_recording():
                span.add_event("passivepaxos.storage.ambiguous", attrs)
        except Exception as exc:
            _failed(exc)


# -- the log, leases, locks ----------------------------------------------------------------


def slot_lost(where: Where) -> None:
    """An append's record lost its slot to another record (it goes on at a later one)."""
    if ENABLED:
        try:
            _instruments().races_lost.add(1, {BACKEND: backend_label(_url_of(where))})
        except Exception as exc:
            _failed(exc)


def lease_claim(kind: str, granted: bool) -> None:
    """A claim of a ``kind`` (``writer``, ``lock``) grant answered: granted or refused."""
    if ENABLED:
        try:
            result = "granted" if granted else "refused"
            _instruments().claims.add(1, {KIND: kind, RESULT: result})
        except Exception as exc:
            _failed(exc)


def lease_lost(kind: str) -> None:
    """A write found the ``kind`` grant this process held taken over or released."""
    if ENABLED:
        try:
            _instruments().losses.add(1, {KIND: kind})
        except Exception as exc:
            _failed(exc)


def keepalive_lost(name: str, reason: str) -> None:
    """A ``KeepAlive`` (task ``name``) declared its grant lost: ``refused`` (a renewal was
    refused for good) or ``expired`` (its validity ran out before a renewal succeeded)."""
    if ENABLED:
        try:
            kind = "writer" if "writer" in name else "lock" if "lock" in name else "other"
            _instruments().keepalive_lost.add(1, {KIND: kind, REASON: reason})
        except Exception as exc:
            _failed(exc)


def annotate(**attrs: str | int | float | bool) -> None:
    """Attributes (``passivepaxos.<name>``) on the current span, if one is recording."""
    if ENABLED:
        try:
            span = _trace.get_current_span()
            if span.is_recording():
                for k, v in attrs.items():
                    span.set_attribute(f"passivepaxos.{k}", v)
        except Exception as exc:
            _failed(exc)


class Operation:
    """One operation's span and timing (:func:`operation`); a no-op when telemetry is off."""

    __slots__ = ()

    def __enter__(self) -> Operation:
        return self

    def __exit__(
        self,
        t: type[BaseException] | None,
        v: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def set(self, key: str, value: str | int | float | bool) -> None:
        """Attribute ``passivepaxos.<key>`` on the span."""

    def slots(self, slots: Sequence[int]) -> None:
        """The slots the operation's records went to (first, and last if another)."""

    def waiting(self, now: float) -> None:
        """A lock acquire starts waiting for another holder at ``now`` (its clock)."""

    def result(self, granted: bool) -> None:
        """A claim's answer (a refusal that is no error: ``claim_writer(wait=False)``)."""


_NOOP = Operation()


class _Operation(Operation):
    __slots__ = (
        "_attrs",
        "_backend",
        "_clock",
        "_granted",
        "_kind",
        "_span",
        "_started",
        "_token",
        "_wait_from",
    )

    def __init__(
        self, kind: str, where: Where, clock: Callable[[], float], attrs: dict[str, Any]
    ) -> None:
        url = _url_of(where)
        self._kind, self._clock = kind, clock
        self._backend = backend_label(url)
        self._attrs = {STORE: store_label(url), BACKEND: self._backend}
        for k, v in attrs.items():
            self._attrs[f"passivepaxos.{k}"] = v
        self._span: Any = _trace.INVALID_SPAN  # until started (and if it cannot be)
        self._token: Any = None  # the context token while the span is the current one
        self._wait_from: float | None = None
        self._granted: bool | None = None
        self._started = 0.0

    def __enter__(self) -> Operation:
        self.start(current=True)
        return self

    def start(self, *, current: bool) -> None:
        """Start the span (``current``: made the current span until the end); one that
        cannot be started is a non-recording one. If reading the clock fails after the
        span was made current, the context is restored and the span ended first."""
        try:
            self._span = _tracer().start_span(f"passivepaxos.{self._kind}", attributes=self._attrs)
            if current:
                self._token = _context.attach(_trace.set_span_in_context(self._span))
        except Exception as exc:
            _failed(exc)
        try:
            self._started = self._clock()
        except BaseException:
            self._end()
            raise

    def set(self, key: str, value: str | int | float | bool) -> None:
        try:
            if self._span.is_recording():
                self._span.set_attribute(f"passivepaxos.{key}", value)
        except Exception as exc:
            _failed(exc)

    def slots(self, slots: Sequence[int]) -> None:
        if slots:
            self.set("slot", slots[0])
            if slots[-1] != slots[0]:
                self.set("slot.last", slots[-1])

    def waiting(self, now: float) -> None:
        if self._wait_from is None:
            self._wait_from = now

    def result(self, granted: bool) -> None:
        self._granted = granted

    def __exit__(
        self,
        t: type[BaseException] | None,
        v: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._close(v)
        finally:
            self._end()

    def finish(self, exc: BaseException | None) -> None:
        """End a span started with ``current=False``."""
        try:
            self._close(exc)
        finally:
            self._end()

    def _end(self) -> None:
        """The span no longer current (if it was), and ended."""
        token, self._token = self._token, None
        try:
            if token is not None:
                _context.detach(token)
        except Exception as exc:
            _failed(exc)
        try:
            self._span.end()
        except Exception as exc:  # a span processor's on_end raising
            _failed(exc)

    def _close(self, exc: BaseException | None) -> None:
        try:
            now = self._clock()
            error = None if exc is None else _error_type(exc)
            self._record(now, error)
            if error is not None and self._span.is_recording():
                self._span.set_attribute(ERROR_TYPE, error)
                self._span.set_status(_trace.Status(_trace.StatusCode.ERROR, error))
        except Exception as failure:
            _failed(failure)

    def _record(self, now: float, error: str | None) -> None:
        inst = _instruments()
        attrs = {BACKEND: self._backend}
        if error is not None:
            attrs[ERROR_TYPE] = error
        kind = self._kind
        if kind == "append":
            inst.append_duration.record(now - self._started, attrs)
        elif kind == "propose":
            inst.propose_duration.record(now - self._started, attrs)
        elif kind in ("lock.acquire", "writer.claim"):
            granted = self._granted if self._granted is not None else error is None
            if error is None or error in ("LockHeldError", "LeaseHeldError"):
                lease_claim("lock" if kind == "lock.acquire" else "writer", granted)
            if self._wait_from is not None:
                result = "acquired" if error is None else "gave_up"
                if error not in (None, "LockHeldError"):
                    result = "error"
                waited = {RESULT: result}
                inst.lock_waits.add(1, waited)
                inst.lock_wait_duration.record(max(0.0, now - self._wait_from), waited)
                self.set("lock.waited", now - self._wait_from)


def _slots_of(result: object) -> list[int]:
    if isinstance(result, list):
        return [p.slot for p in result if isinstance(getattr(p, "slot", None), int)]
    return []


def track(
    kind: str,
    where: Where,
    clock: Callable[[], float],
    submit: Callable[[], Future[T]],
    **attrs: str | int | float | bool,
) -> Future[T]:
    """``submit()``, an operation that completes in a future (``Log.append_async``),
    reported like :func:`operation` when the future is done: its span (started now, not
    made current: the caller goes on meanwhile) ends then, with the slots of its
    ``Position`` results. The done future is read without waiting (``Future``'s own
    methods, timeout 0): a simulated future's ``result()`` is a scheduling point."""
    if not ENABLED:
        return submit()
    try:
        op = _Operation(kind, where, clock, {**attrs, "async": True})
        op.start(current=False)
    except Exception as exc:
        _failed(exc)
        return submit()
    try:
        fut = submit()
    except BaseException as exc:
        op.finish(exc)
        raise

    def done(f: Future[T]) -> None:
        try:
            exc: BaseException | None = (
                CancelledError() if f.cancelled() else Future.exception(f, 0)
            )
            if exc is None:
                op.slots(_slots_of(Future.result(f, 0)))
        except Exception as failure:
            _failed(failure)
            exc = None
        op.finish(exc)

    fut.add_done_callback(done)
    return fut


def operation(
    kind: str, where: Where, clock: Callable[[], float], **attrs: str | int | float | bool
) -> Operation:
    """A context manager around one operation of the library: span
    ``passivepaxos.<kind>`` (the current span inside it) with the store (``where``:
    :func:`store_label`, :func:`backend_label`) and ``attrs`` as ``passivepaxos.<name>``
    attributes; on exit the operation's metrics, timed with ``clock`` (the caller's
    runtime's ``monotonic``). An error is recorded by its class name only."""
    if not ENABLED:
        return _NOOP
    try:
        return _Operation(kind, where, clock, attrs)
    except Exception as exc:
        _failed(exc)
        return _NOOP
