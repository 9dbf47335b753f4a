"""The fault-injecting proxy lives in the package (the benchmark counts requests with it)."""

from passivepaxos.bench.proxy import FaultProxy

__all__ = ["FaultProxy"]
