"""azurite (Microsoft's Azure Storage emulator, npm) as a subprocess: the Azure Blob that the
test suite and ``passivepaxos bench --stores azure`` use (``tests/servers/azurite_server.py``
re-exports it). Needs node and npm; the SDK calls need ``azure-storage-blob``.

``azurite_blob_path()`` finds ``azurite-blob``: ``$PASSIVEPAXOS_AZURITE`` (a path to the
executable), then ``PATH``, then the cache directory (``$PASSIVEPAXOS_CACHE`` or
``~/.cache/passivepaxos``)/``azurite``; when none has it, it runs
``npm install --prefix <cache>/azurite azurite@3.37.0`` once, under a file lock, so several
pytest-xdist workers (each with its own session) install it once between them.

The server listens on a free loopback port, keeps its data in memory, skips the API version
check (the SDK may be newer than the emulator) and writes its output to a temp file kept
for post-mortems until :meth:`Azurite.stop`.

Usage::

    server = Azurite().start()
    server.create_container("c")
    os.environ.update(server.env())   # AZURE_STORAGE_CONNECTION_STRING=...
    ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from passivepaxos.bench.emulator import EmulatorProcess, free_port

__all__ = [
    "ACCOUNT",
    "AZURITE_VERSION",
    "KEY",
    "Azurite",
    "azurite_blob_path",
    "connection_string",
    "free_port",
]

AZURITE_VERSION = "3.37.0"
# azurite's well-known development account (public, documented by Microsoft)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string(endpoint: str, key: str = KEY) -> str:
    """A connection string for ``endpoint`` (``http://host:port/devstoreaccount1``)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
        f"BlobEndpoint={endpoint};"
    )


def cache_dir() -> Path:
    base = os.environ.get("PASSIVEPAXOS_CACHE") or str(Path.home() / ".cache" / "passivepaxos")
    return Path(base) / "azurite"


def azurite_blob_path(*, install: bool = True) -> Path:
    """The ``azurite-blob`` executable, installed into the cache directory if missing."""
    explicit = os.environ.get("PASSIVEPAXOS_AZURITE")
    if explicit:
        return Path(explicit)
    found = shutil.which("azurite-blob")
    if found:
        return Path(found)
    root = cache_dir()
    exe = root / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists() or not install:
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("azurite-blob is not installed and npm is not on PATH to install it")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing: wait for it
        try:
            if not exe.exists():
                out = subprocess.run(
                    [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root),
                     f"azurite@{AZURITE_VERSION}"],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )  # fmt: skip
                if out.returncode != 0 or not exe.exists():
                    raise RuntimeError(
                        f"npm install azurite@{AZURITE_VERSION} failed ({out.returncode}): "
                        f"{out.stderr[-2000:]}"
                    )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return exe


class Azurite(EmulatorProcess):
    """One in-memory azurite blob service on 127.0.0.1, plain HTTP."""

    name = "azurite"

    @property
    def url(self) -> str:
        """The blob endpoint (account in the path, as azurite wants)."""
        return f"http://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return connection_string(self.url)

    def env(self) -> dict[str, str]:
        """What the azure-storage-blob client (and so ``az://`` URLs) needs."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def command(self) -> list[str]:
        return [
            str(azurite_blob_path()),
            "--blobHost", self.host,
            "--blobPort", str(self.port),
            "--inMemoryPersistence",  # (refuses --location: cwd is the temp dir)
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--disableTelemetry",
            "--loose",
            "--silent",
            # keep idle connections open longer than the SDK's pool keeps them (default 5 s:
            # a reused connection closed under a write would look like a lost answer)
            "--blobKeepAliveTimeout", "600",
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}?comp=list", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answered (403 without credentials): up

    # -- helpers (through the SDK, retries on: this is test setup) ------------------------

    def service(self, endpoint: str | None = None) -> Any:
        """A client (SDK retries on: this is setup) on this server or on ``endpoint``
        (e.g. a proxy in front of it, ``http://host:port/devstoreaccount1``)."""
        from azure.storage.blob import BlobServiceClient

        conn = connection_string(endpoint) if endpoint else self.connection_string
        return BlobServiceClient.from_connection_string(conn)

    def create_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        with self.service() as svc, contextlib.suppress(ResourceExistsError):
            svc.create_container(name)

    def delete_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with self.service() as svc, contextlib.suppress(ResourceNotFoundError):
            svc.delete_container(name)

    def containers(self) -> list[str]:
        with self.service() as svc:
            return [c.name for c in svc.list_containers()]


def _main() -> None:  # pragma: no cover - manual use: python -m passivepaxos.bench.azurite
    import json

    server = Azurite().start()
    print(json.dumps(server.env()), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    _main()
