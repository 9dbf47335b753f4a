"""Total order broadcast on the log.

``Broadcast(log).broadcast(msg)`` appends one entry
``{"ppx": "tob", "t": topic, "id": <message id>, "from": sender, "m": <base64>}``;
``deliver()`` follows the log and yields each message of the topic.

Guarantees (every process delivering from the start of the log):

- **Total order / agreement**: every process delivers the same messages in the same order,
  the log's order (slot, index): the log decides one slot at a time with no gaps, and all
  readers read the same hash-chained records.
- **Integrity (each once)**: a message is delivered once, at its *first* occurrence in log
  order. Duplicates can exist: when an append's outcome is unknown (``AmbiguousWriteError``,
  a timeout, a crash before the answer), the application retries it, and the first attempt
  may have landed too. ``broadcast`` retries such failures itself with the *same* message
  id, and ``deliver`` drops every later entry with a (sender, id) already delivered: a
  message is named by its sender and its id, so two senders that happen to pick the same
  ``msg_id`` are two messages. (The log also
  removes its own internal duplicates by write id; this covers retries above it.)
- **Validity**: once ``broadcast`` returns, the message is in the log and every
  ``deliver`` that follows far enough yields it.

Delivering from a later position (``from_position``) skips the messages before it, and
only deduplicates among what it has seen: a duplicate whose first copy lies before
``from_position`` is delivered. Start every replica from the same position (0, or the
position after a snapshot) to keep them identical.

Failures: a store outage makes ``broadcast`` fail (after its retries) and ``deliver`` pause
(it retries with backoff while following); nothing delivered is ever taken back. While
another process holds the log's writer lease, ``broadcast`` raises ``LeaseHeldError``.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from passivepaxos.log import Log, Position
from passivepaxos.recipes._entry import append_retrying, decode_entry, encode_entry, runtime_of
from passivepaxos.recipes.rsm import new_id
from passivepaxos.types import require_bytes, require_name

__all__ = ["Broadcast", "Delivery", "decode_message", "encode_message"]



@dataclass(frozen=True)
class Delivery:
    position: Position
    msg_id: str
    sender: str
    payload: bytes


def encode_message(topic: str, msg_id: str, sender: str, payload: bytes) -> bytes:
    fields = {"id": msg_id, "from": sender, "m": base64.b64encode(payload).decode("ascii")}
    return encode_entry("tob", "t", topic, fields)


def decode_message(value: bytes, topic: str) -> tuple[str, str, bytes] | None:
    """(id, sender, payload) of a message of ``topic``; ``None`` for any other entry."""
    doc = decode_entry(value, "tob", "t", topic)
    if doc is None:
        return None
    try:
        msg_id, sender, m = doc["id"], doc["from"], doc["m"]
        if not (isinstance(msg_id, str) and isinstance(sender, str) and isinstance(m, str)):
            return None
        return msg_id, sender, base64.b64decode(m, validate=True)
    except (ValueError, KeyError, binascii.Error):
        return None


class Broadcast:
    """Total order broadcast over ``log`` for one ``topic`` (module docstring)."""

    def __init__(
        self,
        log: Log,
        *,
        topic: str = "tob",
        sender: str | None = None,
        retries: int = 5,
        retry_delay: float = 0.05,
    ) -> None:
        self.log = log
        self.topic = topic
        self.sender = sender or log.writer_id
        self.retries = retries
        self.retry_delay = retry_delay

    def broadcast(self, msg: bytes, *, msg_id: str | None = None) -> Position:
        """Append ``msg``; return the position of the acknowledged entry. An ambiguous or
        transient failure is retried (``retries`` times) with the same message id, so the
        message is delivered once even if several attempts landed; then the delivered copy
        is the first one and may sit before the returned position."""
        payload = require_bytes(msg, "msg")
        if msg_id is not None:
            require_name(msg_id, "msg_id")
        mid = msg_id or new_id(runtime_of(self.log))
        value = encode_message(self.topic, mid, self.sender, payload)
        return append_retrying(self.log, value, retries=self.retries, delay=self.retry_delay)

    def deliver(
        self,
        from_position: Position | None = None,
        *,
        follow: bool = True,
        stop: threading.Event | None = None,
        poll_min: float = 0.05,
        poll_max: float = 1.0,
    ) -> Iterator[Delivery]:
        """Yield the topic's messages in log order, each (sender, message id) once, from
        ``from_position`` (default: the start). ``follow``: keep polling for new ones until
        ``stop`` is set; else stop at the current end."""
        start = from_position or Position(0, 0)
        seen: set[tuple[str, str]] = set()  # (sender, id): ids are unique per sender
        if follow:
            entries = self.log.follow(start.slot, poll_min=poll_min, poll_max=poll_max, stop=stop)
        else:
            entries = self.log.read(start.slot)
        for e in entries:
            if (e.slot, e.index) < (start.slot, start.index):
                continue
            got = decode_message(e.value, self.topic)
            if got is None:
                continue
            mid, sender, payload = got
            if (sender, mid) in seen:
                continue
            seen.add((sender, mid))
            yield Delivery(Position(e.slot, e.index), mid, sender, payload)
