"""The one backoff formula: exponential in the attempt, capped, with jitter.

Every pause between attempts in the library (a store's transient-error retries, a
contended proposer's rounds, a log writer that lost a slot, a read-back after an unclear
create, a recipe retrying an append) is a :class:`Backoff`; only the parameters differ,
and each use site says why its parameters are what they are. Pure: the caller supplies
the RNG (its runtime's, so the simulator replays the same pauses).
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass

from passivepaxos.runtime import REAL

__all__ = ["Backoff", "retry_after_seconds"]


def retry_after_seconds(value: object, wall: Callable[[], float] = REAL.wall) -> float | None:
    """Seconds a ``Retry-After`` header value asks for: delta-seconds or an HTTP date
    (relative to ``wall``, the server's date being real wall-clock time); ``None`` when
    there was none or it cannot be read. Every backend reads the header through this."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - wall()
    if seconds != seconds:  # nan
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(attempt)`` is drawn from ``[floor x c, c]`` with
    ``c = min(cap, base x 2**attempt)``.

    ``floor=0`` is "full jitter" (spreads competing retriers best: AWS's analysis of
    backoff under contention); ``floor=0.5`` keeps at least half the ceiling (a loser that
    must let the winner get ahead); ``floor=1`` is a fixed exponential schedule."""

    base: float
    cap: float
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= 0 and 0.0 <= self.floor <= 1.0):
            raise ValueError(f"bad backoff parameters: {self}")

    def ceiling(self, attempt: int) -> float:
        """The largest pause after ``attempt`` (0-based) failures."""
        return float(min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 30)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        c = self.ceiling(attempt)
        return rng.uniform(self.floor * c, c)
