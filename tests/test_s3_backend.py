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
    service = SimpleNamespace(operation_model=lambda name: model)
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
