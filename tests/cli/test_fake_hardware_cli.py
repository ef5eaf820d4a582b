"""``ganglion node --fake-hardware``: a real node process reads the shipped fakes and publishes.

The node runs as ``python -m ganglion node`` on loopback (``--iface lo``, mDNS
off, its own port) and ``ganglion tail`` is the subscriber in another process;
both are killed by PID when the test ends (the ``spawn`` fixture).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_procs import Proc

pytestmark = pytest.mark.usefixtures("multicast_loopback")

Spawn = Callable[..., Proc]


def test_a_fake_ds18b20_reaches_a_subscriber_as_sensors_temperature(
        spawn: Spawn, free_udp_port: int, tmp_path: Path) -> None:
    port = str(free_udp_port)
    node = spawn("node", "--fake-hardware", "ds18b20", "--iface", "lo", "--no-mdns",
                 "--port", port, "--state-dir", str(tmp_path / "node"), "--name", "brewpi")
    node.wait_for_output(r"sensor w1:28-0000fa4e0001 found \(1-Wire thermometer\)")
    # The same start-up report a real machine gets, on the fake tree.
    assert re.search(r"looking at 1-Wire: 1 bus master\(s\) at \S+/w1, 1 thermometer\(s\)",
                     node.err), node.err
    tail = spawn("tail", "sensors.Temperature", "--iface", "lo", "--port", port,
                 "--count", "2", "--timeout", "30")
    assert tail.finish(timeout=40) == 0, tail.err
    lines = [line for line in tail.out.splitlines() if "sensors.Temperature" in line]
    assert len(lines) == 2, tail.out
    for line in lines:
        found = re.search(r"sensor=w1:28-0000fa4e0001 celsius=(\d+(?:\.\d+)?)", line)
        assert found is not None, line
        assert 17.0 <= float(found.group(1)) <= 19.0


def test_an_unknown_fake_name_is_refused_listing_the_valid_ones(spawn: Spawn,
                                                                 tmp_path: Path) -> None:
    node = spawn("node", "--fake-hardware", "ds18b20,dht22", "--iface", "lo", "--no-mdns",
                 "--state-dir", str(tmp_path / "node"))
    assert node.finish() != 0
    assert "unknown fake device 'dht22'; valid: bme280, bmp280, ds18b20, nmea" in node.err
    assert "Traceback" not in node.err


def test_fake_hardware_with_no_hardware_is_a_usage_error(spawn: Spawn, tmp_path: Path) -> None:
    node = spawn("node", "--fake-hardware", "ds18b20", "--no-hardware", "--iface", "lo",
                 "--no-mdns", "--state-dir", str(tmp_path / "node"))
    assert node.finish() == 2
    assert "--fake-hardware runs the hardware plugin; drop --no-hardware" in node.err


def test_three_fake_probes_give_a_late_tail_three_last_values_and_info_three_rows(
        spawn: Spawn, free_udp_port: int, tmp_path: Path) -> None:
    """Readings keyed per sensor: one node, three DS18B20 probes in one stream."""
    import json

    port = str(free_udp_port)
    node = spawn("node", "--fake-hardware", "ds18b20,ds18b20,ds18b20", "--iface", "lo",
                 "--no-mdns", "--port", port, "--state-dir", str(tmp_path / "node"),
                 "--name", "brewpi")
    node.wait_for_output(r"sensor w1:28-0000fa4e0003 found")
    node.wait_for_output(r"sensors\.Temperature uses group")
    # a logger that starts after the node: it asks for last values too
    log = spawn("log", "--db", str(tmp_path / "log.db"), "--iface", "lo", "--port", port,
                "--duration", "6")
    # a late tail: its first three lines are the latest reading of each probe
    tail = spawn("tail", "sensors.Temperature", "--iface", "lo", "--port", port,
                 "--count", "3", "--timeout", "20")
    assert tail.finish(timeout=30) == 0, tail.err
    lines = [line for line in tail.out.splitlines() if "sensors.Temperature" in line]
    assert len(lines) == 3 and all(line.endswith("(last value)") for line in lines), tail.out
    sensors = {found.group(1) for line in lines if (found := re.search(r"sensor=(\S+)", line))}
    assert sensors == {f"w1:28-0000fa4e000{i}" for i in (1, 2, 3)}, tail.out
    assert log.finish(timeout=30) == 0, log.err
    info = spawn("info", "--db", str(tmp_path / "log.db"), "--json")
    assert info.finish() == 0, info.err
    streams = [s for s in json.loads(info.out)["streams"] if s["type"] == "sensors.Temperature"]
    assert sorted(s["key"]["sensor"] for s in streams) == sorted(sensors), info.out
    assert all(s["node_name"] == "brewpi" and s["count"] >= 1 for s in streams), info.out
