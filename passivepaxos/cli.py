"""The ``passivepaxos`` command (contract: BRIEF section 5; docs/cli.md).

Exit codes: 0 success; 1 the operation failed (store error, conflict, damage found);
2 usage or configuration error (bad URL, unknown option, unsupported mode, a ``memory://``
store); 3 outcome unknown (a write that may or may not have taken effect: an error whose
``outcome_unknown`` flag is set, see ``passivepaxos.errors``). Errors are one line on stderr naming the URL/object at fault;
``--debug`` adds the traceback. Output: text goes out with the argument's own bytes (a
non-UTF-8 argument is printed as given); JSON is always valid UTF-8, bytes that are not
UTF-8 travel as base64 (``value_b64``, ``key_b64``, ...). A reader that closes the pipe
early (``| head``) ends the command quietly with exit 0. ``--timeout`` /
``PASSIVEPAXOS_TIMEOUT`` bound the store work of a command (``passivepaxos.deadline``;
docs/cli.md says which commands it bounds in total and which per store request).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from passivepaxos.capabilities import BACKENDS, TABLE_COLUMNS, table_rows
from passivepaxos.errors import (
    ConfigError,
    PassivePaxosError,
    UnsupportedError,
)
from passivepaxos.terminal import (
    console,
    escape_value,
    lease_line,
    lock_wait_line,
    plain_cell,
    print_status,
)
from passivepaxos.terminal import print_json as _print_json
from passivepaxos.terminal import table as _table

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_UNKNOWN", "EXIT_USAGE", "console", "main", "run"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3
DEFAULT_TIMEOUT = 30.0
TIMEOUT_ENV = "PASSIVEPAXOS_TIMEOUT"


def _arg_bytes(text: str) -> bytes:
    """The bytes a command-line argument (or a key stored from one) stood for: Python
    decodes argv with ``surrogateescape``, so ``$'\\xff'`` arrives as ``'\\udcff'``."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _text_arg(text: str, what: str) -> str:
    """A name argument that must be text (it is stored in JSON and printed back as is):
    a non-UTF-8 one is a usage error naming it, not a surrogate written to the log."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} {_arg_bytes(text)!r} is not UTF-8 text") from None
    return text


def cmd_backends(args: argparse.Namespace) -> int:
    if args.probe:
        from passivepaxos.probe import probe
        from passivepaxos.store import open_store

        result = probe(open_store(args.probe))
        if args.json:
            _print_json(result.to_json())
        else:
            rows = [
                [cap, "yes" if ok else "no", result.detail.get(cap, "")]
                for cap, ok in (
                    ("create", result.create),
                    ("cas", result.cas),
                    ("delete_if_version", result.delete_if_version),
                )
            ]
            _table(
                f"probe of {result.url} ({result.backend})", ["capability", "works", "detail"], rows
            )
        return EXIT_OK
    if args.json:
        for caps in BACKENDS:
            _print_json(caps.to_json())
    else:
        _table("passivepaxos backends", TABLE_COLUMNS, table_rows())
    return EXIT_OK


def _proposer_id() -> str:
    import os
    import re
    import socket

    from passivepaxos.runtime import REAL

    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{REAL.token_hex(4)}"


def cmd_init(args: argparse.Namespace) -> int:
    from passivepaxos.manifest import initialise

    got = initialise(args.log, args.mode)
    manifest = got.manifest
    if args.json:
        _print_json(
            {
                "log": args.log,
                "mode": manifest.mode.value,
                "stores": list(manifest.stores),
                "created": got.created,
                "unreachable": sorted(got.unreachable),
            }
        )
    else:
        verb = "initialised" if got.created else "already initialised"
        print(f"{verb} {args.log} (mode {manifest.mode.value}, {len(manifest.stores)} store(s))")
    for url, why in got.unreachable.items():
        print(
            f"passivepaxos: warning: {url} did not get the manifest ({' '.join(why.split())}); "
            "it does not count as a member: run init again before the first write, or "
            "later `members remove` + `members add` it",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_propose(args: argparse.Namespace) -> int:
    from passivepaxos.consensus.driver import propose
    from passivepaxos.manifest import check_instance, close_members, member_stores, open_log

    instance = check_instance(args.instance)
    stores, manifest = open_log(args.log)
    value = _arg_bytes(args.value)  # a non-UTF-8 argument is proposed as its bytes
    # a store counts only while it holds the manifest (checked with every phase 1), as
    # for the log: one wiped after open_log must not vote
    voters = member_stores(stores, manifest)
    try:
        decided = propose(voters, instance, value, _proposer_id(), manifest.mode)
    finally:
        close_members(voters)
    if args.json:
        out: dict[str, Any] = {
            "instance": args.instance,
            **_value_fields("proposed", value),
            "won": decided == value,
            **_value_fields("value", decided),
        }
        _print_json(out)
    else:
        sys.stdout.buffer.write(decided + b"\n")
        sys.stdout.flush()
    return EXIT_OK


def _values_json(slot: int, index: int, value: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"slot": slot, "index": index}
    try:
        out["value"] = value.decode()
    except UnicodeDecodeError:
        import base64

        out["value_b64"] = base64.b64encode(value).decode()
    return out


def _stdin_bytes() -> bytes:
    return sys.stdin.buffer.read()


def _append_values(args: argparse.Namespace) -> list[bytes]:
    """The values of ``append``, in order: the VALUEs (``-``: stdin's lines, each without
    its line end), then each ``--file``'s bytes, then stdin whole (``--stdin-raw``)."""
    import os

    if args.values.count("-") + args.stdin_raw > 1:
        raise ConfigError("append: stdin can be read once: give - or --stdin-raw, not both")
    values: list[bytes] = []
    for v in args.values:
        if v != "-":
            values.append(os.fsencode(v))
            continue
        data = _stdin_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the last line's end, not an empty value
        if not lines:
            raise ConfigError("append -: stdin held no values (one value per line)")
        values.extend(line[:-1] if line.endswith(b"\r") else line for line in lines)
    for f in args.files:
        try:
            with open(f, "rb") as fh:
                values.append(fh.read())
        except OSError as exc:
            raise ConfigError(f"--file {f}: {exc.strerror or exc}") from None
    if args.stdin_raw:
        values.append(_stdin_bytes())
    if not values:
        raise ConfigError("append: give a VALUE, - (stdin, one per line), --file F or --stdin-raw")
    return values


def _lease_waiting(holder: str | None, remaining: float) -> None:
    """What an append waiting out another writer's expired lease says on stderr."""
    print(
        f"passivepaxos: the writer lease of {holder} looks expired; waiting up to "
        f"{remaining:.1f} s for the log to stay unchanged before writing",
        file=sys.stderr,
        flush=True,
    )


