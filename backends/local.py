"""``file:///abs/dir``: objects as files on one host's disk, with fsync.

- create: write a temp file, fsync it, ``os.link`` it to the key's path (EEXIST means someone
  else won: a link never replaces, unlike ``os.rename``), then fsync the directory.
- overwrite / update / delete: under an ``flock`` stripe for the key, check the version,
  then temp file + fsync + ``os.replace`` + fsync of the directory.
- A directory fsync that fails after the link/replace/unlink took effect is
  ``AmbiguousWriteError``: the change is visible but its durability is unknown. Directories
  created for keys are fsynced into their parent.

The root directory is never created here: ``file:///abs/dir`` must exist (``init`` does not
make it), and a root that disappears later is ``ContainerNotFoundError`` for every read,
write and listing, like a deleted bucket, never silently re-created and filled (a store
that lost its state must not look like an empty one). Sub-directories of the root (the
reserved ``.ppx-tmp``/``.ppx-locks`` and those of keys with ``/``) are created as needed.
A failed write leaves no temp file behind.

Each file starts with ``PPXL`` and a random 16-byte generation id, which is the version.
Inode numbers and timestamps are not used: inodes are reused after a delete and mtimes
are coarse, so an (inode, mtime, size) version could repeat and let a stale CAS through
(ABA). Safe on one host only; flock and link are not reliable over NFS.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from passivepaxos.capabilities import capabilities_for
from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    ConfigError,
    ContainerNotFoundError,
    InvalidObjectError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
)
from passivepaxos.types import ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL

__all__ = ["LocalBackend", "open_backend"]

_NAME = "local"
_MAGIC = b"PPXL"
_HEAD = len(_MAGIC) + 16
_RESERVED = ".ppx-"
_STRIPES = 64


class LocalBackend:
    capabilities = capabilities_for(_NAME)

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"
        self._tmp = self.root / f"{_RESERVED}tmp"
        self._locks = self.root / f"{_RESERVED}locks"

    # -- helpers ---------------------------------------------------------------------------

    def _root_error(self) -> StoreError | None:
        """Why the root is unusable (missing, not a directory, not searchable), or ``None``.
        Asked after a failure or a miss, so that a vanished root never reads as empty."""
        try:
            st = os.stat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return ContainerNotFoundError("directory does not exist", url=self.url)
        except PermissionError as exc:
            return PermissionDeniedError(f"permission denied ({exc.strerror})", url=self.url)
        except OSError as exc:
            return StoreError(f"{exc.strerror or exc}", url=self.url)
        if not stat.S_ISDIR(st.st_mode):
            return ContainerNotFoundError("not a directory", url=self.url)
        return None

    def _check_root(self) -> None:
        err = self._root_error()
        if err is not None:
            raise err

    def _mkdir(self, d: Path) -> None:
        """Create ``d`` and missing parents below the root; never the root itself (a missing
        root makes ``os.mkdir`` of its child fail with ENOENT). The parent of each directory
        created is fsynced, so that a file linked into it later survives a crash."""
        if d == self.root:
            return
        try:
            os.mkdir(d)
        except FileExistsError:
            return
        except FileNotFoundError:
            if d.parent == self.root:
                raise
            self._mkdir(d.parent)
            try:
                os.mkdir(d)
            except FileExistsError:
                return
        self._fsync_dir(d.parent)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if (
            not key
            or "\0" in key
            or any(p in ("", ".", "..") for p in parts)
            or parts[0].startswith(_RESERVED)
        ):
            raise ConfigError(f"{self.url}: invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def _translate(self, exc: OSError, key: str | None) -> StoreError:
        if isinstance(exc, FileNotFoundError | NotADirectoryError | PermissionError):
            root = self._root_error()
            if root is not None:
                return root
        if isinstance(exc, PermissionError):
            return PermissionDeniedError(
                f"permission denied ({exc.strerror})", url=self.url, key=key
            )
        if exc.errno == errno.ENOSPC:
            return StoreError("no space left on device", url=self.url, key=key)
        return StoreError(f"{exc.strerror or exc}", url=self.url, key=key)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        stripe = hashlib.blake2b(key.encode(), digest_size=4).digest()
        name = f"{int.from_bytes(stripe, 'big') % _STRIPES:02d}"
        self._mkdir(self._locks)
        fd = os.open(self._locks / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _read(self, path: Path, key: str) -> tuple[bytes, Version] | None:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            raise StoreError(
                "key names a directory on local disk (another key uses it as a prefix)",
                url=self.url,
                key=key,
            ) from None
        if len(raw) < _HEAD or raw[:4] != _MAGIC:
            raise InvalidObjectError("not a passivepaxos local object", url=self.url, key=key)
        return raw[_HEAD:], Version(_NAME, raw[4:_HEAD].hex())

    def _write_temp(self, data: bytes) -> tuple[Path, Version]:
        """A complete, fsynced temp file; on any failure (a full disk, typically) it is
        removed again, so failed attempts leave nothing in ``.ppx-tmp``."""
        gen = uuid.uuid4().bytes
        self._mkdir(self._tmp)
        tmp = self._tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                with os.fdopen(fd, "wb", closefd=False) as f:
                    f.write(_MAGIC + gen)
                    f.write(data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp, Version(_NAME, gen.hex())

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- Backend ---------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, Version] | None:
        path = self._path(key)
        try:
            got = self._read(path, key)
        except OSError as exc:
            raise self._translate(exc, key) from None
        if got is None:
            self._check_root()  # a vanished root is an error, not an empty store
        return got

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        path = self._path(key)
        tmp: Path | None = None
        try:
            self._mkdir(path.parent)
            tmp, version = self._write_temp(data)
            if mode.kind is PutKind.CREATE:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise AlreadyExistsError(
                        "object already exists", url=self.url, key=key
                    ) from None
            else:
                with self._locked(key):
                    if mode.kind is PutKind.UPDATE:
                        current = self._read(path, key)
                        if current is None:
                            self._check_root()
                            raise NotFoundError("object does not exist", url=self.url, key=key)
                        if current[1] != mode.version:
                            raise PreconditionFailedError("version moved", url=self.url, key=key)
                    os.replace(tmp, path)
                    tmp = None
        except OSError as exc:
            if isinstance(exc, IsADirectoryError):
                raise StoreError(
                    "key names a directory on local disk (another key uses it as a prefix)",
                    url=self.url,
                    key=key,
                ) from None
            raise self._translate(exc, key) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        self._sync_applied(path.parent, key, "write")
        return version

    def _sync_applied(self, directory: Path, key: str, what: str) -> None:
        """fsync ``directory`` after a change to it took effect (visible to every reader from
        now on). A failure here is not "nothing was written": the change is there but may not
        survive a crash, so the outcome is unknown (``AmbiguousWriteError``)."""
        try:
            self._fsync_dir(directory)
        except OSError as exc:
            raise AmbiguousWriteError(
                f"{what} outcome unknown: it took effect but the directory fsync failed "
                f"({exc.strerror or exc}), so it may not survive a crash",
                url=self.url,
                key=key,
            ) from None

    def delete(self, key: str, if_version: Version | None = None) -> None:
        path = self._path(key)
        try:
            with self._locked(key):
                if if_version is not None:
                    current = self._read(path, key)
                    if current is None:
                        self._check_root()
                        raise NotFoundError("object does not exist", url=self.url, key=key)
                    if current[1] != if_version:
                        raise PreconditionFailedError("version moved", url=self.url, key=key)
                try:
                    os.unlink(path)
                except (FileNotFoundError, NotADirectoryError):
                    self._check_root()
                    return
        except OSError as exc:
            raise self._translate(exc, key) from None
        self._sync_applied(path.parent, key, "delete")

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        self._check_root()
        found: list[tuple[bytes, str, Path]] = []

        def walk_error(exc: OSError) -> None:
            if Path(exc.filename or "") == self.root or self._root_error() is not None:
                raise exc  # the root itself vanished: not an empty listing

        try:
            for dirpath, dirnames, filenames in os.walk(self.root, onerror=walk_error):
                here = Path(dirpath)
                if here == self.root:
                    dirnames[:] = [d for d in dirnames if not d.startswith(_RESERVED)]
                rel = here.relative_to(self.root).as_posix()
                for name in filenames:
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix):
                        found.append((self._key_bytes(key, here / name), key, here / name))
        except OSError as exc:
            raise self._translate(exc, None) from None
        found.sort()
        after = start_after.encode() if start_after is not None else None
        for raw_key, key, path in found:
            if after is not None and raw_key <= after:
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(_HEAD)
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # deleted since the walk
            version = Version(_NAME, head[4:].hex()) if head[:4] == _MAGIC else None
            yield ObjectMeta(key, version, max(0, size - _HEAD))

    def _key_bytes(self, key: str, path: Path) -> bytes:
        """A listed key as UTF-8. A file whose name is not UTF-8 (put there by something
        else: every key of ours is UTF-8) cannot be a key; it is reported, naming its
        path, rather than skipped, since a store holding foreign files is not what it
        seems."""
        try:
            return key.encode()
        except UnicodeEncodeError:
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            raise InvalidObjectError(
                f"{shown}: a file whose name is not UTF-8 is in the store; "
                "move it away (it cannot be a passivepaxos object)",
                url=self.url,
            ) from None

    def close(self) -> None:
        pass


def open_backend(url: StoreURL) -> LocalBackend:
    return LocalBackend(url.prefix)
