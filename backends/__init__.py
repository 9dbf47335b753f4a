"""Storage adapters, installed as ``passivepaxos_backends``; open them via
``passivepaxos.urls.open_backend`` rather than importing a module directly."""
