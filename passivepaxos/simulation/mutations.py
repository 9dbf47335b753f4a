"""Planted bugs for measuring the simulator's power: each re-introduces one finding of
issue 10 by reverting its fix for the duration of a run (a monkeypatch, as a test fixture
would), or switches on one of the consensus core's planted bugs (``core.MUTATIONS``).

Nothing here is imported by the library; ``applied(name)`` patches and un-patches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from passivepaxos.consensus import core

__all__ = ["FINDINGS", "MUTATIONS", "applied"]


@contextlib.contextmanager
def _core(name: str) -> Iterator[None]:
    saved = set(core.MUTATIONS)
    core.MUTATIONS.add(name)
    try:
        yield
    finally:
        core.MUTATIONS.clear()
        core.MUTATIONS.update(saved)


@contextlib.contextmanager
def _patched(obj: Any, attr: str, new: Any) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, new)
    try:
        yield
    finally:
        setattr(obj, attr, old)


MUTATIONS: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager[None]]]] = {}
"""name -> (what the bug is, a context manager planting it)."""

FINDINGS: dict[int, str] = {}
"""issue 10 finding -> the mutation that re-introduces it."""


def _register(
    name: str,
    what: str,
    plant: Callable[[], contextlib.AbstractContextManager[None]],
    finding: int | None = None,
) -> None:
    MUTATIONS[name] = (what, plant)
    if finding is not None:
        FINDINGS[finding] = name


for _m, _what in (
    ("accept_without_majority", "a proposer decides on one acceptor"),
    ("replay_ignores_higher_ballot", "an ACCEPT is accepted below the promise"),
    ("ambiguous_as_failed", "an unclear ACCEPT is retried with another value"),
    ("ignore_accepted_value", "phase 2 ignores what phase 1 reported"),
    ("disk_ignores_higher_mbal", "Disk Paxos never aborts"),
    ("cas_blind_write", "cas lists overwritten instead of swapped"),
):
    _register(f"core:{_m}", _what, lambda m=_m: _core(m))  # type: ignore[misc]

_register(
    "finding1",
    "proposers ignore DECIDED markers (issue 10 finding 1: core ignore_markers)",
    lambda: _core("ignore_markers"),
    1,
)
_register(
    "finding3",
    "the learner reads 'could not tell' as 'undecided' (issue 10 finding 3: core unknown_as_undecided)",
    lambda: _core("unknown_as_undecided"),
    3,
)


@contextlib.contextmanager
def applied(name: str | None) -> Iterator[None]:
    """Plant mutation ``name`` (None: nothing) for the duration of the block."""
    if name is None:
        yield
        return
    if name not in MUTATIONS:
        raise KeyError(f"unknown mutation {name!r}; known: {', '.join(sorted(MUTATIONS))}")
    with MUTATIONS[name][1]():
        yield
