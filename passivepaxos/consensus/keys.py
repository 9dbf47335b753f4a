"""The object keys of a consensus instance. Apart from the core so that code that only
names them (the manifest, the log's marker copies) need not import the protocols."""

from __future__ import annotations

__all__ = ["blocks_prefix", "decided_key", "list_key", "slot_key"]


def slot_key(instance: str, slot: int) -> str:
    return f"{instance}/{slot:020d}"


def list_key(instance: str) -> str:
    """The one object holding a cas list."""
    return f"{instance}/list"


def decided_key(instance: str) -> str:
    return f"{instance}/decided"


def blocks_prefix(instance: str) -> str:
    return f"{instance}/blocks/"
