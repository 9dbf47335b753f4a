"""End to end: OS processes proposing concurrently through the CLI, on every real server
and on a mixed quorum; all of them must print the same decided value, one that was
proposed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fresh, get_harness

ROOT = Path(__file__).resolve().parent.parent
PROCS = 4


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "passivepaxos", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _race(log: str, instances: list[str]) -> None:
    init = subprocess.run(
        [sys.executable, "-m", "passivepaxos", "init", log],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    procs = [
        (inst, f"{inst}-value-{i}", _spawn("propose", log, inst, f"{inst}-value-{i}"))
        for i in range(PROCS)
        for inst in instances
    ]
    decided: dict[str, set[str]] = {inst: set() for inst in instances}
    for inst, _, proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        decided[inst].add(out.strip())
    for inst in instances:
        proposed = {v for i, v, _ in procs if i == inst}
        assert len(decided[inst]) == 1, f"{inst}: disagreement {decided[inst]}"
        assert decided[inst] <= proposed


@pytest.mark.parametrize("name", ["local", "s3", "gcs", "dropbox", "azure"])
def test_processes_agree_on_each_backend(name: str, request: pytest.FixtureRequest) -> None:
    _race(get_harness(request, name).url(), ["leader", "config"])


def test_processes_agree_on_a_mixed_quorum(
    tmp_path: Path, moto_server: object, gcs_server: object
) -> None:
    bucket = fresh("mixed")
    moto_server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    gbucket = fresh("mixed")
    gcs_server.create_bucket(gbucket)  # type: ignore[attr-defined]
    log = f"file://{tmp_path},s3://{bucket}/q,gs://{gbucket}/q"
    _race(log, ["leader"])


def test_processes_agree_on_a_mixed_quorum_with_azure(
    tmp_path: Path, moto_server: object, azurite_server: object
) -> None:
    bucket = fresh("mixed")
    moto_server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    container = fresh("mixed")
    azurite_server.create_container(container)  # type: ignore[attr-defined]
    _race(f"file://{tmp_path},s3://{bucket}/q,az://{container}/q", ["leader"])


def test_processes_agree_in_blocks_mode(tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in "abc"]
    for d in dirs:
        d.mkdir()
    log = ",".join(f"file://{d}" for d in dirs)
    assert (
        subprocess.run(
            [sys.executable, "-m", "passivepaxos", "init", log, "--mode", "blocks"], cwd=ROOT
        ).returncode
        == 0
    )
    _race(log, ["leader"])
