"""Worker for tests/test_histories.py: KV and lock operations on one log, one JSON line each.

    python tests/histories_worker.py LOG_URL PROCESS COUNT [LOCK_OPS [TTL]]

Lines, times from time.time() (the shared clock of processes on one host):

- ``{"type": "kv", process, kind, key, input, output, status, call, ret}``: a KV op;
- ``{"type": "lock", ...same fields}``: an ``acquire`` (input: owner; output: the token, or
  None when refused) or ``release`` (input: [owner, token]; output: bool) of a lock;
- ``{"type": "hold", name, owner, token, start, end}``: a hold, as in
  ``scripts/check_histories.py``: from the acquire's return until the release call or, if
  earlier, the end of ``Locks.valid()`` (0.75 x ttl after the start of the acquire).

``info`` when the outcome is unknown (``ret`` null); after an ``info`` lock op the worker
continues under a fresh owner id (a restarted client), as the script does.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passivepaxos.checker import Hold, Op, Recorder
from passivepaxos.errors import ConfigError
from passivepaxos.log import Log
from passivepaxos.recipes.kv import KV
from passivepaxos.recipes.lock import LockHeldError, Locks
from scripts.check_histories import _hold, _valid_until

LOCK_NAMES = ("L0", "L1")


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def _emit_op(op: Op) -> None:
    _emit(
        {
            "type": "lock",
            "process": op.process,
            "kind": op.kind,
            "key": op.key,
            "input": op.input,
            "output": op.output,
            "status": op.status,
            "call": op.call,
            "ret": op.ret,
        }
    )


def _emit_hold(h: Hold) -> None:
    _emit(
        {
            "type": "hold",
            "name": h.name,
            "owner": h.owner,
            "token": h.token,
            "start": h.start,
            "end": h.end,
        }
    )


class LockClient:
    """Lock operations recorded on time.time(), like the script's client threads.

    ``Locks`` keeps its own (default, monotonic) clock; the end of its validity is mapped
    to time.time() with this process's offset between the two clocks."""

    def __init__(self, url: str, process: int, ttl: float, rng: random.Random) -> None:
        self.url, self.process, self.ttl, self.rng = url, process, ttl, rng
        self.rec = Recorder(time.time)
        self.offset = time.time() - time.monotonic()
        self.held: dict[str, tuple[int, float]] = {}  # name -> (token, hold start)
        self.logs: list[Log] = []
        self.locks = self._fresh()

    def _fresh(self) -> Locks:
        log = Log.open(self.url)
        self.logs.append(log)
        owner = f"p{self.process}-{len(self.logs)}-{uuid.uuid4().hex[:4]}"
        return Locks(log, owner=owner, poll=0.02)

    def _valid_until(self, name: str) -> float:
        return _valid_until(self.locks, name) + self.offset

    def _end_holds(self, now: float) -> None:
        """Every hold ends at ``now`` (or its validity's end) and the owner is replaced."""
        for name, (token, begun) in self.held.items():
            end = min(now, self._valid_until(name))
            _emit_hold(_hold(name, self.locks.owner, token, begun, end, end))
        self.held.clear()
        self.locks = self._fresh()

    def step(self) -> None:
        name = self.rng.choice(LOCK_NAMES)
        if name in self.held:
            token, begun = self.held.pop(name)
            # "work" under the lock, sometimes past its validity (0.75 x ttl)
            time.sleep(self.rng.choice([0.0, 0.05, self.ttl * 0.5, self.ttl * 0.9]))
            now = time.time()
            owner = self.locks.owner
            _emit_hold(_hold(name, owner, token, begun, now, self._valid_until(name)))
            h = self.rec.invoke(self.process, "release", name, (owner, token))
            try:
                out = self.locks.release(name, token)
            except ConfigError:
                _emit_op(self.rec.fail(h))
                return
            except Exception:
                _emit_op(self.rec.info(h))
                self._end_holds(now)
                return
            _emit_op(self.rec.ok(h, out))
            return
        h = self.rec.invoke(self.process, "acquire", name, self.locks.owner)
        try:
            token = self.locks.acquire(name, self.ttl)
        except LockHeldError:
            _emit_op(self.rec.ok(h, None))
            return
        except ConfigError:
            _emit_op(self.rec.fail(h))
            return
        except Exception:
            _emit_op(self.rec.info(h))
            self._end_holds(time.time())
            return
        op = self.rec.ok(h, token)
        _emit_op(op)
        assert op.ret is not None
        self.held[name] = (token, op.ret)

    def close(self) -> None:
        now = time.time()
        for name, (token, begun) in self.held.items():
            _emit_hold(_hold(name, self.locks.owner, token, begun, now, self._valid_until(name)))
        self.held.clear()
        done = len(self.rec.history)
        for op in self.rec.close()[done:]:  # operations still open: info
            _emit_op(op)
        for log in self.logs:
            log.close()


def main() -> None:
    url, process, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    lock_ops = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    ttl = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
    rng = random.Random(process)
    written: list[str] = []
    steps = ["kv"] * count + ["lock"] * lock_ops
    rng.shuffle(steps)
    locker = LockClient(url, process, ttl, random.Random(f"lock{process}")) if lock_ops else None
    with Log.open(url) as log:
        kv = KV(log)
        n = -1
        for step in steps:
            if step == "lock":
                assert locker is not None
                locker.step()
                continue
            n += 1
            key = rng.choice(["a", "b"])
            value = f"p{process}.{n}"
            r = rng.random()
            inp: Any = None
            if r < 0.3:
                kind, inp = "put", value
            elif r < 0.6:
                kind = "get"
            elif r < 0.7:
                kind = "delete"
            else:
                expected = rng.choice([None, *written[-3:]])
                kind, inp = "cas", [expected, value]
            if kind in ("put", "cas"):
                written.append(value)
            call = time.time()
            status = "ok"
            output_: Any = None
            try:
                if kind == "put":
                    kv.put(key, value.encode())
                elif kind == "get":
                    got = kv.get(key)
                    output_ = None if got is None else got.decode()
                elif kind == "delete":
                    output_ = kv.delete(key)
                else:
                    exp = None if inp[0] is None else inp[0].encode()
                    output_ = kv.cas(key, exp, value.encode()).ok
            except ConfigError:
                status = "fail"
            except Exception:
                status = "info"
            ret = time.time()
            line = {
                "type": "kv",
                "process": process,
                "kind": kind,
                "key": key,
                "input": inp,
                "output": output_,
                "status": status,
                "call": call,
                "ret": None if status == "info" else ret,
            }
            _emit(line)
    if locker is not None:
        locker.close()


if __name__ == "__main__":
    main()
