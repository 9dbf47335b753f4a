"""The JSON envelope every recipe puts in log entries: ``{"ppx": kind, <scope>: name, ...}``.

One place decides how a recipe's entries are told apart from anyone else's on a shared
log: an entry that is not JSON, or of another kind or scope, is simply not ours (``None``),
never an error, since many recipes and raw appenders may share one log.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["decode_entry", "encode_entry"]


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
