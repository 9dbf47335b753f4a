"""``python -m passivepaxos.simulation --seeds 0:2000 [--profile NAME] [--mutation NAME]
[--jobs 2]``: many seeded whole-stack runs; each failing seed prints the one command that
replays it exactly (``--seed N --profile P``; add ``--trace`` to print its trace)."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Summary", "main", "run_many"]


@dataclass
class Summary:
    runs: int
    failed: list[tuple[int, str, list[str], str]]  # seed, profile, violations, replay
    seconds: float
    steps: int
    virtual: float
    notes: int
    by_profile: dict[str, int]
    first_failure: int | None  # runs until the first failing seed (seeds in order)


def _one(
    args: tuple[int, str, str | None],
) -> tuple[int, str, list[str], str, int, float, int, str]:
    from passivepaxos.simulation import mutations
    from passivepaxos.simulation.world import run

    seed, profile, mutation = args
    with mutations.applied(mutation):
        r = run(seed, profile, mutation=mutation)

    return (
        seed,
        r.profile,
        r.violations,
        r.replay(),
        r.steps,
        r.virtual,
        len(r.notes),
        r.trace_hash,
    )


def _results(
    seeds: Sequence[int], profile: str, mutation: str | None, jobs: int
) -> Iterator[tuple[int, str, list[str], str, int, float, int, str]]:
    work = [(s, profile, mutation) for s in seeds]
    if jobs <= 1:
        yield from map(_one, work)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(jobs) as pool:
        yield from pool.imap(_one, work, chunksize=4)


def run_many(
    seeds: Sequence[int],
    profile: str = "all",
    *,
    mutation: str | None = None,
    jobs: int = 2,
    stop_at_first: bool = False,
    progress: bool = False,
) -> Summary:
    """Run every seed (in order of seeds); ``stop_at_first``: stop at the first violation
    (seeds-to-detection of a mutation)."""
    t0 = time.perf_counter()
    s = Summary(0, [], 0.0, 0, 0.0, 0, {}, None)
    for seed, prof, violations, replay, steps, virtual, notes, _ in _results(
        seeds, profile, mutation, jobs
    ):
        s.runs += 1
        s.steps += steps
        s.virtual += virtual
        s.notes += notes
        s.by_profile[prof] = s.by_profile.get(prof, 0) + 1
        if violations:
            s.failed.append((seed, prof, violations, replay))
            if s.first_failure is None:
                s.first_failure = s.runs
            if progress:
                print(f"seed {seed} [{prof}]: {len(violations)} violation(s)", file=sys.stderr)
                for v in violations[:5]:
                    print(f"    {v[:600]}", file=sys.stderr)
                print(f"  replay: {replay}", file=sys.stderr)
            if stop_at_first:
                break
        elif progress and s.runs % 500 == 0:
            print(
                f"... {s.runs} runs, {len(s.failed)} failing, {time.perf_counter() - t0:.0f}s",
                file=sys.stderr,
            )
    s.seconds = time.perf_counter() - t0
    return s


def _seeds(text: str) -> range:
    lo, _, hi = text.partition(":")
    return range(int(lo), int(hi)) if hi else range(int(lo), int(lo) + 1)


def main(argv: list[str] | None = None) -> int:
    from passivepaxos.simulation import mutations
    from passivepaxos.simulation.world import PROFILES

    ap = argparse.ArgumentParser(prog="python -m passivepaxos.simulation", description=__doc__)
    ap.add_argument("--seeds", type=_seeds, help="a range A:B (B excluded)")
    ap.add_argument("--seed", type=int, help="one seed, with its details")
    ap.add_argument("--profile", default="all", choices=["all", *PROFILES])
    ap.add_argument("--mutation", choices=sorted(mutations.MUTATIONS), help="plant a bug (tests)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--trace", action="store_true", help="print the run's trace (with --seed)")
    ap.add_argument("--stop", action="store_true", help="stop at the first failing seed")
    args = ap.parse_args(argv)
    if args.seed is not None:
        from passivepaxos.simulation.world import run

        t0 = time.perf_counter()
        with mutations.applied(args.mutation):
            r = run(args.seed, args.profile, mutation=args.mutation, trace=args.trace)
        took = time.perf_counter() - t0
        if args.trace:
            print("\n".join(r.trace))
        print(r.describe())
        for n in r.notes:
            print(f"  note: {n}")
        print(
            f"  trace {r.trace_hash[:16]}, {r.steps} steps, {r.virtual:.2f}s virtual, {took:.3f}s real"
        )
        return 1 if r.violations else 0
    if args.seeds is None:
        ap.error("give --seeds A:B or --seed N")
    s = run_many(
        args.seeds,
        args.profile,
        mutation=args.mutation,
        jobs=args.jobs,
        stop_at_first=args.stop,
        progress=True,
    )
    print(
        f"{s.runs} runs ({', '.join(f'{k} {v}' for k, v in sorted(s.by_profile.items()))}) in "
        f"{s.seconds:.1f}s on {args.jobs} job(s): {len(s.failed)} with violations, "
        f"{s.notes} note(s) (allowed anomalies: stale reads outside the clock bound, "
        "documented damage limits); "
        f"{s.steps} switches, {s.virtual:.0f}s virtual"
    )
    for seed, prof, violations, replay in s.failed[:20]:
        print(f"FAIL seed {seed} [{prof}]: {violations[0][:300]}\n  replay: {replay}")
    return 1 if s.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
