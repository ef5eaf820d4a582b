#!/usr/bin/env python3
"""MQTT bridge benchmark: readings/s and added latency, against a plain paho publisher.

Theory of operation: one Mosquitto (Debian's ``mosquitto``, started here on
127.0.0.1 with a free port and a temporary directory, ended by its PID) and, per
trial, one subscriber process (paho, its own network thread) that counts what
arrives on the readings' topic and notes each arrival's time. Two publishers
take turns in this process, each sending the same JSON readings (every field,
``ts`` in ISO 8601, ``seq``) to the same topic at the same QoS:

* **plain**: a paho client (``loop_start``) publishing ``json.dumps`` of a dict,
  the least a program can do to put a reading on MQTT;
* **bridge**: a ganglion node publishing ``sensors.Temperature`` readings that its
  :class:`~ganglion.runtime.mqtt.MqttBridge` (plugin mode, same process) turns
  into MQTT messages, discovery and availability included.

Throughput: ``--count`` readings sent as fast as the publisher can, yielding to
the event loop every 100; rate = readings received / (last arrival - first send).
Latency: ``--latency-count`` readings paced at ``--latency-rate`` per second;
per reading, arrival time minus its ``ts``, p50 and p99 (both processes read the
same clock). Reported per QoS: the medians over ``--trials`` of each system, the
rate ratio bridge / plain (target >= 0.8 at QoS 0, and >= 20,000 readings/s) and
the added p50 latency bridge - plain (target < 2 ms). The machine is shared and
noisy: compare the same-run ratio, not absolute numbers across runs.

Usage: ``python bench/mqtt.py [--quick] [--trials 3] [--count 50000] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
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

TOPIC = "ganglion/bench/sensors.Temperature/s"


# -- the subscriber (a child process) -------------------------------------------------------


def subscriber(port: int, qos: int, count: int, idle: float, deadline: float) -> None:
    """Count arrivals on TOPIC; print one JSON line of results on stdout."""
    import threading

    import paho.mqtt.client as paho

    arrivals: list[int] = []
    stamps: list[bytes] = []
    done = threading.Event()
    ready = threading.Event()

    def on_connect(client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        client.subscribe(TOPIC, qos)

    def on_subscribe(*_a: Any) -> None:
        ready.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        if msg.retain:
            return  # a retained reading of an earlier trial
        arrivals.append(time.time_ns())
        stamps.append(msg.payload)
        if len(arrivals) >= count:
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not ready.wait(10):
        raise SystemExit("subscriber: no SUBACK within 10 s")
    print("ready", flush=True)
    end = time.monotonic() + deadline
    last_len, last_change = 0, time.monotonic()
    while not done.is_set() and time.monotonic() < end:
        time.sleep(0.05)
        if len(arrivals) != last_len:
            last_len, last_change = len(arrivals), time.monotonic()
        elif last_len and time.monotonic() - last_change > idle:
            break
    client.disconnect()
    client.loop_stop()
    latencies = []
    for arrived, payload in zip(arrivals, stamps, strict=True):
        ts = dt.datetime.fromisoformat(json.loads(payload)["ts"])
        latencies.append((arrived - int(ts.timestamp() * 1e6) * 1000) / 1e6)  # ms
    print(json.dumps({"received": len(arrivals), "first": arrivals[0] if arrivals else None,
                      "last": arrivals[-1] if arrivals else None, "latencies_ms": latencies}),
          flush=True)


def start_subscriber(port: int, qos: int, count: int, idle: float = 2.0,
                     deadline: float = 120.0) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "sub", "--port", str(port), "--qos", str(qos),
         "--count", str(count), "--idle", str(idle), "--deadline", str(deadline)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"subscriber did not start: {line!r}")
    return proc


def finish_subscriber(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=180)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- the publishers ---------------------------------------------------------------------------


def payload(i: int) -> bytes:
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    return json.dumps({"ts": ts, "seq": i, "sensor": "s", "celsius": 20.0 + i % 10},
                      separators=(",", ":")).encode()


def plain(port: int, qos: int, count: int, gap: float) -> int:
    """Publish ``count`` readings with paho; returns the time of the first send (ns)."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    first = time.time_ns()
    infos = []
    for i in range(count):
        infos.append(client.publish(TOPIC, payload(i), qos, False))
        if gap:
            time.sleep(gap)
    for info in infos[-1:]:
        info.wait_for_publish(60)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    return first


