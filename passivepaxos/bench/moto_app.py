"""moto_server with its writes serialized: the fix for one emulator divergence.

moto checks ``If-None-Match: *`` / ``If-Match`` and then stores the object without holding a
lock, so two PUTs racing on one key can both pass the check: under load our 8-thread create
race saw two winners in one round out of ~100 (real S3 evaluates the condition atomically).
This runs moto's own WSGI app, exactly as ``moto_server`` does, with one lock around every
mutating request, so that conditional writes are atomic as on S3. Reads stay concurrent.

Usage: python -m passivepaxos.bench.moto_app HOST PORT
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

_WRITES = {"PUT", "POST", "DELETE", "PATCH"}


class SerializedWrites:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in _WRITES:
            return self.app(environ, start_response)
        with self.lock:
            # drain the body inside the lock: moto applies the write while producing it
            return list(self.app(environ, start_response))


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, SerializedWrites(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
