"""The store every higher layer uses: framing, write ids, retries and ambiguity resolution.

Adapters (``passivepaxos.types.Backend``) only translate; this module decides. Rules:

- Every object written is framed (``passivepaxos.frame``) with a fresh 16-byte write id.
- Reads, listings, overwrites and unconditional deletes are retried on ``TransientError``
  (bounded attempts, jittered exponential backoff, honouring Retry-After). A write whose
  attempts all failed unclearly ends as ``AmbiguousWriteError`` (it may have been applied),
  never as a plain ``TransientError``.
- A conditional write is never retried blindly. When its outcome is unclear (timeout,
  5xx, S3 409, a conflict that may follow an SDK-internal retry) the store reads the key
  back: our write id there means it took effect; the precondition still holding means it
  has not (yet), so the *identical* bytes are sent again (one of the attempts can win,
  never both, since they share the precondition); someone else's object there is a
  definite loss for a create, and ``AmbiguousWriteError`` for an update, whose success
  could have been overwritten since.
- Every call honours the deadline of the operation (``passivepaxos.deadline``): no
  attempt, read-back or backoff sleep goes past it, and each request's socket timeouts
  are cut to the time left. Out of time, a call raises ``DeadlineExceededError``, or
  ``DeadlineAmbiguousError`` while a write of the operation was sent and never answered, or
  took effect (a write definitely refused, a lost race, leaves nothing in doubt).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from passivepaxos import frame, telemetry
from passivepaxos.capabilities import Capabilities
from passivepaxos.deadline import Deadline, current, request_budget
from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    ConflictError,
    DeadlineAmbiguousError,
    DeadlineExceededError,
    NotFoundError,
    PreconditionFailedError,
    ThrottledError,
    TransientError,
)
from passivepaxos.retry import Backoff
from passivepaxos.runtime import REAL, Runtime
from passivepaxos.types import Backend, ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL, open_backend

__all__ = ["RetryPolicy", "Store", "StoredObject", "open_store"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a ``Store`` retries. The pauses are a full-jitter :class:`~passivepaxos.retry.Backoff`
    (floor 0: clients retrying the same bucket fall out of step) from ``base_delay``, about
    one object-store round trip, doubling up to ``max_delay``, so that the default six
    attempts span a few seconds of a service's trouble, not minutes."""

    attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 2.0
    resolve_attempts: int = 6  # read-back rounds for one ambiguous conditional write
    # seconds one Store call may take, its retries and read-backs included (None: no limit
    # beyond the SDK timeouts and any ``passivepaxos.deadline`` in force)
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class StoredObject:
    data: bytes
    version: Version
    write_id: bytes


