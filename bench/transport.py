#!/usr/bin/env python3
"""Transport benchmark: raw UDP multicast vs ganglion's typed Endpoint vs LCM, on loopback.

Theory of operation: for each payload size (64 B and 1 KiB by default) and each
trial, every system runs two publisher/subscriber process pairs:

* **blast** -- the publisher sends ``--count`` messages as fast as it can; the
  subscriber counts distinct messages until it has been idle for a moment.
  Delivered msg/s = received / (last arrival - first arrival) at the subscriber,
  loss = 1 - received / sent.
* **paced** -- the publisher sends at ``--rate`` msg/s (1,000) for ``--duration``
  seconds, each message stamped with ``time.monotonic_ns()``; the subscriber
  records one-way latency and reports p50/p99 in µs.

Systems run interleaved within each trial so that noise on this shared machine
spreads evenly; the table shows medians over ``--trials``. The whole run happens
inside a fresh network namespace with only loopback up when root and ``ip netns``
are available (this script re-executes itself there and deletes the namespace
afterwards); otherwise raw and ganglion run on loopback and LCM is skipped.
Usage: ``python bench/transport.py [--quick] [--trials K] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _transport_common import DEFAULT_SIZES, TrialResult
from _transport_netns import Isolation, choose_isolation, run_in_namespace
from _transport_report import format_table, report_json, summarize
from _transport_role import DEFAULT_SYSTEMS, SYSTEMS, RoleConfig
from _transport_runner import SystemUnavailable, TrialError, run_trial

#: Each system gets its own port/group so a straggler of one can never reach another.
PORTS = {"raw": 47990, "lcm": 47991, "ganglion": 47992, "ganglion+key": 47993,
         "ganglion+aead": 47994, "ganglion+hist": 47995}
LCM_URL = "udpm://239.255.202.1:47991?ttl=0"

DEFAULT_COUNT = 200_000
QUICK_COUNT = 20_000


@dataclass(slots=True, kw_only=True)
class Plan:
    """What to run: sizes, systems, trials and per-trial message counts."""

    sizes: tuple[int, ...]
    systems: tuple[str, ...]
    trials: int
    blast_count: int
    paced_count: int
    rate: float
    idle_s: float = 0.5
    yield_every: int = 32
    skip_reasons: dict[str, str] = field(default_factory=dict)

    def configs(self, system: str, mode: str, size: int) -> tuple[RoleConfig, RoleConfig]:
        """Return the (subscriber, publisher) configs for one trial."""
        count = self.blast_count if mode == "blast" else self.paced_count
        common: dict[str, Any] = {
            "system": system,
            "mode": mode,
            "size": size,
            "count": count,
            "rate": self.rate,
            "port": PORTS[system],
            "lcm_url": LCM_URL,
            "idle_s": self.idle_s,
            "yield_every": self.yield_every,
        }
        return RoleConfig(role="sub", **common), RoleConfig(role="pub", **common)


@dataclass(slots=True)
class Outcome:
    """Everything a run produced: the trials and, per (size, system), any problem."""

    trials: list[TrialResult] = field(default_factory=list)
    notes: dict[tuple[int, str], str] = field(default_factory=dict)

    def add_note(self, size: int, system: str, text: str) -> None:
        """Append ``text`` to the note of (size, system), keeping notes short."""
        old = self.notes.get((size, system))
        self.notes[(size, system)] = (f"{old}; {text}" if old else text)[:400]


def run_benchmark(
    plan: Plan,
    *,
    log: Callable[[str], None] = print,
    trial: Callable[[RoleConfig, RoleConfig], TrialResult] | None = None,
) -> Outcome:
    """Run every trial of ``plan`` and return the results.

    A system that reports it cannot run here is skipped for the rest of the run,
    with its reason; a trial that fails otherwise is noted and the run goes on.

    Args:
        plan: what to run.
        log: where progress lines go.
        trial: runs one subscriber/publisher pair (default :func:`run_trial`).

    Returns:
        The :class:`Outcome`.
    """
    run = trial or run_trial
    out = Outcome()
    unavailable = dict(plan.skip_reasons)
    for size in plan.sizes:
        for index in range(1, plan.trials + 1):
            for system in plan.systems:
                if system in unavailable:
                    continue
                for mode in ("blast", "paced"):
                    sub_cfg, pub_cfg = plan.configs(system, mode, size)
                    tag = f"{size:>5} B  trial {index}/{plan.trials}  {system:<8} {mode:<5}"
                    try:
                        result = run(sub_cfg, pub_cfg)
                    except SystemUnavailable as exc:
                        unavailable[system] = str(exc)
                        log(f"{tag}  unavailable: {exc}")
                        break
                    except TrialError as exc:
                        out.add_note(size, system, f"{mode} trial failed: {exc}")
                        log(f"{tag}  failed: {exc}")
                        continue
                    out.trials.append(result)
                    log(f"{tag}  {_progress(result)}")
    for size in plan.sizes:
        for system, reason in unavailable.items():
            out.notes[(size, system)] = reason
    return out


def build_plan(args: argparse.Namespace, isolation: Isolation) -> Plan:
    """Turn parsed arguments into a :class:`Plan`, dropping LCM where it is not isolated."""
    quick = bool(args.quick)
    duration = args.duration if args.duration is not None else (0.5 if quick else 2.0)
    plan = Plan(
        sizes=tuple(args.sizes),
        systems=tuple(args.systems),
        trials=args.trials if args.trials is not None else (1 if quick else 5),
        blast_count=args.count
        if args.count is not None
        else (QUICK_COUNT if quick else DEFAULT_COUNT),
        paced_count=max(1, int(args.rate * duration)),
        rate=args.rate,
        yield_every=args.yield_every,
    )
    if "lcm" in plan.systems and not isolation.lcm_allowed:
        plan.skip_reasons["lcm"] = isolation.reason
    return plan


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="1 trial, 20k-message blasts, 0.5 s paced")
    p.add_argument("--trials", type=_positive_int, help="trials per system and size (default 5)")
    p.add_argument(
        "--count", type=_positive_int, help=f"messages per blast (default {DEFAULT_COUNT})"
    )
    p.add_argument("--duration", type=float, help="seconds of paced traffic (default 2.0)")
    p.add_argument("--rate", type=float, default=1000.0, help="paced rate, msg/s (default 1000)")
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated payload sizes in bytes (default 64,1024)",
    )
    p.add_argument(
        "--systems",
        type=_systems,
        default=list(DEFAULT_SYSTEMS),
        help="comma-separated subset of raw,ganglion,ganglion+key,ganglion+aead,lcm,"
        "ganglion+hist (default: all but ganglion+hist, in that order; ganglion+hist "
        "publishes with a history, to measure what keeping it costs: run it with ganglion)",
    )
    p.add_argument(
        "--yield-every",
        type=_positive_int,
        default=32,
        help="ganglion blast: publishes between yields to the event loop",
    )
    p.add_argument("--json", type=Path, help="also write every raw number to this file")
    p.add_argument(
        "--no-netns",
        action="store_true",
        help="do not create a network namespace (LCM is then skipped)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds the namespaced run may take before it is killed",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; re-execute inside a fresh namespace when possible.

    Returns:
        The process exit status: 0 when every system that this machine allows ran
        cleanly (LCM skipped for lack of isolation is not a failure), 1 otherwise.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(args_list)
    isolation = choose_isolation(allow_create=not args.no_netns)
    if isolation.mode == "create":
        print(f"isolation: {isolation.reason}", flush=True)
        script = str(Path(__file__).resolve())
        return run_in_namespace([sys.executable, script, *args_list], timeout=args.timeout)
    print(f"isolation: {isolation.mode} ({isolation.reason})", flush=True)
    plan = build_plan(args, isolation)
    started = time.time()
    outcome = run_benchmark(plan, log=lambda line: print(line, flush=True))
    rows = {
        size: [
            summarize(
                system,
                [t for t in outcome.trials if t.size == size and t.system == system],
                outcome.notes.get((size, system), ""),
            )
            for system in plan.systems
        ]
        for size in plan.sizes
    }
    print()
    for size in plan.sizes:
        print(format_table(size, rows[size]))
    if args.json is not None:
        meta = _meta(args, plan, isolation, started)
        args.json.write_text(
            json.dumps(report_json(plan.sizes, rows, outcome.trials, meta), indent=2)
        )
        print(f"raw numbers written to {args.json}")
    problems = {k for k in outcome.notes if k[1] not in plan.skip_reasons}
    return 0 if not problems else 1


def _meta(
    args: argparse.Namespace, plan: Plan, isolation: Isolation, started: float
) -> dict[str, Any]:
    """Describe the run for the JSON file."""
    return {
        "started_unix": started,
        "seconds": time.time() - started,
        "isolation": {"mode": isolation.mode, "reason": isolation.reason},
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "trials": plan.trials,
        "blast_count": plan.blast_count,
        "paced_count": plan.paced_count,
        "rate": plan.rate,
        "yield_every": plan.yield_every,
        "argv": list(sys.argv[1:]),
        "quick": bool(args.quick),
    }


def _progress(r: TrialResult) -> str:
    """One line summarising a finished trial."""
    if r.mode == "blast":
        line = f"recv {r.received}/{r.sent}  loss {r.loss:.2%}  {r.delivered_per_s:,.0f} msg/s"
        datagrams = r.extra.get("datagrams_sent")
        if isinstance(datagrams, int) and datagrams > 0:
            line += f"  ({r.sent / datagrams:.1f} msg/datagram)"
        return line
    return f"recv {r.received}/{r.sent}  p50 {r.p50_us or 0:.1f} us  p99 {r.p99_us or 0:.1f} us"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(s < 16 or s > 1300 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be between 16 and 1300 bytes")
    return sizes


def _systems(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in SYSTEMS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"systems must be among {', '.join(SYSTEMS)}; got {text!r}"
        )
    return names


if __name__ == "__main__":
    sys.exit(main())
