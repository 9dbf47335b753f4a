"""The s3 backend's own checks (its conformance runs in tests/test_conformance.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from passivepaxos.errors import ConfigError
from passivepaxos.urls import backend_module


def _client_without(*missing: str) -> Any:
    """A stand-in client whose S3 model lacks PutObject members ``missing``."""
    members = {m: object() for m in ("Bucket", "Key", "Body", "IfNoneMatch", "IfMatch")}
    for m in missing:
        del members[m]
    model = SimpleNamespace(input_shape=SimpleNamespace(members=members))
    service = SimpleNamespace(operation_model=lambda name: model)  # every operation alike
    return SimpleNamespace(meta=SimpleNamespace(service_model=service))


def test_a_botocore_without_conditional_writes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """With parameter validation off, a botocore whose model lacks ``IfNoneMatch`` would
    drop it without a word and every create would overwrite: refused when the store is
    opened, naming the fix; a store opened without conditional writes does not need it."""
    s3 = backend_module("s3")
    assert s3._knows_conditional_writes(s3._client())  # the installed one knows them
    monkeypatch.setattr(s3, "_client", lambda: _client_without("IfNoneMatch"))
    with pytest.raises(ConfigError, match=r"s3://bkt/p: botocore .* IfNoneMatch.*1\.35\.69"):
        s3.S3Backend("bkt", "p")
    monkeypatch.setattr(s3, "_client", lambda: _client_without("IfMatch"))
    with pytest.raises(ConfigError):
        s3.S3Backend("bkt", "p")
    assert s3.S3Backend("bkt", "p", conditional=False).url == "s3://bkt/p"


def test_a_conditional_delete_botocore_cannot_send_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A botocore whose DeleteObject lacks ``IfMatch`` would delete unconditionally: the
    delete with a version is refused, nothing sent (an unconditional one still works)."""
    from passivepaxos.errors import UnsupportedError
    from passivepaxos.types import Version

    s3 = backend_module("s3")
    b = s3.S3Backend("bkt", "p")
    sent: list[dict[str, Any]] = []
    client = _client_without("IfMatch")
    client.delete_object = None  # never called: _call is replaced below
    monkeypatch.setattr(b, "_s3", client)
    monkeypatch.setattr(b, "_call", lambda fn, key, mode=None, **kw: sent.append(kw))
    with pytest.raises(UnsupportedError, match="DeleteObject's IfMatch"):
        b.delete("k", if_version=Version(s3._NAME, '"etag"'))
    assert sent == []
    b.delete("k")
    assert sent == [{"Bucket": "bkt", "Key": "p/k"}]
