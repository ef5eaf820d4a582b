"""Worker process of the repair benchmark: a sensor or a receiver on one lab host.

    python bench/_repair_worker.py ROLE '<json config>'

Theory of operation: ``bench/repair.py`` runs one worker per host of its lab,
under ``ip netns exec``. A *sensor* is a member node publishing
``bench.repair.Reading`` at ``rate`` per second; each reading carries its index
``n`` and its publish time ``t`` (wall clock ns: the namespaces share the
machine's clock), so a receiver's latency is exact and the sensor's list of
publish times says which readings fall in the measured window. A *receiver* is
an observer node subscribed to the type that keeps, per sensor, every reading's
``(n, t, received_ns, repaired)``. Both print ``ready`` (and a receiver
``heard <sender>`` for each sensor it first hears) on stdout, and on SIGTERM or
their ``deadline`` one JSON line: their records and ``node.stats()`` repair
counters. Nothing is sent outside the lab's namespaces: the node binds the host's
``eth0`` address.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# bench/ holds scripts named like packages: the repository first, bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

from ganglion import MessageInfo, Node, message  # noqa: E402

TYPE_NAME = "bench.repair.Reading"


@message(TYPE_NAME)
@dataclass
class Reading:
    """One benchmark reading: its index at the sensor and its publish time."""

    n: int
    t: int


def _repair_counters(node: Node) -> dict[str, Any]:
    """The node's repair counters: summed over received streams, and per published type."""
    stats = node.stats()
    streams: dict[str, int] = {}
    for stream in stats.endpoint.streams.values():
        for name in ("received", "lost", "repaired", "repair_requests_sent",
                     "repair_requests_suppressed", "permanently_lost"):
            streams[name] = streams.get(name, 0) + int(getattr(stream, name, 0) or 0)
    published: dict[str, Any] = {}
    for type_name, type_stats in stats.types.items():
        if getattr(type_stats, "sent", 0):
            published[type_name] = {k: v for k, v in dataclasses.asdict(type_stats).items()
                                    if isinstance(v, int) and not isinstance(v, bool)}
    control = {name: int(stats.control.get(name, 0)) for name in (
        "repair_requests_sent", "repair_requests_carried", "repair_carried_bytes")}
    return {"streams": streams, "published": published, "control": control}


async def run(role: str, config: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(float(config["deadline"]), stop.set)
    kwargs: dict[str, Any] = {"name": config["name"], "interface": config["address"],
                              "discovery": False}
    if not config["repair"]:
        kwargs["repair"] = False
    if role == "sensor":
        kwargs["state_dir"] = Path(config["state_dir"])
    else:
        kwargs["observer"] = True
    node = Node(**kwargs)
    await node.start()
    if not config.get("carry", True) and node._requester is not None:
        # --compare: every request alone, as before requests rode heartbeats (the
        # requester's own switch; no node option sets it)
        node._requester.config = dataclasses.replace(node._requester.config, carry_wait=0.0)
    out: dict[str, Any] = {"role": role, "node": node.node_id.hex()}
    try:
        if role == "sensor":
            print("ready", flush=True)
            period = 1.0 / float(config["rate"])
            times: list[int] = []
            next_at = loop.time()
            while not stop.is_set():
                now_ns = time.time_ns()
                node.publish_nowait(Reading(len(times), now_ns))
                times.append(now_ns)
                next_at += period
                delay = next_at - loop.time()
                if delay < -1.0:  # far behind (a stalled machine): do not burst to catch up
                    next_at = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(delay, 0.0))
            out["published"] = times
        else:
            got: dict[str, list[tuple[int, int, int, bool]]] = {}

            def on_reading(msg: Reading, info: MessageInfo) -> None:
                sender = info.sender.hex()
                records = got.get(sender)
                if records is None:
                    records = got[sender] = []
                    print(f"heard {sender}", flush=True)
                records.append((msg.n, msg.t, info.received_ns,
                                bool(getattr(info, "repaired", False))))

            node.subscribe(Reading, on_reading, propose=False)
            print("ready", flush=True)
            await stop.wait()
            out["received"] = got
        out["stats"] = _repair_counters(node)
    finally:
        await node.close()
    return out


def main() -> int:
    role, config = sys.argv[1], json.loads(sys.argv[2])
    if role not in ("sensor", "receiver"):
        print(f"unknown role {role!r}", file=sys.stderr)
        return 2
    result = asyncio.run(run(role, config))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
