"""The slot record format: pure encoding, decoding and hashing (no I/O, no clock).

A record is canonical JSON (keys sorted, no whitespace) with a ``sum`` over its other
fields and a ``prev`` naming the previous record's hash; the format is described in
:mod:`passivepaxos.log`. Everything here is a function of bytes, so it is what the rest
of the log (and tests) rely on to agree on what a slot holds.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from passivepaxos.errors import (
    AppendOutcomeUnknownError,
    ConfigError,
    DamagedSlotError,
    ForwardOutcomeUnknownError,
    PassivePaxosError,
    StoreError,
    TrimmedSlotError,
)
from passivepaxos.lease import LeaseMeta, LeaseState
from passivepaxos.membership_data import ConfigChange
from passivepaxos.snapshot import Tombstone, decode_tombstone, is_tombstone

__all__ = [
    "GENESIS",
    "RECORD_FORMAT",
    "RECORD_KIND",
    "Entry",
    "Position",
    "Record",
    "bare",
    "chain_hash",
    "check_token",
    "decode_record",
    "genesis_of",
    "names_config",
    "parse_forward_token",
    "parse_resume_token",
    "record_hash",
    "resume_unknown",
    "resume_wid",
    "slot_instance",
    "tombstone_of",
    "why_unknown",
]

RECORD_FORMAT = 1
RECORD_KIND = "ppx-slot"
GENESIS = hashlib.sha256(b"passivepaxos-log-genesis").hexdigest()  # format-1 logs


def genesis_of(ident: str | None) -> str:
    """The ``prev`` of slot 0 of the log with identity ``ident`` (``None``: a log created
    before identities, which starts from :data:`GENESIS`)."""
    if ident is None:
        return GENESIS
    return hashlib.sha256(b"passivepaxos-log-genesis:" + ident.encode()).hexdigest()


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def slot_instance(slot: int) -> str:
    """The consensus instance (and, on a single create store, the object key) of a slot."""
    return f"log/{slot:020d}"


def parse_resume_token(token: str) -> tuple[int, int, str]:
    """``(slot, index, wid)`` of an ``AppendOutcomeUnknownError`` token; ``ConfigError``
    naming the token when it is not one."""
    m = re.fullmatch(r"(\d+):(\d+):([0-9a-f]{32})", token.strip())
    if m is None:
        raise ConfigError(
            f"bad resume token {token!r}: expected SLOT:INDEX:WID as printed by the "
            "append whose outcome was unknown"
        )
    return int(m[1]), int(m[2]), m[3]


_FWD_TOKEN = re.compile(r"fwd:(\d+)\.([0-9a-f]{32})")


def parse_forward_token(token: str) -> tuple[int, str] | None:
    """``(base, fid)`` of a forwarded append's token (``fwd:<base>.<fid>``), ``None`` if
    ``token`` is not one."""
    m = _FWD_TOKEN.fullmatch(token.strip())
    return None if m is None else (int(m[1]), m[2])


def forward_unknown(
    base: int, fid: str, why: str, *, url: str, key: str | None
) -> ForwardOutcomeUnknownError:
    """A forwarded append whose parcel ``inbox/<base>.<fid>`` may be folded (``why``: the
    cause, one phrase), with the token that resumes it."""
    return ForwardOutcomeUnknownError(
        f"append outcome unknown: the entries were forwarded as inbox/{base:020d}.{fid} and "
        f"may be folded into the log at slot {base} or later ({why}); resume with token "
        f"fwd:{base}.{fid}",
        base=base,
        fid=fid,
        url=url,
        key=key,
    )


def check_token(token: str) -> None:
    """``ConfigError`` naming ``token`` unless it is a resume token of either kind."""
    if token.strip().startswith("fwd:"):
        if parse_forward_token(token) is None:
            raise ConfigError(
                f"bad resume token {token!r}: expected fwd:BASE.FID (32 hex digits) as "
                "printed by the forwarded append whose outcome was unknown"
            )
        return
    parse_resume_token(token)


def resume_wid(wid: str, index: int) -> str:
    """The write id a resume of token ``*:index:wid`` writes its values under: its own
    (two callers that shared one group-commit record share ``wid``, never this) and
    deterministic (a second resume of the same token recognises the first one's record)."""
    return hashlib.sha256(f"resume:{wid}:{index}".encode()).hexdigest()[:32]


def resume_unknown(token: str, cause: PassivePaxosError) -> AppendOutcomeUnknownError:
    """A resume that failed before establishing anything (e.g. the log could not even be
    opened): its outcome is as unknown as before, with the same token."""
    fwd = parse_forward_token(token)
    if fwd is not None:
        return forward_unknown(
            *fwd, why_unknown(cause), url=getattr(cause, "url", ""), key=getattr(cause, "key", None)
        )
    slot, index, wid = parse_resume_token(token)
    return AppendOutcomeUnknownError(
        f"append outcome unknown: the entries may be in the log at slot {slot} "
        f"({why_unknown(cause)}); resume with token {slot}:{index}:{wid}",
        slot=slot,
        index=index,
        wid=wid,
        url=getattr(cause, "url", ""),
        key=getattr(cause, "key", None),
    )


def record_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an entry lives: its slot and its index in that slot's batch."""

    slot: int
    index: int


@dataclass(frozen=True, slots=True)
class Entry:
    slot: int
    index: int
    value: bytes


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    slot: int
    prev: str
    writer: str
    epoch: int
    wid: str
    entries: tuple[bytes, ...]
    format: int = RECORD_FORMAT
    lease: LeaseMeta | None = None
    config: ConfigChange | None = None  # a membership change (passivepaxos.membership)
    conf: int | None = None  # the newest configuration record's slot before this one
    # parcels folded in (passivepaxos.log.forward): (fid, count) each, in order, their
    # entries after the writer's own
    fwd: tuple[tuple[str, int], ...] = ()

    @property
    def parcel_ids(self) -> tuple[str, ...]:
        """The ids of the parcels folded into this record, in order."""
        return tuple(f for f, _ in self.fwd)

    def parcel_at(self, fid: str) -> int | None:
        """The index of parcel ``fid``'s first entry in this record, or ``None``."""
        index = len(self.entries) - sum(n for _, n in self.fwd)
        for f, n in self.fwd:
            if f == fid:
                return index
            index += n
        return None

    @property
    def lease_state(self) -> LeaseState:
        """The log's writer-lease state after this record."""
        return LeaseState.of(self.writer, self.epoch, self.lease)

    def _body(self) -> dict[str, Any]:
        """Every field but ``sum``, with ``entries`` left empty (``encode`` fills it)."""
        body = {
            "kind": RECORD_KIND,
            "f": self.format,
            "slot": self.slot,
            "prev": self.prev,
            "writer": self.writer,
            "epoch": self.epoch,
            "wid": self.wid,
            "entries": [],
        }
        if self.lease is not None:
            body["lease"] = self.lease.to_json()
        if self.config is not None:
            body["cfg"] = self.config.to_json()
        if self.conf is not None:
            body["conf"] = self.conf
        if self.fwd:
            body["fwd"] = [[f, n] for f, n in self.fwd]
        return body

    def encode(self) -> bytes:
        """The canonical bytes (keys sorted, no whitespace, ASCII) with ``sum``, built
        without encoding anything twice:

        - base64 text needs no JSON escaping, so the entries are joined straight into the
          place of the empty list (the first ``"entries":[]``: only ``cfg`` and ``conf``
          sort before it and neither has such a key; inside a string the quotes would be
          escaped);
        - ``sum`` sorts between ``slot`` and ``wid`` and the last two keys are always
          ``wid`` and ``writer``, so it goes in before the last ``,"wid":``."""
        head, _, tail = _ENCODER.encode(self._body()).encode().partition(b'"entries":[]')
        if self.entries:
            joined = b'","'.join([_b64encode(e, newline=False) for e in self.entries])
            body = b"".join((head, b'"entries":["', joined, b'"]', tail))
        else:
            body = b"".join((head, b'"entries":[]', tail))
        cut = body.rfind(b',"wid":')
        digest = hashlib.sha256(body).hexdigest().encode()
        return b"".join((body[:cut], b',"sum":"', digest, b'"', body[cut:]))


# One encoder for the canonical form (json.dumps would build one per call).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
_b64encode = binascii.b2a_base64


def _b64decode(s: Any) -> bytes:
    """``base64.b64decode(s, validate=True)`` (which is ``a2b_base64(strict_mode=True)``
    since Python 3.11) without its per-call overhead; the same errors."""
    return binascii.a2b_base64(s, strict_mode=True)


def _canonical(obj: dict[str, Any]) -> bytes:
    return _ENCODER.encode(obj).encode()


def _sum_of_stored(data: bytes, given: str) -> bool:
    """Whether ``given`` is the sha256 of the stored bytes with the ``"sum"`` member cut
    out: for a record in canonical form (as every writer makes them) those bytes ARE the
    canonical encoding of the other fields, so this checks the checksum without parsing
    and re-encoding the body. ``False`` means "not shown this way": the caller then
    re-encodes canonically, so a record is refused exactly when its sum matches neither."""
    cut = data.rfind(b',"sum":"')
    end = cut + 8 + 64
    if cut < 0 or len(given) != 64 or data[end : end + 1] != b'"':
        return False
    if data[cut + 8 : end] != given.encode("ascii", "replace"):
        return False
    h = hashlib.sha256(data[:cut])
    h.update(memoryview(data)[end + 1 :])
    return h.hexdigest() == given


def _checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()


def decode_record(
    data: bytes, slot: int, prev: str | None, *, url: str = "", key: str | None = None
) -> Record:
    """Parse and validate slot ``slot``'s record; ``prev`` is the expected hash of slot
    ``slot-1``'s record (``None``: not checked, the caller does not know it)."""

    def bad(reason: str) -> DamagedSlotError:
        return DamagedSlotError(slot, reason, url=url, key=key)

    if is_tombstone(data):
        raise TrimmedSlotError(slot, tombstone_of(data, slot, url=url, key=key).snap, url)
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise bad("not a slot record (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("kind") != RECORD_KIND:
        raise bad("not a passivepaxos slot record")
    fmt = doc.get("f")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise bad(f"unknown record format {fmt!r}")
    if fmt > RECORD_FORMAT:
        raise bad(
            f"record format {fmt} is newer than this client supports ({RECORD_FORMAT}); "
            "upgrade passivepaxos"
        )
    if fmt != RECORD_FORMAT:
        raise bad(f"unknown record format {fmt!r}")
    body = dict(doc)
    given = body.pop("sum", None)
    if not isinstance(given, str) or not (_sum_of_stored(data, given) or given == _checksum(body)):
        raise bad("bad checksum")
    try:
        rec_slot, rprev, writer, epoch, wid = (
            body["slot"],
            body["prev"],
            body["writer"],
            body["epoch"],
            body["wid"],
        )
        raw_entries = body["entries"]
        if not (
            isinstance(rec_slot, int)
            and isinstance(rprev, str)
            and isinstance(writer, str)
            and isinstance(epoch, int)
            and isinstance(wid, str)
            and isinstance(raw_entries, list)
        ):
            raise TypeError("field types")
        entries = tuple(map(_b64decode, raw_entries))
        lease = None if body.get("lease") is None else LeaseMeta.from_json(body["lease"])
        config = None if body.get("cfg") is None else ConfigChange.from_json(body["cfg"])
        conf = body.get("conf")
        if conf is not None and not (
            isinstance(conf, int) and not isinstance(conf, bool) and 0 <= conf < rec_slot
        ):
            raise ValueError("bad conf")
        fwd = _fwd_of(body.get("fwd"), len(entries))
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise bad("malformed record fields") from None
    if rec_slot != slot:
        raise bad(f"record says it is slot {rec_slot}")
    if not _HEX64.match(rprev):
        raise bad("malformed previous-record hash")
    if prev is not None and rprev != prev:
        raise bad(
            "broken hash chain: the record's previous hash does not match "
            + ("the genesis value" if slot == 0 else f"slot {slot - 1}'s record")
        )
    if epoch < 0:
        raise bad(f"negative epoch {epoch}")
    return Record(rec_slot, rprev, writer, epoch, wid, entries, fmt, lease, config, conf, fwd)


_FID = re.compile(r"^[0-9a-f]{32}$")


def _fwd_of(raw: Any, n_entries: int) -> tuple[tuple[str, int], ...]:
    """The ``fwd`` field: distinct 32-hex parcel ids with positive counts whose entries
    fit in the record (``ValueError`` otherwise)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ValueError("bad fwd")
    out = []
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and _FID.match(item[0])
            and isinstance(item[1], int)
            and not isinstance(item[1], bool)
            and item[1] > 0
        ):
            raise ValueError("bad fwd")
        out.append((item[0], item[1]))
    if len({f for f, _ in out}) != len(out) or sum(n for _, n in out) > n_entries:
        raise ValueError("bad fwd")
    return tuple(out)


def tombstone_of(data: bytes, slot: int, *, url: str = "", key: str | None = None) -> Tombstone:
    """Parse the tombstone ``trim`` left at ``slot``; damage is a ``DamagedSlotError``."""
    try:
        return decode_tombstone(data, slot)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedSlotError(slot, f"bad tombstone ({exc})", url=url, key=key) from None


def chain_hash(data: bytes, slot: int) -> str:
    """The hash the record of ``slot + 1`` must name: sha256 of slot ``slot``'s record,
    kept in the tombstone once the slot is trimmed."""
    if is_tombstone(data):
        return tombstone_of(data, slot).hash
    return record_hash(data)


def names_config(data: bytes) -> bool:
    """Whether a record carries a membership field (cheap test first; keys are sorted
    canonical JSON, values cannot contain an unescaped quote)."""
    if b'"cfg":' not in data and b'"conf":' not in data:
        return False
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and ("cfg" in doc or "conf" in doc)


def why_unknown(exc: PassivePaxosError) -> str:
    """Why an outcome is unknown, for one sentence: the cause's message without its
    location prefix and without a leading "... outcome unknown:" of its own."""
    return re.sub(r"^(\w+ )?outcome unknown: ", "", PassivePaxosError.__str__(exc))


def bare(exc: StoreError) -> str:
    """The error's message without its location prefix (the caller adds slot and URL)."""
    return PassivePaxosError.__str__(exc)
