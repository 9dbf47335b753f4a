"""``backends --probe URL``: test a live bucket for the conditional writes it claims.

Some S3-compatible stores accept ``If-None-Match``/``If-Match`` headers and ignore them; the
only way to know is to try. Every key used lives under a throwaway prefix and is deleted
afterwards, whatever happened (with a budget of its own, also after the command's deadline
passed), and `init` ignores them.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any

from passivepaxos.deadline import Deadline
from passivepaxos.errors import (
    AlreadyExistsError,
    PreconditionFailedError,
    StoreError,
    UnsupportedError,
)
from passivepaxos.store import Store
from passivepaxos.types import PutMode

__all__ = ["PROBE_PREFIX", "ProbeResult", "probe"]

PROBE_PREFIX = "ppx-probe-"  # the throwaway keys live under PROBE_PREFIX + a random id
CLEANUP_SECONDS = 10.0  # the cleanup's own budget, outside the command's deadline


@dataclass(frozen=True)
class ProbeResult:
    url: str
    backend: str
    create: bool
    cas: bool
    delete_if_version: bool
    detail: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        modes = (["create"] if self.create else []) + (["cas"] if self.cas else []) + ["blocks"]
        return {
            "url": self.url,
            "backend": self.backend,
            "create": self.create,
            "cas": self.cas,
            "delete_if_version": self.delete_if_version,
            "modes": modes,
            "detail": self.detail,
        }


def _refused(fn: Any, expected: type[Exception]) -> tuple[bool, str]:
    """True when ``fn`` is refused with ``expected``: the condition is enforced."""
    try:
        fn()
    except expected:
        return True, "enforced"
    except UnsupportedError as exc:
        return False, f"unsupported: {exc}"
    return False, "ignored: the conditional write succeeded although its condition was false"


def _cleanup(store: Store, keys: tuple[str, ...]) -> None:
    """Delete the probe's keys with a budget of their own: the probe may have ended
    because the command's deadline passed, and a cleanup refused by that same deadline
    would leave the keys behind. Runs in an empty context (no ambient deadline) on a
    store over the same backend opened there."""

    def run() -> None:
        rt = store.runtime
        budget = Deadline(CLEANUP_SECONDS, clock=rt.monotonic)
        fresh = Store(store.backend, retry=store.retry, deadline=budget, runtime=rt)
        for key in keys:
            with contextlib.suppress(StoreError):
                fresh.delete(key)

    contextvars.Context().run(run)


def probe(store: Store) -> ProbeResult:
    base = f"{PROBE_PREFIX}{store.runtime.token_hex(16)}"
    create_key, cas_key, del_key = f"{base}/create", f"{base}/cas", f"{base}/delete"
    detail: dict[str, str] = {}
    try:
        try:
            store.put(create_key, b"first", PutMode.CREATE)
            create, detail["create"] = _refused(
                lambda: store.put(create_key, b"second", PutMode.CREATE), AlreadyExistsError
            )
        except UnsupportedError as exc:
            create, detail["create"] = False, f"unsupported: {exc}"

        v1 = store.put(cas_key, b"v1")
        try:
            store.put(cas_key, b"v2", PutMode.update(v1))
            cas, detail["cas"] = _refused(
                lambda: store.put(cas_key, b"v3", PutMode.update(v1)), PreconditionFailedError
            )
        except UnsupportedError as exc:
            cas, detail["cas"] = False, f"unsupported: {exc}"
        except PreconditionFailedError:
            cas, detail["cas"] = False, "a matching version was refused"

        d1 = store.put(del_key, b"d1")
        store.put(del_key, b"d2")
        try:
            delete_if_version, detail["delete_if_version"] = _refused(
                lambda: store.delete(del_key, if_version=d1), PreconditionFailedError
            )
        except UnsupportedError as exc:
            delete_if_version, detail["delete_if_version"] = False, f"unsupported: {exc}"
    finally:
        _cleanup(store, (create_key, cas_key, del_key))
    return ProbeResult(store.url, store.capabilities.name, create, cas, delete_if_version, detail)
