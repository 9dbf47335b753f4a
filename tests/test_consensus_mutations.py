"""Planted protocol bugs, switched on only here: the simulator must catch each one.

Each mutation is a name in ``passivepaxos.consensus.core.MUTATIONS``; with it on, some
seed within the budget must produce an agreement violation, and the same seeds must be
clean with the mutation off (so it is the bug that is caught, not noise).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from passivepaxos.consensus import core, sim

BUDGET = 200  # seeds tried per mutation

MUTANTS = [
    # (mutation, mode, stores): what it breaks
    ("accept_without_majority", "create", 3),  # decide / proceed on one acceptor
    ("replay_ignores_higher_ballot", "create", 3),  # ACCEPT accepted below the promise
    ("ambiguous_as_failed", "create", 3),  # unclear ACCEPT -> same ballot, other value
    ("ignore_accepted_value", "create", 3),  # phase 2 ignores what phase 1 reported
    ("disk_ignores_higher_mbal", "blocks", 3),  # Disk Paxos never aborts
    # the same protocol bugs on cas lists (one shared code path), and one of cas lists' own
    ("accept_without_majority", "cas", 3),
    ("replay_ignores_higher_ballot", "cas", 3),
    ("ambiguous_as_failed", "cas", 3),
    ("ignore_accepted_value", "cas", 3),
    ("cas_blind_write", "cas", 3),  # overwrite instead of swap: appends erase entries
]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    core.MUTATIONS.clear()
    yield
    core.MUTATIONS.clear()


def first_violation(mode: str, stores: int) -> sim.SimResult | None:
    for seed in range(BUDGET):
        result = sim.run(seed, sim.SimConfig(mode, stores, 5, 0.2, partition=0.1))
        if result.violations:
            return result
    return None


@pytest.mark.parametrize(("mutation", "mode", "stores"), MUTANTS)
def test_mutation_is_caught(mutation: str, mode: str, stores: int) -> None:
    core.MUTATIONS.add(mutation)
    caught = first_violation(mode, stores)
    assert caught is not None, f"{mutation} survived {BUDGET} seeds"
    assert any("agreement" in v for v in caught.violations), caught.describe()
    core.MUTATIONS.clear()
    clean = sim.run(caught.seed, caught.config)
    assert not clean.violations, clean.describe()
