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
from collections.abc import Sequence
from types import FrameType

from passivepaxos.errors import ConfigError, LockHeldError, PassivePaxosError
from passivepaxos.keepalive import KeepAlive
from passivepaxos.log import Log
from passivepaxos.recipes.lock import LockRecord, Locks
from passivepaxos.terminal import lock_wait_line

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


def _say(line: str) -> None:
    """One line on stderr; a closed or broken stderr never stops the supervision (the
    command must still be signalled when the lock is lost)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


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
    if grace >= ttl / 4:
        _say(
            f"passivepaxos: warning: --grace {grace:g} s is not below ttl/4 ({ttl / 4:g} s): "
            "after a lost lock the command may still run when a taker is granted it"
        )

    def waiting(rec: LockRecord, remaining: float) -> None:
        _say(lock_wait_line(name, rec, wait, remaining))

    with Log.open(url) as log:
        locks = Locks(log, owner=owner)
        if locks.status(name).mine:  # an acquire by the holder would renew it: two runs
            _say(
                f"passivepaxos: error: {url}: lock {name!r} is already held by owner "
                f"{owner} (another `lock run --owner {owner}`?); one owner is one holder"
            )
            return 1
        try:
            token = locks.acquire(name, ttl, wait=wait, on_wait=waiting)
        except LockHeldError as exc:
            _say(f"passivepaxos: error: {url}: {exc}")
            return 1
        return _Supervisor(url, name, locks, token, sig, grace).run(command)


class _Supervisor:
    """Runs the command in a process group of its own and ends the group when the lock
    is lost; one object per ``lock run``."""

    def __init__(
        self, url: str, name: str, locks: Locks, token: int, sig: signal.Signals, grace: float
    ) -> None:
        self.url, self.name, self.locks, self.token = url, name, locks, token
        self.sig, self.grace = sig, grace
        self.wake = locks.runtime.event()
        self.done = locks.runtime.event()
        self.child: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []  # signals that came before the command started

    def run(self, command: Sequence[str]) -> int:
        # signals to us are passed on from now on (queued until the command exists)
        previous = {s: signal.signal(s, self._pass_on) for s in _PASSED_ON}
        keep: KeepAlive | None = None
        tty = _Terminal()
        try:
            keep = self.locks.keep_alive(self.name, on_lost=lambda _r: self.wake.set())
            env = dict(os.environ)
            env.update(
                {
                    ENV_TOKEN: str(self.token),
                    "PASSIVEPAXOS_LOCK_NAME": self.name,
                    "PASSIVEPAXOS_LOCK_OWNER": self.locks.owner,
                    "PASSIVEPAXOS_LOG": self.url,
                }
            )
            try:
                # a group of its own: a lost lock ends every process the command started
                self.child = subprocess.Popen(list(command), env=env, process_group=0)
            except OSError as exc:
                keep.stop()
                self._release()
                _say(f"passivepaxos: error: {command[0]}: {exc.strerror or exc}")
                return 127 if isinstance(exc, FileNotFoundError) else 126
            tty.give(self.child.pid)
            for signum in self.pending:
                self._signal(signum)
            self.locks.runtime.spawn(self._reap, name="ppx-lock-run-child")
            lost = self._wait(keep)
            if lost is not None:
                self._end(lost, command[0])
                return EXIT_LOCK_LOST
            keep.stop()
            if keep.lost.is_set() or not self.locks.valid(self.name):
                # the validity ran out (or the lock was lost) just as the command ended:
                # never release a lock that may be someone else's by now
                why = (
                    keep.reason
                    or f"lock {self.name!r} (token {self.token}) was not refreshed in time"
                )
                _say(f"passivepaxos: error: {self.url}: {why}")
                return EXIT_LOCK_LOST
            self._release()
            return _status(self.child.returncode)
        finally:
            tty.restore()
            if keep is not None:
                keep.stop()
            for s, h in previous.items():
                signal.signal(s, h)

    def _wait(self, keep: KeepAlive) -> str | None:
        """Until the command ends (``None``) or the lock is lost (why). Checks the lock's
        validity itself too: a renewal stuck in a call its deadline cannot cut must not
        delay the signal."""
        while not self.done.is_set():
            left = keep.remaining()
            if keep.lost.is_set() or left <= 0:
                return keep.reason or (
                    f"lock {self.name!r} (token {self.token}) could not be renewed in time"
                )
            self.wake.wait(min(left, 1.0))
            self.wake.clear()
        return None

    def _end(self, why: str, command: str) -> None:
        """Signal the command's group first, then say so; SIGKILL after the grace."""
        assert self.child is not None
        self._signal(self.sig)
        _say(
            f"passivepaxos: error: {self.url}: {why}; sent {self.sig.name} to {command} "
            f"(pid {self.child.pid}) and its process group"
        )
        if not self.done.wait(self.grace):
            self._signal(signal.SIGKILL)
            _say(f"passivepaxos: error: still running after {self.grace:g} s: sent SIGKILL")
            self.done.wait()

    def _reap(self) -> None:
        assert self.child is not None
        self.child.wait()
        self.done.set()
        self.wake.set()

    def _pass_on(self, signum: int, _frame: FrameType | None) -> None:
        if self.child is None:
            self.pending.append(signum)
        else:
            self._signal(signum)

    def _signal(self, signum: int) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, signum)

    def _release(self) -> None:
        try:
            if not self.locks.release(self.name, self.token):
                _say(
                    f"passivepaxos: warning: {self.url}: lock {self.name!r} (token "
                    f"{self.token}) was no longer ours to release"
                )
        except PassivePaxosError as exc:
            _say(
                f"passivepaxos: warning: {self.url}: could not release lock {self.name!r} "
                f"(token {self.token}): {exc}; it is free once unrefreshed for its ttl"
            )


class _Terminal:
    """When we run in the foreground of a terminal, the command's process group gets the
    terminal (it reads it, and Ctrl-C reaches it once, as it would without us) and we
    take it back at the end."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.ours = 0

    def give(self, pgid: int) -> None:
        try:
            fd = sys.stdin.fileno()
            if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
                return
            self.fd, self.ours = fd, os.getpgrp()
            self._set(pgid)
            # a command that read the terminal before it was its own was stopped (SIGTTIN)
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGCONT)
        except (OSError, ValueError):
            self.fd = None

    def restore(self) -> None:
        if self.fd is not None:
            self._set(self.ours)
            self.fd = None

    def _set(self, pgid: int) -> None:
        assert self.fd is not None
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # we may be in the background
        try:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(self.fd, pgid)
        finally:
            signal.signal(signal.SIGTTOU, old)
