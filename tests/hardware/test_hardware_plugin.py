"""The hardware plugin's watcher on mock ports: detection, hotplug, failures, GPIO, serial."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hw_support import RecordingNode, fast_runtime, run, until

from ganglion.errors import ConfigError
from ganglion.plugins import Plugin, load_plugin
from hardware.messages import Counter, DigitalInput, Reading
from hardware.mock import FakeBme280, FakeW1Tree, MockPortFactory, scratchpad_lines
from hardware.plugin import HardwarePlugin
from hardware.readings import Humidity, Pressure, Temperature

ROM_A = "28-00000000000a"
ROM_B = "28-00000000000b"


def make(tmp_path: Path, factory: MockPortFactory | None = None, **kwargs: Any) -> HardwarePlugin:
    options: dict[str, Any] = {
        "w1_root": tmp_path / "w1", "dev": tmp_path / "dev", "scan_interval": 0.02,
        "interval": 0.02, "factory": factory or MockPortFactory(), "runtime": fast_runtime(),
    }
    options.update(kwargs)
    return HardwarePlugin(**options)


def failures(plugin: HardwarePlugin, sensor_id: str) -> int:
    """How often a running sensor has failed (0 before it exists)."""
    sensor = plugin.sensors.get(sensor_id)
    return 0 if sensor is None else int(sensor.fault.failures)  # type: ignore[attr-defined]


async def running(plugin: HardwarePlugin, node: RecordingNode,
                  body: Callable[[], Any]) -> None:
    """Run the plugin while ``body()`` (a coroutine function) runs; then stop it."""
    task = asyncio.create_task(plugin.run(node))
    try:
        await body()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- settings ------------------------------------------------------------------------------------


def test_it_is_a_plugin_publishing_every_sensor_type(tmp_path: Path) -> None:
    plugin = make(tmp_path)
    assert isinstance(plugin, Plugin)
    assert plugin.name == "hardware"
    names = {t.__name__ for t in plugin.publishes if isinstance(t, type)}
    assert names == {"Temperature", "Humidity", "Pressure", "Reading", "Position",
                     "DigitalInput", "Counter", "SensorInfo"}


def test_the_entry_point_loads_it_with_config_settings() -> None:
    plugin = load_plugin("hardware", {"scan_interval": 5, "gpio": ["input:17"]})
    assert isinstance(plugin, HardwarePlugin)
    assert plugin.scan_interval == 5.0
    assert [g.pin for g in plugin.gpio_specs] == ["17"]


@pytest.mark.parametrize("kwargs, match", [
    ({"scan_interval": 0}, "scan_interval"),
    ({"interval": float("inf")}, "interval"),
    ({"onewire": "yes"}, "onewire"),
    ({"missing_scans": 0}, "missing_scans"),
    ({"bme280_mode": "fast"}, "bme280_mode"),
    ({"i2c_buses": "1"}, "i2c_buses"),
    ({"serial_baud": 1234}, "baud"),
    ({"gpio": ["door:17"]}, "kind"),
    ({"serial": [{"port": "/dev/ttyUSB0", "format": "xml"}]}, "format"),
    ({"fake": "ds18b2"}, "unknown fake device 'ds18b2'; valid: bme280, bmp280, ds18b20, nmea"),
    ({"sensors": {"28-0316a2795cff": {"name": "x"}}}, "a 1-Wire probe is 'w1:28-0316a2795cff'"),
    ({"sensors": {"w1:28-0316a2795cff": {"offset": "1"}}}, "offset must be a number"),
])
def test_bad_settings_are_config_errors(tmp_path: Path, kwargs: dict[str, Any],
                                        match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make(tmp_path, **kwargs)


# -- a machine without devices -------------------------------------------------------------------


def test_nothing_plugged_in_is_said_once_at_start_and_finds_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hardware")
    plugin = make(tmp_path, board="")
    node = RecordingNode()
    after_first: list[int] = []

    async def body() -> None:
        await until(lambda: plugin.scans >= 2, "two scans")
        after_first.append(len(caplog.records))
        await until(lambda: plugin.scans >= 6, "six scans")

    run(running(plugin, node, body))
    assert node.published == [] and plugin.running() == []
    # The start-up survey and the first scan's summary, then the scans say nothing.
    assert len(caplog.records) == after_first[0]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert caplog.records[-1].getMessage().startswith("first scan: no sensors found")


# -- 1-Wire hotplug --------------------------------------------------------------------------------


def test_probes_present_at_start_and_plugged_in_later_publish(tmp_path: Path) -> None:
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe(ROM_A, 20.5)
    plugin = make(tmp_path)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: node.of(f"w1:{ROM_A}"), "the first probe's reading")
        tree.add_probe(ROM_B, 30.25)
        await until(lambda: node.of(f"w1:{ROM_B}"), "the new probe's reading")

    run(running(plugin, node, body))
    assert node.of(f"w1:{ROM_A}")[0] == Temperature(sensor=f"w1:{ROM_A}", celsius=20.5)
    assert node.of(f"w1:{ROM_B}")[0].celsius == 30.25


def test_a_removed_probe_stops_cleanly_and_others_carry_on(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hardware")
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe(ROM_A)
    tree.add_probe(ROM_B)
    plugin = make(tmp_path)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: node.of(f"w1:{ROM_B}"), "probe B")
        tree.remove_probe(ROM_B)
        await until(lambda: f"w1:{ROM_B}" not in plugin.running(), "probe B to be stopped")
        count_b, count_a = len(node.of(f"w1:{ROM_B}")), len(node.of(f"w1:{ROM_A}"))
        await asyncio.sleep(0.2)
        assert len(node.of(f"w1:{ROM_B}")) == count_b
        assert len(node.of(f"w1:{ROM_A}")) > count_a + 3

    run(running(plugin, node, body))
    assert any(f"w1:{ROM_B} removed" in r.getMessage() for r in caplog.records)


def test_a_probe_that_comes_back_publishes_again(tmp_path: Path) -> None:
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe(ROM_A, 10.0)
    plugin = make(tmp_path)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: node.of(f"w1:{ROM_A}"), "probe A")
        tree.remove_probe(ROM_A)
        await until(lambda: plugin.running() == [], "probe A to be stopped")
        tree.add_probe(ROM_A, 11.0)
        await until(lambda: any(m.celsius == 11.0 for m in node.of(f"w1:{ROM_A}")),
                    "probe A back")

    run(running(plugin, node, body))


# -- failures ----------------------------------------------------------------------------------------


def test_a_failing_probe_is_reported_once_retried_and_recovers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hardware")
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe(ROM_A, 15.0)
    tree.add_probe(ROM_B, 16.0)
    tree.power_on_value(ROM_B)
    plugin = make(tmp_path)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: failures(plugin, f"w1:{ROM_B}") >= 4,
                    "four failures of probe B")
        assert node.of(f"w1:{ROM_B}") == []
        assert len(node.of(f"w1:{ROM_A}")) >= 2  # the good probe is unaffected
        tree.set_temperature(ROM_B, 16.5)
        await until(lambda: node.of(f"w1:{ROM_B}"), "probe B to recover")

    run(running(plugin, node, body))
    failed = [r for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert f"w1:{ROM_B}" in failed[0].getMessage() and "power-on" in failed[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_a_sensor_that_raises_anything_does_not_touch_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe(ROM_A)
    tree.add_probe(ROM_B)
    from hardware.drivers.ds18b20 import read_probe as real

    def flaky(root: Path, rom_id: str) -> float:
        if rom_id == ROM_B:
            raise ZeroDivisionError("a bug in a driver")
        return real(root, rom_id)

    monkeypatch.setattr("hardware.sensors.read_probe", flaky)
    plugin = make(tmp_path)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: len(node.of(f"w1:{ROM_A}")) >= 5, "five readings of probe A")
        assert f"w1:{ROM_B}" in plugin.running()  # still alive, backing off

    run(running(plugin, node, body))
    assert node.of(f"w1:{ROM_B}") == []


def test_garbled_w1_files_never_become_readings(tmp_path: Path) -> None:
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe(ROM_A)
    tree.set_w1_slave(ROM_A, scratchpad_lines(21_000, crc_ok=False, verdict="YES"))
    plugin = make(tmp_path)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: failures(plugin, f"w1:{ROM_A}") >= 3,
                    "three failures")

    run(running(plugin, node, body))
    assert node.published == []


# -- I2C ---------------------------------------------------------------------------------------------


def test_bme280_and_bmp280_are_found_on_every_bus_and_publish(tmp_path: Path) -> None:
    factory = MockPortFactory()
    factory.add_i2c_bus(1).attach(0x76, FakeBme280())
    factory.add_i2c_bus(3).attach(0x77, FakeBme280(chip_id=0x58))
    plugin = make(tmp_path, factory)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: node.of("i2c:1/0x76", Humidity) and node.of("i2c:3/0x77"),
                    "both chips")

    run(running(plugin, node, body))
    assert node.of("i2c:1/0x76", Temperature)[0].celsius == 25.08
    assert node.of("i2c:1/0x76", Pressure)[0].hpa == pytest.approx(1006.5327, abs=0.001)
    assert node.of("i2c:3/0x77", Humidity) == []  # a BMP280 has no humidity


def test_an_unplugged_bme280_is_stopped_and_a_replugged_one_restarts(tmp_path: Path) -> None:
    factory = MockPortFactory()
    bus = factory.add_i2c_bus(1)
    bus.attach(0x76, FakeBme280())
    plugin = make(tmp_path, factory)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: node.of("i2c:1/0x76"), "the chip")
        bus.detach(0x76)
        await until(lambda: plugin.running() == [], "the chip to be stopped")
        bus.attach(0x76, FakeBme280(adc_t=530000))
        await until(lambda: any(m.celsius > 26 for m in node.of("i2c:1/0x76", Temperature)),
                    "the new chip")

    run(running(plugin, node, body))


def test_i2c_can_be_restricted_or_turned_off(tmp_path: Path) -> None:
    factory = MockPortFactory()
    factory.add_i2c_bus(1).attach(0x76, FakeBme280())
    factory.add_i2c_bus(2).attach(0x76, FakeBme280())
    assert set(make(tmp_path, factory, i2c_buses=[2]).scan_once()) == {"i2c:2/0x76"}
    assert make(tmp_path, factory, i2c=False).scan_once() == {}


# -- serial --------------------------------------------------------------------------------------------


def _by_id(tmp_path: Path, name: str) -> str:
    by_id = tmp_path / "dev" / "serial" / "by-id"
    by_id.mkdir(parents=True, exist_ok=True)
    target = tmp_path / "dev" / f"tty{len(list(by_id.iterdir()))}"
    target.touch()
    (by_id / name).symlink_to(target)
    return str(by_id / name)


def test_known_usb_serial_adapters_are_opened_and_others_are_not(tmp_path: Path) -> None:
    factory = MockPortFactory()
    arduino = _by_id(tmp_path, "usb-1a86_USB2.0-Serial-if00-port0")
    modem = _by_id(tmp_path, "usb-Huawei_Mobile_Modem-if00")
    port = factory.add_serial(arduino)
    factory.add_serial(modem)
    plugin = make(tmp_path, factory)
    node = RecordingNode()

    async def body() -> None:
        port.feed("t=21.5,h=40\n")
        await until(lambda: len(node.published) >= 2, "the Arduino's readings")

    run(running(plugin, node, body))
    assert node.published == [Reading(f"serial:{arduino}", "t", 21.5),
                              Reading(f"serial:{arduino}", "h", 40.0)]
    assert modem not in factory.opened


def test_serial_auto_off_opens_only_configured_ports(tmp_path: Path) -> None:
    factory = MockPortFactory()
    _by_id(tmp_path, "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
    assert make(tmp_path, factory, serial_auto=False).scan_once() == {}


def test_an_unplugged_serial_device_is_retried_and_resumes(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hardware")
    factory = MockPortFactory()
    path = str(tmp_path / "ttyACM0")
    Path(path).touch()
    port = factory.add_serial(path)
    plugin = make(tmp_path, factory, serial=[{"port": path, "format": "kv"}])
    node = RecordingNode()

    async def body() -> None:
        port.feed("a=1\n")
        await until(lambda: node.published, "the first reading")
        port.unplug()
        await until(lambda: failures(plugin, f"serial:{path}") >= 2, "failed reopen attempts")
        fresh = factory.add_serial(path)  # plugged back in
        fresh.feed("a=2\n")
        await until(lambda: len(node.published) >= 2, "the reading after the replug")

    run(running(plugin, node, body))
    assert [m.value for m in node.published] == [1.0, 2.0]
    assert sum("failed:" in r.getMessage() for r in caplog.records) == 1


def test_a_configured_port_that_disappears_is_stopped(tmp_path: Path) -> None:
    factory = MockPortFactory()
    path = tmp_path / "ttyUSB0"
    path.touch()
    factory.add_serial(str(path))
    plugin = make(tmp_path, factory, serial=[str(path)])
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: plugin.running() == [f"serial:{path}"], "the port")
        os.unlink(path)
        await until(lambda: plugin.running() == [], "the port to be stopped")

    run(running(plugin, node, body))


# -- GPIO ----------------------------------------------------------------------------------------------


def test_a_digital_input_publishes_its_state_and_debounced_changes(tmp_path: Path) -> None:
    factory = MockPortFactory()
    plugin = make(tmp_path, factory, gpio=["input:17:debounce=0.01"])
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: node.published, "the initial state")
        pin = factory.pins["17"]
        pin.drive_low(at=2000.0)  # door opens: contact to ground, active
        pin.drive_high(at=2000.002)  # bounce
        pin.drive_low(at=2000.004)
        await until(lambda: len(node.published) >= 2, "the change")
        await asyncio.sleep(0.05)
        pin.drive_high(at=2001.0)
        await until(lambda: len(node.published) >= 3, "the second change")

    run(running(plugin, node, body))
    states = [(m.active, m.changes) for m in node.published if isinstance(m, DigitalInput)]
    assert states[:3] == [(False, 0), (True, 1), (False, 2)]
    assert all(m.sensor == "gpio:17" for m in node.published)


def test_a_bounce_that_settles_on_the_other_level_is_corrected(tmp_path: Path) -> None:
    factory = MockPortFactory()
    plugin = make(tmp_path, factory, gpio=["input:5:debounce=0.02"])
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: node.published, "the initial state")
        pin = factory.pins["5"]
        pin.drive_low(at=10.0)
        pin.drive_high(at=10.001)  # glitch: back to idle inside the lock-out, and stays
        await until(lambda: len(node.published) >= 3, "the correction")

    run(running(plugin, node, body))
    assert [m.active for m in node.published[:3]] == [False, True, False]


def test_a_pulse_counter_publishes_rate_and_total(tmp_path: Path) -> None:
    factory = MockPortFactory()
    clock = factory.clock
    plugin = make(tmp_path, factory,
                  gpio=[{"kind": "counter", "pin": 27, "per_unit": 450, "unit": "litre",
                         "interval": 0.1}])
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: "27" in factory.pins, "the pin")
        pin = factory.pins["27"]
        start = clock()
        for i in range(900):  # 900 pulses over 60 s of fake time: 2 litres per minute
            pin.pulse(at=start + i * 60 / 900 + 0.001)
        clock.advance(60.0)  # type: ignore[attr-defined]
        await until(lambda: any(m.pulses == 900 for m in node.published), "the count")

    run(running(plugin, node, body))
    last = [m for m in node.published if isinstance(m, Counter)][-1]
    assert (last.sensor, last.unit, last.pulses, last.total) == ("gpio:27", "litre", 900, 2.0)
    rates = [m.per_minute for m in node.published if m.pulses == 900 and m.per_minute > 0]
    assert rates and rates[0] == pytest.approx(2.0, rel=0.01)


def test_a_pin_that_cannot_be_claimed_is_retried(tmp_path: Path) -> None:
    factory = MockPortFactory()
    factory.input_pin("9")  # someone else holds it
    plugin = make(tmp_path, factory, gpio=["input:9"])
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: failures(plugin, "gpio:9") >= 2, "retries")
        factory.pins["9"].close()
        await until(lambda: node.published, "the state once the pin is free")

    run(running(plugin, node, body))


# -- what an idle watcher costs ------------------------------------------------------------------


class Counting:
    """Records which calls went to a worker thread, and every wait between scans."""

    def __init__(self) -> None:
        self.threaded: list[str] = []
        self.sleeps: list[tuple[float, float]] = []  # (loop time at the call, seconds)
        inner = fast_runtime()
        self.runtime = dataclasses.replace(inner, run_blocking=self._run_blocking,
                                           sleep=self._sleep)
        self._inner = inner

    async def _run_blocking(self, func: Callable[..., Any], *args: Any) -> Any:
        self.threaded.append(getattr(func, "__name__", repr(func)))
        return await self._inner.run_blocking(func, *args)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append((asyncio.get_running_loop().time(), seconds))
        await asyncio.sleep(seconds)


def test_scans_that_only_list_directories_stay_on_the_loop_and_bus_probes_go_to_a_thread(
        tmp_path: Path) -> None:
    factory = MockPortFactory()
    counting = Counting()
    plugin = make(tmp_path, factory=factory, board="", runtime=counting.runtime)
    node = RecordingNode()

    async def body() -> None:
        await until(lambda: plugin.scans >= 3, "three scans")
        # No I2C bus: the survey went to a thread, no scan did (a thread's wake-ups
        # cost an idle node more than listing three directories).
        assert "scan_once" not in counting.threaded
        factory.add_i2c_bus(1).attach(0x76, FakeBme280())
        await until(lambda: plugin.running() == ["i2c:1/0x76"], "the BME280 on bus 1")
        assert "scan_once" in counting.threaded  # probing a bus may block: a thread

    run(running(plugin, node, body))


def test_scans_fall_on_the_wall_clocks_multiples_of_the_interval(tmp_path: Path) -> None:
    from ganglion.wallgrid import wall_offset

    counting = Counting()
    plugin = make(tmp_path, board="", runtime=counting.runtime,
                  scan_interval=0.05)
    node = RecordingNode()
    woke: list[float] = []

    async def body() -> None:
        await until(lambda: len(counting.sleeps) >= 4, "four waits between scans")
        woke.append(wall_offset(asyncio.get_running_loop()))

    run(running(plugin, node, body))
    for at, seconds in counting.sleeps:
        # Where each wait ends, on the wall clock as the loop maps it (the grid the node's
        # heartbeats use): a multiple of the interval, half an interval away or more.
        # (``at`` was read a little after the wait was computed: allow a millisecond; a
        # wait of one interval from wherever the last scan ended misses by up to 25 ms.)
        wall = at + seconds + woke[0]
        assert abs(wall - round(wall / 0.05) * 0.05) < 1e-3
        assert 0.025 - 1e-9 <= seconds <= 0.075 + 1e-9