class Resent:
    """Counts the retries and read-backs of the calls made under one :data:`RESENT`."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


RESENT: ContextVar[Resent | None] = ContextVar("passivepaxos_resent", default=None)
"""Set around a call to learn whether it sent a request again (a retry after a backoff,
a read-back after an unclear write): ``manifest.MemberStore`` checks a store once more
after such an answer, whose last request may be much later than its check."""


def _note_resent() -> None:
    counter = RESENT.get()
    if counter is not None:
        counter.n += 1


@dataclass
class _Window:
    """The time one Store call has: until ``until`` (of ``clock``, the store's runtime's
    monotonic clock), because of ``what``."""

    until: float
    what: str
    clock: Callable[[], float]
    scopes: list[Deadline] = field(default_factory=list)
    pending: int = 0  # writes of this call sent and not answered
    landed: bool = False  # a write of this call took effect

    def left(self) -> float:
        return self.until - self.clock()

    def note_write(self) -> None:
        self.pending += 1
        for d in self.scopes:
            d.note_write()

    def settle_write(self, *, landed: bool) -> None:
        """A write noted here was answered: it took effect, or was definitely refused (then
        it no longer makes running out of time ambiguous)."""
        self.pending = max(0, self.pending - 1)
        self.landed = self.landed or landed
        for d in self.scopes:
            d.settle_write(landed=landed)

    def note_landed(self) -> None:
        """A read-back found our write id: the write took effect after all."""
        self.note_write()
        self.settle_write(landed=True)

    def in_doubt(self) -> bool:
        return self.landed or self.pending > 0 or any(d.wrote for d in self.scopes)


class Store:
    """A backend plus the rules above. ``runtime`` supplies the clock, the backoff sleeps,
    the jitter and the write ids (the simulator passes a virtual one; default: the
    production runtime); ``sleep`` and ``rng`` override just those two (tests that must not
    wait). ``deadline`` bounds every call (see ``passivepaxos.deadline`` for the deadlines
    honoured without it)."""

    def __init__(
        self,
        backend: Backend,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        deadline: Deadline | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.backend = backend
        self.retry = retry or RetryPolicy()
        self.runtime: Runtime = runtime or REAL
        self._sleep = sleep or self.runtime.sleep
        self._rng = rng or self.runtime.rng
        self._pauses = Backoff(self.retry.base_delay, self.retry.max_delay)  # RetryPolicy doc
        self.deadline = deadline
        # the deadline block this store was opened in: honoured from any thread while it lasts
        self._opened_under = current()

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    # -- deadlines -------------------------------------------------------------------------

    def _window(self) -> _Window | None:
        """The deadline this call must end by (the earliest that applies), if any."""
        scopes: list[Deadline] = []
        for d in (self.deadline, self._opened_under, current()):
            if d is not None and not d.closed and all(d is not s for s in scopes):
                scopes.append(d)
        now = self.runtime.monotonic()
        ends: list[tuple[float, str]] = []
        for d in scopes:
            left = d.left()  # in the deadline's clock: only the time left crosses over
            if left is not None:
                ends.append((now + left, d.describe()))
            if d.per_request is not None:
                ends.append((now + d.per_request, d.describe()))
        if self.retry.timeout is not None:
            ends.append((now + self.retry.timeout, f"the {self.retry.timeout:g}s store timeout"))
        if not ends:
            return None
        until, what = min(ends)
        return _Window(until, what, self.runtime.monotonic, scopes)

    def _expired(self, w: _Window, key: str | None) -> DeadlineExceededError:
        if w.in_doubt():
            return DeadlineAmbiguousError(
                f"outcome unknown: {w.what} passed after a write of this operation was sent",
                url=self.url,
                key=key,
            )
        return DeadlineExceededError(f"timed out: {w.what} passed", url=self.url, key=key)

    def _send(
        self,
        w: _Window | None,
        fn: Callable[[], T],
        key: str | None,
        write: bool,
        op: str | None = None,
    ) -> T:
        """One backend request, refused once the deadline has passed, with its socket
        timeouts cut to the time left. ``op``: the request's name for telemetry (``None``:
        a step of a listing already counted, not a request of its own)."""
        fn = telemetry.metered(self, op, fn)
        if w is None:
            return fn()
        left = w.left()
        if left <= 0:
            raise self._expired(w, key)
        if not write:
            with request_budget(left):
                return fn()
        w.note_write()
        with request_budget(left):
            try:
                result = fn()
            except (ConflictError, NotFoundError):
                w.settle_write(landed=False)  # definitely refused: nothing of ours landed
                raise
        w.settle_write(landed=True)
        return result

    def _retrying(
        self,
        fn: Callable[[], T],
        key: str | None,
        *,
        write: bool = False,
        w: _Window | None,
        op: str | None = None,
    ) -> T:
        """``fn`` retried on ``TransientError``: bounded attempts, full-jitter backoff (at
        least a throttling answer's Retry-After), never past the deadline. A write (an
        overwrite, an unconditional delete) some attempt of which got no clear answer (a
        timeout, a 5xx: it may have been applied; even a throttling answer may follow an
        SDK-internal retry of one that was) ends as ``AmbiguousWriteError`` when the attempts
        run out, never as a plain failure; the deadline cutting it short then is
        ``DeadlineAmbiguousError``."""
        unanswered: TransientError | None = None
        try:
            for attempt in range(1, self.retry.attempts + 1):
                try:
                    return self._send(w, fn, key, write, op)
                except TransientError as exc:
                    if write:
                        unanswered = exc
                    if attempt == self.retry.attempts:
                        if unanswered is not None:
                            telemetry.ambiguous(self, op or "write", "unknown")
                            raise AmbiguousWriteError(
                                f"write outcome unknown after {attempt} attempts: {exc}",
                                url=self.url,
                                key=key,
                            ) from exc
                        raise
                    delay = self._backoff(attempt, exc)
                    if w is not None and w.left() <= delay:
                        raise self._expired(w, key) from exc
                    self._sleep(delay)
        except DeadlineExceededError:
            if unanswered is not None:  # an attempt of this write may have landed
                telemetry.ambiguous(self, op or "write", "unknown")
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, exc: Exception) -> float:
        """The pause after failed attempt ``attempt`` (1-based) of one call: the policy's
        backoff, but never shorter than a throttling answer's Retry-After."""
        _note_resent()
        delay = self._pauses.delay(attempt - 1, self._rng)
        if isinstance(exc, ThrottledError) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        return delay

    # -- reads -----------------------------------------------------------------------------

    def get_object(self, key: str) -> StoredObject | None:
        return self._get_object(key, self._window())

    def _get_object(self, key: str, w: _Window | None) -> StoredObject | None:
        got = self._retrying(lambda: self.backend.get(key), key, w=w, op="get")
        if got is None:
            return None
        raw, version = got
        fr = frame.unpack(raw, url=self.url, key=key)
        return StoredObject(fr.payload, version, fr.write_id)

    def get(self, key: str) -> tuple[bytes, Version] | None:
        obj = self.get_object(key)
        return None if obj is None else (obj.data, obj.version)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        """Listing is paged by the adapter; a transient failure restarts after the last key
        already yielded, so nothing is repeated or skipped."""
        w = self._window()
        last = start_after
        for attempt in range(1, self.retry.attempts + 1):
            try:
                # each page is fetched inside ``_send``, never while the caller holds a meta
                start = functools.partial(self.backend.list, prefix, last)
                pages = iter(self._send(w, start, None, False, "list"))
                step: Callable[[], ObjectMeta | None] = functools.partial(next, pages, None)
                try:
                    while True:
                        meta = self._send(w, step, None, False)
                        if meta is None:
                            return
                        last = meta.key
                        yield meta
                except DeadlineExceededError as exc:
                    # the listing was sent, its first page maybe never asked for
                    telemetry.first_page_refused(pages, exc)
                    raise
            except TransientError as exc:
                if attempt == self.retry.attempts:
                    raise
                delay = self._backoff(attempt, exc)
                if w is not None and w.left() <= delay:
                    raise self._expired(w, None) from exc
                self._sleep(delay)

    # -- writes ----------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        mode: PutMode = PutMode.OVERWRITE,
        *,
        write_id: bytes | None = None,
    ) -> Version:
        """Write ``data`` framed with a write id; return the new version, established."""
        wid = write_id or self.runtime.token_bytes(16)
        raw = frame.pack(data, wid)
        w = self._window()
        if mode.kind is PutKind.OVERWRITE:
            return self._retrying(
                lambda: self.backend.put(key, raw, mode), key, write=True, w=w, op="put:overwrite"
            )
        return self._conditional_put(key, raw, wid, mode, w)

    def _conditional_put(
        self, key: str, raw: bytes, wid: bytes, mode: PutMode, w: _Window | None
    ) -> Version:
        unclear: TransientError | None = None
        op = f"put:{mode.kind.value}"
        for attempt in range(1, self.retry.resolve_attempts + 1):
            try:
                return self._send(w, lambda: self.backend.put(key, raw, mode), key, True, op)
            except DeadlineExceededError as exc:
                if unclear is None:
                    raise  # nothing of this call was sent
                raise self._ambiguous(key, mode, unclear, None, exc) from exc
            except ConflictError as exc:
                # Definite for this request, but an earlier attempt (ours, or the SDK's own
                # retry) may be what the condition tripped on: read back before reporting.
                try:
                    current = self._read_back(key, w)
                except (TransientError, DeadlineExceededError) as read_exc:
                    if unclear is None:
                        telemetry.conflict(self, op)
                        raise exc from read_exc  # one attempt, refused: definite
                    raise self._ambiguous(key, mode, unclear, None, read_exc) from read_exc
                if current is not None and current.write_id == wid:
                    telemetry.ambiguous(self, op, "landed")  # the refusal was of our own write
                    if w is not None:
                        w.note_landed()
                    return current.version
                exc.current = None if current is None else (current.data, current.version)
                if unclear is not None and isinstance(exc, PreconditionFailedError):
                    raise self._ambiguous(key, mode, unclear, current) from exc
                telemetry.conflict(self, op)
                raise
            except NotFoundError as exc:
                try:
                    current = self._read_back(key, w)
                except DeadlineExceededError as read_exc:
                    if unclear is None:
                        raise exc from read_exc
                    raise self._ambiguous(key, mode, unclear, None, read_exc) from read_exc
                if current is not None and current.write_id == wid:
                    telemetry.ambiguous(self, op, "landed")
                    if w is not None:
                        w.note_landed()
                    return current.version
                raise
            except TransientError as exc:
                unclear = exc
                _note_resent()  # what decides the answer now is a later request
                try:
                    current = self._read_back(key, w)
                except (TransientError, DeadlineExceededError) as read_exc:
                    raise self._ambiguous(key, mode, exc, None, read_exc) from read_exc
                if current is not None and current.write_id == wid:
                    telemetry.ambiguous(self, op, "landed")
                    if w is not None:
                        w.note_landed()
                    return current.version
                still_open = (
                    current is None
                    if mode.kind is PutKind.CREATE
                    else current is not None and current.version == mode.version
                )
                if not still_open:
                    if mode.kind is PutKind.CREATE:
                        assert current is not None
                        telemetry.ambiguous(self, op, "lost")
                        telemetry.conflict(self, op)
                        raise AlreadyExistsError(
                            "object already exists (written by someone else)",
                            url=self.url,
                            key=key,
                            current=(current.data, current.version),
                        ) from exc
                    if current is None:
                        telemetry.ambiguous(self, op, "unknown")
                        raise AmbiguousWriteError(
                            f"{mode} outcome unknown: the object was deleted meanwhile",
                            url=self.url,
                            key=key,
                        ) from exc
                    raise self._ambiguous(key, mode, exc, current) from exc
                delay = self._backoff(attempt, exc)
                if w is not None and w.left() <= delay:
                    late = self._expired(w, key)
                    raise self._ambiguous(key, mode, exc, None, late) from late
                last = attempt == self.retry.resolve_attempts
                telemetry.ambiguous(self, op, "unknown" if last else "resent")
                self._sleep(delay)
        assert unclear is not None
        raise AmbiguousWriteError(
            f"{mode} outcome unknown after {self.retry.resolve_attempts} attempts: {unclear}",
            url=self.url,
            key=key,
        ) from unclear

    def _ambiguous(
        self,
        key: str,
        mode: PutMode,
        cause: Exception,
        current: StoredObject | None,
        late: Exception | None = None,
    ) -> AmbiguousWriteError:
        """``late``: why the outcome could not be established, when that was the deadline."""
        telemetry.ambiguous(self, f"put:{mode.kind.value}", "unknown")
        why = (
            "the object could not be read back"
            if current is None
            else "the object now holds another writer's data, which may have replaced ours"
        )
        if isinstance(late, DeadlineExceededError):
            return DeadlineAmbiguousError(
                f"{mode} outcome unknown: an attempt failed unclearly ({cause}) and the "
                f"deadline passed before the outcome was established ({late})",
                url=self.url,
                key=key,
            )
        return AmbiguousWriteError(
            f"{mode} outcome unknown: an attempt failed unclearly ({cause}) and {why}",
            url=self.url,
            key=key,
        )

    def _read_back(self, key: str, w: _Window | None) -> StoredObject | None:
        return self._get_object(key, w)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        w = self._window()
        if if_version is None:
            self._retrying(lambda: self.backend.delete(key), key, write=True, w=w, op="delete")
            return
        for attempt in range(1, self.retry.resolve_attempts + 1):
            try:
                self._send(w, lambda: self.backend.delete(key, if_version), key, True, "delete")
                return
            except ConflictError:
                telemetry.conflict(self, "delete")
                raise
            except TransientError as exc:
                try:
                    got = self._retrying(lambda: self.backend.get(key), key, w=w, op="get")
                except DeadlineExceededError as read_exc:
                    telemetry.ambiguous(self, "delete", "unknown")
                    raise DeadlineAmbiguousError(
                        f"conditional delete outcome unknown: {exc}; {read_exc}",
                        url=self.url,
                        key=key,
                    ) from exc
                except TransientError as read_exc:
                    telemetry.ambiguous(self, "delete", "unknown")
                    raise AmbiguousWriteError(
                        f"conditional delete outcome unknown: {exc}; the object could not "
                        f"be read back ({read_exc})",
                        url=self.url,
                        key=key,
                    ) from exc
                if got is None:
                    telemetry.ambiguous(self, "delete", "landed")
                    return  # gone: ours or someone's delete, either way the goal holds
                if got[1] != if_version:
                    telemetry.ambiguous(self, "delete", "unknown")
                    raise AmbiguousWriteError(
                        "conditional delete outcome unknown: the object changed meanwhile",
                        url=self.url,
                        key=key,
                    ) from exc
                delay = self._backoff(attempt, exc)
                if w is not None and w.left() <= delay:
                    telemetry.ambiguous(self, "delete", "unknown")
                    raise DeadlineAmbiguousError(
                        f"conditional delete outcome unknown: {exc}; {w.what} passed",
                        url=self.url,
                        key=key,
                    ) from exc
                last = attempt == self.retry.resolve_attempts
                telemetry.ambiguous(self, "delete", "unknown" if last else "resent")
                self._sleep(delay)
        raise AmbiguousWriteError(
            "conditional delete outcome unknown after retries", url=self.url, key=key
        )

    def close(self) -> None:
        self.backend.close()


def open_store(url: str | StoreURL, *, runtime: Runtime | None = None, **kwargs: Any) -> Store:
    """The store at ``url`` (``runtime``: its clock, sleeps, RNG and ids; default the
    production runtime). Other keyword arguments go to :class:`Store`."""
    return Store(open_backend(url), runtime=runtime, **kwargs)
