"""Worker for tests/test_histories.py: KV operations on one log, one JSON line per op.

    python tests/histories_worker.py LOG_URL PROCESS COUNT

Each line: {process, kind, key, input, output, status, call, ret}; times from time.time()
(the shared clock of processes on one host). ``info`` when the outcome is unknown.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passivepaxos.errors import ConfigError
from passivepaxos.log import Log
from passivepaxos.recipes.kv import KV


def main() -> None:
    url, process, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(process)
    written: list[str] = []
    with Log.open(url) as log:
        kv = KV(log)
        for n in range(count):
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
                "process": process,
                "kind": kind,
                "key": key,
                "input": inp,
                "output": output_,
                "status": status,
                "call": call,
                "ret": None if status == "info" else ret,
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
