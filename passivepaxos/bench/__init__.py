"""``passivepaxos bench``: workloads, peers (deltalake, slatedb, python-dynamodb-lock), report; see docs/performance.md."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

__all__ = ["environ"]


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (SDKs read them when a client is built),
    then restore them. Not thread-safe, like any change of the environment."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
