"""In-process publish -> subscribe through a real node (issue 4's in-process target).

    .venv/bin/python bench/inprocess.py [--count N] [--quick]

Theory of operation: one :class:`ganglion.Node` is started on 127.0.0.1 with a
temporary state directory and no mDNS, like two internal plugins sharing a node:
one subscribes to ``bench.InProcess`` with a callback, the other publishes
``count`` readings with ``Node.publish_nowait`` in a tight loop, yielding to the
event loop every :data:`YIELD_EVERY` publishes so the node's own timers run. The
rate is messages delivered to the callback divided by the time from the first
publish to the last delivery. No other node subscribes, so with publisher-side
matching nothing goes on the network; the figure is the cost of publish, local
delivery and the callback. The target (issue 4) is 10x pyplexo's 41k msg/s.

``measure_inprocess(count)`` is importable (bench/node.py uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, and a script named like a package would
# shadow the consensus package: put the repository first and bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

from ganglion import Node, message  # noqa: E402
from ganglion.node import MATCHING_WARMUP_HEARTBEATS  # noqa: E402

#: The node's heartbeat interval (its default).
HEARTBEAT_SECONDS = 0.5
#: Publishes between yields to the event loop.
YIELD_EVERY = 256
#: pyplexo's in-process figure from issue 4, and the target ratio over it.
PYPLEXO_MSG_S = 41_000
TARGET_RATIO = 10


@message("bench.InProcess")
@dataclass(slots=True)
class InProcess:
    """A typical small reading: a counter, a value and where it came from."""

    seq: int
    celsius: float
    sensor: str


def _free_port_pair() -> int:
    """A UDP port whose successor (the control port) is free too, on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
                s2.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on loopback")


async def _run(count: int) -> float:
    port = _free_port_pair()
    with tempfile.TemporaryDirectory(prefix="ganglion-inprocess-") as state:
        async with Node(name="bench", interface="127.0.0.1", port=port, control_port=port + 1,
                        state_dir=state, discovery=False,
                        heartbeat_seconds=HEARTBEAT_SECONDS) as node:
            received = 0
            last_ns = 0

            def on_reading(_msg: InProcess, _info: object) -> None:
                nonlocal received, last_ns
                received += 1
                last_ns = time.perf_counter_ns()

            node.subscribe(InProcess, callback=on_reading)
            publish = node.publish_nowait
            publish(InProcess(seq=-1, celsius=0.0, sensor="warm-up"))
            await node.wait_for_group("bench.InProcess")
            # past the matching warm-up, during which a node sends every type
            await asyncio.sleep(MATCHING_WARMUP_HEARTBEATS * HEARTBEAT_SECONDS + 0.1)
            sent_before = node.stats().endpoint.datagrams_sent
            received = 0
            start = time.perf_counter_ns()
            for seq in range(count):
                publish(InProcess(seq=seq, celsius=21.5, sensor="probe-1"))
                if seq % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            if received != count:
                raise RuntimeError(f"delivered {received} of {count}")
            if node.stats().endpoint.datagrams_sent != sent_before:
                raise RuntimeError("the node sent readings nobody else subscribes to")
            return count / ((last_ns - start) / 1e9)


def measure_inprocess(count: int) -> float:
    """Publish ``count`` readings to a local callback through a real node.

    Args:
        count: messages to publish (after one warm-up message).

    Returns:
        Delivered messages per second.

    Raises:
        RuntimeError: not every message reached the callback.
    """
    return asyncio.run(_run(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one trial of 50,000")
    args = parser.parse_args()
    count, trials = (50_000, 1) if args.quick else (args.count, args.trials)
    rates = sorted(measure_inprocess(count) for _ in range(trials))
    median = rates[len(rates) // 2]
    print(f"in-process publish -> callback: median {median:,.0f} msg/s over {trials} trial(s) "
          f"of {count:,} (best {rates[-1]:,.0f}); {median / PYPLEXO_MSG_S:.1f}x pyplexo's "
          f"{PYPLEXO_MSG_S:,} (target {TARGET_RATIO}x)")


if __name__ == "__main__":
    main()
