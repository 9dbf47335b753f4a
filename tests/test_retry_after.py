"""Retry-After, read once for every backend (``passivepaxos.retry.retry_after_seconds``).

An S3-compatible store that sends the HTTP-date form made ``float()`` raise inside the S3
adapter's error translation (a ``ValueError`` escaping as an unexpected error, not a
``ThrottledError``); Dropbox's form ignored a fractional value. Both now go through the
one helper, which reads delta-seconds and HTTP dates against the runtime's wall clock.
"""

from __future__ import annotations

import email.utils

import pytest
from botocore.exceptions import ClientError

from passivepaxos.errors import ThrottledError
from passivepaxos.retry import retry_after_seconds
from passivepaxos.urls import open_backend

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        (b"7", 7.0),
        ("-3", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_values(value: object, seconds: float | None) -> None:
    assert retry_after_seconds(value, wall=lambda: NOW) == seconds


def test_s3_throttle_with_an_http_date_is_a_throttle(moto_server: object) -> None:
    backend = open_backend("s3://any-bucket/p")
    date = email.utils.formatdate(usegmt=True)
    exc = ClientError(
        {
            "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
            "ResponseMetadata": {"HTTPStatusCode": 503, "HTTPHeaders": {"retry-after": date}},
        },
        "PutObject",
    )
    got = backend._translate(exc, "k")  # type: ignore[attr-defined]
    assert isinstance(got, ThrottledError)
    assert got.retry_after is not None and 0.0 <= got.retry_after <= 1.0
