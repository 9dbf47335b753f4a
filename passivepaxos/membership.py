"""Store membership changes of a quorum log, through the log itself: one change at a time.

What is supported
-----------------
A log on a quorum of at least two stores (any list mode: ``create``, ``cas`` or
``blocks``) can gain one store or lose one store per change, while appends continue. The
log keeps at least two stores. A single-store log is refused (``UnsupportedError``): a
single store in ``create`` mode decides a slot with ONE create-if-absent of ``log/<i>``, a
different object layout from a quorum's consensus instances, so it cannot grow without
converting the log; re-create it as a quorum instead. Changing two stores at once is
refused (``ConfigError``): two majorities of sets that differ by two stores need not
intersect.

The configuration record
------------------------
A change is a slot record like any other, carrying ``cfg``::

    "cfg": {"op": "add"|"remove", "url": "<the store>", "from": [S...], "to": [S'...]}

appended at some slot ``c`` with the ordinary append path. It says "slots > c are decided
on S'" (slots <= c, including c itself, on S). Every record after the first change also
carries ``"conf": c``, the slot of the newest configuration record before it, so a client
that meets a record naming an unknown configuration notices at once. A configuration
record is valid only if its ``from`` is the configuration in effect at its slot: a
proposer re-checks this on every retry, so of two racing changes the second one finds
``from`` stale and is refused (``MembershipConflictError``) instead of being appended on
top of the first: there is never more than one change between two consecutive
configurations, and a second change can only be decided after the first is committed
(decided in an earlier slot).

Why it is safe (the argument; docs/log.md "Membership changes" says the same)
---------------------------------------------------------------------------
1. Configuration of a slot. The record of slot ``i`` names the hash of slot ``i-1``'s
   record, so it can only be built by a proposer that knows record ``i-1``. A client
   (``Log``) learns records sequentially from a point whose configuration it knows
   (slot 0 with the origin set, see 4), and the configuration of slot ``i`` is a function
   of records ``0..i-1`` (the last ``cfg`` among them). So every proposer of slot ``i``
   runs consensus on exactly the same store set, the one records ``0..i-1`` define:
   proposers of slots <= c use S, proposers of slots > c use S'. Consensus on one
   instance with one store set is the ordinary (safe) Paxos of :mod:`consensus.core`.
2. Reading. A reader reads slot ``i`` with the set of slot ``i`` as well (it learns the
   records in order), so "a majority" always means a majority of the configuration that
   decided the slot: for an old slot after a store was removed, a majority of the OLD set
   (the removed store may be gone: see 5). The union of the sets over time is what a
   reader needs, one set per range of slots.
3. Clients that do not know yet. A client that has never seen a change reads with its
   base set; any record at a slot > c carries ``conf`` or ``cfg`` (its proposer knew
   record c), so the first record such a client reads beyond c switches it to
   configuration-aware reading (and the value it read that way is discarded and read
   again with the right set). A client that has seen record ``i-1`` without ``cfg`` or
   ``conf`` knows that no change happened before ``i``, so its proposal for ``i`` on the
   base set is right. Even a client many changes behind, idle for hours, reads the next
   slot after its known tail with that slot's own set (point 1), so staleness never leads
   to consensus on a wrong set. One change at a time also means any majority of S and any
   majority of S' intersect (|S'| = |S| +- 1), so a proposer that is one configuration
   behind at the boundary could not break agreement either (the classic single-server
   change argument); point 1 makes even that unnecessary.
4. Discovery. Before proposing the configuration record, the changer writes a marker
   ``members/<id>`` (origin set, from, to) to every store of S and S' (a majority of each
   must succeed). A client opening the log (with the old list or the new list: exactly a
   configuration, see ``manifest.open_log``) LISTs ``members/``; if a marker exists
   it reads the log from slot 0 with the origin set and follows the configuration
   records. Adding a store writes the manifest (with S') to the new store before the
   configuration record is proposed, so a client can open the log from the new list.
5. Removal. After the removal record at slot c is decided, the changer copies the
   DECIDED marker of every slot <= c onto every remaining store (a DECIDED marker names
   only a decided value, so a reader may trust it from any store). Only then does
   ``remove`` return (a copy that fails raises ``MembershipIncompleteError``: committed,
   markers incomplete; ``remove`` of the already removed store finishes the copy); from
   then on the removed store may be deleted (``rm -rf``): slots
   > c never touch it and slots <= c are readable from the remaining members of their
   own (old) set. Delete a store only after ``members remove`` has returned success.
6. Coming back. A store removed and deleted can be added again (empty). Once its
   manifest is back it is a member, and the slots of the configurations it belonged to
   before count it: its empty lists read as "nothing accepted" there. With one such store
   a majority of an old set still meets the stores holding the copied markers; with two
   (two removals, both stores added back) it need not: with the two other holders of the
   markers unreachable, a reader found a 5-store log empty and an append was acknowledged
   at slot 0, decided long before (``tests/test_identity.py``). So ``add`` on a log that
   has had a change (the store may be one that was a member, under another spelling of
   its URL too) first copies the DECIDED marker of every slot decided so far onto it
   (deleting any marker left there first: never trusted), and only then writes its
   manifest; slots decided after that copy and before the
   change belong to configurations without it. A copy that fails raises ``QuorumError``
   with nothing committed (the store has no manifest and does not count); ``add`` again.

Not supported (yet): logs with a trimmed prefix (trim is single-store only anyway),
checkpoints that would spare a fresh client the walk from slot 0 on a log that has had a
change (it costs one learner round per slot, once per ``Log`` object), replacing EVERY
store of an old configuration (slots of that configuration then have no surviving member
to read them from; keep at least one original store, or snapshot first), and clients of
earlier versions, which ignore ``cfg`` (do not mix them with membership changes).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

# this module's errors live in passivepaxos.errors (re-exported here)
from passivepaxos.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    ConfigError,
    InvalidObjectError,
    MembershipConflictError,
    MembershipIncompleteError,
    OutcomeUnknownError,
    QuorumError,
    StoreError,
    UnsupportedError,
)
from passivepaxos.log import Log
from passivepaxos.manifest import MANIFEST_KEY, Manifest, open_log
from passivepaxos.membership_data import (
    MEMBERS_PREFIX,
    ConfigChange,
    decode_marker,
    encode_marker,
    marker_key,
    read_markers,
)
from passivepaxos.runtime import Runtime
from passivepaxos.store import Store, open_store
from passivepaxos.types import PutMode
from passivepaxos.urls import split_urls

# a DECIDED marker: the only object under log/ a store being added may hold (a backfill
# of an earlier attempt, see _backfill_markers)
_DECIDED = re.compile(r"^log/\d{20}/decided$")

__all__ = [  # the data half (ConfigChange, markers) lives in passivepaxos.membership_data
    "MEMBERS_PREFIX",
    "ConfigChange",
    "MembershipConflictError",
    "MembershipIncompleteError",
    "add_store",
    "change",
    "decode_marker",
    "encode_marker",
    "list_members",
    "marker_key",
    "read_markers",
    "remove_store",
]


def _store_runtime(log: Log) -> Runtime:
    """The runtime of the log's stores: a store opened here joins their quorums (and is
    the same object as ``log.runtime`` unless the log was given another one)."""
    return log.stores[0].runtime


def _need_majority(what: str, stores: Iterable[str], ok: set[str], errors: list[str]) -> None:
    urls = list(stores)
    got = sum(1 for u in urls if u in ok)
    if got < len(urls) // 2 + 1:
        raise QuorumError(
            f"{what}: reached {got} of {len(urls)} stores of {','.join(urls)}, a majority is "
            f"needed: {'; '.join(errors)}"
        )


def change(log: Log, op: str, url: str) -> dict[str, Any]:
    """Add (``op="add"``) or remove (``"remove"``) store ``url`` of ``log``'s quorum; return
    ``{"slot": c, "op", "url", "from", "to"}``. See the module docstring."""
    assert isinstance(log, Log)
    if op not in ("add", "remove"):
        raise ConfigError(f"unknown membership operation {op!r}")
    url = url.strip()
    if not url or "," in url:
        raise ConfigError("give exactly one store URL to add or remove (one change at a time)")
    url = open_store(url, runtime=_store_runtime(log)).url
    current = tuple(log.members())
    if log.single_create or len(current) < 2:
        raise UnsupportedError(
            f"{log.url}: membership changes need a log on a quorum of at least two stores; "
            "a single-store log (create mode: one create-if-absent per slot, not consensus "
            "instances) cannot grow without converting it: create a quorum log instead",
            capability="membership",
        )
    if op == "add":
        if url in current:
            raise ConfigError(f"{url} is already a store of {log.url}")
        to = (*current, url)
    else:
        if url not in current:
            done = _committed_removal(log, url)
            if done is not None:  # removed earlier: finish (or re-check) its marker copy
                return _finish_removal(log, *done, resumed=True)
            raise ConfigError(f"{url} is not a store of {log.url} (stores: {','.join(current)})")
        to = tuple(u for u in current if u != url)
        if len(to) < 2:
            raise UnsupportedError(
                f"{log.url}: removing {url} would leave one store; a membership-changed log "
                "keeps at least two (add another store first)",
                capability="membership",
            )
    if not log.config_history():
        # no change yet: the set in effect is the one the log was created on, whatever
        # list the caller gave (a subset would make a wrong "from" and origin)
        _, manifest = open_log(log.url, runtime=_store_runtime(log))
        if set(manifest.stores) != set(current):
            raise ConfigError(
                f"{log.url}: the log was created on {','.join(manifest.stores)}; give its "
                "full store list to change its membership"
            )
    cfg = ConfigChange(op, url, current, to)
    cfg.check()
    stores = {s.url: s for s in log.known_stores()}
    if url not in stores:
        stores[url] = open_store(url, runtime=_store_runtime(log))
    if op == "add":
        backfill = None
        if log.config_history():
            # after any change the store may be one that was a member before, under this
            # URL or another spelling of it (a symlink, a query option): it gets every
            # decided slot's marker before it counts (point 6)
            backfill = lambda: _backfill_markers(log, stores[url])  # noqa: E731
        _prepare_new_store(
            stores[url], _manifest_of(log).with_stores(to), log.mode.value, backfill=backfill
        )
    # the marker, on every store of S and S' (a majority of each): readers discover changes
    key, data = marker_key(log.runtime), encode_marker(log.origin(), cfg)
    ok: set[str] = set()
    errors: list[str] = []
    for u in dict.fromkeys((*current, *to)):
        try:
            stores[u].put(key, data, PutMode.OVERWRITE)
            ok.add(u)
        except StoreError as exc:
            errors.append(str(exc))
    _need_majority("membership marker", current, ok, errors)
    _need_majority("membership marker", to, ok, errors)
    try:
        slot = log.append_config(cfg)
    except AmbiguousWriteError as exc:
        raise OutcomeUnknownError(
            f"members {op} {url}: the configuration record's outcome is unknown ({exc}); "
            f"run `members {op}` with the same arguments again: it reads the log to its end "
            "(which settles the record) and then completes the change or makes it"
            + (f"; do not delete {url} before that succeeds" if op == "remove" else ""),
            url=exc.url,
            key=exc.key,
        ) from exc
    if op == "remove":
        return _finish_removal(log, slot, cfg, resumed=False)
    _write_manifests(log, to, stores)
    return {"slot": slot, **cfg.to_json()}


def _write_manifests(log: Log, to: tuple[str, ...], stores: dict[str, Store]) -> None:
    """The manifests name the current store list (open_log accepts it, or any list of a
    configuration; the identity is what makes a store a member). Only over this log's
    manifest: a store that lost it (wiped in place) lost its votes too, and writing it
    back would make its empty lists count for the slots it held (the ``leader``
    simulation's seed 500: an ``add`` revived a wiped store, and a reader then found a
    slot decided on it "undecided"). Such a store comes back through ``members remove``
    + ``members add``. Where the store offers compare-and-swap the overwrite is
    conditioned on the manifest read, so a wipe between the read and the write is not
    undone either."""
    template = _manifest_of(log)
    blob = template.with_stores(to).encode()
    for u in to:
        store = stores[u]
        with contextlib.suppress(StoreError):
            got = store.get(MANIFEST_KEY)
            if got is None or not Manifest.decode(got[0], store.url).same_log(template):
                continue
            if store.capabilities.cas:
                store.put(MANIFEST_KEY, blob, PutMode.update(got[1]))
            else:
                store.put(MANIFEST_KEY, blob, PutMode.OVERWRITE)


def _committed_removal(log: Log, url: str) -> tuple[int, ConfigChange] | None:
    """The committed change that removed ``url`` when it is the last change naming it."""
    for slot, cfg in reversed(log.config_history()):
        if cfg.url == url:
            return (slot, cfg) if cfg.op == "remove" else None
    return None


def _finish_removal(log: Log, slot: int, cfg: ConfigChange, *, resumed: bool) -> dict[str, Any]:
    """Copy the DECIDED markers of slots ``<= slot`` onto the stores the removal left
    (only then may the removed store be deleted), then their manifests."""
    stores = {s.url: s for s in log.known_stores()}
    targets = [
        stores[u] if u in stores else open_store(u, runtime=_store_runtime(log)) for u in cfg.to
    ]
    try:
        written = log.copy_decided_markers(slot, targets)
    except QuorumError as exc:
        raise MembershipIncompleteError(
            f"remove {cfg.url}: committed at slot {slot} ({cfg.url} is no longer a member), "
            f"but the DECIDED markers are not yet on a majority of {','.join(cfg.to)} "
            f"({exc}); do not delete {cfg.url} yet: run `members remove` with the same "
            "arguments again to finish the copy",
            slot=slot,
        ) from exc
    _write_manifests(log, cfg.to, {t.url: t for t in targets})
    return {"slot": slot, **cfg.to_json(), "resumed": resumed, "markers_written": written}


def _manifest_of(log: Log) -> Manifest:
    """The log's manifest (identity included), read at open; for a ``Log`` built from
    stores directly, read from them now."""
    if log.manifest is not None:
        return log.manifest
    _, manifest = open_log(log.url, runtime=_store_runtime(log))
    return manifest


def _backfill_markers(log: Log, store: Store) -> None:
    """Before a store added to a log that has had a change counts: the DECIDED marker of
    every slot decided so far onto it (point 6 of the module docstring). Markers already
    there are deleted first, never trusted: leftovers of a failed attempt, or of another
    log (the store does not count yet, nothing of this log depends on them)."""
    for m in list(store.list("log/")):
        if _DECIDED.match(m.key):
            store.delete(m.key)
    upto = log.head()
    if upto >= 0:
        try:
            log.copy_decided_markers(upto, [store])
        except QuorumError as exc:
            raise QuorumError(
                f"add {store.url}: it was a store of this log before, and the DECIDED "
                f"markers of slots 0..{upto} could not all be copied onto it ({exc}); "
                "nothing was committed (it has no manifest, it does not count): run "
                "`members add` again"
            ) from exc


def _prepare_new_store(
    store: Store,
    manifest: Manifest,
    mode: str,
    *,
    backfill: Callable[[], None] | None = None,
) -> None:
    """Write the manifest (with the log's identity: from now on the store counts as a
    member) to a store being added (before its configuration record is proposed:
    clients may open the log from it as soon as the change is decided). ``backfill``
    runs first, before the manifest: what the store must hold before it counts."""
    try:
        got = store.get(MANIFEST_KEY)
    except InvalidObjectError:
        got = None
    # DECIDED markers alone are a backfill's leftovers (it deletes them and copies anew)
    if any(backfill is None or not _DECIDED.match(m.key) for m in store.list("log/")):
        raise ConfigError(f"{store.url} already holds log slots: add an empty store")
    if got is not None:
        there = Manifest.decode(got[0], store.url)
        if there.mode is not manifest.mode:
            raise ConfigError(
                f"{store.url} already holds a log in mode {there.mode.value!r}, not {mode!r}"
            )
        if not there.same_log(manifest):
            raise ConfigError(
                f"{store.url} already holds the manifest of another log ({there.describe()}): "
                "add an empty store"
            )
        if backfill is not None:  # a removed store keeps its manifest: deleted in part
            backfill()
        return
    if backfill is not None:
        backfill()
    try:
        if store.capabilities.create:
            store.put(MANIFEST_KEY, manifest.encode(), PutMode.CREATE)
        else:
            store.put(MANIFEST_KEY, manifest.encode(), PutMode.OVERWRITE)
    except AlreadyExistsError:
        pass


def add_store(log_url: str, url: str, *, runtime: Runtime | None = None) -> dict[str, Any]:
    with Log.open(log_url, runtime=runtime) as log:
        return change(log, "add", url)


def remove_store(log_url: str, url: str, *, runtime: Runtime | None = None) -> dict[str, Any]:
    with Log.open(log_url, runtime=runtime) as log:
        return change(log, "remove", url)


def list_members(log_url: str, *, runtime: Runtime | None = None) -> dict[str, Any]:
    """The log's current stores (read through the log to its tail) and its changes."""
    with Log.open(log_url, runtime=runtime) as log:
        members = log.members()
        return {
            "stores": list(members),
            "origin": list(log.origin()),
            "changes": [{"slot": c, **cfg.to_json()} for c, cfg in log.config_history()],
            "given": split_urls(log_url),
        }


