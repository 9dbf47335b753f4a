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
    log = ScriptedLog(
        AmbiguousWriteError("slot 3: unclear", url="memory://a"), TransientError("503")
    )
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


def test_review2_R2_5_ambiguous_then_lease_lost_is_outcome_unknown() -> None:
    """Review 2 (R2-5): the first attempt landed with its answer lost, another writer then
    claimed the lease and the retry was refused with ``LeaseLostError`` ("not written"):
    that must not be the answer, since readers already see the first attempt."""
    from passivepaxos.errors import AppendOutcomeUnknownError
    from passivepaxos.lease import LeaseLostError, LeaseState

    first = AppendOutcomeUnknownError(
        "append unclear (resume with token 4:0:w1)", slot=4, index=0, wid="w1"
    )
    lost = LeaseLostError("memory://a", 5, "C", LeaseState("C", 2), 1)
    log = ScriptedLog(first, lost)
    with pytest.raises(AmbiguousWriteError, match=r"resume with token 4:0:w1") as info:
        call(log, retries=5)
    assert info.value.__cause__ is lost
    assert getattr(info.value, "max_slot", None) == 4
    assert log.calls == 2  # a plain refusal is not retried


def test_review3_2_no_retry_after_the_deadline() -> None:
    """Review 3 #2: once the operation's deadline has passed, no further attempt is made;
    the first unclear error's message (its resume token) is in the final error."""
    import time

    from passivepaxos.deadline import deadline
    from passivepaxos.errors import AppendOutcomeUnknownError

    first = AppendOutcomeUnknownError("unclear (resume with token 9:0:w)", slot=9, index=0, wid="w")
    log = ScriptedLog(first, TransientError("503"), TransientError("503"), TransientError("503"))
    fake: Any = log
    with deadline(0.05):
        time.sleep(0.06)
        with pytest.raises(AmbiguousWriteError) as info:
            append_retrying(fake, b"x", retries=5, delay=0.0, sleep=lambda _: None)
    assert info.value is first
    assert log.calls == 1
