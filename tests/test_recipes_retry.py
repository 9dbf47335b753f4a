"""The recipes' one retry loop (recipes/_entry.append_retrying): an unknown outcome is
never turned into a plain failure by a later attempt (found while fixing issue 10)."""

from __future__ import annotations

from typing import Any

import pytest

from passivepaxos.errors import AmbiguousWriteError, QuorumError, TransientError
from passivepaxos.log import Position
from passivepaxos.recipes._entry import append_retrying


class ScriptedLog:
    """``append_positions`` raises the scripted errors in turn, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def append_positions(self, values: list[bytes]) -> list[Position]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [Position(7, 0) for _ in values]


def call(log: ScriptedLog, retries: int) -> Position:
    fake: Any = log
    return append_retrying(fake, b"x", retries=retries, delay=0.0, sleep=lambda _: None)


def test_ambiguous_then_transient_is_reported_as_outcome_unknown() -> None:
    log = ScriptedLog(AmbiguousWriteError("slot 3: unclear", url="memory://a"), TransientError("503"))
    with pytest.raises(AmbiguousWriteError, match=r"outcome unknown.*earlier attempt") as info:
        call(log, retries=1)
    assert isinstance(info.value.__cause__, TransientError)
    assert log.calls == 2


def test_plain_failures_stay_plain() -> None:
    with pytest.raises(QuorumError):
        call(ScriptedLog(QuorumError("down"), QuorumError("down")), retries=1)


def test_a_retry_that_succeeds_returns_its_position() -> None:
    log = ScriptedLog(AmbiguousWriteError("unclear"), TransientError("503"))
    assert call(log, retries=2) == Position(7, 0)
    assert log.calls == 3
