from __future__ import annotations

import pytest

from passivepaxos import frame
from passivepaxos.errors import InvalidObjectError
from passivepaxos.store import Store
from passivepaxos.urls import open_backend


def test_roundtrip_and_write_id() -> None:
    wid = frame.new_write_id()
    fr = frame.unpack(frame.pack(b"hello", wid))
    assert fr == frame.Frame(wid, b"hello")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"x", "padded"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b"{json: 1}" + b[9:], "bad magic"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum mismatch"),
        (lambda b: b[:4] + bytes([99]) + b[5:], "format 99 is newer"),
    ],
)
def test_damage_is_named_never_skipped(mangle: object, message: str) -> None:
    good = frame.pack(b"payload!", frame.new_write_id())
    bad = mangle(good)  # type: ignore[operator]
    with pytest.raises(InvalidObjectError, match=message) as info:
        frame.unpack(bad, url="memory://x", key="log/7")
    assert "memory://x/log/7" in str(info.value)


def test_store_refuses_foreign_objects() -> None:
    backend = open_backend("memory://foreign")
    from passivepaxos.types import PutMode

    backend.put("k", b"not ours", PutMode.OVERWRITE)
    with pytest.raises(InvalidObjectError, match="memory://foreign/k"):
        Store(backend).get("k")