def cmd_append(args: argparse.Namespace) -> int:

    from passivepaxos.errors import PassivePaxosError
    from passivepaxos.log import Log, check_token, parse_forward_token, resume_unknown

    values = _append_values(args)
    if args.owner is not None:
        _text_arg(args.owner, "owner")
        if not args.owner.strip():
            raise ConfigError("--owner: give a non-empty name")
    if args.resume is None:
        with Log.open(
            args.log, forward=args.forward, writer_id=args.owner, on_lease_wait=_lease_waiting
        ) as log:
            if args.owner is not None:
                log.adopt_writer()  # the lease `writer claim --owner` took, if it is ours
            positions = log.append_positions(values)
    else:
        check_token(args.resume)  # a bad token is bad input, before any request
        # a forwarded append's token resumes with forwarding (its parcel may be folded)
        forward = args.forward or parse_forward_token(args.resume) is not None
        try:
            log = Log.open(args.log, forward=forward)
        except (ConfigError, UnsupportedError):  # bad input (a malformed URL): exit 2
            raise
        except PassivePaxosError as exc:  # the resumed append is as unknown as before
            raise resume_unknown(args.resume, exc) from exc
        with log:
            positions = log.append_positions(values, resume=args.resume)
    for pos, value in zip(positions, values, strict=True):
        if args.json:
            _print_json(_values_json(pos.slot, pos.index, value))
        else:
            print(pos.slot, flush=True)
    return EXIT_OK


