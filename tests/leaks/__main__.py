"""Leak check of the compiled paths: ``python -m tests.leaks [--messages N] [--path P]``.

Run from the repository root with the project's virtualenv (``make leakcheck`` does,
with ``GANGLION_SPEEDUPS=require``). Millions of messages go through each compiled
path of ``ganglion._speedups`` over loopback (:mod:`.paths`) and of the plugin bus's
``ganglion._busfast`` over ipc (:mod:`.bus_paths`), and rows of a SQLite log through
the forwarder's ``ganglion._copyfast`` encoder (:mod:`.copy_paths`), and each must hold its
allocated blocks, resident memory and the reference counts of what every message
passes through flat (:mod:`.check`). The exit status is 0 when every path did, and
every message of a compiled path took it and arrived; 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from .bus_paths import busfast
from .check import Result, measure
from .copy_paths import copyfast
from .paths import PATHS, Spec, speedups


def verdict(result: Result, spec: Spec) -> list[str]:
    """What is wrong with a path's run: its leaks and, for a compiled path, messages
    that took the Python path, did not arrive or were refused."""
    problems = list(result.leaks)
    if spec.compiled:
        # (A message now and then goes Python's way by design: the batch lane leaves one
        # more than 8 us after the one before to Python, which a preempted loop may be.)
        if result.fallbacks > result.messages // 100:
            problems.append(f"{result.fallbacks} messages took the Python path")
        if result.delivered != result.messages:
            problems.append(f"{result.delivered} of {result.messages} messages arrived")
        problems.extend(result.errors)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.leaks", description=__doc__)
    parser.add_argument("--messages", type=int, default=2_000_000,
                        help="messages through the main paths (others get a share of it)")
    parser.add_argument("--path", choices=[*PATHS, "all"], default="all")
    args = parser.parse_args(argv)
    if speedups is None:
        print("ganglion._speedups is not built: nothing to check", file=sys.stderr)
        return 1
    failed = False
    for name, spec in PATHS.items():
        if args.path not in ("all", name):
            continue
        if spec.bus and busfast is None:
            print(f"{name:<26} FAILED: ganglion._busfast is not built or cannot find libzmq",
                  flush=True)
            failed = True
            continue
        if spec.copy and copyfast is None:
            print(f"{name:<26} FAILED: ganglion._copyfast is not built or cannot find SQLite",
                  flush=True)
            failed = True
            continue
        result = measure(name, spec.make, int(args.messages * spec.share))
        problems = verdict(result, spec)
        print(result.line(problems), flush=True)
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
