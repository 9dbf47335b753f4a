"""`init` and `propose` through the CLI, on a quorum of three local directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import run


@pytest.fixture
def quorum(tmp_path: Path) -> tuple[str, list[Path]]:
    dirs = [tmp_path / n for n in "abc"]
    for d in dirs:
        d.mkdir()
    return ",".join(f"file://{d}" for d in dirs), dirs


def _break(d: Path) -> None:
    """Replace a store's directory by a plain file."""
    for p in sorted(d.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    d.rmdir()
    d.write_text("not a directory")


def test_init_then_propose_decides_once(quorum: tuple[str, list[Path]]) -> None:
    log, _ = quorum
    out = run("propose", log, "leader", "alice")
    assert out.returncode == 2 and "passivepaxos init" in out.stderr
    first = json.loads(run("init", log, "--json").stdout)
    assert first["created"] is True and first["mode"] == "create"
    again = json.loads(run("init", log, "--json").stdout)
    assert again["created"] is False
    assert run("propose", log, "leader", "alice").stdout == "alice\n"
    second = json.loads(run("propose", log, "leader", "bob", "--json").stdout)
    assert second == {"instance": "leader", "proposed": "bob", "value": "alice", "won": False}


def test_minority_broken_still_decides_majority_broken_fails(quorum: tuple[str, list[Path]]) -> None:
    log, dirs = quorum
    assert run("init", log).returncode == 0
    _break(dirs[2])
    out = run("propose", log, "k", "carol")
    assert (out.returncode, out.stdout) == (0, "carol\n"), out.stderr
    _break(dirs[1])
    out = run("propose", log, "k2", "dave")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(dirs[1]) in lines[0] and str(dirs[2]) in lines[0]
    assert "Traceback" not in out.stderr


def test_blocks_mode_and_refusals(tmp_path: Path, quorum: tuple[str, list[Path]]) -> None:
    log, _ = quorum
    assert json.loads(run("init", log, "--mode", "blocks", "--json").stdout)["mode"] == "blocks"
    assert run("propose", log, "x", "v1").stdout == "v1\n"
    assert run("propose", log, "x", "v2").stdout == "v1\n"
    clash = run("init", log, "--mode", "create")
    assert clash.returncode == 2 and "already initialised with mode 'blocks'" in clash.stderr
    bad = run("propose", log, "bad/name", "v")
    assert bad.returncode == 2 and "bad instance name" in bad.stderr
    (tmp_path / "s").mkdir()
    one = f"file://{tmp_path / 's'}"
    cas = json.loads(run("init", one, "--mode", "cas", "--json").stdout)
    assert cas["mode"] == "cas" and cas["created"] is True
    assert run("propose", one, "y", "w1").stdout == "w1\n"
    assert run("propose", one, "y", "w2").stdout == "w1\n"


def test_cas_mode_on_a_quorum(quorum: tuple[str, list[Path]]) -> None:
    log, dirs = quorum
    assert json.loads(run("init", log, "--mode", "cas", "--json").stdout)["mode"] == "cas"
    assert run("propose", log, "x", "v1").stdout == "v1\n"
    second = json.loads(run("propose", log, "x", "v2", "--json").stdout)
    assert second == {"instance": "x", "proposed": "v2", "value": "v1", "won": False}
    assert all((d / "consensus" / "x" / "list").exists() for d in dirs)
    _break(dirs[2])
    out = run("propose", log, "z", "v3")
    assert (out.returncode, out.stdout) == (0, "v3\n"), out.stderr


def test_forced_mode_the_store_cannot_do_names_the_capability(moto_server: object) -> None:
    bucket = "compat-bucket"
    moto_server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    out = run("init", f"s3://{bucket}/x?conditional=off", "--mode", "create", env=moto_server.env())  # type: ignore[attr-defined]
    assert out.returncode == 2 and "create-if-absent" in out.stderr
    out = run("init", f"s3://{bucket}/x?conditional=off", "--json", env=moto_server.env())  # type: ignore[attr-defined]
    assert json.loads(out.stdout)["mode"] == "blocks"
    out = run("init", "s3://no-such-bucket/x", env=moto_server.env())  # type: ignore[attr-defined]
    assert out.returncode == 1 and "bucket 'no-such-bucket' does not exist" in out.stderr
