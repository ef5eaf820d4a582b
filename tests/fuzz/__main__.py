"""Long fuzz runs on demand: ``python -m tests.fuzz [--path P] [--seconds N] [--seed S]``.

Run from the repository root with the project's virtualenv. Each run fuzzes one path
of two fresh nodes over loopback, in a child process (:mod:`.supervise`) so that a
node that freezes is reported and the campaign goes on. The exit status is 0 when
every run kept every property, 1 otherwise; each run prints its seed and a replay
command.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from .drive import DEFAULT_SECONDS, PATHS, Settings, run
from .supervise import run_isolated


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the paths, print the reports.

    Returns:
        The exit status: 0 when every run kept every property.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--path", choices=[*PATHS, "all"], default="all",
                        help="the receive path to fuzz (default: all, one after the other)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help="seconds of generated inputs per path")
    parser.add_argument("--seed", type=int, default=None,
                        help="the generator's seed (default: random, printed)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per path, with seeds seed, seed+1, ...")
    parser.add_argument("--max-inputs", type=int, default=5_000_000,
                        help="stop each run after this many generated inputs")
    parser.add_argument("--chunk", type=int, default=16,
                        help="inputs between two yields to the loop (1: pin a violation on "
                             "exactly one input)")
    parser.add_argument("--stall-ms", type=float, default=100.0)
    parser.add_argument("--rss-mb", type=float, default=100.0)
    parser.add_argument("--no-directed", action="store_true",
                        help="skip the inputs of issue 21's findings")
    parser.add_argument("--keep-going", action="store_true",
                        help="keep sending after a property broke (default: stop)")
    parser.add_argument("--speedups", choices=("auto", "off", "require"), default=None,
                        help="GANGLION_SPEEDUPS for the run: off fuzzes the pure-Python "
                             "receive path, require the compiled one")
    parser.add_argument("--in-process", action="store_true",
                        help="run in this process (for a debugger; a freeze then hangs it)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    paths = PATHS if args.path == "all" else (args.path,)
    failed = 0
    for round_ in range(args.rounds):
        for path in paths:
            settings = Settings(path=path, seconds=args.seconds, seed=seed + round_,
                                max_inputs=args.max_inputs, stall_ms=args.stall_ms,
                                rss_mb=args.rss_mb, fail_fast=not args.keep_going,
                                directed=not args.no_directed, chunk=args.chunk)
            print(f"== {path} seed={settings.seed} ({args.seconds:g} s)", flush=True)
            with tempfile.TemporaryDirectory(prefix="ganglion-fuzz-") as tmp:
                if args.in_process:
                    outcome = run(settings, Path(tmp))
                    ok, report = outcome.ok, outcome.report()
                else:
                    verdict = run_isolated(settings, Path(tmp), speedups=args.speedups)
                    ok, report = verdict.ok, verdict.report
            print(report, flush=True)
            failed += not ok
    print(f"{failed} failed run(s)" if failed else "every run kept every property")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
