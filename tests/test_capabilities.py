from __future__ import annotations

import pytest

from passivepaxos.capabilities import BACKENDS, ListMode, capabilities_for, choose_mode
from passivepaxos.errors import ConfigError, UnsupportedError
from passivepaxos.urls import SCHEMES, open_backend, parse_url


def test_auto_prefers_create_then_cas_then_blocks() -> None:
    assert choose_mode(capabilities_for("s3")) is ListMode.CREATE
    assert choose_mode(capabilities_for("s3-compatible")) is ListMode.BLOCKS
    assert choose_mode(capabilities_for("gcs"), "cas") is ListMode.CAS


def test_forced_mode_the_store_cannot_run_names_the_capability() -> None:
    with pytest.raises(UnsupportedError) as info:
        choose_mode(capabilities_for("s3-compatible"), "create")
    assert info.value.capability == "create-if-absent"
    assert "create-if-absent" in str(info.value) and "s3-compatible" in str(info.value)
    with pytest.raises(UnsupportedError, match="compare-and-swap"):
        choose_mode(capabilities_for("s3-compatible"), ListMode.CAS)
    with pytest.raises(ConfigError, match="unknown mode 'fast'"):
        choose_mode(capabilities_for("s3"), "fast")


def test_every_implemented_scheme_has_a_row_and_an_adapter_declaring_it() -> None:
    names = {c.name for c in BACKENDS}
    assert {"memory", "local", "s3", "gcs", "dropbox", "azure"} <= names
    for c in BACKENDS:
        for scheme in c.schemes:
            assert (scheme in SCHEMES) == c.implemented, c.name


def test_adapters_read_their_capabilities_from_the_table(tmp_path: object) -> None:
    assert open_backend("memory://caps").capabilities is capabilities_for("memory")
    assert open_backend(f"file://{tmp_path}").capabilities is capabilities_for("local")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("bucket/prefix", "not a storage URL"),
        ("ftp://host/x", "unknown scheme 'ftp'"),
        ("file://relative/dir", "three slashes"),
        ("s3:///prefix", "missing bucket name"),
        ("az://Container/p", "not a valid Azure container name"),
        ("az://a--b/p", "not a valid Azure container name"),
        ("az://ab/p", "not a valid Azure container name"),
        ("az://-abc/p", "not a valid Azure container name"),
    ],
)
def test_bad_urls_are_named(url: str, message: str) -> None:
    with pytest.raises((ConfigError, UnsupportedError)) as info:
        parse_url(url)
    assert message in str(info.value) and url in str(info.value)


def test_quorum_spec_splits() -> None:
    from passivepaxos.urls import split_urls

    assert split_urls("file:///a, s3://bkt/c") == ["file:///a", "s3://bkt/c"]
    with pytest.raises(ConfigError):
        split_urls("file:///a,,s3://bkt")
    with pytest.raises(ConfigError, match="same store"):
        split_urls("file:///a,s3://bkt/c,file:///a/")
