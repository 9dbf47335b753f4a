"""Each store's health as ``status`` shows it: reachable, its manifest, whether it lags.

Read-only and cheap: per store, one GET of the manifest and (on a quorum) one LIST of the
head slot's objects, all stores at once. ``lagging`` means the store holds nothing for
the log's head slot: it missed at least the last decision (it was down, or is slow), so
the log now rests on the other stores for that slot. A store whose manifest is missing or
names another log is not counted by any operation (docs/log.md, the manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from passivepaxos.consensus.keys import slot_key
from passivepaxos.errors import InvalidObjectError, StoreError
from passivepaxos.fanout import each_store
from passivepaxos.manifest import MANIFEST_KEY, Manifest
from passivepaxos.store import Store

__all__ = ["StoreHealth", "store_health"]


@dataclass(frozen=True)
class StoreHealth:
    url: str
    reachable: bool
    manifest: str | None  # "ok", "missing", "foreign", "damaged"; None: not read
    lagging: bool | None  # None: unknown (unreachable, one store, or an empty log)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "manifest": self.manifest,
            "lagging": self.lagging,
            "error": self.error,
        }

    def describe(self) -> str:
        if not self.reachable:
            return f"unreachable ({self.error})"
        parts = [f"manifest {self.manifest}"]
        if self.manifest != "ok" and self.error:
            parts[0] += f" ({self.error})"
        if self.lagging:
            parts.append("lagging: holds nothing for the head slot")
        return ", ".join(parts)


def store_health(stores: list[Store], manifest: Manifest | None, head: int) -> list[StoreHealth]:
    """The health of each of ``stores`` (a log's members, whose manifest is ``manifest``
    and whose head slot is ``head``; ``-1``: empty)."""
    quorum = len(stores) > 1

    def look(store: Store) -> tuple[str, str | None, bool | None]:
        why: str | None
        try:
            got = store.get(MANIFEST_KEY)
            m = None if got is None else Manifest.decode(got[0], store.url)
        except InvalidObjectError as exc:  # an object there that is not a manifest
            state, why = "damaged", " ".join(str(exc).split())
        else:
            if m is None:
                state, why = "missing", None
            elif manifest is None or m.same_log(manifest):
                state, why = "ok", None
            else:
                state, why = "foreign", m.describe()
        lagging = None
        if quorum and head >= 0:
            prefix = slot_key("log", head) + "/"
            lagging = next(iter(store.list(prefix)), None) is None
        return state, why, lagging

    out = []
    for store, got in zip(stores, each_store(stores, look), strict=True):
        if isinstance(got, StoreError):
            out.append(StoreHealth(store.url, False, None, None, " ".join(str(got).split())))
        else:
            state, why, lagging = got
            out.append(StoreHealth(store.url, True, state, lagging, why))
    return out
