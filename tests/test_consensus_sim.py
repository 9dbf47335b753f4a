"""Seeded simulation runs of the consensus core: agreement, validity and termination on
every run, under store faults (10-20% of requests), link partitions, crashes and pauses.

27 configurations (create, cas, blocks x 1, 3, 5 stores x 3, 4, 5 proposers) x 112 seeds =
3,024 runs, 1,008 per mode. A failure names each failing seed and the command that replays it
exactly. Every run also has (issue 10) lost DECIDED marker writes, answers delayed past
other processes' reads, two readers (learner, then finisher when it cannot tell) checked
for linearizability, and in about 30% of the runs on 3+ stores the "removed store emptied"
schedule of finding 1 with late proposers.
"""

from __future__ import annotations

import pytest

from passivepaxos.consensus import core, sim

SEEDS_PER_CONFIG = 112
CHUNKS = 4
MODES = ("create", "cas", "blocks")
CONFIGS = [
    (mode, stores, proposers) for mode in MODES for stores in (1, 3, 5) for proposers in (3, 4, 5)
]


def fault_rate(seed: int) -> float:
    return 0.10 + 0.01 * (seed % 11)  # 10% .. 20% of requests


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize(("mode", "stores", "proposers"), CONFIGS)
def test_agreement_validity_termination(mode: str, stores: int, proposers: int, chunk: int) -> None:
    assert not core.MUTATIONS
    per = SEEDS_PER_CONFIG // CHUNKS
    failures = []
    decided_runs = 0
    faults = 0
    for seed in range(chunk * per, (chunk + 1) * per):
        cfg = sim.SimConfig(mode, stores, proposers, fault_rate(seed))
        result = sim.run(seed, cfg)
        faults += result.faults
        decided_runs += bool(result.decided)
        if result.violations:
            failures.append(result.describe())
    assert not failures, "\n".join(failures)
    assert faults > 0  # the fault injection really ran
    assert decided_runs == per  # at least one proposer decides in every run


def test_runs_total_at_least_2000() -> None:
    assert len(CONFIGS) * (SEEDS_PER_CONFIG // CHUNKS) * CHUNKS >= 2000
    for mode in MODES:  # every mode keeps the 1,008 runs it had with two modes
        assert sum(c[0] == mode for c in CONFIGS) * SEEDS_PER_CONFIG >= 1008


@pytest.mark.parametrize("mode", MODES)
def test_seed_replays_exactly(mode: str) -> None:
    cfg = sim.SimConfig(mode, 3, 5, 0.2)
    a, b = sim.run(1234, cfg), sim.run(1234, cfg)
    assert (a.decided, a.crashed, a.steps, a.ops, a.faults, a.learned) == (
        b.decided,
        b.crashed,
        b.steps,
        b.ops,
        b.faults,
        b.learned,
    )


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_fast_path_is_one_request_uncontended(mode: str) -> None:
    cfg = sim.SimConfig(mode, 1, 1, 0.0, crash=0.0, pause=0.0, partition=0.0, readers=0)
    result = sim.run(7, cfg)
    assert result.ops == 1 and result.decided == {"p0": result.proposed["p0"]}


@pytest.mark.parametrize("mode", ["blocks", "cas"])
def test_cli_replay_entry_point(capsys: pytest.CaptureFixture[str], mode: str) -> None:
    assert sim.main(["--seed", "3", "--mode", mode, "--stores", "3"]) == 0
    assert f"seed=3 mode={mode}" in capsys.readouterr().out


@pytest.mark.parametrize("mode", MODES)
def test_issue_10_fault_shapes_really_occur(mode: str) -> None:
    """The new shapes are exercised, not just configured: some runs empty a store that
    accepted the value and still agree through the copied markers, late proposers decide,
    readers started after a decision read it, and some learners could not tell."""
    wiped = late = reads_after = 0
    for seed in range(40):
        result = sim.run(seed, sim.SimConfig(mode, 3, 4, 0.2, partition=0.1))
        assert not result.violations, result.describe()
        wiped += result.wiped is not None
        late += any(pid.startswith("q") for pid in result.decided)
        reads_after += sum(v is not None for v in result.read.values())
    assert wiped >= 5 and late >= 5 and reads_after >= 20


# A leader's ACCEPT (core: "Leader's accept"): the first proposer opens with it. Seeds
# and shapes as above (faults, partitions, crashes, lost markers, readers, the wipe).
LEADER_CONFIGS = [(mode, stores) for mode in ("create", "cas") for stores in (3, 5)]
LEADER_SEEDS = 60


@pytest.mark.parametrize(("mode", "stores"), LEADER_CONFIGS)
def test_a_leader_keeps_agreement(mode: str, stores: int) -> None:
    failures = []
    for seed in range(LEADER_SEEDS):
        result = sim.run(seed, sim.SimConfig(mode, stores, 4, fault_rate(seed), leads=1))
        if result.violations:
            failures.append(result.describe())
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", ["create", "cas"])
def test_two_leaders_break_agreement(mode: str) -> None:
    """The precondition of ``lead`` is not decoration: with two leaders of one instance
    the simulator finds two values chosen (seed 370), and the same seed is clean with
    one."""
    bad = sim.run(370, sim.SimConfig(mode, 3, 4, fault_rate(370), leads=2))
    assert any("agreement" in v for v in bad.violations), bad.describe()
    good = sim.run(370, sim.SimConfig(mode, 3, 4, fault_rate(370), leads=1))
    assert not good.violations, good.describe()


@pytest.mark.parametrize(("mode", "stores"), LEADER_CONFIGS)
def test_a_lone_leader_decides_in_one_request_per_store(mode: str, stores: int) -> None:
    cfg = sim.SimConfig(
        mode, stores, 1, 0.0, crash=0.0, pause=0.0, partition=0.0, readers=0, wipe=0.0, leads=1
    )
    result = sim.run(7, cfg)
    assert result.decided == {"p0": result.proposed["p0"]}
    # one create per store and the markers read beside them (M2): no PREPARE, no marker
    # write, one round trip
    assert result.ops == 2 * stores
