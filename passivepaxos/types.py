"""The small store interface every backend implements (after Rust's ``object_store``).

A backend adapter is deliberately thin: it maps :class:`PutMode` onto the service's native
precondition and translates native errors into :mod:`passivepaxos.errors` in one place.
Framing, write ids, checksums, ambiguity resolution and retries live above it, in
:class:`passivepaxos.store.Store`, so they are written once for every backend.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from passivepaxos.capabilities import Capabilities

__all__ = [
    "Backend",
    "ObjectMeta",
    "PutKind",
    "PutMode",
    "Version",
    "require_bytes",
    "require_name",
]


@dataclass(frozen=True, slots=True)
class Version:
    """An opaque, backend-specific object version.

    ``backend`` names the adapter that issued it (so a version is never replayed against a
    different kind of store) and ``token`` is the native value: an S3 ETag, a GCS
    generation, a Dropbox rev, a local-disk generation id or a memory counter.
    """

    backend: str
    token: str

    def __str__(self) -> str:
        return f"{self.backend}:{self.token}"


class PutKind(enum.Enum):
    OVERWRITE = "overwrite"
    CREATE = "create"
    UPDATE = "update"


@dataclass(frozen=True, slots=True)
class PutMode:
    """How a put is conditioned: overwrite, create (if absent), update (if version matches)."""

    OVERWRITE: ClassVar[PutMode]
    CREATE: ClassVar[PutMode]

    kind: PutKind
    version: Version | None = None

    @staticmethod
    def update(version: Version) -> PutMode:
        return PutMode(PutKind.UPDATE, version)

    def __str__(self) -> str:
        return f"update({self.version})" if self.kind is PutKind.UPDATE else self.kind.value


PutMode.OVERWRITE = PutMode(PutKind.OVERWRITE)
PutMode.CREATE = PutMode(PutKind.CREATE)


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """One listing entry: the key relative to the store URL, its version and size."""

    key: str
    version: Version | None
    size: int


@runtime_checkable
class Backend(Protocol):
    """What an adapter implements. Keys are relative to the store URL, use ``/`` and UTF-8.

    Contract (checked by ``tests/test_conformance.py`` on every backend):

    - ``get`` returns ``None`` for a missing key and raises ``ContainerNotFoundError`` when
      the bucket/directory itself is missing.
    - ``put`` with CREATE raises ``AlreadyExistsError``, with UPDATE raises
      ``PreconditionFailedError`` (version moved) or ``NotFoundError`` (key missing); every
      successful put returns a version different from every earlier version of the key.
      A ``TransientError`` from a conditional put means the outcome is unknown.
    - ``delete`` of a missing key is a no-op unless ``if_version`` is given.
    - ``list`` yields keys in ascending UTF-8 byte order, strictly after ``start_after``.
    - Adapters never retry a conditional write on their own where the SDK lets them avoid
      it; where it cannot (an SDK that retries internally) the store layer still copes.
    """

    @property
    def url(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def get(self, key: str) -> tuple[bytes, Version] | None: ...

    def put(self, key: str, data: bytes, mode: PutMode) -> Version: ...

    def delete(self, key: str, if_version: Version | None = None) -> None: ...

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]: ...

    def close(self) -> None: ...


def require_bytes(value: object, what: str) -> bytes:
    """``value`` as ``bytes`` if it is bytes-like, else ``TypeError`` naming ``what``.

    Public entry points take values through this instead of ``bytes(value)``, which turns
    an int ``n`` into ``n`` NUL bytes and a str into an unnamed error; nothing is written
    for a value of the wrong type."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    hint = ": encode text first, e.g. value.encode()" if isinstance(value, str) else ""
    raise TypeError(
        f"{what} must be bytes (or bytearray / memoryview), not {type(value).__name__}{hint}"
    )


def require_name(value: object, what: str) -> str:
    """``value`` if it is a non-empty ``str``; ``TypeError`` (wrong type) or ``ValueError``
    (empty) naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value
