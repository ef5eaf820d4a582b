"""Fake hardware (``--fake-hardware``): the shipped mocks, found and read by the real plugin."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hw_support import RecordingNode, fast_runtime, run, until

from ganglion.errors import ConfigError
from hardware.detect import I2CSpec, OneWireSpec, scan
from hardware.drivers.ds18b20 import read_probe
from hardware.fakes import GPS_NAME, FakeRig, parse_fakes
from hardware.messages import Position
from hardware.plugin import HardwarePlugin
from hardware.readings import Humidity, Pressure, Temperature
from hardware.settings import SerialSpec


def test_names_are_checked_and_the_valid_ones_listed() -> None:
    assert parse_fakes("ds18b20, BME280,nmea") == ("ds18b20", "bme280", "nmea")
    assert parse_fakes(["ds18b20", "ds18b20,bmp280"]) == ("ds18b20", "ds18b20", "bmp280")
    with pytest.raises(ConfigError, match=r"unknown fake device 'ds18b2'; valid: bme280, "
                                          r"bmp280, ds18b20, nmea"):
        parse_fakes("ds18b2")
    with pytest.raises(ConfigError, match="name at least one"):
        parse_fakes(" , ")
    with pytest.raises(ConfigError, match="at most 2 fake BME280/BMP280"):
        parse_fakes("bme280,bme280,bmp280")
    with pytest.raises(ConfigError, match="at most one fake nmea"):
        parse_fakes("nmea,nmea")


def test_the_rig_is_found_by_the_same_scan_as_real_devices(tmp_path: Path) -> None:
    rig = FakeRig("ds18b20,ds18b20,bme280,bmp280,nmea", root=tmp_path)
    found = scan(rig.factory, w1_root=rig.w1_root, dev=rig.dev)
    gps = str(rig.dev / "serial" / "by-id" / GPS_NAME)
    assert found == {
        "w1:28-0000fa4e0001": OneWireSpec("28-0000fa4e0001"),
        "w1:28-0000fa4e0002": OneWireSpec("28-0000fa4e0002"),
        "i2c:1/0x76": I2CSpec(1, 0x76, "BME280"),
        "i2c:1/0x77": I2CSpec(1, 0x77, "BMP280"),
        f"serial:{gps}": SerialSpec(gps, 9600, "auto", configured=False),
    }
    rig.close()
    assert tmp_path.exists()  # a root the caller gave is the caller's to remove


def test_the_values_move_and_stay_valid_readings(tmp_path: Path) -> None:
    rig = FakeRig("ds18b20", root=tmp_path)
    rom = rig.probes[0]
    seen = set()
    for second in range(0, 600, 30):
        rig.step(float(second))
        celsius = read_probe(rig.w1_root, rom)  # the real driver: CRC and range checks
        assert 17.0 <= celsius <= 19.0
        seen.add(celsius)
    assert len(seen) > 5


def test_the_plugin_with_fakes_publishes_every_type_and_cleans_up() -> None:
    plugin = HardwarePlugin(fake="ds18b20,bme280,nmea", scan_interval=0.05, interval=0.05,
                            runtime=fast_runtime())
    node = RecordingNode()
    roots: list[Path] = []

    def kinds() -> set[type]:
        return {type(m) for m in node.published}

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: {Temperature, Humidity, Pressure, Position} <= kinds(),
                    "a reading of every fake type", timeout=10)
        roots.append(plugin.dev.parent)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    sensors = {m.sensor for m in node.published}
    assert "w1:28-0000fa4e0001" in sensors and "i2c:1/0x76" in sensors
    assert any(s.startswith("serial:") and s.endswith(GPS_NAME) for s in sensors)
    assert roots[0].name.startswith("ganglion-fake-hw-") and not roots[0].exists()


def test_fakes_replace_the_machine_but_keep_the_switches(tmp_path: Path) -> None:
    plugin = HardwarePlugin(fake="ds18b20,bme280", i2c=False, scan_interval=0.05,
                            interval=0.05, runtime=fast_runtime())
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: node.published, "a reading")
        await until(lambda: plugin.scans >= 4, "four scans")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert {m.sensor for m in node.published} == {"w1:28-0000fa4e0001"}  # i2c = false holds
