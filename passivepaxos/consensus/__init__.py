"""Single-decree consensus whose only servers are storage services.

``core`` holds the protocols as pure state machines (no I/O), ``driver`` runs them against
real :class:`passivepaxos.store.Store` objects, ``sim`` runs them in a deterministic
single-threaded simulator with fault injection.
"""

from __future__ import annotations
