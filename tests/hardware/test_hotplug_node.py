"""Hotplug through real nodes on loopback: a 1-Wire probe appears, publishes, disappears.

Two in-process nodes on 127.0.0.1 (own port pair, mDNS off): one runs the
hardware plugin under the real PluginHost, watching a fake w1 sysfs tree in
tmp; the other subscribes to ``sensors.Temperature`` over multicast. Nothing
leaves loopback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hw_support import LOOPBACK, fast_runtime, free_port_pair, run, until

from ganglion.node import Node
from ganglion.plugins import PluginHost
from hardware.mock import FakeBme280, FakeW1Tree, MockPortFactory
from hardware.plugin import HardwarePlugin
from hardware.readings import Humidity, Temperature

pytestmark = pytest.mark.usefixtures("multicast_loopback")

ROM = "28-0416c3a1b2ff"


def node(tmp_path: Path, port: int, name: str) -> Node:
    return Node(name=name, interface=LOOPBACK, port=port, control_port=port + 1,
                discovery=False, state_dir=tmp_path / name, heartbeat_seconds=0.2,
                peer_timeout=2.0, ttl=0)


def test_a_probe_plugged_in_reaches_another_node_and_stops_when_unplugged(
        tmp_path: Path) -> None:
    port = free_port_pair()
    tree = FakeW1Tree(tmp_path / "w1")
    factory = MockPortFactory()
    factory.add_i2c_bus(1).attach(0x76, FakeBme280())
    plugin = HardwarePlugin(w1_root=tree.root, dev=tmp_path / "dev", scan_interval=0.1,
                            interval=0.1, factory=factory, runtime=fast_runtime())
    got: list[Any] = []

    async def main() -> None:
        async with node(tmp_path, port, "pi") as pi, node(tmp_path, port, "desk") as desk:
            desk.subscribe(Temperature, lambda msg, info: got.append(msg))
            desk.subscribe(Humidity, lambda msg, info: got.append(msg))
            async with PluginHost(pi, [plugin]):
                # Nothing 1-Wire yet: only the BME280 publishes.
                await until(lambda: any(m.sensor == "i2c:1/0x76" for m in got),
                            "the BME280's readings at the other node", timeout=10)
                assert not any(m.sensor == f"w1:{ROM}" for m in got)
                tree.add_probe(ROM, 18.25)
                plugged = asyncio.get_running_loop().time()
                await until(lambda: any(m.sensor == f"w1:{ROM}" for m in got),
                            "the new probe's reading at the other node", timeout=10)
                latency = asyncio.get_running_loop().time() - plugged
                assert latency < 5.0  # "publishing within a few seconds"
                tree.remove_probe(ROM)
                await until(lambda: f"w1:{ROM}" not in plugin.running(),
                            "the probe's sensor to stop", timeout=10)
                await asyncio.sleep(0.3)  # anything in flight lands
                count = sum(m.sensor == f"w1:{ROM}" for m in got)
                bme = sum(m.sensor == "i2c:1/0x76" for m in got)
                await asyncio.sleep(0.5)
                assert sum(m.sensor == f"w1:{ROM}" for m in got) == count
                assert sum(m.sensor == "i2c:1/0x76" for m in got) > bme  # others carry on

    run(main(), timeout=40)
    probe = [m for m in got if m.sensor == f"w1:{ROM}"]
    assert probe and all(m == Temperature(sensor=f"w1:{ROM}", celsius=18.25) for m in probe)
    assert any(isinstance(m, Humidity) for m in got)
