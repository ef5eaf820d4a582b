"""One fuzz run in this process, for :mod:`.supervise`: ``python -m tests.fuzz.child``.

Writes the verdict as JSON (``--json``) and the inputs sent last (``--progress``),
and arms ``faulthandler`` to dump every stack and exit after ``--freeze-seconds``, and
on SIGUSR1, which works even while the interpreter is stuck inside one call.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
from pathlib import Path

from .drive import PATHS, Settings, run


def main(argv: list[str] | None = None) -> int:
    """Run once; return 0 when every property held, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.child")
    parser.add_argument("--path", choices=PATHS, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--max-inputs", type=int, required=True)
    parser.add_argument("--stall-ms", type=float, required=True)
    parser.add_argument("--rss-mb", type=float, required=True)
    parser.add_argument("--chunk", type=int, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--freeze-seconds", type=float, required=True)
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("--no-directed", action="store_true")
    args = parser.parse_args(argv)
    faulthandler.dump_traceback_later(args.freeze_seconds, exit=True)
    # the supervisor asks for the stacks of a frozen run with SIGUSR1 before killing it
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = Settings(path=args.path, seconds=args.seconds, seed=args.seed,
                        max_inputs=args.max_inputs, stall_ms=args.stall_ms, rss_mb=args.rss_mb,
                        fail_fast=not args.keep_going, directed=not args.no_directed,
                        chunk=args.chunk)
    args.workdir.mkdir(parents=True, exist_ok=True)
    outcome = run(settings, args.workdir, args.progress)
    faulthandler.cancel_dump_traceback_later()
    print(outcome.report(), flush=True)
    args.json.write_text(json.dumps({"ok": outcome.ok, "report": outcome.report()}))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
