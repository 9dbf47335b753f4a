"""The JSON envelope every recipe puts in log entries: ``{"ppx": kind, <scope>: name, ...}``.

One place decides how a recipe's entries are told apart from anyone else's on a shared
log: an entry that is not JSON, or of another kind or scope, is simply not ours (``None``),
never an error, since many recipes and raw appenders may share one log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from passivepaxos.errors import AmbiguousWriteError, QuorumError, TransientError

if TYPE_CHECKING:
    from passivepaxos.log import Log, Position

__all__ = ["append_retrying", "decode_entry", "encode_entry"]

RETRYABLE = (AmbiguousWriteError, TransientError, QuorumError)


def encode_entry(kind: str, scope_field: str, scope: str, fields: dict[str, Any]) -> bytes:
    doc = {"ppx": kind, scope_field: scope, **fields}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_entry(value: bytes, kind: str, scope_field: str, scope: str) -> dict[str, Any] | None:
    """The entry's fields if it is a ``kind`` entry of ``scope``, else ``None``."""
    if not value.startswith(b"{"):
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("ppx") != kind or doc.get(scope_field) != scope:
        return None
    return doc


def append_retrying(
    log: Log,
    data: bytes,
    *,
    retries: int,
    delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Position:
    """Append one recipe entry, retrying an unclear or transient failure ``retries`` times
    (the entry carries its own request id, so a copy that landed twice is applied once).

    Giving up after an attempt whose outcome was unknown raises ``AmbiguousWriteError``
    whatever the last attempt said: an earlier attempt may have landed, and a plain
    failure would read as "not written"."""
    unclear: AmbiguousWriteError | None = None
    attempt = 0
    while True:
        try:
            (pos,) = log.append_positions([data])
            return pos
        except RETRYABLE as exc:
            if isinstance(exc, AmbiguousWriteError):
                unclear = exc
            attempt += 1
            if attempt > retries:
                if unclear is None or unclear is exc:
                    raise
                raise AmbiguousWriteError(
                    f"outcome unknown: an earlier attempt may have landed ({unclear}); "
                    f"the last attempt failed: {exc}",
                    url=unclear.url,
                    key=unclear.key,
                ) from exc
            sleep(delay * attempt)
