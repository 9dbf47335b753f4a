"""Planted protocol bugs, switched on only here: the simulator must catch each one.

Each mutation is a name in ``passivepaxos.consensus.core.MUTATIONS``; with it on, some
seed within the budget must produce an agreement (or, for a learner bug, linearizability)
violation, and the same seeds must be clean with the mutation off (so it is the bug that is
caught, not noise).
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
    # issue 10, finding 1: proposers ignore DECIDED markers; caught by the simulator's
    # "removed store emptied, markers copied, stale proposers" schedule
    ("ignore_markers", "create", 3),
    ("ignore_markers", "cas", 3),
    ("ignore_markers", "blocks", 3),
]

# issue 10, finding 3: the learner reads "could not tell" as "undecided" (the slot looks
# missing); caught by readers started after a proposer returned
LEARNER_MUTANTS = [
    ("unknown_as_undecided", "create", 3),
    ("unknown_as_undecided", "cas", 3),
    ("unknown_as_undecided", "blocks", 3),
]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    core.MUTATIONS.clear()
    yield
    core.MUTATIONS.clear()


# The proposer-only bugs are looked for without readers or the wipe schedule (as before
# those existed): a reader that cannot tell finishes the instance, which often completes
# it before a buggy proposer can split it, so they would need more seeds.
PROPOSERS_ONLY = {"readers": 0, "wipe": 0.0}
NEW_SHAPES = ("ignore_markers", "unknown_as_undecided")


def first_violation(mode: str, stores: int, kind: str = "agreement") -> sim.SimResult | None:
    """The first seed whose run shows a violation of ``kind``."""
    extra = {} if core.MUTATIONS & set(NEW_SHAPES) else PROPOSERS_ONLY
    for seed in range(BUDGET):
        result = sim.run(seed, sim.SimConfig(mode, stores, 5, 0.2, partition=0.1, **extra))
        if any(kind in v for v in result.violations):
            return result
    return None


@pytest.mark.parametrize(("mutation", "mode", "stores"), MUTANTS)
def test_mutation_is_caught(mutation: str, mode: str, stores: int) -> None:
    core.MUTATIONS.add(mutation)
    caught = first_violation(mode, stores)
    assert caught is not None, f"{mutation} survived {BUDGET} seeds"
    core.MUTATIONS.clear()
    clean = sim.run(caught.seed, caught.config)
    assert not clean.violations, clean.describe()


@pytest.mark.parametrize(("mutation", "mode", "stores"), LEARNER_MUTANTS)
def test_learner_mutation_is_caught(mutation: str, mode: str, stores: int) -> None:
    core.MUTATIONS.add(mutation)
    caught = first_violation(mode, stores, "linearizability")
    assert caught is not None, f"{mutation} survived {BUDGET} seeds"
    core.MUTATIONS.clear()
    clean = sim.run(caught.seed, caught.config)
    assert not clean.violations, clean.describe()
