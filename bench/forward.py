#!/usr/bin/env python3
"""Forwarding benchmark: a SQLite log into a local PostgreSQL over TCP.

Theory of operation: a log of ``--rows`` readings (1,000,000 by default: small
temperature readings from 8 nodes, written straight into the log's tables, as
the logger would have) is forwarded into a fresh database on a private
PostgreSQL server (tests/forward/pg_support.py: started as ``postgres`` from a
temporary directory, 127.0.0.1, a free port, fsync off for both methods alike;
and :data:`SERVER_SETTINGS`, for a server in its steady state).

* **COPY**: the real :class:`~ganglion.forward.Forwarder` (``--once``, batches of
  ``--batch``): binary COPY written by the compiled encoder (``ganglion._copyfast``;
  ``GANGLION_COPY_FAST=off``: rendered by the log itself, the Python path), straight into
  ``readings`` (the staging table and ``INSERT ... ON CONFLICT DO NOTHING`` only
  when a row of a batch is already there, which it is not here).
* **executemany** (the baseline, same run, same rows, same batches and
  transactions): the same SQLite reads, then psycopg's ``executemany`` of an
  ``INSERT ... VALUES ... ON CONFLICT DO NOTHING`` per row (psycopg 3 pipelines
  it, so it is the fastest plain INSERT there is).
* **catch-up**: the log holds ``--outage`` seconds of ``--rate`` readings/s not yet
  forwarded (a database that was down for 10 minutes at 1,000/s: 600,000) while the
  logger keeps adding ``--rate`` readings/s; the forwarder (follow mode) starts, and
  the time until it has caught up with the live stream is measured.

Each method runs ``--repeat`` times into a fresh database; medians are printed,
with COPY's ratio to executemany from the same run. Besides the time, the CPU
time per row is measured (this process, reader thread included, plus every
server process): on a machine busy with other work the processes wait for a
CPU, and the wall-clock ratio tends to the CPU ratio, which does not depend on
the load. Targets (issue 17): COPY >= 50,000 rows/s and >= 5x executemany. Usage:
``python bench/forward.py [--quick] [--rows 1000000] [--repeat 1] [--outage 600] [--rate 1000]
[--json F]``.
Needs root (to run PostgreSQL as ``postgres``) and Debian's ``postgresql``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "forward"))

from pg_support import PgServer, missing  # noqa: E402

from ganglion.forward import Forwarder, Target, _copy_accel  # noqa: E402
from ganglion.forward.forwarder import _READ  # noqa: E402
from ganglion.logger.schema import open_log  # noqa: E402

BASE_NS = 1_700_000_000_000_000_000
NODES = 8
#: A fresh cluster creates every WAL segment it writes, zero-filling 16 MB each, which
#: a server in its steady state does not (it recycles old segments); without this the
#: bench measures that, for both methods (the server's work per row is some 1.2 us
#: more). A central server's shared buffers hold more than the tests' 64 MB.
SERVER_SETTINGS = ("wal_init_zero=off", "shared_buffers=256MB")


def build_log(path: Path, rows: int, start: int = 0, received_ns: int | None = None) -> None:
    """Append ``rows`` readings to the log at ``path`` (created if missing)."""
    conn = open_log(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        type_id = conn.execute("SELECT id FROM types WHERE name = 'sensors.Temperature'").fetchone()
        if type_id is None:
            type_id = (conn.execute(
                "INSERT INTO types (name, fingerprint, fields, units, source, first_ns) VALUES "
                "('sensors.Temperature', NULL, '[{\"name\":\"sensor\",\"kind\":\"str\"},"
                "{\"name\":\"celsius\",\"kind\":\"float\"}]', '{\"celsius\":\"°C\"}', 'observed', "
                "?)", (BASE_NS,)).lastrowid,)
            for n in range(NODES):
                conn.execute("INSERT INTO nodes (node, name, first_ns, last_ns) VALUES (?, ?, ?, ?)",
                             (f"{n + 1:016x}", f"pi-{n}", BASE_NS, BASE_NS))
        node_ids = [r[0] for r in conn.execute("SELECT id FROM nodes ORDER BY id")]
        now = received_ns

        def row(i: int) -> tuple[Any, ...]:
            sent = BASE_NS + i * 1_000_000
            return (type_id[0], node_ids[i % NODES], 1, i // NODES, sent,
                    sent + 700 if now is None else now, 0,
                    f'{{"sensor":"w1:28-{i % NODES:04d}","celsius":{18 + (i % 400) / 16}}}')

        conn.executemany("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, "
                         "flags, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (row(i) for i in range(start, start + rows)))
        conn.execute("COMMIT")
    finally:
        conn.close()


def run_copy(db: Path, url: str, batch: int) -> float:
    """Seconds the forwarder takes to send the whole log (COPY)."""
    forwarder = Forwarder(db, Target.parse(url), batch=batch)
    started = time.perf_counter()
    try:
        forwarder.run(threading.Event(), once=True)
    finally:
        forwarder.close()
    return time.perf_counter() - started


def run_executemany(db: Path, url: str, batch: int) -> float:
    """Seconds a plain ``executemany`` INSERT takes for the same rows and batches."""
    import psycopg

    conn = open_log(db, write=False)
    pg = psycopg.connect(url)
    insert = ("INSERT INTO readings (time, type, node, seq, sent_ns, received_ns, data, boot, "
              "fingerprint, last_value, replayed, clock_synced, local) VALUES ("
              "to_timestamp(0) + (%s::bigint / 1000) * interval '1 microsecond', %s, %s, %s, %s, "
              "%s, %s::jsonb, %s, %s, (%s::int & 1) <> 0, (%s::int & 2) <> 0, (%s::int & 4) = 0, "
              "(%s::int & 8) <> 0) ON CONFLICT DO NOTHING")
    started = time.perf_counter()
    try:
        position = 0
        while True:
            rows = conn.execute(_READ, (position, batch)).fetchall()
            if not rows:
                break
            with pg.transaction(), pg.cursor() as cur:
                cur.executemany(insert, [(sent, name, node, seq, sent, received, data, boot, fp,
                                          flags, flags, flags, flags)
                                         for _, name, node, _n, seq, sent, received, data, boot,
                                         fp, flags in rows])
            position = rows[-1][0]
    finally:
        pg.close()
        conn.close()
    return time.perf_counter() - started


def run_catch_up(server: PgServer, workdir: Path, outage: float, rate: int, batch: int,
                 name: str) -> dict[str, float]:
    """Catch-up time after ``outage`` seconds at ``rate`` readings/s, with the stream going on."""
    server.createdb(name)
    db = workdir / f"{name}.db"
    backlog = int(outage * rate)
    build_log(db, backlog)
    stop = threading.Event()

    def live() -> None:  # the logger goes on at `rate` readings/s, in 0.1 s commits
        index, tick = backlog, time.monotonic()
        while not stop.is_set():
            build_log(db, rate // 10, start=index)
            index += rate // 10
            tick += 0.1
            stop.wait(max(0.0, tick - time.monotonic()))

    writer = threading.Thread(target=live, daemon=True)
    forwarder = Forwarder(db, Target.parse(server.url(name)), batch=batch, interval=0.1)
    runner = threading.Thread(target=forwarder.run, args=(stop,), daemon=True)
    writer.start()
    started = time.perf_counter()
    runner.start()
    caught_up = None
    deadline = started + max(120.0, outage * 2)
    while time.perf_counter() < deadline:
        stats = forwarder.stats()
        if stats.position >= backlog and stats.pending <= rate:  # within a second of live
            caught_up = time.perf_counter() - started
            break
        time.sleep(0.05)
    stop.set()
    writer.join(10)
    runner.join(30)
    forwarder.close()
    return {"backlog": backlog, "seconds": caught_up if caught_up is not None else float("nan"),
            "outage_seconds": outage}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--outage", type=float, default=600.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="a run of seconds: 50,000 rows, a 10 s outage, one repeat")
    parser.add_argument("--fresh-server", action="store_true",
                        help="without SERVER_SETTINGS (a fresh cluster, the tests' settings)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.outage, args.repeat = 50_000, 10.0, 1
    why = missing()
    if why is not None:
        print(f"bench/forward.py: {why}", file=sys.stderr)
        return 2
    server = PgServer(() if args.fresh_server else SERVER_SETTINGS)
    results: dict[str, Any] = {"rows": args.rows, "batch": args.batch,
                               "server_settings": list(server.settings),
                               "load_before": os.getloadavg(),
                               "encoder": "python" if _copy_accel.load() is None else "compiled"}
    try:
        server.start()
        with tempfile.TemporaryDirectory(prefix="ganglion-fwd-bench-") as tmp:
            work = Path(tmp)
            db = work / "log.db"
            started = time.perf_counter()
            build_log(db, args.rows)
            print(f"built a {args.rows:,}-row log in {time.perf_counter() - started:.1f} s",
                  flush=True)
            runs: dict[str, list[tuple[float, float]]] = {"copy": [], "many": []}
            for i in range(args.repeat):
                for method, runner in (("copy", run_copy), ("many", run_executemany)):
                    name = f"{method}{i}"
                    server.createdb(name)
                    # the schema is made by a first connection, outside the timing
                    probe = Forwarder(db, Target.parse(server.url(name)))
                    probe.check()
                    probe.close()
                    _reset(db)
                    _checkpoint(server.url(name))  # each run starts with no dirty pages
                    cpu = time.process_time() + server.cpu_seconds()
                    seconds = runner(db, server.url(name), args.batch)
                    time.sleep(0.5)  # the server reaps the ended backend (its CPU is then counted)
                    cpu = time.process_time() + server.cpu_seconds() - cpu
                    runs[method].append((args.rows / seconds, cpu / args.rows * 1e6))
                    print(f"  {method:5s} run {i + 1}: {args.rows / seconds:,.0f} rows/s "
                          f"({seconds:.1f} s; CPU {cpu / args.rows * 1e6:.2f} us/row, "
                          f"load {os.getloadavg()[0]:.1f})", flush=True)
                    _reset(db)
            copy, many = runs["copy"], runs["many"]
            results["copy_rows_per_s"] = statistics.median(r for r, _ in copy)
            results["executemany_rows_per_s"] = statistics.median(r for r, _ in many)
            results["ratio"] = results["copy_rows_per_s"] / results["executemany_rows_per_s"]
            results["ratio_per_run"] = [c[0] / m[0] for c, m in zip(copy, many, strict=True)]
            results["copy_cpu_us_per_row"] = statistics.median(c for _, c in copy)
            results["executemany_cpu_us_per_row"] = statistics.median(c for _, c in many)
            results["cpu_ratio"] = (results["executemany_cpu_us_per_row"]
                                    / results["copy_cpu_us_per_row"])
            results["catch_up"] = run_catch_up(server, work, args.outage, args.rate, args.batch,
                                               "catchup")
    finally:
        server.stop()
    results["load_after"] = os.getloadavg()
    cu = results["catch_up"]
    print(f"\nforwarding {args.rows:,} rows (median of {args.repeat}; load average "
          f"{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after):")
    print(f"  COPY         {results['copy_rows_per_s']:>10,.0f} rows/s   (target >= 50,000)"
          f"   CPU {results['copy_cpu_us_per_row']:5.2f} us/row   ({results['encoder']} encoder)")
    print(f"  executemany  {results['executemany_rows_per_s']:>10,.0f} rows/s   (baseline)"
          f"          CPU {results['executemany_cpu_us_per_row']:5.2f} us/row")
    print(f"  ratio        {results['ratio']:>10.1f} x        (target >= 5x; per run: "
          f"{', '.join(f'{r:.1f}' for r in results['ratio_per_run'])})")
    print(f"  CPU ratio    {results['cpu_ratio']:>10.1f} x        (client + server CPU per row)")
    print(f"  catch-up after a {cu['outage_seconds']:g} s outage at {args.rate}/s "
          f"({cu['backlog']:,} readings) with the stream going on: {cu['seconds']:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _checkpoint(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _reset(db: Path) -> None:
    """Forget every forwarding position (each run starts from the beginning)."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute("DELETE FROM forward_positions")
        conn.commit()
    except sqlite3.OperationalError:
        pass  # not forwarded yet
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
