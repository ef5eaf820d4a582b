"""An internal plugin: raise an alarm when a temperature goes over a limit.

Run it (loopback only):

    python examples/internal_plugin.py --seconds 5

It runs one node with two internal plugins: the built-in ``sim`` plugin (a
simulated temperature sensor) and ``OverheatAlarm`` below, with a limit low
enough that alarms fire. To make the plugin installable, give your package an
entry point (see docs/plugins.md):

    [project.entry-points."ganglion.plugins"]
    overheat = "my_package.alarm:OverheatAlarm"

and start a node with ``ganglion node --plugin overheat``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass
from typing import Any

import ganglion
from ganglion import MessageInfo, Node, message
from ganglion.plugins import PluginHost
from hardware.readings import Temperature
from hardware.sim_plugin import SimPlugin


@message("brewery.Alarm")
@dataclass
class Alarm:
    sensor: str
    celsius: float
    limit: float


class OverheatAlarm:
    """Publishes an Alarm whenever a temperature reading goes above ``limit``."""

    name = "overheat"
    publishes = (Alarm,)
    subscribes = (Temperature,)

    def __init__(self, limit: float = 30.0) -> None:
        self.limit = limit
        self.readings: asyncio.Queue[Temperature] = asyncio.Queue(maxsize=100)

    async def setup(self, node: Any) -> None:
        # Subscribe in setup: the host runs every setup before any plugin's run,
        # so this plugin cannot miss the sensor's first readings.
        node.subscribe(Temperature, callback=lambda msg, info: self._queue(msg))

    def _queue(self, msg: Temperature) -> None:
        if self.readings.full():
            self.readings.get_nowait()  # keep the newest readings
        self.readings.put_nowait(msg)

    async def run(self, node: Any) -> None:
        while True:
            reading = await self.readings.get()
            if reading.celsius > self.limit:
                await node.publish(Alarm(sensor=reading.sensor, celsius=reading.celsius,
                                         limit=self.limit))


async def main(seconds: float, port: int = 47910) -> int:
    """Run the node for ``seconds``; return the number of alarms seen."""
    alarms = 0

    def on_alarm(alarm: Alarm, info: MessageInfo) -> None:
        nonlocal alarms
        alarms += 1
        print(f"ALARM {alarm.sensor}: {alarm.celsius:.2f} °C > {alarm.limit} °C")

    with tempfile.TemporaryDirectory() as state:
        async with Node(name="brewery", interface="127.0.0.1", port=port,
                        control_port=port + 1, state_dir=state, discovery=False) as node:
            node.subscribe(Alarm, callback=on_alarm)
            plugins = [SimPlugin(kinds=["temperature"], interval=0.1, seed=1),
                       OverheatAlarm(limit=-100.0)]
            async with PluginHost(node, plugins):
                await asyncio.sleep(seconds)
    return alarms


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    ganglion.run(main(parser.parse_args().seconds))  # on uvloop where installed
