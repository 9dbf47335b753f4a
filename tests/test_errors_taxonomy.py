"""The error taxonomy (passivepaxos.errors): every error's ``retryable`` / ``outcome_unknown``
flags are the ones its docstring table says, callers branch on them, and the errors the
recipes define live in errors.py (re-exported where they used to be)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import passivepaxos.errors as errors
from passivepaxos.errors import (
    AmbiguousWriteError,
    AppendOutcomeUnknownError,
    DeadlineAmbiguousError,
    DeadlineExceededError,
    PassivePaxosError,
    QuorumError,
    ResultCompactedError,
    RetriedAmbiguousError,
    StragglerError,
    TransientError,
    is_outcome_unknown,
    is_retryable,
)

ROW = re.compile(r"^\s+(\w+Error)\s+(yes|no)\s+(yes|no)\b", re.M)


def _error_classes() -> dict[str, type[PassivePaxosError]]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, PassivePaxosError)
        and obj.__module__ == errors.__name__
    }


def _table() -> dict[str, tuple[bool, bool]]:
    doc = errors.__doc__ or ""
    rows = {m[1]: (m[2] == "yes", m[3] == "yes") for m in ROW.finditer(doc)}
    assert rows, "the taxonomy table is missing from errors.py's docstring"
    return rows


def test_table_lists_every_error_with_its_flags() -> None:
    table = _table()
    classes = _error_classes()
    assert sorted(table) == sorted(classes), "errors.py's table and its classes differ"
    for name, cls in classes.items():
        assert (cls.retryable, cls.outcome_unknown) == table[name], name


def test_public_errors_are_exported() -> None:
    public = {n for n in _error_classes() if not n.startswith("_")}
    assert public <= set(errors.__all__)


@pytest.mark.parametrize(
    ("exc", "retryable", "unknown"),
    [
        (TransientError("x"), True, False),
        (StragglerError("x"), True, False),
        (QuorumError("x"), True, False),
        (DeadlineExceededError("x"), False, False),
        (AmbiguousWriteError("x"), True, True),
        (DeadlineAmbiguousError("x"), True, True),
        (AppendOutcomeUnknownError("x", slot=1, index=0, wid="w"), True, True),
        (RetriedAmbiguousError("x", max_slot=3.0), True, True),
        (ValueError("not ours"), False, False),
        (KeyboardInterrupt(), False, False),
    ],
)
def test_helpers(exc: BaseException, retryable: bool, unknown: bool) -> None:
    assert is_retryable(exc) is retryable
    assert is_outcome_unknown(exc) is unknown


def test_outcome_unknown_is_ambiguous_write() -> None:
    """"Outcome unknown" is exactly the AmbiguousWriteError branch (the CLI's exit 3)."""
    for cls in _error_classes().values():
        assert cls.outcome_unknown == issubclass(cls, AmbiguousWriteError), cls.__name__


def test_constructors_take_duck_typed_values() -> None:
    class Pos:
        slot, index = 7, 2

    class Rec:
        holder, token = "h", 4

    err = ResultCompactedError(Pos(), "memory://x")
    assert "slot 7 index 2" in str(err) and err.position.slot == 7
    lost = errors.LockLostError("l", 3, Rec())
    assert lost.holder == "h" and "h (token 4)" in str(lost)
    held = errors.LockHeldError("l", "h", 4, 1.25)
    assert "1.2s" in str(held) or "1.3s" in str(held)


def test_errors_module_imports_nothing_from_the_library() -> None:
    """At run time (``if TYPE_CHECKING:`` imports are for annotations only)."""
    tree = ast.parse(Path(errors.__file__).read_text())
    for node in tree.body:
        if isinstance(node, ast.If):
            continue  # the TYPE_CHECKING block
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith(("passivepaxos", "backends"))
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith(("passivepaxos", "backends")) for a in node.names)


def test_old_homes_re_export_the_same_classes() -> None:
    from passivepaxos import recipes
    from passivepaxos.recipes import _entry, lock, rsm

    assert lock.LockHeldError is errors.LockHeldError
    assert lock.LockLostError is errors.LockLostError
    assert lock.StaleTokenError is errors.StaleTokenError
    assert recipes.LockHeldError is errors.LockHeldError
    assert rsm.ResultCompactedError is errors.ResultCompactedError
    assert _entry.RetriedAmbiguousError is errors.RetriedAmbiguousError
    assert not hasattr(_entry, "RETRYABLE")  # the flag replaced the list
