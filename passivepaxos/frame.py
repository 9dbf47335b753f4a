"""The envelope every object passivepaxos writes is wrapped in.

Why: the write id makes every write distinguishable from every other (so a writer can read
back and tell whether *its* conditional write took effect, and Dropbox never sees two
identical uploads), and the checksum plus length make corruption and truncation loud.

Layout (big-endian)::

    magic "PPXO" | format u8 | flags u8 | write id 16 bytes | payload length u64 |
    crc32 u32 (over everything before it and the payload) | payload
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from passivepaxos.errors import InvalidObjectError
from passivepaxos.runtime import REAL

__all__ = ["FORMAT_VERSION", "HEADER_SIZE", "Frame", "new_write_id", "pack", "unpack"]

MAGIC = b"PPXO"
FORMAT_VERSION = 1
_HEAD = struct.Struct(">4sBB16sQ")
_CRC = struct.Struct(">I")
HEADER_SIZE = _HEAD.size + _CRC.size


def new_write_id() -> bytes:
    """A fresh write id from the production runtime. ``Store`` draws its write ids from
    its own runtime instead (``runtime.token_bytes``), so a simulated run replays them."""
    return REAL.token_bytes(16)


@dataclass(frozen=True, slots=True)
class Frame:
    write_id: bytes
    payload: bytes


def pack(payload: bytes, write_id: bytes) -> bytes:
    if len(write_id) != 16:
        raise ValueError("write id must be 16 bytes")
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, 0, write_id, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, _CRC.pack(crc), payload))


def unpack(data: bytes, *, url: str = "", key: str | None = None) -> Frame:
    """Verify and open an envelope; raise ``InvalidObjectError`` naming the object."""
    if len(data) < HEADER_SIZE:
        if data[: len(MAGIC)] != MAGIC[: len(data[:4])]:
            raise InvalidObjectError("not a passivepaxos object (bad magic)", url=url, key=key)
        raise InvalidObjectError(
            f"truncated object: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header",
            url=url,
            key=key,
        )
    magic, fmt, _flags, write_id, length = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise InvalidObjectError("not a passivepaxos object (bad magic)", url=url, key=key)
    if fmt > FORMAT_VERSION:
        raise InvalidObjectError(
            f"object format {fmt} is newer than this client supports ({FORMAT_VERSION}); "
            "upgrade passivepaxos",
            url=url,
            key=key,
        )
    body = memoryview(data)[HEADER_SIZE:]
    if len(body) != length:
        raise InvalidObjectError(
            f"truncated or padded object: header says {length} payload bytes, found {len(body)}",
            url=url,
            key=key,
        )
    (crc,) = _CRC.unpack_from(data, _HEAD.size)
    if zlib.crc32(body, zlib.crc32(data[: _HEAD.size])) != crc:
        raise InvalidObjectError("checksum mismatch: the object is corrupt", url=url, key=key)
    return Frame(write_id, bytes(body))
