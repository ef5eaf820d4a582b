"""An external plugin in Python: a separate process talking to a node's plugin bus.

It subscribes to ``sensors.Temperature``, and for every ``--window`` readings of a
sensor publishes an ``examples.Average`` of them. The node does the network side.

Run a node with a simulated sensor, then the plugin against the node's state
directory (where the bus's ipc sockets live):

    ganglion node --name brewery --state-dir /tmp/brewery --sim temperature --iface lo
    python examples/external_plugin.py /tmp/brewery
    ganglion tail examples.Average --iface lo

Plugins in other languages use the same frames (docs/plugin-frames.md); see
examples/c_plugin for one in C.
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass

from ganglion import message
from ganglion.client import PluginClient
from hardware.readings import Temperature


@message("examples.Average")
@dataclass
class Average:
    sensor: str
    celsius: float
    readings: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Average temperatures over a window.")
    parser.add_argument("where", help="the node's state directory, or tcp://127.0.0.1:PORT")
    parser.add_argument("--window", type=int, default=5, help="readings per average")
    parser.add_argument("--count", type=int, default=0, help="averages to publish (0: forever)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="give up after this many seconds without a reading")
    args = parser.parse_args(argv)

    windows: dict[str, list[float]] = collections.defaultdict(list)
    published = 0
    with PluginClient(args.where) as bus:
        bus.subscribe(Temperature)
        while args.count == 0 or published < args.count:
            try:
                reading, meta = bus.recv(timeout=args.timeout)
            except TimeoutError:
                why = "" if bus.node_connected else " (the node is gone)"
                print(f"no temperature within {args.timeout:g} s{why}", file=sys.stderr)
                return 1
            assert isinstance(reading, Temperature)
            window = windows[reading.sensor]
            window.append(reading.celsius)
            if len(window) >= args.window:
                avg = Average(sensor=reading.sensor, celsius=round(sum(window) / len(window), 3),
                              readings=len(window))
                bus.publish(avg)
                published += 1
                print(f"{avg.sensor}: {avg.celsius} °C over {avg.readings} readings "
                      f"(last from node {meta.sender.hex()} #{meta.seq})", flush=True)
                window.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
