"""The CLI contract (BRIEF section 5): commands, --json fields, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passivepaxos", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def test_backends_table_and_json() -> None:
    out = run("backends")
    assert out.returncode == 0, out.stderr
    for name in ("memory", "local", "s3", "gcs", "dropbox", "azure"):
        assert name in out.stdout
    rows = [json.loads(line) for line in run("backends", "--json").stdout.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["s3"]["create"] is True and by_name["s3"]["modes"][0] == "create"
    assert by_name["s3-compatible"]["modes"] == ["blocks"]
    assert by_name["gcs"]["same_name_writes_per_s"] == 1.0


def test_probe_local_dir(tmp_path: Path) -> None:
    out = run("backends", "--probe", f"file://{tmp_path}", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["create"], got["cas"], got["delete_if_version"]) == (True, True, True)
    assert list(tmp_path.glob("ppx-probe-*/*")) == []  # cleaned up


def test_probe_s3_bucket(moto_server: object) -> None:
    bucket = "probe-bucket"
    moto_server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    out = run("backends", "--probe", f"s3://{bucket}/p", "--json", env=moto_server.env())  # type: ignore[attr-defined]
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["create"] is True
    keys = moto_server.client().list_objects_v2(Bucket=bucket).get("KeyCount")  # type: ignore[attr-defined]
    assert keys == 0


def test_probe_azure_container(azurite_server: object) -> None:
    container = "probe-container"
    azurite_server.create_container(container)  # type: ignore[attr-defined]
    env = azurite_server.env()  # type: ignore[attr-defined]
    out = run("backends", "--probe", f"az://{container}/p", "--json", env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["create"], got["cas"], got["delete_if_version"]) == (True, True, True)
    with azurite_server.service() as svc:  # type: ignore[attr-defined]
        assert list(svc.get_container_client(container).list_blobs()) == []  # cleaned up
    out = run("backends", "--probe", "az://no-such-container/p", env=env)
    assert out.returncode == 1
    assert "container 'no-such-container' does not exist" in out.stderr
    assert "AccountKey" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (
            ("backends", "--probe", "s3://no-such-bucket/x"),
            1,
            "bucket 'no-such-bucket' does not exist",
        ),
        (
            ("backends", "--probe", "file:///no/such/dir"),
            1,
            "file:///no/such/dir: directory does not exist",
        ),
        (("backends", "--probe", "ftp://x/y"), 2, "unknown scheme 'ftp'"),
        (("backends", "--probe", "az://c/p"), 2, "not a valid Azure container name"),
    ],
)
def test_errors_are_one_line_naming_the_url(
    moto_server: object, args: tuple[str, ...], code: int, needle: str
) -> None:
    out = run(*args, env=moto_server.env())  # type: ignore[attr-defined]
    assert out.returncode == code, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr
    debug = run("--debug", *args, env=moto_server.env())  # type: ignore[attr-defined]
    assert "Traceback" in debug.stderr and debug.returncode == code


def test_usage_errors_exit_2() -> None:
    assert run().returncode == 2
    assert run("nonsense").returncode == 2


def test_the_script_exits_with_mains_code_and_all_its_output(tmp_path: Path) -> None:
    """``python -m passivepaxos`` ends with ``os._exit`` (``cli.run``: no interpreter
    teardown): the exit code is still ``main``'s and a block-buffered pipe still gets
    every byte, here a listing far past one pipe buffer, then a failing command's code
    and message."""
    (tmp_path / "log").mkdir()
    url = (tmp_path / "log").as_uri()
    assert run("init", url).returncode == 0
    values = [f"v{i:05d}-" + "x" * 40 for i in range(1500)]
    for start in range(0, len(values), 500):
        assert run("append", url, *values[start : start + 500]).returncode == 0
    got = run("log", url, "--json")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert len(got.stdout) > 64 * 1024 and len(lines) == 1500
    assert [json.loads(line)["value"] for line in lines] == values
    bad = run("log", (tmp_path / "missing").as_uri())
    assert bad.returncode == 1 and "error" in bad.stderr


def test_a_profiled_cli_still_writes_its_profile(tmp_path: Path) -> None:
    """``cli.run`` exits the ordinary way under a profiler (it saves at exit)."""
    out = tmp_path / "cli.prof"
    got = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "passivepaxos", "backends"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    assert out.stat().st_size > 0


def test_every_command_option_and_positional_has_help() -> None:
    """Issue 13: help text for every positional and option (``--mode`` says what each
    mode means)."""
    import argparse

    from passivepaxos.cli import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    walk(sp, [*path, name])
            elif not isinstance(a, argparse._HelpAction) and (
                not a.help or a.help == argparse.SUPPRESS
            ):
                missing.append(f"{' '.join(path)}: {a.option_strings or a.dest}")

    walk(build_parser(), [])
    assert missing == []
    mode = run("init", "--help").stdout
    for word in ("create-if-absent", "compare-and-swap", "Disk Paxos"):
        assert word in " ".join(mode.split())
