"""moto_server lives in the package (``passivepaxos bench`` starts it too)."""

from passivepaxos.bench.moto import CREDS, MotoServer, free_port

__all__ = ["CREDS", "MotoServer", "free_port"]
