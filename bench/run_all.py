#!/usr/bin/env python3
"""Run every benchmark script in ``bench/``, one after another.

Theory of operation: a benchmark is any ``bench/*.py`` whose name does not start
with an underscore (helpers) and is not this file. ``transport.py`` runs first,
then ``agreement.py``, then any others in name order; scripts that do not exist
yet are simply not found. Each runs as its own process with the same interpreter,
inherits the terminal, and is killed by PID if it exceeds ``--timeout``.
Anything after ``--`` is passed to every benchmark; ``--quick`` is passed to
those whose source mentions ``--quick`` (the convention for new benchmarks), so
an older script is run at full size rather than failing on an unknown flag. The
exit status is 0 only if every benchmark exited 0.

Default sizes: two benchmarks are long at their own full size (``forward.py``: a
million rows and a 10-minute outage's backlog of 600,000; ``dashboard.py``: a week
of 1 Hz history, 12 M rows, whose rollup alone takes about 90 s to build), so
``run_all.py`` runs them at the sizes in :data:`DEFAULT_SIZES` (200,000 rows and a
1-minute outage; one day of history). ``--full`` runs every benchmark at its own full
size (the sizes the issues' targets name); ``--quick`` passes ``--quick`` instead, and
arguments after ``--`` come last, so they win over both.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
#: Benchmarks that run first, in this order, when present.
FIRST = ("transport.py", "agreement.py")
#: The arguments the slow benchmarks get unless ``--full`` (or ``--quick``) is given:
#: each finishes in about a minute instead of many.
DEFAULT_SIZES: dict[str, tuple[str, ...]] = {
    "forward.py": ("--rows", "200000", "--outage", "60"),
    "dashboard.py": ("--days", "1"),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one benchmark script ended: its exit status (None if killed) and run time."""

    script: Path
    returncode: int | None
    seconds: float

    @property
    def ok(self) -> bool:
        """True when the script exited with status 0."""
        return self.returncode == 0


def discover(bench_dir: Path = BENCH_DIR) -> list[Path]:
    """Return the benchmark scripts in ``bench_dir`` in the order they should run.

    Args:
        bench_dir: the directory to look in.

    Returns:
        The :data:`FIRST` scripts that exist, then every other eligible ``*.py`` by name.
    """
    me = Path(__file__).name
    found = {
        p.name: p for p in bench_dir.glob("*.py") if not p.name.startswith("_") and p.name != me
    }
    ordered = [found.pop(name) for name in FIRST if name in found]
    return ordered + [found[name] for name in sorted(found)]


def accepts_quick(script: Path) -> bool:
    """Return True if ``script`` mentions ``--quick``, i.e. it takes the flag.

    Benchmarks written before the convention (or by other hands) are then run
    without it rather than failing on an unknown argument.
    """
    try:
        return "--quick" in script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def run_scripts(
    scripts: Sequence[Path],
    extra_args: Sequence[str],
    *,
    timeout: float,
    quick: bool = False,
    sizes: Mapping[str, Sequence[str]] | None = None,
    python: str = sys.executable,
) -> list[Outcome]:
    """Run each script in turn with ``extra_args``; kill any that exceeds ``timeout``.

    Args:
        scripts: the scripts to run.
        extra_args: arguments passed to every script.
        timeout: seconds each script may run.
        quick: also pass ``--quick`` to every script that :func:`accepts_quick`.
        sizes: arguments for a script, by file name, put before ``extra_args``
            (:data:`DEFAULT_SIZES`); not used with ``quick``.
        python: the interpreter to run them with.

    Returns:
        One :class:`Outcome` per script, in order.
    """
    outcomes = []
    for script in scripts:
        if quick:
            args = ["--quick"] if accepts_quick(script) else []
        else:
            args = list((sizes or {}).get(script.name, ()))
        args += list(extra_args)
        print(f"=== {script.name} {' '.join(args)}".rstrip(), flush=True)
        started = time.monotonic()
        proc = subprocess.Popen([python, str(script), *args], cwd=str(script.parent.parent))
        code: int | None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"=== {script.name} exceeded {timeout:.0f} s; killed", flush=True)
            code = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        outcomes.append(Outcome(script, code, time.monotonic() - started))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    """Run all benchmarks and print a one-line summary per script.

    Returns:
        0 if every benchmark succeeded, 1 otherwise (2 if none was found).
    """
    parser = argparse.ArgumentParser(description="Run every bench/*.py benchmark in sequence.")
    parser.add_argument(
        "--quick", action="store_true", help="pass --quick to every benchmark that takes it"
    )
    parser.add_argument(
        "--full", action="store_true",
        help="run forward.py and dashboard.py at their own full sizes too (many minutes; "
             "by default they get smaller ones, see DEFAULT_SIZES)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark")
    parser.add_argument("extra", nargs="*", help="arguments after -- go to every benchmark")
    args = parser.parse_args(argv)
    scripts = discover()
    if not scripts:
        print("no benchmark scripts found in bench/")
        return 2
    if args.full and args.quick:
        parser.error("--full and --quick: choose one")
    outcomes = run_scripts(scripts, args.extra, timeout=args.timeout, quick=args.quick,
                           sizes={} if args.full else DEFAULT_SIZES)
    print("=== summary")
    for o in outcomes:
        status = (
            "ok"
            if o.ok
            else ("killed (timeout)" if o.returncode is None else f"exit {o.returncode}")
        )
        print(f"  {o.script.name:<20} {status:<18} {o.seconds:7.1f} s")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
