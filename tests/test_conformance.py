"""The conformance suite (passivepaxos.testing) against every built-in backend on real
servers: a thin shim, one test per (check, backend). Server-specific fault injection is
behind ``Harness.wired()`` (conftest.py); known emulator divergences are expected failures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from passivepaxos import testing
from tests.conftest import Harness

# what the checks do more or less of here (PPX_RACE_ROUNDS: the race checks' rounds)
_ROUNDS = int(os.environ.get("PPX_RACE_ROUNDS", str(testing.ROUNDS)))
KWARGS: dict[Callable[..., None], dict[str, Any]] = {
    testing.check_create_race_has_exactly_one_winner: {"rounds": _ROUNDS},
    testing.check_cas_race_has_exactly_one_winner: {"rounds": _ROUNDS},
}

# (backend, check) -> why the check fails there (strict: it must fail)
XFAIL: dict[tuple[str, Callable[..., None]], str] = {
    # fake-gcs-server 1.54 deletes regardless of ifGenerationMatch (upstream #1282); the
    # adapter's 412 mapping is tested through the fault proxy in test_gcs_backend.py
    ("gcs", testing.check_conditional_delete): (
        "emulator divergence: DELETE ignores ifGenerationMatch"
    ),
    # files_upload creates missing parent folders and has no flag against it; the adapter
    # only checks the root once per backend before writing (docs/storage.md)
    ("dropbox", testing.check_missing_root_is_an_error_and_is_not_recreated): (
        "Dropbox uploads re-create a deleted root folder"
    ),
}


@pytest.mark.parametrize("check", testing.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance(
    check: Callable[..., None], harness: Harness, request: pytest.FixtureRequest
) -> None:
    reason = XFAIL.get((harness.name, check))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    check(harness, **KWARGS.get(check, {}))


def test_every_check_is_in_the_list() -> None:
    public = {n for n in testing.__all__ if n.startswith("check_")}
    assert public == {c.__name__ for c in testing.CHECKS}


def test_run_all_on_a_plain_store_factory() -> None:
    """What a third-party backend calls: a factory of fresh stores is enough (the checks
    needing hooks it cannot give are skipped; faults go through FaultyBackend)."""
    from passivepaxos.store import Store
    from passivepaxos.urls import open_backend
    from tests.conftest import FAST, fresh

    def memory_store() -> Store:
        return Store(open_backend(f"memory://{fresh('factory')}"), retry=FAST)

    got = testing.run_all(memory_store)
    assert set(got) == {c.__name__ for c in testing.CHECKS}
    assert got["check_missing_container_is_a_clear_error"].startswith("skipped")
    assert got["check_throttling_is_retried"] == "passed"
    assert sum(v == "passed" for v in got.values()) == len(got) - 3


def test_run_all_names_the_failing_checks() -> None:
    """A backend that breaks a rule fails with the check's name: here every write gets the
    same version."""
    from passivepaxos.store import Store
    from passivepaxos.types import PutMode, Version
    from passivepaxos.urls import open_backend
    from tests.conftest import FAST, fresh

    class SameVersion:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def put(self, key: str, data: bytes, mode: PutMode) -> Version:
            self.inner.put(key, data, mode)
            return Version("memory", "always-the-same")

    def broken() -> Store:
        return Store(SameVersion(open_backend(f"memory://{fresh('broken')}")), retry=FAST)  # type: ignore[arg-type]

    with pytest.raises(AssertionError, match="check_every_write_gets_a_new_version"):
        testing.run_all(broken)


def test_the_module_does_not_import_pytest() -> None:
    import subprocess
    import sys

    code = "import sys, passivepaxos.testing; assert 'pytest' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