# -- CLI: passivepaxos members add|remove|list LOG [URL] -----------------------------------


def cmd_members(args: Any) -> int:
    """``members add|remove LOG URL`` / ``members list LOG``."""
    op = args.members_command
    if op == "list":
        out = list_members(args.log)
        if args.json:
            print(json.dumps(out, sort_keys=True), flush=True)
        else:
            for u in out["stores"]:
                print(u)
            for c in out["changes"]:
                print(f"# slot {c['slot']}: {c['op']} {c['url']}")
        return 0
    if not args.url:
        raise ConfigError(f"members {op} needs a store URL")
    out = (add_store if op == "add" else remove_store)(args.log, args.url)
    if args.json:
        print(json.dumps(out, sort_keys=True), flush=True)
    else:
        done = "committed earlier" if out.get("resumed") else "committed"
        what = "; DECIDED markers complete" if op == "remove" else ""
        print(
            f"{op} {out['url']}: {done} at slot {out['slot']}{what}; stores: {','.join(out['to'])}"
        )
    return 0


def add_cli(sub: Any) -> None:
    p = sub.add_parser("members", help="add or remove a store of a quorum log (through the log)")
    msub = p.add_subparsers(dest="members_command", metavar="ACTION")
    msub.required = True
    for name, text in (
        ("add", "add store URL (one change at a time; appends may continue)"),
        ("remove", "remove store URL; it may be deleted once this returns"),
        ("list", "the log's current stores and its membership changes"),
    ):
        m = msub.add_parser(name, help=text)
        m.add_argument("log", metavar="LOG", help="the log's URL(s); default $PASSIVEPAXOS_LOG")
        if name != "list":
            m.add_argument("url", metavar="URL", help="the store to add or remove")
        m.add_argument("--json", action="store_true")
        m.set_defaults(func=cmd_members)
