#!/usr/bin/env python3
"""Dashboard benchmark: event fan-out to 10 browsers, and a week of history in one query.

Theory of operation:

* **Fan-out.** A publisher process (a member node) publishes ``sensors.Temperature``
  readings for ``--sensors`` sensors at ``--rate`` readings/s in total, paced in 5 ms
  ticks. A server process runs an observer node with the dashboard
  (:class:`ganglion.dashboard.server.Dashboard`), and a client process holds
  ``--clients`` event streams (``/api/events``, aiohttp) and counts the readings each
  receives. Over a ``--duration`` s window (after a warm-up) the bench reports the
  readings/s each client got (median and minimum over clients) against the rate
  published, and the server's CPU share (process CPU time / wall time). The
  baseline, in the same run, is the same server process without the dashboard:
  an observer node whose subscriber only counts (what receiving alone costs).
  Target: every client keeps up with 5,000 readings/s.
* **History.** A log of ``--days`` days x 1 Hz x ``--series`` series (7 x 20: 12 M
  rows) is written with the logger's schema (in SQL, fast), its rollup is built
  once (:class:`ganglion.dashboard.history.Rollup`; the dashboard does this in the
  background and then only adds new rows), and the whole range is downsampled to
  1,000 points per series (median of 5). The baseline is a plain ``SELECT`` of the
  same rows (type, time range) read into Python, once. Target: under 1 s.

Runs inside a fresh network namespace with only loopback when root and
``unshare`` are available (re-executing itself there); otherwise on loopback
(every node sends multicast out of 127.0.0.1). Usage:
``python bench/dashboard.py [--quick] [--rate 5000] [--duration 10] [--days 7] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

LOOPBACK = "127.0.0.1"


# -- roles (each its own process) --------------------------------------------------------


def _node(port: int, name: str, state: str | None) -> Any:
    from ganglion.node import Node

    kw: dict[str, Any] = dict(name=name, interface=LOOPBACK, port=port, control_port=port + 1,
                              discovery=False, heartbeat_seconds=0.2)
    if state is None:
        kw["observer"] = True
    else:
        kw["state_dir"] = state
    return Node(**kw)


async def _lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _say(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


async def role_server(port: int, dashboard: bool) -> None:
    """An observer with the dashboard (or only a counting subscriber); start/stop on stdin."""
    import hardware.readings  # noqa: F401

    async with _node(port, "bench-server", None) as node:
        counted = [0]
        board = None
        if dashboard:
            from ganglion.dashboard.server import Dashboard

            board = Dashboard(node, host=LOOPBACK, port=0, client_queue=1024)
            await board.start()
            _say({"ready": board.port})
        else:
            subs: dict[str, Any] = {}

            async def follow() -> None:
                while True:
                    for name in node.types():
                        if name not in subs:
                            subs[name] = node.subscribe(
                                name, callback=lambda m, i: counted.__setitem__(0, counted[0] + 1),
                                propose=False)
                    await asyncio.sleep(0.1)

            follower = asyncio.create_task(follow())
            _say({"ready": 0})
        stdin = await _lines()
        marks = []
        for _ in range(2):
            await stdin.readline()
            received = board.live.received if board is not None else counted[0]
            marks.append((time.process_time(), time.monotonic(), received))
        (c0, w0, r0), (c1, w1, r1) = marks
        out = {"cpu_share": (c1 - c0) / (w1 - w0), "received_per_s": (r1 - r0) / (w1 - w0)}
        if board is not None:
            out["dropped_clients"] = board.dropped_clients
            await board.close()
        else:
            follower.cancel()
        _say(out)


async def role_clients(web: int, count: int) -> None:
    """``count`` event streams counting readings; start/stop marks on stdin."""
    import aiohttp

    counts = [0] * count

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        async with session.get(f"http://{LOOPBACK}:{web}/api/events",
                               timeout=aiohttp.ClientTimeout(total=None)) as resp:
            buf = bytearray()
            async for chunk in resp.content.iter_any():
                start = max(0, len(buf) - 1)  # look for the blank line in new bytes only
                buf += chunk
                while (end := buf.find(b"\n\n", start)) != -1:
                    head = bytes(buf[:80])
                    if b"event: readings" in head:
                        # One "type" key per reading: counting bytes keeps this process
                        # (10 streams' worth of JSON) from being what limits the rate.
                        counts[i] += buf.count(b'{"type":', 0, end)
                    del buf[:end + 2]
                    start = 0

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(i, session)) for i in range(count)]
        await asyncio.sleep(1.0)
        _say({"ready": True})
        stdin = await _lines()
        marks = []
        for _ in range(2):
            await stdin.readline()
            marks.append((time.monotonic(), list(counts)))
        (w0, c0), (w1, c1) = marks
        failed = [repr(t.exception()) for t in tasks if t.done() and t.exception() is not None]
        for t in tasks:
            t.cancel()
        _say({"per_client_per_s": [(b - a) / (w1 - w0) for a, b in zip(c0, c1, strict=True)],
              "failed": failed})


async def role_publisher(port: int, rate: float, seconds: float, sensors: int, state: str) -> None:
    """Publish ``rate`` readings/s over ``sensors`` sensors for ``seconds``."""
    from hardware.readings import Temperature

    async with _node(port, "bench-publisher", state) as node:
        await node.publish(Temperature("s0", 0.0))
        await node.wait_for_group("sensors.Temperature")
        _say({"ready": True})
        tick = 0.005
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        i = 0
        while loop.time() - start < seconds:
            due = int((loop.time() - start) * rate)
            while sent < due:
                node.publish_nowait(Temperature(f"s{i % sensors}", 20.0 + (i % 1000) / 100))
                i += 1
                sent += 1
            await asyncio.sleep(tick)
        _say({"sent": sent})


# -- orchestration --------------------------------------------------------------------------


class Proc:
    """A role subprocess speaking JSON lines on stdout, marks on stdin."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen([sys.executable, __file__, "--role", *args], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self, timeout: float = 60.0) -> Any:
        assert self.p.stdout is not None
        import select

        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no answer from {self.p.args}")
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.p.args} exited ({self.p.wait(5)})")
        return json.loads(line)

    def mark(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("mark\n")
        self.p.stdin.flush()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def free_port_pair() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind((LOOPBACK, 0))
            port = a.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind((LOOPBACK, port + 1))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no free port pair")


def fan_out(rate: float, duration: float, clients: int, sensors: int, dashboard: bool,
            tmp: Path) -> dict[str, Any]:
    port = free_port_pair()
    procs: list[Proc] = []
    try:
        server = Proc("server", str(port), "1" if dashboard else "0")
        procs.append(server)
        web = server.read()["ready"]
        publisher = Proc("publisher", str(port), str(rate), str(duration + 60), str(sensors),
                         str(tmp / f"pub-{port}"))
        procs.append(publisher)
        publisher.read()
        waiting = [server]
        if dashboard:
            client_proc = Proc("clients", str(web), str(clients))
            procs.append(client_proc)
            client_proc.read()
            waiting.append(client_proc)
        time.sleep(2.0)  # warm-up: subscriptions made, streams flowing
        for p in waiting:
            p.mark()
        time.sleep(duration)
        for p in waiting:
            p.mark()
        result = {"server": server.read()}
        if dashboard:
            answer = client_proc.read()
            result["clients"] = answer["per_client_per_s"]
            result["client_errors"] = answer["failed"]
        return result
    finally:
        for p in procs:
            p.stop()


def history(days: float, series: int, tmp: Path) -> dict[str, Any]:
    from ganglion.dashboard.history import HistoryQuery, Rollup, query_history
    from ganglion.logger.schema import open_log

    db = tmp / "week.db"
    seconds = int(days * 86400)
    t0 = 1_700_000_000 * 10**9
    conn = open_log(db)
    started = time.monotonic()
    conn.execute("BEGIN")
    conn.execute("INSERT INTO sessions (started_ns) VALUES (1)")
    conn.execute("INSERT INTO nodes (id, node, name) VALUES (1, '00000000000000a1', 'a'), "
                 "(2, '00000000000000b2', 'b')")
    conn.execute("INSERT INTO types (id, name, fields, units, source, first_ns) VALUES "
                 "(1, 'sensors.Temperature', '[{\"name\":\"sensor\",\"kind\":\"str\"},"
                 "{\"name\":\"celsius\",\"kind\":\"float\"}]', '{\"celsius\":\"°C\"}', 'class', 0)")
    conn.execute(
        f"WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {seconds * series} - 1) "
        f"INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, flags, data) "
        f"SELECT 1, 1 + (i % {series}) % 2, 1, i / {series}, {t0} + (i / {series}) * 1000000000, "
        f"{t0} + (i / {series}) * 1000000000 + (i % {series}) * 1000, 0, "
        f"'{{\"sensor\":\"s' || (i % {series}) || '\",\"celsius\":' || "
        f"(20.0 + ((i * 7919) % 1000) / 100.0) || '}}' FROM k")
    conn.execute("COMMIT")
    conn.close()
    built = time.monotonic() - started
    rows = seconds * series
    rollup = Rollup(db, tmp / "week-cache.db")
    started = time.monotonic()
    rollup.refresh()
    rolled = time.monotonic() - started
    q = HistoryQuery("sensors.Temperature", "celsius", t0, t0 + seconds * 10**9, 1000)
    times = []
    for _ in range(5):
        qc = rollup.connect()
        started = time.monotonic()
        result = query_history(qc, q, schema="log", rolled_up_to=rollup.rolled_up_to)
        times.append(time.monotonic() - started)
        qc.close()
    assert len(result) == series and sum(sum(s.count) for s in result) == rows
    plain = rollup.connect()
    started = time.monotonic()
    fetched = plain.execute("SELECT node_id, received_ns, data FROM log.samples "
                            "WHERE type_id = 1 AND received_ns >= ? AND received_ns < ?",
                            (q.since_ns, q.until_ns)).fetchall()
    select_s = time.monotonic() - started
    plain.close()
    assert len(fetched) == rows
    return {"rows": rows, "series": series, "days": days, "write_s": built,
            "rollup_build_s": rolled, "query_s": times, "query_median_s": statistics.median(times),
            "plain_select_s": select_s,
            "points_per_series": max(len(s.t_ms) for s in result)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a run of seconds (small sizes)")
    ap.add_argument("--rate", type=float, default=None,
                    help="readings/s published (fan-out; default 5000, --quick 2000)")
    ap.add_argument("--duration", type=float, default=None,
                    help="measured seconds (fan-out; default 10, --quick 3)")
    ap.add_argument("--clients", type=int, default=10, help="event streams (fan-out)")
    ap.add_argument("--sensors", type=int, default=50, help="sensors (series) published")
    ap.add_argument("--days", type=float, default=None,
                    help="days of 1 Hz history (default 7, --quick 0.2)")
    ap.add_argument("--series", type=int, default=20, help="series in the history log")
    ap.add_argument("--skip", choices=["fanout", "history"], action="append", default=[])
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    if args.role:
        role, *rest = args.role
        from ganglion.eventloop import run

        if role == "server":
            run(role_server(int(rest[0]), rest[1] == "1"))
        elif role == "clients":
            run(role_clients(int(rest[0]), int(rest[1])))
        elif role == "publisher":
            run(role_publisher(int(rest[0]), float(rest[1]), float(rest[2]), int(rest[3]), rest[4]))
        return 0
    if (os.geteuid() == 0 and shutil.which("unshare") and not os.environ.get("GANGLION_BENCH_NS")):
        cmd = ("ip link set lo up; ip route add 224.0.0.0/4 dev lo; "
               'exec "$0" "$@"')
        env = dict(os.environ, GANGLION_BENCH_NS="1")
        done = subprocess.run(["unshare", "-n", "sh", "-c", cmd, sys.executable, __file__,
                               *sys.argv[1:]], env=env, check=False)
        return done.returncode
    for name, full, quick in (("rate", 5000.0, 2000.0), ("duration", 10.0, 3.0), ("days", 7.0, 0.2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ganglion-bench-dash-") as tmp_name:
        tmp = Path(tmp_name)
        if "fanout" not in args.skip:
            base = fan_out(args.rate, args.duration, args.clients, args.sensors, False, tmp)
            dash = fan_out(args.rate, args.duration, args.clients, args.sensors, True, tmp)
            per = dash["clients"]
            results["fanout"] = {"rate": args.rate, "baseline": base, "dashboard": dash}
            print(f"fan-out: {args.rate:.0f} readings/s published over {args.sensors} sensors, "
                  f"{args.clients} event streams, {args.duration:.0f} s window")
            print(f"  baseline (observer, counting subscriber only): received "
                  f"{base['server']['received_per_s']:.0f}/s, CPU share "
                  f"{base['server']['cpu_share']:.1%}")
            print(f"  dashboard: received {dash['server']['received_per_s']:.0f}/s; per client "
                  f"median {statistics.median(per):.0f}/s, min {min(per):.0f}/s "
                  f"({min(per) / args.rate:.1%} of published); CPU share "
                  f"{dash['server']['cpu_share']:.1%} "
                  f"({dash['server']['cpu_share'] / max(base['server']['cpu_share'], 1e-9):.2f}x "
                  f"baseline); browsers dropped {dash['server']['dropped_clients']}")
            ok = min(per) >= 0.98 * args.rate and not dash["server"]["dropped_clients"]
            print(f"  target (every client keeps up with the rate): {'met' if ok else 'NOT met'}")
            if dash["client_errors"]:
                print(f"  client errors: {dash['client_errors'][:3]}")
        if "history" not in args.skip:
            h = history(args.days, args.series, tmp)
            results["history"] = h
            print(f"history: {h['rows']:,} rows ({h['days']:g} d x 1 Hz x {h['series']} series), "
                  f"downsampled to {h['points_per_series']} points per series")
            print(f"  plain SELECT of the rows (baseline): {h['plain_select_s']:.2f} s")
            print(f"  dashboard query (rollup + newest rows): median {h['query_median_s']:.3f} s "
                  f"of {len(h['query_s'])} ({h['plain_select_s'] / h['query_median_s']:.0f}x "
                  f"faster); target < 1 s: {'met' if h['query_median_s'] < 1 else 'NOT met'}")
            print(f"  one-off rollup build (the dashboard does it in the background): "
                  f"{h['rollup_build_s']:.1f} s; writing the log: {h['write_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
