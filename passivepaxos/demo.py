"""``passivepaxos demo [DIR]``: three OS processes append to one log on local disk at once,
then the log, its status and a verification are shown.

The parent initialises the log (``DIR``, or a new temporary directory), starts the worker
processes (``python -m passivepaxos.demo LOG NAME COUNT``), lets them all start appending
at the same moment, and collects what each one was acknowledged: one JSON line per value
with its ``(slot, index)``. Afterwards it reads the log back and checks that every
acknowledged value appears exactly once, at its acknowledged position, and that the hash
chain verifies. Exit 0 only if both hold.

A worker counts its own storage requests (a :class:`~passivepaxos.wrappers.CountingBackend`
under its store), so the summary can say how many requests an entry cost under contention.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from passivepaxos.errors import ConfigError
from passivepaxos.runtime import REAL, EventLike

__all__ = ["cmd_demo", "run_demo", "worker_main"]

DEFAULT_PROCS = 3
DEFAULT_COUNT = 20
WORKER_TIMEOUT = 60.0


@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen[str]
    acks: list[tuple[str, int, int]] = field(default_factory=list)  # (value, slot, index)
    requests: int = 0
    ready: EventLike = field(default_factory=REAL.event)
    done: bool = False
    lines: list[str] = field(default_factory=list)  # unparsed stdout (diagnostics)
    err: list[str] = field(default_factory=list)  # stderr lines


def _read_worker(w: _Worker) -> None:
    assert w.proc.stdout is not None
    for line in w.proc.stdout:
        try:
            msg: Any = json.loads(line)
        except ValueError:
            w.lines.append(line.rstrip("\n"))
            continue
        if not isinstance(msg, dict):
            w.lines.append(line.rstrip("\n"))
        elif msg.get("ready"):
            w.ready.set()
        elif msg.get("done"):
            w.requests = int(msg.get("requests", 0))
            w.done = True
        elif "value" in msg:
            w.acks.append((str(msg["value"]), int(msg["slot"]), int(msg["index"])))
    w.ready.set()  # EOF: never leave the parent waiting for a dead worker


def _read_stderr(w: _Worker) -> None:
    assert w.proc.stderr is not None
    w.err.extend(line.rstrip("\n") for line in w.proc.stderr)


def _child_env() -> dict[str, str]:
    """Children import the same passivepaxos as this process (not an installed copy)."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(url: str, name: str, count: int) -> _Worker:
    proc = subprocess.Popen(
        [sys.executable, "-m", "passivepaxos.demo", url, name, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    return _Worker(name, proc)


def _go(w: _Worker) -> None:
    assert w.proc.stdin is not None
    try:
        w.proc.stdin.write("go\n")
        w.proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # it died already; its stderr says why


def _demo_dir(directory: str) -> Path:
    """``DIR`` made ready for the demo's log: created if missing; a path that is not a
    directory (or cannot be made one) is a ``ConfigError`` naming it (exit 2), and so is a
    storage URL (the demo runs on local disk: ``memory://x`` would become ``./memory:/x``) or
    a name that is not UTF-8 (it has no ``file://`` URL a log could be opened by)."""
    if "://" in directory:
        raise ConfigError(
            f"demo: {directory!r} is a URL; demo takes a local directory (e.g. /tmp/ppx-demo)"
        )
    path = Path(directory).expanduser().resolve()
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ConfigError(
            f"demo: the directory name {shown} is not valid UTF-8; choose a UTF-8 name"
        ) from None
    if path.exists() and not path.is_dir():
        raise ConfigError(f"demo: {path} exists and is not a directory; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"demo: cannot create the directory {path}: {exc.strerror}") from None
    return path


def run_demo(
    directory: str | None,
    *,
    procs: int = DEFAULT_PROCS,
    count: int = DEFAULT_COUNT,
    out: IO[str] | None = None,
) -> int:
    """Run the demo; return the exit code (0: verified and every acknowledged value found
    exactly once at its position; 1 otherwise)."""
    from rich.table import Table
    from rich.text import Text

    from passivepaxos.log import Log
    from passivepaxos.manifest import init_log
    from passivepaxos.terminal import console as make_console

    console = make_console(file=out or sys.stdout, highlight=False)
    rt = REAL  # the demo drives real OS processes: real clock, real threads
    t0 = rt.monotonic()
    if directory is None:
        path = Path(tempfile.mkdtemp(prefix="passivepaxos-demo-"))
        console.print(f"demo directory (new, temporary): {path}", markup=False, soft_wrap=True)
    else:
        path = _demo_dir(directory)
        console.print(f"demo directory: {path}", markup=False, soft_wrap=True)
    url = path.as_uri()
    _, created = init_log(url)
    with Log.open(url) as log:
        start_head = log.head()
    console.print(
        f"log {url} {'initialised' if created else f'reused (head slot {start_head})'}; "
        f"starting {procs} processes, {count} appends each",
        markup=False,
        soft_wrap=True,
    )

    workers = [_spawn(url, f"proc-{i}", count) for i in range(1, procs + 1)]
    readers = [
        rt.spawn(fn, w, name=f"demo-{w.name}-{fn.__name__}")
        for w in workers
        for fn in (_read_worker, _read_stderr)
    ]
    deadline = rt.monotonic() + WORKER_TIMEOUT
    for w in workers:  # all open the log first, then start appending at the same moment
        w.ready.wait(max(0.0, deadline - rt.monotonic()))
    t_append = rt.monotonic()
    for w in workers:
        _go(w)
    failures: list[str] = []
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, deadline - rt.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
            failures.append(f"{w.name}: timed out after {WORKER_TIMEOUT:.0f} s")
    for r in readers:
        r.join(5)
    for w in workers:
        if w.proc.returncode != 0 or not w.done:
            last = [ln for ln in w.err if ln.strip()][-1:] or w.lines[-1:] or ["no output"]
            failures.append(f"{w.name}: exit {w.proc.returncode}: {last[0]}")
    append_secs = rt.monotonic() - t_append

    # read back, show, check
    with Log.open(url) as log:
        entries = list(log.read(start_head + 1))
        table = Table(title=f"the log: {len(entries)} entries appended by this demo")
        for col in ("slot", "index", "value"):
            table.add_column(col, overflow="fold")
        for e in entries:
            table.add_row(str(e.slot), str(e.index), Text(e.value.decode("utf-8", "replace")))
        console.print(table)
        head = log.head()
        report = log.verify()
    _print_status(url, out)

    acks = [a for w in workers for a in w.acks]
    seen = Counter(e.value.decode("utf-8", "replace") for e in entries)
    at = {(e.slot, e.index): e.value.decode("utf-8", "replace") for e in entries}
    problems = list(failures)
    for value, slot, index in acks:
        if seen[value] != 1:
            problems.append(f"acknowledged value {value!r} appears {seen[value]} times")
        elif at.get((slot, index)) != value:
            problems.append(f"acknowledged value {value!r} is not at slot {slot} index {index}")
    acked = {a[0] for a in acks}
    problems.extend(
        f"value {v!r} appears {n} times"
        for v, n in sorted(seen.items())
        if n > 1 and v not in acked
    )
    if report.ok:
        console.print(
            f"verify: intact: {report.slots} slot(s), {report.entries} entries, hash chain ok"
        )
    else:
        problems.append(f"verify: {report.error}")
        console.print(f"verify: damage found: {report.error}", markup=False, soft_wrap=True)

    slots = head - start_head
    requests = sum(w.requests for w in workers)
    per_entry = f"{requests / len(acks):.2f}" if acks else "n/a"
    per_slot = f"{len(acks) / slots:.2f}" if slots > 0 else "n/a"
    elapsed = rt.monotonic() - t0
    summary = (
        f"{'OK' if not problems else 'FAILED'}: {len(acks)} entries acknowledged by {procs} "
        f"processes in {slots} slots ({per_slot} entries/slot), {per_entry} storage requests "
        f"per entry, appends took {append_secs:.2f} s, demo {elapsed:.2f} s"
    )
    for p in problems:
        console.print(f"problem: {p}", markup=False, soft_wrap=True)
    console.print(summary, markup=False, soft_wrap=True)
    if not problems:
        console.print(f"look again with: passivepaxos log {url}", markup=False, soft_wrap=True)
    return 0 if not problems else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The ``demo`` subcommand (registered in :func:`passivepaxos.cli.build_parser`)."""
    if args.procs < 1 or args.count < 1:
        raise ConfigError("--procs and --count must be at least 1")
    return run_demo(args.dir, procs=args.procs, count=args.count)


def _print_status(url: str, out: IO[str] | None) -> None:
    """The ``status`` command's own output (whatever it shows, e.g. the writer lease)."""
    from contextlib import redirect_stdout

    from passivepaxos.terminal import print_status

    if out is None:
        print_status(url)
    else:
        with redirect_stdout(out):
            print_status(url)


# -- the worker process ------------------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def worker_main(argv: Sequence[str]) -> int:
    """``python -m passivepaxos.demo LOG NAME COUNT``: open LOG, print ``{"ready": true}``,
    wait for a line on stdin, append ``"NAME #i"`` for i in 1..COUNT one at a time, printing
    each acknowledgement, then ``{"done": true, "requests": N}``."""
    from passivepaxos.log import Log
    from passivepaxos.wrappers import CountingBackend

    url, name, count = argv[0], argv[1], int(argv[2])
    with Log.open(url) as log:
        counters = []
        for store in log.stores:
            counting = CountingBackend(store.backend)
            store.backend = counting
            counters.append(counting)
        _emit({"ready": True})
        sys.stdin.readline()
        for i in range(1, count + 1):
            value = f"{name} #{i}"
            (pos,) = log.append_positions([value.encode()])
            _emit({"value": value, "slot": pos.slot, "index": pos.index})
        _emit({"done": True, "requests": sum(c.total for c in counters)})
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
