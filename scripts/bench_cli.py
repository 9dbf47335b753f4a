"""The bench's CLI case alone: ``passivepaxos append s3://...`` as a new process beside a
plain script doing one boto3 ``put_object``, alternating, through the counting proxy with
the injected round trip (10 ms) on moto_server: quartiles of each process's wall time and
its requests. Usage (from a checkout, with its venv): ``.venv/bin/python
scripts/bench_cli.py [N]`` (N processes of each, default 10)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passivepaxos.bench.runner import S3Env
from passivepaxos.bench.workloads import Target, cli_wall


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    env = S3Env.start(0.010)
    try:
        t = Target("s3", 0.010, s3=env)
        for r in cli_wall(t, n):
            lat = sorted(r.latencies)
            q1, med, q3 = (lat[len(lat) * k // 4] * 1000 for k in (1, 2, 3))
            per = sum(r.requests.values()) / n
            print(f"{r.case}: q1 {q1:.0f} median {med:.0f} q3 {q3:.0f} ms, {per:.1f} requests")
    finally:
        env.stop()


if __name__ == "__main__":
    main()
