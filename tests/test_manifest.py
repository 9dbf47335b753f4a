"""A client refuses a manifest it does not understand, naming the store and object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from passivepaxos.errors import ConfigError, InvalidObjectError
from passivepaxos.manifest import MANIFEST_KEY, init_log, open_log
from passivepaxos.store import open_store


def _rewrite(url: str, doc: dict[str, object]) -> None:
    open_store(url).put(MANIFEST_KEY, json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"kind": "passivepaxos-log", "format": 99, "mode": "create"}, "manifest format 99 is newer"),
        ({"kind": "passivepaxos-log", "format": 1, "mode": "gossip"}, "unknown list mode 'gossip'"),
        ({"kind": "something-else", "format": 1}, "not a passivepaxos manifest"),
    ],
)
def test_unknown_manifests_are_refused(tmp_path: Path, doc: dict[str, object], message: str) -> None:
    url = f"file://{tmp_path}"
    init_log(url)
    _rewrite(url, doc)
    with pytest.raises(InvalidObjectError, match=message) as info:
        open_log(url)
    assert f"{url}/manifest" in str(info.value)


def test_no_manifest_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="passivepaxos init"):
        open_log(f"file://{tmp_path}")


def test_quorum_disagreeing_on_mode_is_refused(tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in "ab"]
    for d in dirs:
        d.mkdir()
    init_log(f"file://{dirs[0]}", "create")
    init_log(f"file://{dirs[1]}", "blocks")
    # two separate inits: two logs (identities), which also disagree on the mode
    with pytest.raises(InvalidObjectError, match="manifests of different logs"):
        open_log(",".join(f"file://{d}" for d in dirs))
