#!/usr/bin/env python3
"""Logger benchmark: sustained ingest from the network into an on-disk SQLite log.

Theory of operation: for each target rate, a real ``ganglion log`` process (an
observer node, on-disk database) runs while ``--publishers`` publisher
processes (member nodes) each publish small readings (a Record of two fields
over ``--types`` types) at their share of the rate for ``--duration`` seconds,
paced in 5 ms ticks. Each publisher reports the sequence numbers it published
per type (first and last, from a local subscription); after the logger exits,
the database is compared with them: *lost* = published numbers not in the log.
The logger's resident memory is sampled every second from /proc. Reported per
rate: readings/s offered and logged, loss, disk bytes per reading (file + WAL
over rows), logger RSS at start/end and its maximum, and the writer's own
counts. A rate "passes" when nothing was lost. ``--long S`` adds one long run
at the last rate to show memory over time.

Runs inside a fresh network namespace with only loopback when root and ``ip
netns`` are available (re-executing itself there, as bench/transport.py does);
otherwise on loopback with IP_MULTICAST_IF=127.0.0.1. Usage:
``python bench/logger.py [--rates 20000,50000] [--duration 10] [--long 120] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from _transport_netns import choose_isolation, run_in_namespace  # noqa: E402

PORT = 47996
TICK = 0.005


# -- publisher role (a child process) -------------------------------------------------------


async def _publish(port: int, rate: float, duration: float, types: int, name: str) -> dict[str, Any]:
    from ganglion.node import Node
    from ganglion.types import Record

    # Types of its own: publishers never receive each other's streams.
    names = [f"bench.{name}.R{i}" for i in range(types)]
    with tempfile.TemporaryDirectory() as state:
        async with Node(name=name, interface="127.0.0.1", port=port, control_port=port + 1,
                        state_dir=state, discovery=False) as node:
            for n in names:
                await node.publish(Record(n, {"v": 0.0, "i": 0}))
            for n in names:
                await node.wait_for_group(n, 20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until the logger says it subscribes to all
                wanted = set(names)
                if any(p.subscribes is not None and wanted <= p.subscribes for p in node.peers()):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            # Sequence numbers count publishes from 0, so the numbers published from
            # here on are [sent before, sent after) per type.
            before = {n: node.stats().types[n].sent for n in names}
            loop = asyncio.get_running_loop()
            start = loop.time()
            sent = 0
            while (now := loop.time()) - start < duration:
                due = int((now - start) * rate)
                for k in range(sent, due):
                    node.publish_nowait(Record(names[k % types], {"v": k * 0.25, "i": k}))
                sent = max(sent, due)
                await asyncio.sleep(TICK)
            elapsed = loop.time() - start
            await asyncio.sleep(0.5)
            stats = node.stats()
    ranges = {n: [before[n], stats.types[n].sent - 1] for n in names
              if stats.types[n].sent > before[n]}
    return {"node": node.node_id.hex(), "sent": sent, "elapsed": elapsed,
            "ranges": ranges,
            "held_dropped": stats.dropped}


# -- the benchmark ------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_rate(rate: float, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One run at ``rate`` readings/s in all; returns the measurements."""
    db = workdir / f"log-{int(rate)}-{time.monotonic_ns()}.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
    settle = 6.0
    logger = subprocess.Popen(
        [sys.executable, "-m", "ganglion", "log", "--db", str(db), "--iface", "127.0.0.1",
         "--port", str(args.port), "--no-last", "--max-size", "0", "--max-age", "0",
         "--duration", str(args.duration + settle + 4)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    pubs = [subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--role", "publisher", "--port",
         str(args.port), "--rate", str(rate / args.publishers), "--duration", str(args.duration),
         "--types", str(args.types), "--name", f"pub{i}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(args.publishers)]
    rss: list[tuple[float, int]] = []
    t0 = time.monotonic()
    while logger.poll() is None and time.monotonic() - t0 < args.duration + settle + 60:
        kib = _rss_kib(logger.pid)
        if kib is not None:
            rss.append((round(time.monotonic() - t0, 1), kib))
        time.sleep(1.0)
    reports = []
    for p in pubs:
        out, err = p.communicate(timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"publisher failed: {err[-2000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    _, log_err = logger.communicate(timeout=60)
    conn = sqlite3.connect(db)
    offered = lost = 0
    for rep in reports:
        for type_name, (first, last) in rep["ranges"].items():
            want = last - first + 1
            got = conn.execute(
                "SELECT count(DISTINCT seq) FROM readings WHERE node = ? AND type = ? AND seq "
                "BETWEEN ? AND ?", (rep["node"], type_name, first, last)).fetchone()[0]
            offered += want
            lost += want - got
    rows = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    conn.close()
    size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    elapsed = max(r["elapsed"] for r in reports)
    result = {
        "target_rate": rate, "offered": offered, "offered_rate": offered / elapsed,
        "logged": offered - lost, "lost": lost, "loss": lost / offered if offered else 0.0,
        "logged_rate": (offered - lost) / elapsed, "rows": rows,
        "bytes_per_reading": size / rows if rows else 0.0, "db_bytes": size,
        "rss_kib": rss, "publisher_held_dropped": sum(r["held_dropped"] for r in reports),
        "logger_summary": log_err.strip().splitlines()[-1] if log_err.strip() else "",
    }
    db.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return result


def _line(r: dict[str, Any]) -> str:
    rss = [k for _, k in r["rss_kib"]]
    mem = f"RSS {rss[0] / 1024:.0f}->{rss[-1] / 1024:.0f} MiB (max {max(rss) / 1024:.0f})" if rss else ""
    return (f"target {r['target_rate']:>8.0f}/s  offered {r['offered_rate']:>8.0f}/s  "
            f"logged {r['logged_rate']:>8.0f}/s  lost {r['lost']:>7} ({100 * r['loss']:.2f}%)  "
            f"{r['bytes_per_reading']:.0f} B/reading  {mem}  | {r['logger_summary']}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["bench", "publisher"], default="bench")
    ap.add_argument("--rates", default="20000,50000,80000",
                    help="comma-separated total readings/s to try")
    ap.add_argument("--rate", type=float, default=1000.0, help=argparse.SUPPRESS)
    ap.add_argument("--name", default="pub", help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per rate")
    ap.add_argument("--long", type=float, default=0.0,
                    help="also one run this long at the last rate (memory over time)")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--types", type=int, default=4, help="types per publisher")
    ap.add_argument("--port", type=int, default=PORT)
    ap.add_argument("--no-netns", action="store_true", help="run on loopback here")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--timeout", type=float, default=3600.0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or the publisher role); returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(args_list)
    if args.role == "publisher":
        report = asyncio.run(_publish(args.port, args.rate, args.duration, args.types, args.name))
        print(json.dumps(report), flush=True)
        return 0
    isolation = choose_isolation(allow_create=not args.no_netns)
    if isolation.mode == "create":
        print(f"isolation: {isolation.reason}", flush=True)
        return run_in_namespace([sys.executable, str(Path(__file__).resolve()), *args_list],
                                timeout=args.timeout)
    print(f"isolation: {isolation.mode} ({isolation.reason}); {os.cpu_count()} CPUs", flush=True)
    if Path("/sys/class/net/lo/operstate").exists():
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False, capture_output=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="ganglion-bench-log-", dir=str(REPO / "bench")) as tmp:
        plan = [float(r) for r in args.rates.split(",") if r.strip()]
        for rate in plan:
            result = run_rate(rate, args, Path(tmp))
            results.append(result)
            print(_line(result), flush=True)
        if args.long:
            long_args = argparse.Namespace(**{**vars(args), "duration": args.long})
            result = run_rate(plan[-1], long_args, Path(tmp))
            result["long"] = True
            results.append(result)
            print("long run: " + _line(result), flush=True)
            print("RSS over time (s, MiB): " + ", ".join(
                f"{t:.0f}:{k / 1024:.0f}" for t, k in result["rss_kib"][:: max(1, len(result["rss_kib"]) // 12)]),
                flush=True)
    passed = [r["logged_rate"] for r in results if r["lost"] == 0]
    print(f"highest rate with nothing lost: {max(passed):.0f} readings/s" if passed
          else "every rate lost readings", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
