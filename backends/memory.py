"""``memory://name``: a dict under a lock, shared by every opener of the same name in a process.

It is the reference implementation of the backend contract, for tests, the deterministic
simulator and client-CPU benchmarks.

A name's space comes into being when the name is first opened in the process (there is no
separate create step) and is deleted by :func:`reset`. A backend opened before the deletion
then raises ``ContainerNotFoundError`` for everything, like a store whose bucket or
directory was deleted: it never re-creates the space or writes into a detached copy. Opening
the name again afterwards makes a new, empty space.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from passivepaxos.capabilities import capabilities_for
from passivepaxos.errors import (
    AlreadyExistsError,
    ContainerNotFoundError,
    NotFoundError,
    PreconditionFailedError,
)
from passivepaxos.types import ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL

__all__ = ["MemoryBackend", "open_backend"]

_NAME = "memory"


class _Space:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, tuple[bytes, Version]] = {}
        self.counter = itertools.count(1)
        self.deleted = False


_spaces: dict[str, _Space] = {}
_spaces_lock = threading.Lock()


class MemoryBackend:
    capabilities = capabilities_for(_NAME)

    def __init__(self, name: str = "default", prefix: str = "") -> None:
        self.url = f"memory://{name}" + (f"/{prefix}" if prefix else "")
        self._prefix = f"{prefix}/" if prefix else ""
        with _spaces_lock:
            self._space = _spaces.setdefault(name, _Space())

    def _k(self, key: str) -> str:
        return self._prefix + key

    def _live(self) -> _Space:
        """The space, checked under its lock by the caller: deleted means missing."""
        if self._space.deleted:
            raise ContainerNotFoundError("memory space was deleted (reset)", url=self.url)
        return self._space

    def get(self, key: str) -> tuple[bytes, Version] | None:
        with self._space.lock:
            return self._live().objects.get(self._k(key))

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        space = self._space
        with space.lock:
            self._live()
            current = space.objects.get(self._k(key))
            if mode.kind is PutKind.CREATE and current is not None:
                raise AlreadyExistsError("object already exists", url=self.url, key=key)
            if mode.kind is PutKind.UPDATE:
                if current is None:
                    raise NotFoundError("object does not exist", url=self.url, key=key)
                if current[1] != mode.version:
                    raise PreconditionFailedError("version moved", url=self.url, key=key)
            version = Version(_NAME, str(next(space.counter)))
            space.objects[self._k(key)] = (bytes(data), version)
            return version

    def delete(self, key: str, if_version: Version | None = None) -> None:
        with self._space.lock:
            current = self._live().objects.get(self._k(key))
            if if_version is not None:
                if current is None:
                    raise NotFoundError("object does not exist", url=self.url, key=key)
                if current[1] != if_version:
                    raise PreconditionFailedError("version moved", url=self.url, key=key)
            self._space.objects.pop(self._k(key), None)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        full = self._prefix + prefix
        with self._space.lock:
            items = [
                (k[len(self._prefix) :], v)
                for k, v in self._live().objects.items()
                if k.startswith(full)
            ]
        items.sort(key=lambda kv: kv[0].encode())
        after = start_after.encode() if start_after is not None else None
        for k, (data, version) in items:
            if after is None or k.encode() > after:
                yield ObjectMeta(k, version, len(data))

    def close(self) -> None:
        pass


def open_backend(url: StoreURL) -> MemoryBackend:
    return MemoryBackend(url.container, url.prefix)


def reset(name: str | None = None) -> None:
    """Delete one named space (or all): tests use it to start clean, and to delete a store
    under its users (who then get ``ContainerNotFoundError``)."""
    with _spaces_lock:
        if name is None:
            gone = list(_spaces.values())
            _spaces.clear()
        else:
            one = _spaces.pop(name, None)
            gone = [] if one is None else [one]
    for space in gone:
        with space.lock:
            space.deleted = True


def exists(name: str) -> bool:
    """Whether the space ``name`` exists in this process (opened and not deleted since)."""
    with _spaces_lock:
        return name in _spaces


def wipe(name: str) -> None:
    """Empty the space ``name`` in place, as if its directory were deleted and re-created
    empty by someone else: open backends keep working and see an empty store (the amnesia
    that only the log layer's store identity check can catch). Unlike :func:`reset`."""
    with _spaces_lock:
        space = _spaces.get(name)
    if space is not None:
        with space.lock:
            space.objects.clear()
