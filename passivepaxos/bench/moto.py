"""moto_server as a subprocess: the S3 that the test suite and ``passivepaxos bench`` use.

Needs ``moto[server]`` (the ``dev`` and ``bench`` extras)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["MotoServer", "free_port"]

CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``auth_actions``: when set, moto enforces IAM after that many unauthenticated calls
    (``INITIAL_NO_AUTH_ACTION_COUNT``), which lets a test create a restricted user."""

    def __init__(self, auth_actions: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth_actions = auth_actions
        self._proc: subprocess.Popen[bytes] | None = None
        fd, self.log_path = tempfile.mkstemp(prefix="moto-", suffix=".log")
        self._log = os.fdopen(fd, "wb")

    def start(self) -> MotoServer:
        # moto's app with writes serialized (see moto_app.py for the divergence)
        cmd = [sys.executable, "-m", "passivepaxos.bench.moto_app"]
        env = {**os.environ, **CREDS}
        # the package may come from a checkout rather than site-packages: the child finds it
        root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        if self.auth_actions is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.auth_actions)
        self._proc = subprocess.Popen(
            [*cmd, "127.0.0.1", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {Path(self.log_path).read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start in 30 s")

    def env(self) -> dict[str, str]:
        return {**CREDS, "AWS_ENDPOINT_URL": self.url}

    def client(self, service: str = "s3", **kwargs: Any) -> Any:
        """A boto3 client of this server (``endpoint_url=``: reach it another way, e.g.
        through a proxy in front of it)."""
        import boto3

        make: Any = boto3.client  # the stubs' per-service overloads do not take a str
        return make(
            service,
            endpoint_url=kwargs.pop("endpoint_url", self.url),
            region_name="us-east-1",
            aws_access_key_id=kwargs.pop("key", "testing"),
            aws_secret_access_key=kwargs.pop("secret", "testing"),
            **kwargs,
        )

    def restricted_user(self, bucket: str, actions: list[str]) -> tuple[str, str]:
        """Create ``bucket`` and an IAM user allowed only ``actions`` (uses 4 free calls)."""
        self.client().create_bucket(Bucket=bucket)
        iam = self.client("iam")
        iam.create_user(UserName="restricted")
        key = iam.create_access_key(UserName="restricted")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="restricted", PolicyName="restricted", PolicyDocument=json.dumps(policy)
        )
        return key["AccessKeyId"], key["SecretAccessKey"]

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        self._log.close()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # manual use: python -m passivepaxos.bench.moto
    with MotoServer() as srv:
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
