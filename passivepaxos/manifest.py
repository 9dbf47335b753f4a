"""A log's manifest: the list mode and format chosen at ``init``, stored on every store.

Every client must simulate the append-only list the same way, so the choice is made once
(from the capability table, or forced with ``--mode``) and recorded; a client refuses a
manifest whose format or mode it does not know rather than guess.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from passivepaxos.capabilities import Capabilities, ListMode, choose_mode
from passivepaxos.errors import (
    AlreadyExistsError,
    ConfigError,
    InvalidObjectError,
    QuorumError,
    StoreError,
    UnsupportedError,
)
from passivepaxos.store import Store, open_store
from passivepaxos.types import PutMode
from passivepaxos.urls import split_urls

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_KEY",
    "Manifest",
    "check_instance",
    "init_log",
    "open_log",
    "open_stores",
]

MANIFEST_KEY = "manifest"
MANIFEST_FORMAT = 1
_KIND = "passivepaxos-log"
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
IMPLEMENTED_MODES = (ListMode.CREATE, ListMode.CAS, ListMode.BLOCKS)


@dataclass(frozen=True)
class Manifest:
    mode: ListMode
    stores: tuple[str, ...]
    format: int = MANIFEST_FORMAT

    def encode(self) -> bytes:
        doc = {
            "kind": _KIND,
            "format": self.format,
            "mode": self.mode.value,
            "stores": list(self.stores),
        }
        return json.dumps(doc, sort_keys=True).encode()

    @staticmethod
    def decode(data: bytes, where: str) -> Manifest:
        try:
            doc: Any = json.loads(data)
            if doc.get("kind") != _KIND:
                raise ValueError("not a passivepaxos manifest")
        except (ValueError, AttributeError) as exc:
            raise InvalidObjectError(f"bad manifest: {exc}", url=where, key=MANIFEST_KEY) from None
        fmt = doc.get("format")
        if not isinstance(fmt, int) or fmt > MANIFEST_FORMAT:
            raise InvalidObjectError(
                f"manifest format {fmt!r} is newer than this client supports ({MANIFEST_FORMAT}); "
                "upgrade passivepaxos",
                url=where,
                key=MANIFEST_KEY,
            )
        try:
            mode = ListMode(doc.get("mode"))
        except ValueError:
            raise InvalidObjectError(
                f"manifest names unknown list mode {doc.get('mode')!r}", url=where, key=MANIFEST_KEY
            ) from None
        return Manifest(mode, tuple(doc.get("stores", ())), fmt)


def open_stores(log: str) -> list[Store]:
    return [open_store(url) for url in split_urls(log)]


def _combined(stores: list[Store]) -> Capabilities:
    """What every store of the quorum can do (a mode must work on all of them)."""
    caps = [s.capabilities for s in stores]
    first = caps[0]
    return Capabilities(
        name="+".join(sorted({c.name for c in caps})),
        schemes=first.schemes,
        create=all(c.create for c in caps),
        cas=all(c.cas for c in caps),
        delete_if_version=all(c.delete_if_version for c in caps),
        consistency=first.consistency,
        same_name_writes_per_s=first.same_name_writes_per_s,
        max_object_bytes=first.max_object_bytes,
        usd_per_1000_writes=first.usd_per_1000_writes,
        usd_per_1000_reads=first.usd_per_1000_reads,
        implemented=all(c.implemented for c in caps),
        notes="",
    )


def _majority(n: int) -> int:
    return n // 2 + 1


def init_log(log: str, mode: str = "auto") -> tuple[Manifest, bool]:
    """Create the manifest on every store; (manifest, created). Idempotent for the same mode."""
    stores = open_stores(log)
    combined = _combined(stores)
    chosen = choose_mode(combined, None if mode == "auto" else mode)
    if chosen not in IMPLEMENTED_MODES:
        raise UnsupportedError(
            f"list mode {chosen.value!r} is not implemented yet; use "
            + " or ".join(m.value for m in IMPLEMENTED_MODES),
            capability=chosen.value,
        )
    if chosen is ListMode.CAS and not combined.create:
        # each instance's cas list object is created once with create-if-absent
        raise UnsupportedError(
            "mode 'cas' also needs create-if-absent (to create each instance's list "
            f"object), which backend {combined.name!r} does not have; use blocks",
            capability="create-if-absent",
        )
    wanted = Manifest(chosen, tuple(s.url for s in stores))
    created, ok, errors = False, 0, {}
    for store in stores:
        try:
            _create_manifest(store, wanted)
            created, ok = True, ok + 1
        except AlreadyExistsError as exc:
            existing = Manifest.decode(exc.current[0], store.url) if exc.current else None
            if existing is None or (existing.mode is not wanted.mode and mode != "auto"):
                raise ConfigError(
                    f"{store.url}: already initialised with mode "
                    f"{existing.mode.value if existing else '?'!r}, not {wanted.mode.value!r}"
                ) from None
            if existing.mode is not wanted.mode:
                wanted = existing
            ok += 1
        except StoreError as exc:
            errors[store.url] = str(exc)
    if ok < _majority(len(stores)):
        raise QuorumError(
            f"init reached {ok} of {len(stores)} stores, a majority is {_majority(len(stores))}; "
            "unreachable: " + "; ".join(errors.values())
        )
    return wanted, created


def _create_manifest(store: Store, manifest: Manifest) -> None:
    """Create-if-absent where the store has it; else read, then write (a store without
    conditional writes cannot arbitrate two first inits racing with different modes; the
    later reader of a mixed quorum refuses it: see ``open_log``)."""
    if store.capabilities.create:
        store.put(MANIFEST_KEY, manifest.encode(), PutMode.CREATE)
        return
    got = store.get(MANIFEST_KEY)
    if got is not None:
        raise AlreadyExistsError("manifest exists", url=store.url, key=MANIFEST_KEY, current=got)
    store.put(MANIFEST_KEY, manifest.encode())


def open_log(log: str) -> tuple[list[Store], Manifest]:
    """Open the stores of ``log`` and the manifest a majority of them agree on."""
    stores = open_stores(log)
    found: list[Manifest] = []
    errors: dict[str, str] = {}
    missing: list[str] = []
    for store in stores:
        try:
            got = store.get(MANIFEST_KEY)
        except (StoreError, InvalidObjectError) as exc:
            errors[store.url] = str(exc)
            continue
        if got is None:
            missing.append(store.url)
        else:
            found.append(Manifest.decode(got[0], store.url))
    need = _majority(len(stores))
    if not found:
        if errors and not missing:
            raise QuorumError("no store answered: " + "; ".join(errors.values()))
        if errors:
            raise QuorumError("no manifest found; unreachable: " + "; ".join(errors.values()))
        raise ConfigError(f"{log}: no log here; create it with: passivepaxos init {log}")
    modes = Counter(m.mode for m in found)
    if len(modes) > 1:
        raise InvalidObjectError(
            f"{log}: stores disagree on the list mode ({dict((k.value, v) for k, v in modes.items())})"
        )
    if len(found) + len(missing) < need:
        raise QuorumError(
            f"only {len(found) + len(missing)} of {len(stores)} stores answered, a majority is "
            f"{need}; unreachable: " + "; ".join(errors.values())
        )
    manifest = found[0]
    if manifest.mode not in IMPLEMENTED_MODES:
        raise UnsupportedError(
            f"{log}: list mode {manifest.mode.value!r} is not supported by this client"
        )
    return stores, manifest


def check_instance(name: str) -> str:
    if not _INSTANCE.match(name):
        raise ConfigError(
            f"bad instance name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return f"consensus/{name}"
