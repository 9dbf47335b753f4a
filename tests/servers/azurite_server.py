"""azurite lives in the package (``passivepaxos bench --stores azure`` starts it too)."""

from passivepaxos.bench.azurite import (
    ACCOUNT,
    AZURITE_VERSION,
    KEY,
    Azurite,
    azurite_blob_path,
    cache_dir,
    connection_string,
    free_port,
)

__all__ = [
    "ACCOUNT",
    "AZURITE_VERSION",
    "KEY",
    "Azurite",
    "azurite_blob_path",
    "cache_dir",
    "connection_string",
    "free_port",
]
