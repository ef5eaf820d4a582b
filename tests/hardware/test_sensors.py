"""The sensor objects on their own: what each publishes, and how each recovers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from hw_support import RecordingNode, fast_runtime, run, until

from hardware.errors import SensorGone
from hardware.messages import Reading
from hardware.mock import FakeBme280, FakeW1Tree, MockPortFactory
from hardware.readings import Humidity, Pressure, Temperature
from hardware.sensors import Bme280Device, OneWireProbe, SerialSensor
from hardware.settings import SerialSpec


def test_a_bme280_reading_is_three_rounded_messages_named_by_bus_and_address() -> None:
    factory = MockPortFactory()
    factory.add_i2c_bus(1).attach(0x77, FakeBme280())
    device = Bme280Device(factory, 1, 0x77, interval=1, runtime=fast_runtime())
    out = device.read()
    assert out[0] == Temperature(sensor="i2c:1/0x77", celsius=25.08)
    assert isinstance(out[1], Pressure) and out[1].hpa == pytest.approx(1006.533, abs=0.001)
    assert isinstance(out[2], Humidity) and out[2].sensor == "i2c:1/0x77"
    device.close()


def test_a_bme280_device_reopens_after_its_bus_went_away() -> None:
    factory = MockPortFactory()
    factory.add_i2c_bus(1).attach(0x76, FakeBme280())
    device = Bme280Device(factory, 1, 0x76, interval=1, runtime=fast_runtime())
    device.read()
    factory.remove_i2c_bus(1)
    device.close()
    with pytest.raises(SensorGone, match="i2c:1/0x76"):
        device.read()
    factory.add_i2c_bus(1).attach(0x76, FakeBme280())
    assert len(device.read()) == 3


def test_a_one_wire_probe_reading_names_its_rom_id(tmp_path: Path) -> None:
    tree = FakeW1Tree(tmp_path)
    tree.add_probe("28-0000000000aa", 4.5)
    probe = OneWireProbe(tmp_path, "28-0000000000aa", interval=1, runtime=fast_runtime())
    assert probe.read() == [Temperature(sensor="w1:28-0000000000aa", celsius=4.5)]


def serial_run(factory: MockPortFactory, spec: SerialSpec, feed: list[bytes],
               expect: int) -> tuple[RecordingNode, SerialSensor]:
    sensor = SerialSensor(factory, spec, runtime=fast_runtime())
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(sensor.run(node))
        try:
            port = factory.serial[spec.port]
            for chunk in feed:
                port.feed(chunk)
            await until(lambda: len(node.published) >= expect, f"{expect} readings")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())
    return node, sensor


def test_serial_sensor_puts_partial_reads_together() -> None:
    factory = MockPortFactory()
    factory.add_serial("/dev/ttyUSB0")
    node, sensor = serial_run(factory, SerialSpec("/dev/ttyUSB0", format="kv",
                                                  units=(("t", "°C"),)),
                              [b"t=2", b"1.", b"5\r", b"\nt=22\n"], expect=2)
    assert node.published == [Reading("serial:/dev/ttyUSB0", "t", 21.5, "°C"),
                              Reading("serial:/dev/ttyUSB0", "t", 22.0, "°C")]
    assert sensor.decoder.lines == 2


def test_serial_sensor_survives_undecodable_bytes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hardware")
    factory = MockPortFactory()
    factory.add_serial("/dev/ttyUSB1")
    node, sensor = serial_run(factory, SerialSpec("/dev/ttyUSB1", format="json"),
                              [b"\xff\xfe\x00junk\n", b"\x80\x81\n", b'{"x": 1}\n'], expect=1)
    assert node.published == [Reading("serial:/dev/ttyUSB1", "x", 1.0)]
    assert sensor.decoder.bad == 2
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1


def test_serial_sensor_that_cannot_open_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hardware")
    factory = MockPortFactory()
    sensor = SerialSensor(factory, SerialSpec("/dev/ttyUSB9"), runtime=fast_runtime())
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(sensor.run(node))
        await until(lambda: sensor.fault.failures >= 3, "three attempts")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    reports = [r.getMessage() for r in caplog.records]
    assert len(reports) == 1 and "serial:/dev/ttyUSB9" in reports[0]
    assert "no such serial device" in reports[0]


def test_serial_sensor_decoder_state_survives_a_reopen() -> None:
    """A CSV header seen before an unplug still applies after it (same device)."""
    factory = MockPortFactory()
    first = factory.add_serial("/dev/ttyACM0")
    sensor = SerialSensor(factory, SerialSpec("/dev/ttyACM0", format="csv"),
                          runtime=fast_runtime())
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(sensor.run(node))
        try:
            first.feed("a,b\n1,2\n")
            await until(lambda: len(node.published) == 2, "the first row")
            first.unplug()
            await until(lambda: sensor.fault.failing, "the failure")
            second = factory.add_serial("/dev/ttyACM0")
            second.feed("3,4\n")
            await until(lambda: len(node.published) == 4, "the row after the reopen")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())
    values: list[Any] = [m.value for m in node.published]
    assert values == [1.0, 2.0, 3.0, 4.0]
