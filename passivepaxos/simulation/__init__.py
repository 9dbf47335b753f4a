"""The whole-stack deterministic simulator: the library's own code, run by a seeded
scheduler on a virtual clock against fault-injecting in-memory stores.

``runtime`` (the scheduler and the simulated runtime) depends on nothing above
``passivepaxos.runtime``; ``stores``, ``world``, ``workloads`` and ``checks`` build on it.
Run it with ``python -m passivepaxos.simulation --seeds 0:2000``.
"""
