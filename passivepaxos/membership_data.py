"""Membership *data*: the configuration change a record carries and the markers that let
a client discover that a log has had one (the membership *procedure*, which writes them,
is :mod:`passivepaxos.membership`, above the log). Design and safety argument: there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from passivepaxos.errors import QuorumError, StoreError
from passivepaxos.fanout import each_store
from passivepaxos.runtime import REAL, Runtime
from passivepaxos.store import Store

__all__ = [
    "MEMBERS_PREFIX",
    "ConfigChange",
    "decode_marker",
    "encode_marker",
    "marker_key",
    "read_markers",
]

MEMBERS_PREFIX = "members/"


@dataclass(frozen=True)
class ConfigChange:
    """The ``cfg`` field of a configuration record."""

    op: str  # "add" | "remove"
    url: str
    from_: tuple[str, ...]
    to: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "url": self.url, "from": list(self.from_), "to": list(self.to)}

    @staticmethod
    def from_json(obj: Any) -> ConfigChange:
        if not isinstance(obj, dict):
            raise ValueError("cfg is not an object")
        op, url, frm, to = obj.get("op"), obj.get("url"), obj.get("from"), obj.get("to")
        if op not in ("add", "remove") or not isinstance(url, str):
            raise ValueError("bad cfg op or url")
        if not (isinstance(frm, list) and isinstance(to, list)):
            raise ValueError("bad cfg store lists")
        if not all(isinstance(u, str) for u in [*frm, *to]):
            raise ValueError("bad cfg store lists")
        change = ConfigChange(op, url, tuple(frm), tuple(to))
        change.check()
        return change

    def check(self) -> None:
        """One store added or removed, nothing else (ValueError otherwise)."""
        a, b = set(self.from_), set(self.to)
        if len(a) != len(self.from_) or len(b) != len(self.to):
            raise ValueError("duplicate store in cfg")
        if self.op == "add" and not (b - a == {self.url} and a <= b):
            raise ValueError("cfg add must add exactly its url")
        if self.op == "remove" and not (a - b == {self.url} and b <= a):
            raise ValueError("cfg remove must remove exactly its url")
        if len(b) < 2:
            raise ValueError("cfg leaves fewer than two stores")


def marker_key(runtime: Runtime = REAL) -> str:
    return f"{MEMBERS_PREFIX}{runtime.token_hex(16)}"


def encode_marker(origin: Sequence[str], change: ConfigChange) -> bytes:
    doc = {"kind": "ppx-members", "origin": list(origin), **change.to_json()}
    return json.dumps(doc, sort_keys=True).encode()


def decode_marker(data: bytes) -> tuple[tuple[str, ...], ConfigChange] | None:
    try:
        doc: Any = json.loads(data)
        if not isinstance(doc, dict) or doc.get("kind") != "ppx-members":
            return None
        origin = doc.get("origin")
        if not isinstance(origin, list) or not all(isinstance(u, str) for u in origin):
            return None
        return tuple(origin), ConfigChange.from_json(doc)
    except ValueError:
        return None


def read_markers(stores: Sequence[Store]) -> list[tuple[tuple[str, ...], ConfigChange]]:
    """Every membership marker found on ``stores``; a majority must answer the LIST
    (``QuorumError`` otherwise). The stores are read at once: one that does not answer
    while a majority did is not waited for (a marker is written to a majority of the
    stores, so every majority holds it)."""

    def markers(store: Store) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for m in list(store.list(MEMBERS_PREFIX)):
            got = store.get(m.key)
            if got is not None:
                out[m.key] = got[0]
        return out

    found: dict[str, bytes] = {}
    answered, errors = 0, []
    for got in each_store(stores, markers):
        if isinstance(got, StoreError):
            errors.append(str(got))
            continue
        answered += 1
        for key, data in got.items():
            found.setdefault(key, data)
    if answered < len(stores) // 2 + 1:
        raise QuorumError(
            "cannot look for membership changes: no majority of stores answered: "
            + "; ".join(errors)
        )
    out = []
    for data in found.values():
        marker = decode_marker(data)
        if marker is not None:
            out.append(marker)
    return out
