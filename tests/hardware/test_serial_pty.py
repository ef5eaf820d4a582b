"""A serial device on a real pseudo-terminal, read by the plugin through pyserial.

The test is the device: it writes each line format (and garbage) to the pty's
master side; the hardware plugin opens the slave's path as a configured port,
exactly as it would open /dev/ttyUSB0 on a Pi.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hw_support import RecordingNode, fast_runtime, run, until

from hardware.backends import SystemPortFactory
from hardware.messages import Position, Reading
from hardware.mock import PtyDevice
from hardware.plugin import HardwarePlugin
from hardware.sensors import SerialSensor

pytestmark = pytest.mark.skipif(importlib.util.find_spec("serial") is None,
                                reason="pyserial is not installed")

GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"


@pytest.fixture
def device() -> Iterator[PtyDevice]:
    with PtyDevice() as pty:
        yield pty


def plugin_for(tmp_path: Path, device: PtyDevice, fmt: str, **extra: Any) -> HardwarePlugin:
    return HardwarePlugin(
        w1_root=tmp_path / "w1", dev=tmp_path / "dev", scan_interval=0.05,
        serial=[{"port": device.path, "baud": 115200, "format": fmt, **extra}],
        factory=SystemPortFactory(tmp_path / "dev"), runtime=fast_runtime())


def feed_and_collect(tmp_path: Path, device: PtyDevice, fmt: str, lines: list[str],
                     expect: int, **extra: Any) -> tuple[RecordingNode, SerialSensor]:
    plugin = plugin_for(tmp_path, device, fmt, **extra)
    node = RecordingNode()
    sid = f"serial:{device.path}"

    async def main() -> SerialSensor:
        task = asyncio.create_task(plugin.run(node))
        try:
            await until(lambda: sid in plugin.running(), "the port to be opened")
            await asyncio.sleep(0.1)  # let the reader thread reach its first read
            for line in lines:
                device.write(line)
            await until(lambda: len(node.published) >= expect, f"{expect} messages")
            await asyncio.sleep(0.05)  # and nothing more than expected
            sensor = plugin.sensors[sid]
            assert isinstance(sensor, SerialSensor)
            return sensor
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return node, run(main())


def test_json_lines_with_garbage(tmp_path: Path, device: PtyDevice) -> None:
    node, sensor = feed_and_collect(tmp_path, device, "json", [
        '{"temp": 21.5, "hum": 40}\r\n', "\x07\xff garbage\r\n", '{"temp": 21.6\r\n',
        '{"temp": 21.7, "hum": 41}\r\n'], expect=4, units={"temp": "°C", "hum": "%"})
    sid = f"serial:{device.path}"
    assert node.published == [Reading(sid, "temp", 21.5, "°C"), Reading(sid, "hum", 40.0, "%"),
                              Reading(sid, "temp", 21.7, "°C"), Reading(sid, "hum", 41.0, "%")]
    assert sensor.decoder.bad == 2


def test_key_value_lines_split_across_writes(tmp_path: Path, device: PtyDevice) -> None:
    node, sensor = feed_and_collect(tmp_path, device, "kv", [
        "t=1", "9.5, h=3", "3\n", "no pairs here\n", "t=20\n"], expect=3)
    assert [(m.quantity, m.value) for m in node.published] == [("t", 19.5), ("h", 33.0),
                                                                ("t", 20.0)]
    assert sensor.decoder.bad == 1


def test_csv_with_header_and_a_short_row(tmp_path: Path, device: PtyDevice) -> None:
    node, sensor = feed_and_collect(tmp_path, device, "csv", [
        "temp,hum\n", "21.5,40\n", "21.6\n", "21.7,41\n"], expect=4)
    assert [(m.quantity, m.value) for m in node.published] == [
        ("temp", 21.5), ("hum", 40.0), ("temp", 21.7), ("hum", 41.0)]
    assert sensor.decoder.bad == 1


def test_nmea_from_a_gps_with_bad_sentences_counted(tmp_path: Path, device: PtyDevice,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hardware")
    node, sensor = feed_and_collect(tmp_path, device, "nmea", [
        GGA + "\r\n", GGA.replace("*47", "*00") + "\r\n", "$GPGSV,1,1,00*79\r\n",
        "$GPGGA,12\x00\x01garbled\r\n", RMC + "\r\n"], expect=2)
    assert [type(m) for m in node.published] == [Position, Position]
    assert [m.sentence for m in node.published] == ["GGA", "RMC"]
    assert (sensor.decoder.bad, sensor.decoder.ignored) == (2, 1)
    bad_reports = [r for r in caplog.records if "cannot read" in r.getMessage()]
    assert len(bad_reports) == 1  # reported once, then only counted


def test_auto_format_reads_a_mix(tmp_path: Path, device: PtyDevice) -> None:
    node, _ = feed_and_collect(tmp_path, device, "auto", [
        '{"a": 1}\n', "b=2\n", "c,d\n", "3,4\n", "5\n", GGA + "\n"], expect=6)
    assert [getattr(m, "quantity", "fix") for m in node.published] == [
        "a", "b", "c", "d", "value", "fix"]


def test_a_line_without_end_is_dropped_after_4096_bytes(tmp_path: Path,
                                                         device: PtyDevice) -> None:
    node, sensor = feed_and_collect(tmp_path, device, "kv", ["x" * 5000, "\nt=1\n"], expect=1)
    assert [(m.quantity, m.value) for m in node.published] == [("t", 1.0)]
    assert sensor.decoder.bad == 1  # the tail after the dropped 4096 bytes is garbage too


def test_an_unplugged_pty_is_reported_and_stops_when_its_path_goes(tmp_path: Path) -> None:
    device = PtyDevice()
    link = tmp_path / "ttyUSB0"
    link.symlink_to(device.path)
    plugin = HardwarePlugin(w1_root=tmp_path / "w1", dev=tmp_path / "dev", scan_interval=0.05,
                            serial=[{"port": str(link), "baud": 9600, "format": "kv"}],
                            factory=SystemPortFactory(tmp_path / "dev"), runtime=fast_runtime())
    node = RecordingNode()
    sid = f"serial:{link}"

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        try:
            await until(lambda: sid in plugin.running(), "the port")
            await asyncio.sleep(0.1)
            device.write("t=1\n")
            await until(lambda: node.published, "a reading")
            device.close()  # USB unplugged: the reads fail...
            link.unlink()  # ...and udev removes the by-id link
            await until(lambda: plugin.running() == [], "the port to be stopped")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert [m.value for m in node.published] == [1.0]
