"""`status` shows each store's health on a quorum (reachable, manifest, lagging) and
`init` names what to create when a store's directory does not exist (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import run


def _quorum(tmp_path: Path) -> tuple[str, list[Path]]:
    dirs = [tmp_path / n for n in "abc"]
    for d in dirs:
        d.mkdir()
    url = ",".join(f"file://{d}" for d in dirs)
    assert run("init", url).returncode == 0
    return url, dirs


def _health(url: str) -> list[dict[str, object]]:
    out = run("status", url, "--json")
    assert out.returncode == 0, out.stderr
    got: list[dict[str, object]] = json.loads(out.stdout)["health"]
    return got


def test_a_store_that_missed_the_last_slot_is_lagging(tmp_path: Path) -> None:
    url, (_a, _b, c) = _quorum(tmp_path)
    assert run("append", url, "one").returncode == 0
    assert [h["lagging"] for h in _health(url)] == [False, False, False]
    c.rename(tmp_path / "c-away")  # c misses the next slot
    assert run("append", url, "two").returncode == 0
    (tmp_path / "c-away").rename(c)
    health = _health(url)
    assert [(h["reachable"], h["manifest"], h["lagging"]) for h in health] == [
        (True, "ok", False),
        (True, "ok", False),
        (True, "ok", True),
    ]
    text = run("status", url).stdout
    assert f"store file://{c}\tmanifest ok, lagging" in text


def test_unreachable_damaged_and_foreign_manifests_are_told_apart(tmp_path: Path) -> None:
    url, (_a, b, c) = _quorum(tmp_path)
    assert run("append", url, "one").returncode == 0
    b.rename(tmp_path / "b-away")
    kept = (c / "manifest").read_bytes()
    (c / "manifest").write_bytes(b"{}")  # not a manifest any more
    out = run("status", url, "--json")  # no majority left: the health says why
    assert out.returncode == 1 and "passivepaxos: error:" in out.stderr
    got = json.loads(out.stdout)
    assert got["error"] and "head" not in got
    health = got["health"]
    assert health[0]["manifest"] == "ok"
    assert (health[1]["reachable"], health[1]["manifest"]) == (False, None)
    assert "directory does not exist" in str(health[1]["error"])
    assert (health[2]["reachable"], health[2]["manifest"]) == (True, "damaged")
    (tmp_path / "b-away").rename(b)
    (c / "manifest").write_bytes(kept)
    other = tmp_path / "other"
    other.mkdir()
    assert run("init", f"file://{other}").returncode == 0
    (b / "manifest").write_bytes((other / "manifest").read_bytes())  # another log's
    assert _health(url)[1]["manifest"] == "foreign"


def test_one_store_has_no_lag_to_show(tmp_path: Path) -> None:
    d = tmp_path / "log"
    d.mkdir()
    url = f"file://{d}"
    assert run("init", url).returncode == 0
    assert _health(url) == [
        {"url": url, "reachable": True, "manifest": "ok", "lagging": None, "error": None}
    ]


def test_init_names_the_directories_to_create(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    out = run("init", f"file://{a},file://{b},file://{tmp_path}")
    assert out.returncode == 1
    assert f"create what is missing first: mkdir -p {a}; mkdir -p {b}" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
