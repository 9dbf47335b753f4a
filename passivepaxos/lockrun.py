"""``passivepaxos lock run LOG NAME -- CMD...``: run a command while holding a lock.

What ``flock``, ``consul lock`` and ``etcdctl lock`` users expect for "only one cron run at
a time" (docs/cli.md has the contract):

- acquire ``NAME`` (waiting up to ``--wait``), then start ``CMD`` with the fencing token in
  ``PASSIVEPAXOS_FENCING_TOKEN`` (and ``PASSIVEPAXOS_LOCK_NAME``, ``PASSIVEPAXOS_LOCK_OWNER``,
  ``PASSIVEPAXOS_LOG`` beside it);
- refresh the lock in the background (:class:`passivepaxos.keepalive.KeepAlive`, every
  ttl/3) while ``CMD`` runs;
- if the lock is lost (taken over, or not refreshed within 0.75 x ttl of our clock), send
  ``CMD`` ``--signal`` (SIGTERM), then SIGKILL after ``--grace`` seconds, and exit
  :data:`EXIT_LOCK_LOST`; a grace within ttl/4 ends ``CMD`` before a taker can be granted
  the lock (within the clock-drift bound of docs/recipes.md);
- otherwise release the lock and exit with ``CMD``'s own status (128 + N when a signal N
  ended it, as shells report it). SIGINT, SIGTERM and SIGHUP sent to us are passed on to
  ``CMD``, which decides when to stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from passivepaxos.errors import ConfigError, LockHeldError, PassivePaxosError
from passivepaxos.keepalive import KeepAlive
from passivepaxos.log import Log
from passivepaxos.recipes.lock import LockRecord, Locks

__all__ = ["ENV_TOKEN", "EXIT_LOCK_LOST", "parse_signal", "run_locked"]

# exit status when the lock was lost while CMD ran (sysexits' EX_TEMPFAIL: try again later)
EXIT_LOCK_LOST = 75
ENV_TOKEN = "PASSIVEPAXOS_FENCING_TOKEN"
_PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def parse_signal(text: str) -> signal.Signals:
    """``TERM``, ``SIGTERM``, ``term`` or ``15``: the signal; ``ConfigError`` naming the text."""
    t = text.strip().upper()
    try:
        return (
            signal.Signals(int(t))
            if t.isdigit()
            else signal.Signals[t if t.startswith("SIG") else f"SIG{t}"]
        )
    except (KeyError, ValueError):
        raise ConfigError(
            f"--signal {text!r} is not a signal name or number (TERM, INT, 9, ...)"
        ) from None


def _status(returncode: int) -> int:
    """A child's exit status as a shell reports it (a signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def run_locked(
    url: str,
    name: str,
    command: Sequence[str],
    *,
    ttl: float,
    wait: float,
    owner: str,
    sig: signal.Signals = signal.SIGTERM,
    grace: float | None = None,
) -> int:
    """Run ``command`` holding lock ``name`` on the log at ``url``; the exit status (module
    docstring). Raises ``ConfigError`` for bad arguments, ``PassivePaxosError`` for a store
    failure before ``command`` started; a held lock prints one line and returns 1."""
    if not command:
        raise ConfigError("lock run: give the command after `--` (lock run LOG NAME -- CMD ...)")
    grace = min(10.0, ttl / 5) if grace is None else grace
    if not grace >= 0:
        raise ConfigError(f"--grace {grace!r}: give seconds >= 0")
    if grace > ttl / 4:
        print(
            f"passivepaxos: warning: --grace {grace:g} s is more than ttl/4 ({ttl / 4:g} s): "
            "after a lost lock the command may still run when a taker is granted it",
            file=sys.stderr,
        )

    def waiting(rec: LockRecord, remaining: float) -> None:
        print(
            f"passivepaxos: lock {name!r} is held by {rec.holder} (token {rec.token}); "
            f"waiting up to {wait:g} s (it may be taken over in {remaining:.1f} s if it is "
            "not refreshed)",
            file=sys.stderr,
            flush=True,
        )

    with Log.open(url) as log:
        locks = Locks(log, owner=owner)
        try:
            token = locks.acquire(name, ttl, wait=wait, on_wait=waiting)
        except LockHeldError as exc:
            print(f"passivepaxos: error: {url}: {exc}", file=sys.stderr)
            return 1
        wake = threading.Event()
        reasons: list[str] = []

        def lost(reason: str) -> None:
            reasons.append(reason)
            wake.set()

        keep = locks.keep_alive(name, on_lost=lost)
        env = dict(os.environ)
        env.update(
            {
                ENV_TOKEN: str(token),
                "PASSIVEPAXOS_LOCK_NAME": name,
                "PASSIVEPAXOS_LOCK_OWNER": locks.owner,
                "PASSIVEPAXOS_LOG": url,
            }
        )
        try:
            child = subprocess.Popen(list(command), env=env)
        except OSError as exc:
            keep.stop()
            _release(locks, name, token, url)
            print(f"passivepaxos: error: {command[0]}: {exc.strerror or exc}", file=sys.stderr)
            return 127 if isinstance(exc, FileNotFoundError) else 126
        return _supervise(
            child, command[0], wake, reasons, keep, sig, grace, locks, name, token, url
        )


def _supervise(
    child: subprocess.Popen[bytes],
    command: str,
    wake: threading.Event,
    reasons: list[str],
    keep: KeepAlive,
    sig: signal.Signals,
    grace: float,
    locks: Locks,
    name: str,
    token: int,
    url: str,
) -> int:
    """Wait for ``child`` or the loss of the lock, whichever comes first."""
    done = threading.Event()

    def reap() -> None:
        child.wait()
        done.set()
        wake.set()

    threading.Thread(target=reap, name="ppx-lock-run-child", daemon=True).start()

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {s: signal.signal(s, pass_on) for s in _PASSED_ON}
    try:
        wake.wait()
        if not done.is_set():  # the lock was lost while the command runs
            print(
                f"passivepaxos: error: {url}: {reasons[0]}; sending {sig.name} to "
                f"{command} (pid {child.pid})",
                file=sys.stderr,
                flush=True,
            )
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
            if not done.wait(grace):
                print(
                    f"passivepaxos: error: still running after {grace:g} s: sending SIGKILL",
                    file=sys.stderr,
                    flush=True,
                )
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                done.wait()
            return EXIT_LOCK_LOST
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        keep.stop()
    if keep.lost.is_set():  # lost just as the command ended: say so, do not release
        print(f"passivepaxos: error: {url}: {keep.reason}", file=sys.stderr)
        return EXIT_LOCK_LOST
    _release(locks, name, token, url)
    return _status(child.returncode)


def _release(locks: Locks, name: str, token: int, url: str) -> None:
    try:
        if not locks.release(name, token):
            print(
                f"passivepaxos: warning: {url}: lock {name!r} (token {token}) was no longer "
                "ours to release",
                file=sys.stderr,
            )
    except PassivePaxosError as exc:
        print(
            f"passivepaxos: warning: {url}: could not release lock {name!r} (token {token}): "
            f"{exc}; it is free once unrefreshed for its ttl",
            file=sys.stderr,
        )
