"""The store every higher layer uses: framing, write ids, retries and ambiguity resolution.

Adapters (``passivepaxos.types.Backend``) only translate; this module decides. Rules:

- Every object written is framed (``passivepaxos.frame``) with a fresh 16-byte write id.
- Reads, listings, overwrites and unconditional deletes are retried on ``TransientError``
  with tenacity (bounded attempts, jittered exponential backoff, honouring Retry-After).
- A conditional write is never retried blindly. When its outcome is unclear (timeout,
  5xx, S3 409, a conflict that may follow an SDK-internal retry) the store reads the key
  back: our write id there means it took effect; the precondition still holding means it
  has not (yet), so the *identical* bytes are sent again (one of the attempts can win,
  never both, since they share the precondition); someone else's object there is a
  definite loss for a create, and ``AmbiguousWriteError`` for an update, whose success
  could have been overwritten since.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from passivepaxos import frame
from passivepaxos.capabilities import Capabilities
from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    ThrottledError,
    TransientError,
)
from passivepaxos.types import Backend, ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL, open_backend

__all__ = ["RetryPolicy", "Store", "StoredObject", "open_store"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 2.0
    resolve_attempts: int = 6  # read-back rounds for one ambiguous conditional write


@dataclass(frozen=True, slots=True)
class StoredObject:
    data: bytes
    version: Version
    write_id: bytes


class Store:
    """A backend plus the rules above. ``sleep`` and ``rng`` are injectable so that the
    deterministic simulator can run the same code on a virtual clock."""

    def __init__(
        self,
        backend: Backend,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.backend = backend
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    # -- retries ---------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exp = min(self.retry.max_delay, self.retry.base_delay * 2 ** (state.attempt_number - 1))
        delay = self._rng.uniform(0, exp)  # full jitter
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ThrottledError) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        return delay

    def _retrying(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(fn)

    # -- reads -----------------------------------------------------------------------------

    def get_object(self, key: str) -> StoredObject | None:
        got = self._retrying(lambda: self.backend.get(key))
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
        last = start_after
        for attempt in range(1, self.retry.attempts + 1):
            try:
                for meta in self.backend.list(prefix, last):
                    last = meta.key
                    yield meta
                return
            except TransientError as exc:
                if attempt == self.retry.attempts:
                    raise
                self._sleep(self._backoff(attempt, exc))

    def _backoff(self, attempt: int, exc: Exception) -> float:
        exp = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        delay = self._rng.uniform(0, exp)
        if isinstance(exc, ThrottledError) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        return delay

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
        wid = write_id or frame.new_write_id()
        raw = frame.pack(data, wid)
        if mode.kind is PutKind.OVERWRITE:
            return self._retrying(lambda: self.backend.put(key, raw, mode))
        return self._conditional_put(key, raw, wid, mode)

    def _conditional_put(self, key: str, raw: bytes, wid: bytes, mode: PutMode) -> Version:
        unclear: TransientError | None = None
        for attempt in range(1, self.retry.resolve_attempts + 1):
            try:
                return self.backend.put(key, raw, mode)
            except ConflictError as exc:
                # Definite for this request, but an earlier attempt (ours, or the SDK's own
                # retry) may be what the condition tripped on: read back before reporting.
                try:
                    current = self._read_back(key)
                except TransientError as read_exc:
                    if unclear is None:
                        raise exc from read_exc  # one attempt, refused: definite
                    raise self._ambiguous(key, mode, unclear, None) from read_exc
                if current is not None and current.write_id == wid:
                    return current.version
                exc.current = None if current is None else (current.data, current.version)
                if unclear is not None and isinstance(exc, PreconditionFailedError):
                    raise self._ambiguous(key, mode, unclear, current) from exc
                raise
            except NotFoundError:
                current = self._read_back(key)
                if current is not None and current.write_id == wid:
                    return current.version
                raise
            except TransientError as exc:
                unclear = exc
                try:
                    current = self._read_back(key)
                except TransientError as read_exc:
                    raise self._ambiguous(key, mode, exc, None) from read_exc
                if current is not None and current.write_id == wid:
                    return current.version
                still_open = (
                    current is None
                    if mode.kind is PutKind.CREATE
                    else current is not None and current.version == mode.version
                )
                if not still_open:
                    if mode.kind is PutKind.CREATE:
                        assert current is not None
                        raise AlreadyExistsError(
                            "object already exists (written by someone else)",
                            url=self.url,
                            key=key,
                            current=(current.data, current.version),
                        ) from exc
                    if current is None:
                        raise AmbiguousWriteError(
                            f"{mode} outcome unknown: the object was deleted meanwhile",
                            url=self.url,
                            key=key,
                        ) from exc
                    raise self._ambiguous(key, mode, exc, current) from exc
                self._sleep(self._backoff(attempt, exc))
        assert unclear is not None
        raise AmbiguousWriteError(
            f"{mode} outcome unknown after {self.retry.resolve_attempts} attempts: {unclear}",
            url=self.url,
            key=key,
        ) from unclear

    def _ambiguous(
        self, key: str, mode: PutMode, cause: Exception, current: StoredObject | None
    ) -> AmbiguousWriteError:
        why = (
            "the object could not be read back"
            if current is None
            else "the object now holds another writer's data, which may have replaced ours"
        )
        return AmbiguousWriteError(
            f"{mode} outcome unknown: an attempt failed unclearly ({cause}) and {why}",
            url=self.url,
            key=key,
        )

    def _read_back(self, key: str) -> StoredObject | None:
        return self.get_object(key)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        if if_version is None:
            self._retrying(lambda: self.backend.delete(key))
            return
        for attempt in range(1, self.retry.resolve_attempts + 1):
            try:
                self.backend.delete(key, if_version)
                return
            except TransientError as exc:
                got = self._retrying(lambda: self.backend.get(key))
                if got is None:
                    return  # gone: ours or someone's delete, either way the goal holds
                if got[1] != if_version:
                    raise AmbiguousWriteError(
                        "conditional delete outcome unknown: the object changed meanwhile",
                        url=self.url,
                        key=key,
                    ) from exc
                self._sleep(self._backoff(attempt, exc))
        raise AmbiguousWriteError(
            "conditional delete outcome unknown after retries", url=self.url, key=key
        )

    def close(self) -> None:
        self.backend.close()


def open_store(url: str | StoreURL, **kwargs: object) -> Store:
    return Store(open_backend(url), **kwargs)  # type: ignore[arg-type]
