"""Tail caches: where an earlier ``Log`` of the same log on this machine left the tail.

A warm invocation (a Lambda container reused, the next cron run, the next CLI call)
starts from the cached tail record and tries the slot after it directly: the manifest
read and the create, 2 requests, instead of finding the tail. The cache is only a first
guess: at the first sign that it is stale (the create loses, the next slot is a
tombstone, the cached tail carries someone else's lease) the writer forgets it and finds
the tail as a cold start does (``FencedWriter.commit``, ``Tail.take_cached``). What it
cannot know is damage its guess runs into (a store rolled back below the cached tail,
the slot right after it deleted: docs/log.md). A view found stale is dropped from the
cache, so the next start is cold.

Entries are keyed by the log's URL and name the log's identity (its manifest's
``ident``): a log re-created at the same URL never uses the old one's tail. They hold the
tail's record (its lease state and configuration are in it), checked like any record
read before use. Only
records this process decided or checked to chain are saved, and only small ones.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["MAX_CACHED_RECORD", "CachedTail", "FileTailCache", "MemoryTailCache", "TailCache"]

MAX_CACHED_RECORD = 256 << 10  # a larger tail record is not cached (the next start is cold)


@dataclass(frozen=True, slots=True)
class CachedTail:
    ident: str  # the log's identity (manifest)
    slot: int
    record: bytes  # the stored record of ``slot`` (never a tombstone)


class TailCache(Protocol):
    """Where ``Log`` keeps the last tail it knew, per log URL."""

    def load(self, url: str) -> CachedTail | None: ...
    def save(self, url: str, tail: CachedTail) -> None: ...
    def drop(self, url: str) -> None: ...


class MemoryTailCache:
    """In this process's memory: for a process that opens the log again and again (a
    Lambda handler reused by a warm container, a worker loop). One dict; a lost update
    between two threads only costs a lost race later."""

    def __init__(self) -> None:
        self._tails: dict[str, CachedTail] = {}

    def load(self, url: str) -> CachedTail | None:
        return self._tails.get(url)

    def save(self, url: str, tail: CachedTail) -> None:
        old = self._tails.get(url)
        if old is None or old.ident != tail.ident or tail.slot >= old.slot:
            self._tails[url] = tail

    def drop(self, url: str) -> None:
        self._tails.pop(url, None)


class FileTailCache:
    """One small file per log in a private directory (default: ``passivepaxos-tails-<uid>``
    in the temp directory, mode 0700), for processes that start afresh on a warm machine
    (CLI calls, cron runs, a new Lambda process in a reused container's ``/tmp``).
    Written atomically (temp file + rename, no fsync: a lost cache only costs a cold
    start); a file that does not parse or fails its checksum is ignored."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        if directory is None:
            uid = os.getuid() if hasattr(os, "getuid") else 0
            directory = Path(tempfile.gettempdir()) / f"passivepaxos-tails-{uid}"
        self.directory = Path(directory)

    def _path(self, url: str) -> Path:
        return self.directory / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")

    def _private(self) -> bool:
        """The directory is ours alone (owned by us, writable by nobody else): a tail
        planted by another user is never started from."""
        try:
            st = self.directory.stat()
        except OSError:
            return False
        mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
        return mine and not st.st_mode & 0o022

    def load(self, url: str) -> CachedTail | None:
        if not self._private():
            return None
        try:
            doc = json.loads(self._path(url).read_bytes())
            body = {k: doc[k] for k in ("ident", "record", "slot", "url")}
            if doc["sum"] != _checksum(body) or body["url"] != url:
                return None
            ident, slot = body["ident"], body["slot"]
            record = base64.b64decode(body["record"], validate=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(slot, int) or slot < 0 or not isinstance(ident, str):
            return None
        return CachedTail(ident, slot, record)

    def save(self, url: str, tail: CachedTail) -> None:
        body = {
            "ident": tail.ident,
            "record": base64.b64encode(tail.record).decode(),
            "slot": tail.slot,
            "url": url,
        }
        data = json.dumps({**body, "sum": _checksum(body)}).encode()
        path = self._path(url)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            # a cache that cannot be written only means the next start is cold
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


    def drop(self, url: str) -> None:
        with contextlib.suppress(OSError):
            self._path(url).unlink(missing_ok=True)


def _checksum(body: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
