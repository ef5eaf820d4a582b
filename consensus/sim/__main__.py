"""Command line: run many simulator seeds and print the statistics the issue asks for.

    python -m consensus.sim --seeds 1000 --start 0 --nodes 5
    python -m consensus.sim --soak            # 100,000 seeds
    python -m consensus.sim --seeds 1 --start 42 --nodes 5 --trace   # replay one seed
    python -m consensus.sim --seeds 300 --byzantine   # add forged messages (issue 21)

Exit status 1 when any seed violates an invariant; each failing seed prints the exact
replay command and the tail of its trace, one line per message.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from consensus.sim.scenario import RunResult, replay_command, run_seed

SOAK_SEEDS = 100_000
TRACE_TAIL = 80


def _run(args: tuple[int, int, bool, bool]) -> RunResult:
    seed, nodes, trace, byzantine = args
    result = run_seed(seed, nodes, trace=trace, byzantine=byzantine)
    if not result.ok and not trace:
        # rerun to get the trace: same seed, same run
        result = run_seed(seed, nodes, trace=True, byzantine=byzantine)
    return result


def percentile(values: Sequence[int], pct: float) -> int:
    """Return the nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the seeds; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m consensus.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--nodes", type=int, default=5, help="members at the start of each run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--trace", action="store_true", help="print every seed's full trace")
    parser.add_argument("--soak", action="store_true", help=f"run {SOAK_SEEDS:,} seeds")
    parser.add_argument("--byzantine", action="store_true",
                        help="add forged messages with extreme fields; check liveness after them")
    opts = parser.parse_args(argv)
    count = SOAK_SEEDS if opts.soak else opts.seeds
    work = [(seed, opts.nodes, opts.trace, opts.byzantine)
            for seed in range(opts.start, opts.start + count)]
    began = time.perf_counter()
    failures: list[RunResult] = []
    decisions = messages = 0
    converge: list[int] = []
    live: list[int] = []
    dropped: dict[str, int] = {}
    pool: Any = multiprocessing.Pool(opts.jobs) if opts.jobs > 1 and count > 1 else _Inline()
    with pool:
        for result in pool.imap(_run, work, chunksize=16):
            decisions += result.decisions
            messages += result.messages
            if result.converge_ticks is not None:
                converge.append(result.converge_ticks)
            if result.live_ticks is not None:
                live.append(result.live_ticks)
            for reason, n in result.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + n
            if opts.trace:
                print("\n".join(line.format() for line in result.trace))
            if not result.ok:
                failures.append(result)
                _report_failure(result, full=opts.trace)
    elapsed = time.perf_counter() - began
    print(f"seeds run:              {count} ({opts.start}..{opts.start + count - 1}), "
          f"{opts.nodes} nodes, {elapsed:.1f} s")
    print(f"violations:             {sum(len(r.violations) for r in failures)} "
          f"in {len(failures)} seed(s)")
    print(f"decisions:              {decisions}")
    print(f"messages per decision:  {messages / decisions if decisions else 0:.1f}")
    print(f"ticks to converge:      p50={percentile(converge, 50)} p99={percentile(converge, 99)} "
          f"max={max(converge, default=0)}")
    if opts.byzantine:
        print(f"ticks to decide after:  p50={percentile(live, 50)} p99={percentile(live, 99)} "
              f"max={max(live, default=0)}")
        print("inputs dropped:         " + ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())))
    return 1 if failures else 0


def _report_failure(result: RunResult, *, full: bool) -> None:
    print(f"\nFAILED seed {result.seed} ({'static' if result.static else 'dynamic'} views):")
    for violation in result.violations[:10]:
        print(f"  {violation}")
    print(f"  replay: {replay_command(result.seed, result.nodes, byzantine=result.byzantine)}")
    if not full:
        print(f"  last {TRACE_TAIL} events:")
        for line in result.trace[-TRACE_TAIL:]:
            print(f"    {line.format()}")
    sys.stdout.flush()


class _Inline:
    """A stand-in for ``multiprocessing.Pool`` that runs in this process."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap(
        self, fn: Callable[[tuple[int, int, bool, bool]], RunResult],
        items: list[tuple[int, int, bool, bool]], chunksize: int = 1,
    ) -> Iterator[RunResult]:
        return map(fn, items)


if __name__ == "__main__":
    sys.exit(main())
