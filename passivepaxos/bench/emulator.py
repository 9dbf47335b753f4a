"""The lifecycle the local service emulators share (azurite; fake-gcs-server in tests/):
a server subprocess on 127.0.0.1 with its output in a temporary log, polled until it
answers, stopped at exit even if a session dies. Each emulator says how to start it
(``command``) and how to tell it is up (``ready``)."""

from __future__ import annotations

import atexit
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

__all__ = ["EmulatorProcess", "free_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmulatorProcess:
    """One emulator subprocess: ``start()`` runs :meth:`command` (in its temp directory,
    output to ``log_path``) and polls :meth:`ready` every ``poll`` seconds until
    ``timeout``; ``stop()`` terminates it (kills it after 5 s)."""

    name = "emulator"
    poll = 0.1

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """One look: is it answering? (an ``OSError`` counts as no)."""
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> Self:
        if self._proc is not None:
            return self
        cmd = self.command()
        self._tmpdir = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        self.log_path = Path(self._tmpdir.name) / f"{self.name}.log"
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._tmpdir.name,
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
                    f"{self.name} exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                if self.ready():
                    return
            except OSError as exc:
                last = exc
            time.sleep(self.poll)
        raise RuntimeError(
            f"{self.name} not ready on port {self.port} after {timeout}s ({last}): "
            f"{self.log_tail()}"
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-n:].decode(errors="replace")
