"""What every component of one ``Log`` shares: its stores, mode, identity, runtime, pools
and the one lock over its bookkeeping. No protocol logic lives here."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol

from passivepaxos.capabilities import ListMode
from passivepaxos.errors import QuorumError, StoreError
from passivepaxos.log.record import Record, decode_record, genesis_of, slot_instance
from passivepaxos.manifest import MANIFEST_KEY, Manifest
from passivepaxos.runtime import Pool, Runtime
from passivepaxos.store import Store

__all__ = ["Fanout", "LogContext"]


class Fanout(Protocol):
    """Where a quorum's requests run (``consensus.driver.DaemonPool``)."""

    def submit(self, fn: Any, /, *args: Any) -> Future[Any]: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...


class LogContext:
    """The shared, mostly fixed facts of one ``Log`` object.

    ``stores`` is the store set in effect at the newest slot this object knows of (the
    configuration view moves it forward after a membership change); ``state`` guards the
    bookkeeping of the tail, the lease, and the snapshots seen, which several components
    update together (one lock, so a reader never sees half an update)."""

    def __init__(
        self,
        stores: list[Store],
        mode: ListMode,
        *,
        url: str,
        writer_id: str,
        runtime: Runtime,
        manifest: Manifest | None,
        fetch_ahead: int,
        pool: Pool,
        fanout: Fanout | None,
    ) -> None:
        self.stores = stores
        self.base = list(stores)  # the stores the log was opened on
        self.mode = mode
        self.url = url
        self.writer_id = writer_id
        self.runtime = runtime
        # the manifest read at open (None: stores given directly, no identity checks); its
        # identity starts the hash chain and is what a store must hold to vote (SlotIO)
        self.manifest = manifest
        self.ident = None if manifest is None else manifest.ident
        self.genesis_value = None if manifest is None else genesis_of(manifest.ident)
        self.single_create = len(stores) == 1 and mode is ListMode.CREATE
        self.fetch_ahead = fetch_ahead
        self.pool = pool  # read-ahead, probes, parallel fetches
        # quorum requests: daemon threads, so a hung store holds neither a batch (settled
        # once a majority answered, see driver.settle) nor close() nor the process's exit
        self.fanout = fanout
        self.state = runtime.lock()

    @property
    def genesis(self) -> str:
        """The ``prev`` of slot 0: from the identity of the manifest this log was opened
        with; a ``Log`` built from stores directly reads it once from its stores (a log
        with no manifest at all starts from ``GENESIS``)."""
        if self.genesis_value is None:
            self.genesis_value = genesis_of(self.read_ident())
        return self.genesis_value

    def read_ident(self) -> str | None:
        errors: list[str] = []
        for store in self.base:
            try:
                got = store.get(MANIFEST_KEY)
            except StoreError as exc:
                errors.append(str(exc))
                continue
            if got is not None:
                return Manifest.decode(got[0], store.url).ident
        if errors:  # never guess the chain start: a wrong one reads as damage
            raise QuorumError(f"cannot read the manifest of {self.url}: {'; '.join(errors)}")
        return None

    def where(self, slot: int) -> tuple[str, str]:
        """(URL, key) naming ``slot`` in an error."""
        return (self.stores[0].url if len(self.stores) == 1 else self.url, slot_instance(slot))

    def decode(self, data: bytes, slot: int, prev: str | None) -> Record:
        url, key = self.where(slot)
        return decode_record(data, slot, prev, url=url, key=key)
