"""The configuration view: which store set decides (and is read for) each slot.

A log starts on its origin set; a membership change is a configuration record at slot
``c`` (slots after it use the new set), and every later record names ``c`` in ``conf``.
This view looks for membership markers once (one LIST of ``members/`` per store), then,
on a log that has had a change, learns records in order from slot 0 so that each slot is
read and decided with its own set. The membership *data* (``ConfigChange``, markers) is
:mod:`passivepaxos.membership_data`; the *procedure* that makes a change is
:mod:`passivepaxos.membership` (above the log); the safety argument is there.
"""

from __future__ import annotations

from collections.abc import Sequence

from passivepaxos.consensus.keys import decided_key
from passivepaxos.errors import (
    ConfigError,
    DamagedSlotError,
    InvalidObjectError,
    QuorumError,
    StoreError,
)
from passivepaxos.log.context import LogContext
from passivepaxos.log.record import names_config, record_hash, slot_instance
from passivepaxos.log.slots import SlotIO
from passivepaxos.membership_data import ConfigChange, read_markers
from passivepaxos.store import Store, open_store
from passivepaxos.types import PutMode

__all__ = ["ConfigView"]


class ConfigView:
    """Routes each slot's decision and read to the store set in effect at that slot."""

    def __init__(self, c: LogContext, io: SlotIO) -> None:
        self.c = c
        self.io = io
        # guarded by lock. ms: None = not looked yet, False = no change known, True = read
        # slot by slot with the set each slot's predecessors define (cfgs), walked in
        # order up to walked
        self.lock = c.runtime.rlock()
        self.ms: bool | None = False if c.single_create else None
        self.origin_set: tuple[str, ...] = tuple(s.url for s in c.stores)
        self.cfgs: list[tuple[int, list[Store]]] = []  # (first slot, its store set)
        self.changes: list[tuple[int, ConfigChange]] = []  # (config slot, change)
        self.walked = -1
        self.walked_hash = ""  # the hash of record walked (unused while it is -1)
        self.opened: dict[str, Store] = {s.url: s for s in c.stores}

    def decide(self, slot: int, data: bytes, frame_wid: bytes, *, lead: bool = False) -> bytes:
        """Try to make ``data`` the record of ``slot``; return the record decided there.
        ``lead``: the caller is the slot's only leader (``FencedWriter.take_lead``)."""
        if self.c.single_create:
            return self.io.create(slot, data, frame_wid)
        stores = self.c.stores
        if self.membership():
            if not self.walk_to(slot - 1):
                raise QuorumError(
                    f"cannot read slot {slot - 1} of {self.c.url} again to learn its configuration"
                )
            stores = self.stores_for(slot)
        return self.io.propose(slot, stores, data, lead=lead)

    def fetch(self, slot: int) -> bytes | None:
        """The raw record of ``slot``, or ``None`` only if it is provably not decided (yet):
        on one create store the object is absent; on a quorum see ``SlotIO.learn`` (a slot
        the learner cannot tell about is finished, or ``QuorumError`` raised)."""
        if self.c.single_create:
            return self.io.get(slot)
        if not self.membership():
            data = self.io.learn(slot, self.c.stores)
            if data is None or not names_config(data):
                return data
            self.switch_on()  # read beyond a change we did not know: read again, in order
        if not self.walk_to(slot - 1):
            return None
        return self.io.learn(slot, self.stores_for(slot))

    def current(self) -> tuple[str, ...]:
        """The newest store set this view has walked to."""
        if self.membership():
            with self.lock:
                return tuple(s.url for s in self.cfgs[-1][1])
        return tuple(s.url for s in self.c.stores)

    def history(self) -> list[tuple[int, ConfigChange]]:
        with self.lock:
            return list(self.changes)

    def membership(self) -> bool:
        """Whether the log has had a membership change (looked up once: a LIST of
        ``members/`` per store; later changes are noticed through the records)."""
        if self.ms is None:
            with self.lock:
                if self.ms is None:
                    found = read_markers(self.c.base)
                    if found:
                        self.enable(found)
                    else:
                        self.ms = False
        return bool(self.ms)

    def switch_on(self) -> None:
        with self.lock:
            if self.ms:
                return
            found = read_markers(self.c.base)
            if not found:
                raise ConfigError(
                    f"{self.c.url}: the log has had a store membership change but no "
                    "membership marker was found on these stores; open it with its current "
                    "store list"
                )
            self.enable(found)

    def enable(self, found: list[tuple[tuple[str, ...], ConfigChange]]) -> None:
        origins = {o for o, _ in found}
        if len(origins) != 1:
            raise InvalidObjectError(f"{self.c.url}: membership markers disagree on the origin")
        self.origin_set = next(iter(origins))
        for _, cfg in found:  # open every store ever named (needed to read old slots)
            self.stores_of((*cfg.from_, *cfg.to))
        self.cfgs = [(0, self.stores_of(self.origin_set))]
        self.changes = []
        self.walked, self.walked_hash = -1, ""
        self.c.stores = self.cfgs[0][1]
        self.ms = True

    def stores_of(self, urls: Sequence[str]) -> list[Store]:
        out = []
        for u in urls:
            if u not in self.opened:
                self.opened[u] = open_store(u, runtime=self.c.store_runtime)
            out.append(self.opened[u])
        return out

    def stores_for(self, slot: int) -> list[Store]:
        with self.lock:
            for first, stores in reversed(self.cfgs):
                if first <= slot:
                    return stores
        raise AssertionError("no configuration")  # pragma: no cover

    def walk_to(self, target: int) -> bool:
        """Learn records in order up to ``target`` (each with its own slot's store set),
        following configuration records; ``False`` if the log ends before ``target``."""
        with self.lock:
            while self.walked < target:
                s = self.walked + 1
                stores = self.stores_for(s)
                data = self.io.learn(s, stores)
                if data is None:
                    return False
                rec = self.c.decode(data, s, self.walked_hash if s > 0 else self.c.genesis)
                expect = self.changes[-1][0] if self.changes else None
                if rec.conf != expect:
                    url, key = self.c.where(s)
                    raise DamagedSlotError(
                        s, f"names configuration slot {rec.conf}, not {expect}", url=url, key=key
                    )
                if rec.config is not None:
                    if rec.config.from_ != tuple(x.url for x in stores):
                        url, key = self.c.where(s)
                        raise DamagedSlotError(
                            s,
                            "its membership change does not start from the stores in effect",
                            url=url,
                            key=key,
                        )
                    self.cfgs.append((s + 1, self.stores_of(rec.config.to)))
                    self.changes.append((s, rec.config))
                    self.c.stores = self.cfgs[-1][1]
                self.walked, self.walked_hash = s, record_hash(data)
            return True

    def config_at(self, slot: int) -> tuple[tuple[str, ...], int | None]:
        """(the store set deciding ``slot``, the ``conf`` its record must carry)."""
        if not self.membership():
            return self.origin_set, None  # no change ever: the stores the log was opened on
        if not self.walk_to(slot - 1):
            raise QuorumError(
                f"cannot read slot {slot - 1} of {self.c.url} again to learn its configuration"
            )
        with self.lock:
            conf = max((c for c, _ in self.changes if c < slot), default=None)
            return tuple(s.url for s in self.stores_for(slot)), conf

    def note(self, data: bytes) -> None:
        """A record obtained outside ``fetch`` (a lost race's winner)."""
        if not self.ms and names_config(data):
            self.switch_on()

    def copy_decided_markers(self, upto: int, targets: Sequence[Store]) -> int:
        """Make sure every slot ``0..upto`` has a DECIDED marker on ``targets`` (a majority
        of them per slot, else ``QuorumError``); returns the markers written."""
        from passivepaxos.consensus import core  # a membership change: a quorum's import

        written = 0

        def one(slot: int) -> int:
            key = decided_key(slot_instance(slot))
            have: dict[str, bytes | None] = {}
            for t in targets:
                try:
                    got = t.get(key)
                    have[t.url] = None if got is None else got[0]
                except StoreError:
                    have[t.url] = None
            marker = next((d for d in have.values() if d is not None), None)
            if marker is None:
                value = self.io.learn(slot, self.stores_for(slot))
                if value is None:
                    url, k = self.c.where(slot)
                    raise DamagedSlotError(slot, "cannot be learned", url=url, key=k)
                marker = core.Msg("D", core.ZERO, value).encode()
            n = 0
            ok = sum(1 for d in have.values() if d is not None)
            for t in targets:
                if have[t.url] is None:
                    try:
                        t.put(key, marker, PutMode.OVERWRITE)
                        n, ok = n + 1, ok + 1
                    except StoreError:
                        pass
            if ok < len(targets) // 2 + 1:
                raise QuorumError(f"slot {slot}: DECIDED marker on {ok} of {len(targets)} stores")
            return n

        self.walk_to(upto)
        for n in self.c.pool.map(one, range(upto + 1)):
            written += n
        return written