async def bridge(port: int, qos: int, count: int, gap: float, state: Path) -> int:
    """Publish ``count`` readings through a node and its bridge; the first send's time (ns)."""
    from ganglion import __version__
    from ganglion.mqtt import BridgeSettings, parse_broker
    from ganglion.node import Node
    from ganglion.runtime.mqtt import MqttBridge
    from hardware.readings import Temperature

    data_port = free_port(socket.SOCK_DGRAM)
    settings = BridgeSettings(version=__version__, qos=qos, retain=False, prefix="ganglion")
    br = MqttBridge(broker=parse_broker(f"mqtt://127.0.0.1:{port}"), settings=settings,
                    max_queue=max(count, 10_000), poll=0.05)
    stop = asyncio.Event()
    async with Node(name="bench", interface="127.0.0.1", port=data_port,
                    control_port=data_port + 1, discovery=False, state_dir=state) as node:
        await node.publish(Temperature("warmup", 0.0))
        await node.wait_for_group("sensors.Temperature", timeout=10)
        task = asyncio.create_task(br.run(node, stop))
        t0 = time.monotonic()
        while not (br.connected.is_set() and br.stats()["types"]):
            if time.monotonic() - t0 > 10:
                raise SystemExit("the bridge did not connect within 10 s")
            await asyncio.sleep(0.02)
        first = time.time_ns()
        t_loop = time.perf_counter()
        for i in range(count):
            node.publish_nowait(Temperature("s", 20.0 + i % 10))
            if gap:
                await asyncio.sleep(gap)
            elif i % 100 == 99:
                await asyncio.sleep(0)
        if os.environ.get("BENCH_DEBUG"):
            print(f"publish loop {time.perf_counter() - t_loop:.2f} s", file=sys.stderr)
        t0 = time.monotonic()
        while br.stats()["queued"] and time.monotonic() - t0 < 60:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 10)
    return first


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if kind == socket.SOCK_STREAM:
            return port
        with socket.socket(socket.AF_INET, kind) as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise SystemExit("no free port")


# -- the run ----------------------------------------------------------------------------------


def start_broker(where: Path) -> tuple[subprocess.Popen[bytes], int]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        raise SystemExit("mosquitto is not installed (Debian package mosquitto)")
    port = free_port()
    conf = where / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "max_queued_messages 1000000",
             "max_inflight_messages 1000", f"log_dest file {where}/mosquitto.log"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def trial(system: str, port: int, qos: int, count: int, gap: float, state: Path) -> dict[str, Any]:
    sub = start_subscriber(port, qos, count)
    try:
        if system == "plain":
            first = plain(port, qos, count, gap)
        else:
            first = asyncio.run(bridge(port, qos, count, gap, state))
        got = finish_subscriber(sub)
    finally:
        if sub.poll() is None:
            sub.kill()
    lat = sorted(got["latencies_ms"])
    span = (got["last"] - first) / 1e9 if got["last"] else float("inf")
    return {"system": system, "qos": qos, "sent": count, "received": got["received"],
            "rate": got["received"] / span if span > 0 else 0.0,
            "p50_ms": lat[len(lat) // 2] if lat else None,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="main", choices=["main", "sub"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--qos", type=int, default=0)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--latency-count", type=int, default=2000)
    parser.add_argument("--latency-rate", type=float, default=1000.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 trial, small counts (seconds)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.role == "sub":
        subscriber(args.port, args.qos, args.count, args.idle, args.deadline)
        return 0
    if args.quick:
        args.trials = 1
        args.count = min(args.count, 3000)
        args.latency_count = min(args.latency_count, 300)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        broker, port = start_broker(Path(tmp))
        try:
            for qos in (0, 1):
                for n in range(args.trials):
                    for system in ("plain", "bridge"):
                        state = Path(tmp) / f"state-{qos}-{n}-{system}"
                        rate = trial(system, port, qos, args.count, 0.0, state)
                        lat = trial(system, port, qos, args.latency_count,
                                    1.0 / args.latency_rate, Path(str(state) + "-lat"))
                        rate.update(p50_ms=lat["p50_ms"], p99_ms=lat["p99_ms"],
                                    latency_received=lat["received"])
                        results.append(rate)
                        print(json.dumps(rate), file=sys.stderr, flush=True)
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    summary = report(results)
    if args.json is not None:
        args.json.write_text(json.dumps({"trials": results, "summary": summary}, indent=2))
    return 0


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    print(f"{'qos':>3} {'system':>7} {'readings/s':>11} {'received':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7}   (medians over trials)")
    for qos in (0, 1):
        row: dict[str, Any] = {}
        for system in ("plain", "bridge"):
            mine = [r for r in results if r["qos"] == qos and r["system"] == system]
            row[system] = {
                "rate": median([r["rate"] for r in mine]),
                "received": median([r["received"] / r["sent"] for r in mine]),
                "p50_ms": median([r["p50_ms"] for r in mine if r["p50_ms"] is not None]),
                "p99_ms": median([r["p99_ms"] for r in mine if r["p99_ms"] is not None])}
            m = row[system]
            print(f"{qos:>3} {system:>7} {m['rate']:>11,.0f} {m['received']:>8.1%} "
                  f"{m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f}")
        ratio = row["bridge"]["rate"] / row["plain"]["rate"] if row["plain"]["rate"] else 0.0
        added = row["bridge"]["p50_ms"] - row["plain"]["p50_ms"]
        row.update(ratio=ratio, added_p50_ms=added)
        targets = (f"  target: >= 20,000/s and >= 0.8x plain: "
                   f"{'met' if row['bridge']['rate'] >= 20_000 and ratio >= 0.8 else 'NOT met'}"
                   if qos == 0 else "")
        print(f"    bridge / plain = {ratio:.2f}x; added p50 latency = {added:+.2f} ms "
              f"(target < 2 ms: {'met' if added < 2 else 'NOT met'}){targets}")
        summary[f"qos{qos}"] = row
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