@contextlib.contextmanager
def _slot_progress(enabled: bool, label: str) -> Iterator[Callable[[int], None]]:
    """A transient spinner on stderr counting slots, or a no-op when ``enabled`` is false."""
    if not enabled:
        yield lambda _slot: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn(label + " {task.completed}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda slot: bar.update(task, completed=slot)


def cmd_log(args: argparse.Namespace) -> int:
    from passivepaxos.log import Log

    # a long read redirected to a file shows its progress on the terminal (stderr)
    show = not args.follow and sys.stderr.isatty() and not sys.stdout.isatty()
    with Log.open(args.log) as log, _slot_progress(show, "reading slot") as tick:
        if args.follow:
            entries = log.follow(args.from_slot)
        else:
            entries = log.read(args.from_slot, args.limit)
        for shown, e in enumerate(entries, start=1):
            tick(e.slot)
            if args.json:
                _print_json(_values_json(e.slot, e.index, e.value))
            else:
                print(f"{e.slot}\t{e.index}\t{escape_value(e.value)}", flush=True)
            if args.follow and args.limit is not None and shown >= args.limit:
                break
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    print_status(args.log, as_json=args.json)
    return EXIT_OK


def cmd_writer(args: argparse.Namespace) -> int:
    """``writer claim|renew|release|status LOG``: the log's writer lease (docs/log.md)."""
    from passivepaxos.lease import format_seconds
    from passivepaxos.log import Log

    op = args.writer_command
    owner = getattr(args, "owner", None)
    if owner is not None:
        _text_arg(owner, "owner")
        if not owner.strip():
            raise ConfigError("--owner: give a non-empty name")
    if op in ("renew", "release") and owner is None:
        raise ConfigError(
            f"writer {op}: give --owner OWNER (the owner `writer claim` printed; each process "
            "is an owner of its own otherwise)"
        )
    with Log.open(args.log, writer_id=owner) as log:
        if op == "status":
            return _writer_status(args, log)
        held = log.adopt_writer() if owner is not None else False
        if op == "release":
            slot = log.release_writer() if held else None
            refusal = f"the writer lease is not held by {owner}"
            if args.json:
                out: dict[str, Any] = {
                    "released": slot is not None,
                    "owner": log.writer_id,
                    "slot": slot,
                }
                _print_json(out if slot is not None else {**out, "error": refusal})
            if slot is None:
                print(f"passivepaxos: error: {args.log}: {refusal}", file=sys.stderr)
                return EXIT_FAIL
            if not args.json:
                print(f"released: slot {slot}")
            return EXIT_OK
        if op == "renew" and not held:
            ws = log.writer_status()
            refusal = f"the writer lease is not held by {owner} (holder: {ws.holder or 'nobody'})"
            if args.json:
                _print_json(
                    {**ws.to_json(), "renewed": False, "owner": log.writer_id, "error": refusal}
                )
            print(f"passivepaxos: error: {args.log}: {refusal}", file=sys.stderr)
            return EXIT_FAIL
        if op == "renew" and args.ttl is None:
            slot = log.renew()
            ws = log.writer_status()
            if args.json:
                _print_json({**ws.to_json(), "renewed": True, "owner": log.writer_id, "slot": slot})
            else:
                print(f"renewed: {lease_line(ws.holder, ws.epoch, ws.expires)}, slot {slot}")
            return EXIT_OK
        ttl = args.ttl  # a claim, or a renewal with a new ttl (a claim by the holder)
        wait = op == "renew" or not args.no_wait
        res = log.claim_writer(ttl, wait=False, shared=True)
        if not res.granted and wait:
            print(
                f"passivepaxos: waiting for the writer lease of {args.log}: held by "
                f"{res.holder} (epoch {res.epoch}); it can be claimed once the log stays "
                f"unchanged for {format_seconds(res.remaining)}",
                file=sys.stderr,
                flush=True,
            )
            res = log.claim_writer(ttl, wait=True, shared=True)
        refusal = (
            f"the writer lease is held by {res.holder} (epoch {res.epoch}); it can be claimed "
            f"once the log stays unchanged for {format_seconds(res.remaining)} more"
        )
        if args.json:
            key = "renewed" if op == "renew" else "granted"
            out = {**res.to_json(), key: res.granted, "owner": log.writer_id}
            _print_json(out if res.granted else {**out, "error": refusal})
        elif res.granted:
            line = lease_line(res.holder, res.epoch, res.expires)
            verb = "renewed" if op == "renew" else "claimed"
            print(f"{verb}: {line}, slot {res.slot}")
            if owner is None:
                print(
                    f"owner {log.writer_id}: pass --owner {log.writer_id} to append, writer "
                    "renew and writer release to act as the holder",
                    file=sys.stderr,
                )
        if not res.granted:
            print(f"passivepaxos: error: not yet: {args.log}: {refusal}", file=sys.stderr)
            return EXIT_FAIL
        return EXIT_OK


def _writer_status(args: argparse.Namespace, log: Any) -> int:
    from passivepaxos.lease import format_seconds, format_wall

    ws = log.writer_status()
    if args.json:
        _print_json(ws.to_json())
        return EXIT_OK
    wait = "-"
    if ws.holder is not None and ws.ttl is not None:
        wait = (
            f"up to {format_seconds(ws.ttl)}: a taker waits until the log stays unchanged "
            "that long on its own clock"
        )
    looks = ""
    if ws.holder is not None and ws.expires is not None:
        looks = " (looks expired)" if log.runtime.wall() > ws.expires else ""
    _table(
        f"writer lease of {args.log}",
        ["field", "value"],
        [
            ["holder", ws.holder or "none"],
            ["epoch", str(ws.epoch)],
            ["ttl", "-" if ws.ttl is None else f"{ws.ttl:g}s"],
            [
                "expires (estimate)",
                "-" if ws.holder is None else format_wall(ws.expires) + looks,
            ],
            ["a taker waits", wait],
            ["head slot", "(empty)" if ws.head < 0 else str(ws.head)],
        ],
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from passivepaxos.log import Log

    try:
        show = not args.json and sys.stderr.isatty()
        with Log.open(args.log) as log, _slot_progress(show, "verifying slot") as tick:
            report = log.verify(tick)
    except (ConfigError, UnsupportedError) as exc:
        return _fail(args, exc, EXIT_USAGE)
    except PassivePaxosError as exc:
        return _fail(args, exc, EXIT_USAGE)  # cannot check (store unreachable, ...)
    if args.json:
        _print_json({"log": args.log, **report.to_json()})
    elif report.ok:
        print(f"intact: {report.slots} slot(s), {report.entries} entries, hash chain ok")
    elif report.damaged:
        print(f"damage found: {report.error}")
    else:
        print(
            f"not checked in full: {report.slots} slot(s), {report.entries} entries read and "
            f"their hash chain ok (the log is readable), but {report.error}"
        )
    if not report.ok:
        message = " ".join(str(report.error).split())
        print(f"passivepaxos: error: {message}", file=sys.stderr)
        return EXIT_FAIL if report.damaged else EXIT_USAGE  # 2: cannot check
    return EXIT_OK


def cmd_snapshot(args: argparse.Namespace) -> int:
    from passivepaxos.log import Log

    with Log.open(args.log) as log:
        info = log.snapshot()
    if args.json:
        _print_json(info.to_json())
    else:
        print(
            f"snapshot at slot {info.slot}: {info.entries} entries, {info.size} bytes ({info.key})"
        )
    return EXIT_OK


def cmd_trim(args: argparse.Namespace) -> int:
    from passivepaxos.log import Log

    with Log.open(args.log) as log:
        res = log.trim(args.before)
    if args.json:
        _print_json(res.to_json())
    else:
        print(
            f"trimmed {res.trimmed} slot(s) before slot {res.before} "
            f"(covered by the snapshot at slot {res.snapshot}; tombstones keep their names)"
        )
    return EXIT_OK


# -- kv and lock (passivepaxos.recipes; docs/recipes.md) -----------------------------------


def _value_fields(prefix: str, value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {prefix: None}
    try:
        return {prefix: value.decode()}
    except UnicodeDecodeError:
        import base64

        return {f"{prefix}_b64": base64.b64encode(value).decode()}


def _show(value: bytes | None) -> None:
    sys.stdout.buffer.write((b"(absent)" if value is None else value) + b"\n")
    sys.stdout.flush()


def _kv_watch(args: argparse.Namespace, log: Any, kv: Any) -> int:
    """``kv watch``: one line (or JSON object) per change, in log order, until Ctrl-C."""
    from passivepaxos.log import Position

    start = Position(log.head() + 1 if args.from_slot is None else args.from_slot, 0)
    for ch in kv.watch(args.prefix, from_position=start):
        if args.json:
            _print_json(
                {
                    "op": ch.op,
                    **_value_fields("key", ch.key.encode("utf-8", "surrogateescape")),
                    **_value_fields("value", ch.value),
                    "slot": ch.position.slot,
                    "index": ch.position.index,
                }
            )
        else:
            value = "" if ch.value is None else escape_value(ch.value)
            key = escape_value(ch.key.encode("utf-8", "surrogateescape"))
            print(f"{ch.op}\t{key}\t{value}", flush=True)
    return EXIT_OK


def cmd_elect(args: argparse.Namespace) -> int:
    """``elect campaign|observe|resign|status LOG NAME``: leader election (recipes.election)."""
    from passivepaxos.log import Log
    from passivepaxos.recipes.election import Election

    _text_arg(args.name, "election name")
    if not args.name:
        raise ConfigError("election name: give a non-empty NAME")
    op = args.elect_command
    candidate = getattr(args, "candidate", None)
    if candidate is not None:
        _text_arg(candidate, "candidate")
    if op == "resign" and not candidate:
        raise ConfigError("elect resign: give --candidate CANDIDATE (the one campaign printed)")
    with Log.open(args.log) as log:
        if op == "campaign":
            return _campaign(args, log, candidate or _default_owner())
        e = Election(log, args.name, ttl=10.0, candidate=candidate)
        if op == "status":
            st = e.leader()
            _print_leader(args, st.holder, st.token, st.holder is not None and st.mine, st.expires)
            return EXIT_OK
        if op == "resign":
            ok = e.locks.release(args.name)
            return _verdict(
                args,
                {"name": args.name, "resigned": ok, "candidate": e.candidate},
                ok=ok,
                done=f"resigned {plain_cell(args.name)}",
                refusal=f"{e.candidate} does not lead {args.name!r}",
            )
        st = e.leader()  # observe: the current leader first, then every change
        _print_leader(args, st.holder, st.token, False, st.expires)
        current = (st.holder, st.token)
        # a never-used name's state (nobody, token 0) is never yielded: caught up at once
        caught_up = current == (None, 0)
        for holder, token in e.observe():
            if not caught_up:
                caught_up = (holder, token) == current  # tokens only grow: seen once
                continue
            _print_leader(args, holder, token, False)
    return EXIT_OK


def _print_leader(
    args: argparse.Namespace,
    holder: str | None,
    token: int,
    mine: bool,
    expires: float | None = None,
) -> None:
    if args.json:
        from passivepaxos.lease import format_wall

        out: dict[str, Any] = {
            "name": args.name,
            "holder": holder,
            "token": token or None,
            "mine": mine,
        }
        if expires is not None:
            out["expires"] = format_wall(expires)
        _print_json(out)
    elif holder is None:
        name = plain_cell(args.name)
        print(f"{name}: no leader" + (f" (last term {token})" if token else ""), flush=True)
    else:
        print(f"{plain_cell(args.name)}: leader {plain_cell(holder)}, term {token}", flush=True)


def _campaign(args: argparse.Namespace, log: Any, candidate: str) -> int:
    """Lead until SIGINT/SIGTERM (resign, exit 0) or until the term is lost (exit 75)."""
    import signal

    from passivepaxos.lockrun import EXIT_LOCK_LOST
    from passivepaxos.recipes.election import Election
    from passivepaxos.recipes.lock import LockHeldError

    wake = log.runtime.event()
    e = Election(log, args.name, ttl=args.ttl, candidate=candidate, on_lost=lambda _r: wake.set())

    def waiting(rec: Any, remaining: float) -> None:
        print(
            f"passivepaxos: waiting to lead {args.name!r}: {rec.holder} leads (term "
            f"{rec.token}); it may be taken over in {remaining:.1f} s if it is not refreshed",
            file=sys.stderr,
            flush=True,
        )

    stopped: list[int] = []
    leading = False

    def stop(signum: int, _frame: Any) -> None:
        if not leading:  # still campaigning: interrupted as any command is
            raise KeyboardInterrupt
        stopped.append(signum)
        wake.set()

    # installed before the campaign: a signal just after it was won still resigns (the
    # review's L5: a Ctrl-C in between left the lock held until its ttl)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        term = e.campaign(timeout=args.wait, on_wait=waiting)
        leading = True
    except LockHeldError as exc:
        for s, h in previous.items():
            signal.signal(s, h)
        if args.json:
            _print_json(
                {
                    "name": args.name,
                    "holder": exc.holder,
                    "holder_token": exc.token,
                    "token": None,
                    "mine": False,
                    "error": str(exc),
                }
            )
        print(f"passivepaxos: error: {args.log}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BaseException:
        for s, h in previous.items():
            signal.signal(s, h)
        raise
    try:
        if args.json:
            _print_json({"name": args.name, "holder": candidate, "token": term, "mine": True})
        else:
            print(
                f"{plain_cell(args.name)}: leader {plain_cell(candidate)}, term {term}", flush=True
            )
        while not wake.is_set():
            wake.wait(1.0)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if not stopped or e.lost.is_set():
        print(
            f"passivepaxos: error: {args.log}: term {term} of {args.name!r} lost", file=sys.stderr
        )
        return EXIT_LOCK_LOST
    e.resign()
    print(f"resigned {args.name} (term {term})", file=sys.stderr)
    return EXIT_OK


def cmd_kv(args: argparse.Namespace) -> int:
    """``kv put|get|del|cas|list LOG ...``: the replicated KV store (recipes.kv)."""
    import os

    from passivepaxos.log import Log
    from passivepaxos.recipes.kv import KV

    with Log.open(args.log) as log:
        kv = KV(log)
        op = args.kv_command
        if op == "watch":
            return _kv_watch(args, log, kv)
        if op == "put":
            value = _stdin_bytes() if args.value == "-" else os.fsencode(args.value)
            pos = kv.put(args.key, value)
            if args.json:
                _print_json(
                    {
                        **_value_fields("key", _arg_bytes(args.key)),
                        **_value_fields("value", value),
                        "slot": pos.slot,
                        "index": pos.index,
                    }
                )
            else:
                print(f"put {plain_cell(args.key)} (slot {pos.slot})")
            return EXIT_OK
        if op == "get":
            got = kv.get(args.key)
            if got is None:
                refusal = f"key {args.key!r} not found"
                if args.json:
                    _print_json(
                        {
                            **_value_fields("key", _arg_bytes(args.key)),
                            "value": None,
                            "error": refusal,
                        }
                    )
                print(f"passivepaxos: error: {args.log}: {refusal}", file=sys.stderr)
                return EXIT_FAIL
            if args.json:
                _print_json(
                    {**_value_fields("key", _arg_bytes(args.key)), **_value_fields("value", got)}
                )
            else:
                _show(got)
            return EXIT_OK
        if op == "del":
            existed = kv.delete(args.key)
            if args.json:
                _print_json({**_value_fields("key", _arg_bytes(args.key)), "deleted": existed})
            else:
                print(f"deleted {args.key}" if existed else f"{args.key} was absent")
            return EXIT_OK
        if op == "cas":
            if args.absent == (args.expected is not None):
                raise ConfigError("cas: give either EXPECTED or --absent (expected absent)")
            expected = None if args.absent else os.fsencode(args.expected)
            new = os.fsencode(args.new)
            res = kv.cas(args.key, expected, new)
            if args.json:
                _print_json(
                    {
                        **_value_fields("key", _arg_bytes(args.key)),
                        **_value_fields("expected", expected),
                        **_value_fields("new", new),
                        "ok": res.ok,
                        **_value_fields("current", res.current),
                        "slot": res.position.slot,
                        "index": res.position.index,
                        **({} if res.ok else {"error": "the value is not the expected one"}),
                    }
                )
            elif res.ok:
                print(f"cas {args.key}: ok (slot {res.position.slot})")
            else:
                _show(res.current)
            if not res.ok:
                print(
                    f"passivepaxos: error: {args.log}: cas of {args.key!r} failed: the value "
                    "is not the expected one (current value printed)",
                    file=sys.stderr,
                )
                return EXIT_FAIL
            return EXIT_OK
        for key, value in kv.list(args.prefix):  # list
            if args.json:
                _print_json(
                    {**_value_fields("key", _arg_bytes(key)), **_value_fields("value", value)}
                )
            else:
                print(f"{escape_value(_arg_bytes(key))}\t{escape_value(value)}")
        sys.stdout.flush()
    return EXIT_OK


def _default_owner() -> str:
    """An owner id unique to this process (``USER@HOST-PID-RANDOM``): an acquire by the
    holder renews the lock, so a shared default would hand one lock to two processes."""
    import getpass
    import os
    import re
    import socket

    from passivepaxos.runtime import REAL

    try:
        user = getpass.getuser()
    except Exception:
        user = "user"
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    return f"{user}@{host}-{os.getpid()}-{REAL.token_hex(4)}"


def _verdict(
    args: argparse.Namespace, out: dict[str, Any], *, ok: bool, done: str, refusal: str
) -> int:
    """Report a yes/no operation: ``out`` as JSON (with ``error`` when refused) or ``done``
    as text; a refusal also on stderr, exit 1."""
    if args.json:
        _print_json(out if ok else {**out, "error": refusal})
    elif ok:
        print(done)
    if not ok:
        print(f"passivepaxos: error: {args.log}: {refusal}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def _lock_waiting(args: argparse.Namespace) -> Callable[[Any, float], None]:
    """What a waiting ``lock acquire --wait`` says on stderr, once."""

    def say(rec: Any, remaining: float) -> None:
        print(lock_wait_line(args.name, rec, args.wait, remaining), file=sys.stderr, flush=True)

    return say


def cmd_lock(args: argparse.Namespace) -> int:
    """``lock acquire|release|status LOG NAME``: locks with fencing tokens (recipes.lock)."""
    from passivepaxos.log import Log
    from passivepaxos.recipes.lock import LockHeldError, Locks

    op = args.lock_command
    _text_arg(args.name, "lock name")
    if not args.name:
        raise ConfigError("lock name: give a non-empty NAME")
    if args.owner:
        _text_arg(args.owner, "owner")
    if op == "run":
        from passivepaxos.lockrun import parse_signal, run_locked

        command = list(args.command_args)
        return run_locked(
            args.log,
            args.name,
            command,
            ttl=args.ttl,
            wait=args.wait,
            owner=args.owner or _default_owner(),
            sig=parse_signal(args.signal),
            grace=args.grace,
        )
    if op == "release" and not args.owner:
        raise ConfigError(
            "lock release: give --owner OWNER (the holder printed by `lock acquire`; "
            "without --owner each process is an owner of its own)"
        )
    with Log.open(args.log) as log:
        locks = Locks(log, owner=args.owner or _default_owner())
        if op == "acquire":
            try:
                token = locks.acquire(
                    args.name, args.ttl, wait=args.wait, on_wait=_lock_waiting(args)
                )
            except LockHeldError as exc:
                if args.json:
                    _print_json(
                        {
                            "name": args.name,
                            "acquired": False,
                            "mine": False,
                            "token": None,  # we got no token: the holder's is below
                            "holder": exc.holder,
                            "holder_token": exc.token,
                            "owner": locks.owner,
                            "error": str(exc),
                        }
                    )
                print(f"passivepaxos: error: {args.log}: {exc}", file=sys.stderr)
                return EXIT_FAIL
            if args.json:
                _print_json(
                    {
                        "name": args.name,
                        "acquired": True,
                        "mine": True,
                        "holder": locks.owner,
                        "owner": locks.owner,
                        "token": token,
                        "ttl": args.ttl,
                    }
                )
            else:
                print(
                    f"acquired {plain_cell(args.name)}: token {token} "
                    f"(owner {plain_cell(locks.owner)}, ttl {args.ttl}s)"
                )
            return EXIT_OK
        if op == "release":
            ok = locks.release(args.name, args.token)
            return _verdict(
                args,
                {"name": args.name, "released": ok, "owner": locks.owner},
                ok=ok,
                done=f"released {plain_cell(args.name)}",
                refusal=f"lock {args.name!r} is not held by {locks.owner}"
                + (f" with token {args.token}" if args.token else ""),
            )
        st = locks.status(args.name)
        if args.json:
            _print_json(st.to_json())
        elif st.holder is None:
            print(
                f"{plain_cell(args.name)}: free" + (f" (last token {st.token})" if st.token else "")
            )
        else:
            from passivepaxos.lease import format_wall

            looks = st.expires is not None and log.runtime.wall() > st.expires
            print(
                f"{plain_cell(args.name)}: held by {plain_cell(st.holder)}, token {st.token}, "
                f"ttl {st.ttl}s, "
                f"expires about {format_wall(st.expires)} (estimate"
                + (", looks expired" if looks else "")
                + f"); a taker waits until it stays unrefreshed for {st.ttl}s of its own clock"
            )
    return EXIT_OK


def _add_recipe_commands(sub: Any) -> None:
    p = sub.add_parser("kv", help="a replicated key-value store on a log (docs/recipes.md)")
    ksub = p.add_subparsers(dest="kv_command", metavar="ACTION")
    ksub.required = True
    k = ksub.add_parser("put", help="set KEY to VALUE")
    k.add_argument("log", metavar="LOG", help=LOG_HELP)
    k.add_argument("key", metavar="KEY", help="the key (UTF-8 text)")
    k.add_argument(
        "value", metavar="VALUE", help="the value; - reads it from stdin (bytes as they are)"
    )
    k = ksub.add_parser("get", help="print KEY's value (exit 1 if absent)")
    k.add_argument("log", metavar="LOG", help=LOG_HELP)
    k.add_argument("key", metavar="KEY", help="the key (UTF-8 text)")
    k = ksub.add_parser("del", help="delete KEY")
    k.add_argument("log", metavar="LOG", help=LOG_HELP)
    k.add_argument("key", metavar="KEY", help="the key (UTF-8 text)")
    k = ksub.add_parser("cas", help="set KEY to NEW iff it is EXPECTED (exit 1 if not)")
    k.add_argument("log", metavar="LOG", help=LOG_HELP)
    k.add_argument("key", metavar="KEY", help="the key (UTF-8 text)")
    k.add_argument("expected", metavar="EXPECTED", nargs="?", help="the value KEY must have now")
    k.add_argument("new", metavar="NEW", help="the value to set")
    k.add_argument("--absent", action="store_true", help="expect KEY to be absent")
    k = ksub.add_parser("list", help="keys and values, optionally under PREFIX")
    k.add_argument("log", metavar="LOG", help=LOG_HELP)
    k.add_argument("prefix", metavar="PREFIX", nargs="?", default="", help="only keys starting so")
    for action in ksub.choices.values():
        action.add_argument("--json", action="store_true")
        action.set_defaults(func=cmd_kv)

    k = ksub.add_parser("watch", help="print every change of keys under PREFIX as it happens")
    k.add_argument("log", metavar="LOG", help=LOG_HELP)
    k.add_argument("prefix", metavar="PREFIX", nargs="?", default="", help="only keys starting so")
    k.add_argument(
        "--from",
        dest="from_slot",
        type=_slot_arg,
        default=None,
        metavar="SLOT",
        help="replay the changes from log slot SLOT first (default: only new ones)",
    )
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_kv)

    p = sub.add_parser("elect", help="leader election on a lock: campaign, observe, resign")
    esub = p.add_subparsers(dest="elect_command", metavar="ACTION")
    esub.required = True
    for name, text in (
        ("campaign", "wait to lead NAME, then lead until SIGINT/SIGTERM (exit 75 if lost)"),
        ("observe", "print the leader and term of NAME at every change"),
        ("resign", "give up the leadership of NAME held by CANDIDATE"),
        ("status", "the current leader and term of NAME"),
    ):
        e = esub.add_parser(name, help=text)
        e.add_argument("log", metavar="LOG", help=LOG_HELP)
        e.add_argument("name", metavar="NAME", help="the election's name (a lock name)")
        if name in ("campaign", "resign"):
            e.add_argument(
                "--candidate",
                default=None,
                help="this candidate's name (default: unique to this process); resign needs it",
            )
        if name == "campaign":
            e.add_argument(
                "--ttl", type=_ttl_arg, default=10.0, metavar="S", help="term lease (default 10)"
            )
            e.add_argument(
                "--wait",
                type=_wait_arg,
                default=math.inf,
                metavar="S",
                help="give up after S seconds without leading (default: wait as long as it takes)",
            )
        e.add_argument("--json", action="store_true")
        e.set_defaults(func=cmd_elect)

    p = sub.add_parser("lock", help="named locks with fencing tokens on a log")
    lsub = p.add_subparsers(dest="lock_command", metavar="ACTION")
    lsub.required = True
    a = lsub.add_parser("acquire", help="acquire NAME; print its fencing token (exit 1 if held)")
    a.add_argument(
        "--ttl", type=_ttl_arg, default=30.0, metavar="S", help="lock time (default 30, max 1 day)"
    )
    a.add_argument(
        "--wait", type=_wait_arg, default=0.0, metavar="S", help="wait up to S seconds if held"
    )
    r = lsub.add_parser("release", help="release NAME (exit 1 if not held by OWNER)")
    r.add_argument("--token", type=int, default=None, help="only if it still has this token")
    s = lsub.add_parser("status", help="holder, token and expiry estimate of NAME")
    run_p = lsub.add_parser(
        "run",
        help="run CMD holding NAME: token in $PASSIVEPAXOS_FENCING_TOKEN, refreshed while "
        "CMD runs; CMD is signalled and the exit is 75 if the lock is lost",
    )
    run_p.add_argument(
        "--ttl", type=_ttl_arg, default=30.0, metavar="S", help="lock time (default 30, max 1 day)"
    )
    run_p.add_argument(
        "--wait", type=_wait_arg, default=0.0, metavar="S", help="wait up to S seconds if held"
    )
    run_p.add_argument(
        "--signal",
        default="TERM",
        metavar="SIG",
        help="sent to CMD when the lock is lost (default TERM; a name or number)",
    )
    run_p.add_argument(
        "--grace",
        type=_wait_arg,
        default=None,
        metavar="S",
        help="then SIGKILL after S seconds (default ttl/5, at most 10; keep it within ttl/4)",
    )
    for action in (a, r, s, run_p):
        action.add_argument("log", metavar="LOG", help=LOG_HELP)
        action.add_argument("name", metavar="NAME", help="the lock's name")
        action.add_argument(
            "--owner",
            default=None,
            help="lock owner id (default: unique to this process; acquiring again with the "
            "same owner renews the lock; release needs it)",
        )
        if action is not run_p:  # stdout belongs to CMD
            action.add_argument("--json", action="store_true")
        action.set_defaults(func=cmd_lock)
    run_p.add_argument(
        "command_args",
        metavar="-- CMD ...",
        nargs="*",
        help="the command and its arguments, after -- (main() splits them off first)",
    )


def _whole(text: str, what: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({what})") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r}: give a {what} >= {least}")
    return value


def _slot_arg(text: str) -> int:
    """A slot number: a whole number >= 0."""
    return _whole(text, "slot number", 0)


def _count_arg(text: str) -> int:
    """A count (``--limit``): a whole number >= 0."""
    return _whole(text, "count", 0)


def _seconds(text: str) -> float:
    """A ``--timeout`` value: seconds > 0, or 0 for no deadline."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds > 0, or 0 for no deadline")
    return value


def _ttl_arg(text: str) -> float:
    """A ``--ttl`` value: seconds in (0, 1 day] (``passivepaxos.lease.MAX_TTL``)."""
    from passivepaxos.lease import check_ttl

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    try:
        return check_ttl(value, repr(text))
    except ValueError as exc:  # ConfigError is a ValueError too
        raise argparse.ArgumentTypeError(str(exc) or f"{text!r} is not a number") from None


def _wait_arg(text: str) -> float:
    """A ``--wait`` value: a finite number of seconds >= 0."""
    from passivepaxos.lease import check_wait

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    try:
        return check_wait(value, repr(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) or f"{text!r} is not a number") from None


def _timeout_of(args: argparse.Namespace) -> float | None:
    """The ``--timeout`` in force: the option, else ``PASSIVEPAXOS_TIMEOUT``, else 30 s;
    ``None`` for 0 or ``inf`` (no deadline)."""
    import math
    import os

    value = args.timeout
    if value is None:
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        if not text:
            return DEFAULT_TIMEOUT
        try:
            value = _seconds(text)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{TIMEOUT_ENV}: {exc}") from None
    return None if value == 0 or math.isinf(value) else float(value)


def _deadline_for(args: argparse.Namespace) -> contextlib.AbstractContextManager[object]:
    """The deadline a command runs under. Commands that do a bounded amount of work get a
    total deadline (plus any wait the user asked for); commands that wait or walk a whole
    log by design get the timeout for each store request instead."""
    from passivepaxos.deadline import deadline

    timeout = _timeout_of(args)
    if timeout is None:
        return deadline()
    command = args.command
    open_ended = command in ("log", "verify", "snapshot", "trim", "members", "bench", "demo") or (
        command == "writer" and args.writer_command == "claim" and not args.no_wait
    )
    if command == "lock" and args.lock_command == "run":
        open_ended = True  # the command runs as long as it runs
    if command == "elect" and args.elect_command in ("campaign", "observe"):
        open_ended = True  # leads, or watches, until interrupted (the review's H1)
    if command == "kv" and args.kv_command == "watch":
        open_ended = True
    if command == "writer" and args.writer_command == "renew":
        open_ended = True  # a renewal with a new ttl is a claim that may wait
    if command == "log" and not args.follow and args.limit is not None:
        open_ended = False  # a bounded read
    if open_ended:
        return deadline(per_request=timeout)
    extra = float(getattr(args, "wait", 0.0) or 0.0) if command == "lock" else 0.0
    return deadline(timeout + max(0.0, extra))


def _add_global_options(parser: argparse.ArgumentParser, *, command: bool) -> None:
    """``--debug`` and ``--timeout``, on the top-level parser and (``command``) on every
    command's parser, so that they work before and after the command name alike. A
    command's copy has no default (``SUPPRESS``): given there it overrides the top-level
    value, absent it leaves that value alone."""
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if command else {}
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks on errors",
        **unset,
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"give up on store work after SECONDS (default: ${TIMEOUT_ENV}, else "
        f"{DEFAULT_TIMEOUT:g}; 0: never); see docs/cli.md",
        **(unset or {"default": None}),
    )


class _CommandParser(argparse.ArgumentParser):
    """The parser of a command (and of its sub-commands): takes the global options too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_options(self, command=True)

    def error(self, message: str) -> NoReturn:
        if "required" in message and "LOG" in message.split(":", 1)[-1]:
            message += f" (give a storage URL, or set {LOG_ENV})"
        super().error(message)


class _VersionAction(argparse.Action):
    """``--version``: print ``passivepaxos <version>`` and exit 0. The version is looked up
    only when asked for (reading package metadata is not free at every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        import passivepaxos

        print(f"passivepaxos {passivepaxos.__version__}")
        parser.exit()


JSON_HELP = "print JSON, one object per line (docs/cli.md lists the fields)"


def _fill_json_help(parser: argparse.ArgumentParser) -> None:
    """Give every command's ``--json`` the same help text."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                _fill_json_help(sp)
        elif action.dest == "json" and not action.help:
            action.help = JSON_HELP


def build_parser(*, upto_append: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``upto_append``: only the commands up to ``append`` (what
    ``passivepaxos append ...`` needs: the rest imports the membership, bench and demo
    modules, a few ms of a CLI append's wall time)."""
    parser = argparse.ArgumentParser(
        prog="passivepaxos",
        description="Consensus, a shared log, leases and locks on storage you already have.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument(
        "--json",
        dest="json_first",
        action="store_true",
        help="JSON output, one object per line (also accepted after the command)",
    )
    _add_global_options(parser, command=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    sub.required = True

    p = sub.add_parser("backends", help="print the backend capability table")
    p.add_argument("--probe", metavar="URL", help="test a live store for conditional writes")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("init", help="create a log / consensus space on one store or a quorum")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "create", "cas", "blocks"],
        help="how the append-only lists are kept: create (one object per slot, first "
        "create-if-absent wins), cas (one object per list, compare-and-swap), blocks (one "
        "object per proposer, Disk Paxos: needs only read-after-write), auto (the best "
        "every store offers, in that order; see `passivepaxos backends`)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "propose", help="propose a value for a consensus instance; print the decided one"
    )
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument(
        "instance",
        metavar="INSTANCE",
        help="the consensus instance: a name of letters, digits, . _ -",
    )
    p.add_argument("value", metavar="VALUE", help="the value to propose")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_propose)
    p = sub.add_parser("append", help="append values to a log (one slot); print each's slot")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument(
        "values",
        metavar="VALUE",
        nargs="*",
        help="a value to append; - reads values from stdin, one per line",
    )
    p.add_argument(
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="F",
        help="append the bytes of file F as one value (repeatable; after the VALUEs)",
    )
    p.add_argument(
        "--stdin-raw",
        action="store_true",
        help="append all of stdin as one value, bytes as they are (after the VALUEs and files)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--resume",
        metavar="TOKEN",
        help="finish an append whose outcome was unknown (exit 3), with the token it printed "
        "and the same values: prints its slots without writing twice",
    )
    p.add_argument(
        "--owner",
        default=None,
        help="append as this writer: the holder of the writer lease that `writer claim "
        "--owner OWNER` took (others wait for it or are refused)",
    )
    p.add_argument(
        "--forward",
        action="store_true",
        help="on a lost race, hand the values to whoever writes the next slot instead of "
        "racing again (one store only; docs/log.md, Forwarding)",
    )
    p.set_defaults(func=cmd_append)
    if upto_append:
        return parser

    p = sub.add_parser("log", help="print a log's entries")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument(
        "--from", dest="from_slot", type=_slot_arg, default=0, metavar="N", help="first slot"
    )
    p.add_argument("--limit", type=_count_arg, default=None, metavar="K", help="at most K entries")
    p.add_argument("--follow", action="store_true", help="keep polling for new entries")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("status", help="head slot, mode, stores, writer lease of a log")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("verify", help="check every slot's record and the hash chain")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("snapshot", help="write a snapshot of every entry up to the head slot")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("trim", help="replace slots before SLOT by tombstones (needs a snapshot)")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--before", type=int, required=True, metavar="SLOT", help="first slot kept")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_trim)

    p = sub.add_parser(
        "writer", help="the log's writer lease: claim, renew, release it or show who holds it"
    )
    wsub = p.add_subparsers(dest="writer_command", metavar="ACTION")
    wsub.required = True
    owner_help = (
        "the lease holder's name (default: unique to this process); later `append "
        "--owner`, `writer renew` and `writer release` calls with the same name act as "
        "the holder"
    )
    for name, text in (
        ("claim", "claim the writer lease (waits out a live one); prints the owner to reuse"),
        ("renew", "renew the lease held by OWNER (one empty record)"),
        ("release", "give up the lease held by OWNER at once (others need not wait)"),
        ("status", "holder, epoch, ttl and expiry estimate of the lease"),
    ):
        w = wsub.add_parser(name, help=text)
        w.add_argument("log", metavar="LOG", help=LOG_HELP)
        if name == "claim":
            w.add_argument(
                "--ttl",
                type=_ttl_arg,
                default=10.0,
                metavar="S",
                help="lease time (default 10, max 1 day)",
            )
            w.add_argument(
                "--no-wait", action="store_true", help="say 'not yet' instead of waiting"
            )
        elif name == "status":  # BRIEF section 5: `writer claim|status LOG [--ttl S]`
            w.add_argument(
                "--ttl",
                type=float,
                default=None,
                metavar="S",
                help="accepted for symmetry with claim; status shows the holder's own ttl",
            )
        elif name == "renew":
            w.add_argument(
                "--ttl", type=_ttl_arg, default=None, metavar="S", help="a new lease time"
            )
        if name != "status":
            w.add_argument("--owner", default=None, help=owner_help)
        w.add_argument("--json", action="store_true")
        w.set_defaults(func=cmd_writer)

    _add_recipe_commands(sub)

    from passivepaxos.membership import add_cli as _add_members_commands

    _add_members_commands(sub)  # members add|remove|list (passivepaxos.membership)

    from passivepaxos.bench.cli import add_cli as _add_bench_command

    _add_bench_command(sub)  # bench (passivepaxos.bench)

    from passivepaxos.demo import DEFAULT_COUNT, DEFAULT_PROCS, cmd_demo

    p = sub.add_parser("demo", help="three processes append to a log on local disk; show it")
    p.add_argument("dir", metavar="DIR", nargs="?", help="log directory (default: a new temp dir)")
    p.add_argument("--procs", type=int, default=DEFAULT_PROCS, help="appending processes")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, help="appends per process")
    p.set_defaults(func=cmd_demo)
    _fill_json_help(parser)
    return parser


def _refuse_memory(args: argparse.Namespace) -> None:
    """``memory://`` lives inside one process; every command is a new process, so a log
    there would be gone when the command ends (the next one would say "no log here")."""
    for name in ("log", "url"):
        value = getattr(args, name, None)
        if isinstance(value, str) and any(
            u.strip().lower().startswith("memory:") for u in value.split(",")
        ):
            raise ConfigError(
                f"{value}: a memory:// store lives inside one process and is gone when this "
                "command exits; the CLI needs a store that outlives it (file:///path, "
                "s3://bucket/prefix, ...); memory:// is for library use and tests"
            )


def _stdout_to_devnull() -> None:
    """The reader closed the pipe: point our stdout at /dev/null, so that the interpreter's
    final flush of what is still buffered does not fail again (that made exit 1)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (in-process use): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


LOG_ENV = "PASSIVEPAXOS_LOG"
LOG_HELP = (
    "storage URL (file:///dir, s3://bucket/prefix, gs://..., dropbox:///path), or several "
    f"joined by ',' (a quorum); default ${LOG_ENV}"
)


# commands whose first word after the command is an action (`kv put`, `lock run`, ...)
_ACTIONS = frozenset({"writer", "kv", "lock", "elect", "members"})


def _log_position(argl: list[str]) -> int | None:
    """Where LOG goes in ``argl``: after the command and its action (``None``: no
    command there)."""
    i = 0
    while i < len(argl) and argl[i].startswith("-"):
        i += 2 if argl[i] == "--timeout" else 1
    if i >= len(argl):
        return None
    i += 1
    if argl[i - 1] in _ACTIONS:
        if i >= len(argl) or argl[i].startswith("-"):
            return None
        i += 1
    return i


def _looks_like_log(word: str) -> bool:
    """A word meant as LOG, even if not a valid one: a URL, a path, a list of them."""
    return "://" in word or word.startswith(("/", "./", "../", "~")) or "," in word


def _parse(parser: argparse.ArgumentParser, argl: list[str]) -> argparse.Namespace:
    """Parse ``argl``; when ``PASSIVEPAXOS_LOG`` is set and LOG was left out (the line
    does not parse, or what took LOG's place is not a URL: ``append hello``), parse it
    again with that LOG in its place (as ``ETCDCTL_ENDPOINTS`` does for etcdctl)."""
    env = os.environ.get(LOG_ENV, "").strip()
    ours = argl[: argl.index("--")] if "--" in argl else argl  # after --: the command's
    if env and not {"-h", "--help"} & set(ours):
        quiet = io.StringIO()
        with contextlib.suppress(SystemExit), contextlib.redirect_stderr(quiet):
            args = _parse_once(parser, argl)
            if "://" in str(getattr(args, "log", "://")):
                return args
        i = _log_position(argl)
        # a word where LOG goes that looks like one (a URL, a path) was meant as LOG: its
        # error is the answer, never a write to the default log (the third review's P1)
        if i is not None and not _looks_like_log(argl[i] if i < len(argl) else ""):
            with contextlib.suppress(SystemExit), contextlib.redirect_stderr(quiet):
                return _parse_once(parser, [*argl[:i], env, *argl[i:]])
    return _parse_once(parser, argl)


def _parse_once(parser: argparse.ArgumentParser, argl: list[str]) -> argparse.Namespace:
    """Parse ``argl``; for ``lock run`` everything after the first ``--`` is the command,
    untouched (its own options are not ours: ``-- ls -l --ttl``)."""
    if "--" in argl:
        cut = argl.index("--")
        with contextlib.suppress(SystemExit):
            quiet = io.StringIO()  # a usage error or --help is reported by the full parse
            with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
                head = parser.parse_args(argl[:cut])
            if head.command == "lock" and head.lock_command == "run":
                head.command_args = list(head.command_args) + argl[cut + 1 :]
                return head
    args, extra = parser.parse_known_args(argl)
    # VALUEs after an option (`append LOG --json v`): argparse stops filling an
    # optional-length positional at the first option
    values_after = not any(x.startswith("-") and x != "-" for x in extra)
    if extra and getattr(args, "command", None) == "append" and values_after:
        args.values.extend(extra)
        extra = []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argl = list(sys.argv[1:] if argv is None else argv)
    # `append` first and no help asked: the same parser for it, without the later commands
    fast = bool(argl) and argl[0] == "append" and not {"-h", "--help"} & set(argl)
    parser = build_parser(upto_append=fast)
    args = _parse(parser, argl)
    # text output carries an argument's own bytes back out (a non-UTF-8 key is printed as
    # given, not a traceback); stderr already escapes what it cannot encode
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
    try:
        try:
            if getattr(args, "json_first", False):
                if not hasattr(args, "json"):
                    raise ConfigError(f"{args.command}: this command has no --json output")
                args.json = True
            _refuse_memory(args)
            with _deadline_for(args):
                code: int = args.func(args)
            sys.stdout.flush()  # now, not at exit, so that a closed pipe is handled here
            return code
        except BrokenPipeError:
            raise
        except (ConfigError, UnsupportedError) as exc:
            return _fail(args, exc, EXIT_USAGE)
        except PassivePaxosError as exc:  # the taxonomy's flag, not a list of classes
            if exc.outcome_unknown:
                return _fail(args, exc, EXIT_UNKNOWN, prefix="outcome unknown")
            return _fail(args, exc, EXIT_FAIL)
        except KeyboardInterrupt as exc:  # notes say what is in flight (a forwarded append)
            for note in getattr(exc, "__notes__", ()):
                print(f"passivepaxos: interrupted: {note}", file=sys.stderr)
            return 130
        except Exception as exc:  # a bug or an unmapped error: still one line
            return _fail(args, exc, EXIT_FAIL, prefix=f"unexpected {type(exc).__name__}")
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_OK


def run() -> NoReturn:
    """The process entry point (the ``passivepaxos`` script, ``python -m passivepaxos``):
    ``main``, then the exit without the interpreter's teardown. Freeing the objects a
    process that loaded botocore holds takes ~50 ms, a sixth of a fresh ``append``'s
    wall time (issue 12: a CLI call against one boto3 ``put_object``), and nothing is
    left to do by then: every command has closed its logs (their background hint
    writes waited for, the tail cache saved) and its output is flushed here. A request
    still in flight after a failed command (a store hung past ``--timeout``) is dropped
    instead of waited for; its outcome was already reported unknown or failed.
    Under a profiler, a tracer or coverage (``python -m cProfile``, ``coverage run``),
    which save what they gathered at exit, the exit is the ordinary one (the outside
    review: ``-m cProfile -o`` wrote nothing)."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to keep
            stream.flush()
    if _observed():
        sys.exit(code)
    os._exit(code)


def _observed() -> bool:
    """Whether a profiler, tracer or coverage watches this process: the old hooks, the
    modules, and Python 3.12's ``sys.monitoring`` tools (cProfile and coverage use those
    there, and ``sys.getprofile()`` is ``None``: the second outside review)."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    if any(m in sys.modules for m in ("coverage", "cProfile", "profile")):
        return True
    monitoring: Any = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(i) for i in range(6))


def _fail(args: argparse.Namespace, exc: BaseException, code: int, *, prefix: str = "") -> int:
    debug = getattr(args, "debug", False)
    if debug:
        traceback.print_exc()
    message = " ".join(str(exc).split()) or type(exc).__name__
    if prefix and prefix not in message:
        message = f"{prefix}: {message}"
    if prefix.startswith("unexpected") and not debug:
        message += " (run with --debug for the traceback)"
    print(f"passivepaxos: error: {message}", file=sys.stderr)
    if getattr(args, "json", False) and not getattr(exc, "json_reported", False):
        # --json: the refusal as an object on stdout too (unless the command printed one)
        with contextlib.suppress(OSError, ValueError):
            _print_json({"error": message, "exit": code})
    return code
