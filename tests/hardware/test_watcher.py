"""The watcher's bookkeeping: which sensors run after any sequence of scans, restarts of
changed or crashed sensors, and a clean stop that releases every device."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from hw_support import RecordingNode, fast_runtime, run, until
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.detect import I2CSpec, OneWireSpec, Spec
from hardware.mock import FakeBme280, MockPortFactory
from hardware.plugin import HardwarePlugin
from hardware.settings import GpioSpec

UNIVERSE = [f"28-00000000000{i}" for i in range(4)]


class Idle:
    """A sensor that runs until cancelled and records that it was."""

    def __init__(self, sensor_id: str, log: list[str]) -> None:
        self.sensor_id = sensor_id
        self.log = log

    async def run(self, node: Any) -> None:
        self.log.append(f"start {self.sensor_id}")
        try:
            await asyncio.Event().wait()
        finally:
            self.log.append(f"stop {self.sensor_id}")


def idle_plugin(tmp_path: Path, log: list[str], **kwargs: Any) -> HardwarePlugin:
    plugin = HardwarePlugin(w1_root=tmp_path, dev=tmp_path, factory=MockPortFactory(), **kwargs)
    plugin._make = lambda spec: Idle(spec.sensor_id, log)  # type: ignore[method-assign]
    return plugin


def found(roms: set[str]) -> dict[str, Spec]:
    return {f"w1:{r}": OneWireSpec(r) for r in sorted(roms)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(st.sampled_from(UNIVERSE)), min_size=1, max_size=12),
       st.integers(1, 3))
def test_a_sensor_runs_iff_it_was_seen_in_the_last_missing_scans(
        tmp_path_factory: pytest.TempPathFactory, scans: list[set[str]], missing: int) -> None:
    log: list[str] = []
    plugin = idle_plugin(tmp_path_factory.mktemp("w"), log, missing_scans=missing)
    node = RecordingNode()

    async def main() -> None:
        for k, present in enumerate(scans):
            plugin._apply(found(present), node)
            await asyncio.sleep(0)
            recent = set().union(*scans[max(0, k - missing + 1):k + 1])
            assert plugin.running() == sorted(f"w1:{r}" for r in recent)
        await plugin._stop_all()

    run(main())
    starts = sum(line.startswith("start") for line in log)
    stops = sum(line.startswith("stop") for line in log)
    assert starts == stops  # everything started was stopped, once


def test_a_changed_device_at_the_same_id_is_restarted(tmp_path: Path) -> None:
    log: list[str] = []
    plugin = idle_plugin(tmp_path, log)
    node = RecordingNode()

    async def main() -> None:
        plugin._apply({"i2c:1/0x76": I2CSpec(1, 0x76, "BMP280")}, node)
        await asyncio.sleep(0)
        plugin._apply({"i2c:1/0x76": I2CSpec(1, 0x76, "BMP280")}, node)  # same: kept
        await asyncio.sleep(0)
        plugin._apply({"i2c:1/0x76": I2CSpec(1, 0x76, "BME280")}, node)  # swapped chip
        await asyncio.sleep(0.01)
        await plugin._stop_all()

    run(main())
    assert log == ["start i2c:1/0x76", "stop i2c:1/0x76", "start i2c:1/0x76",
                   "stop i2c:1/0x76"]


def test_gpio_sensors_are_never_stopped_by_a_scan(tmp_path: Path) -> None:
    log: list[str] = []
    plugin = idle_plugin(tmp_path, log, gpio=["input:4"])
    node = RecordingNode()

    async def main() -> None:
        plugin._start(plugin.gpio_specs[0], node)
        for _ in range(4):
            plugin._apply({}, node)
        await asyncio.sleep(0)
        assert plugin.running() == ["gpio:4"]
        assert isinstance(plugin._specs["gpio:4"], GpioSpec)
        await plugin._stop_all()

    run(main())


def test_a_crashed_sensor_loop_is_logged_and_restarted_by_the_next_scan(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="hardware")
    runs: list[int] = []

    class Crashing:
        sensor_id = "w1:28-00000000000c"

        async def run(self, node: Any) -> None:
            runs.append(1)
            if len(runs) == 1:
                raise RuntimeError("a bug")
            await asyncio.Event().wait()

    plugin = HardwarePlugin(w1_root=tmp_path, dev=tmp_path, factory=MockPortFactory())
    plugin._make = lambda spec: Crashing()  # type: ignore[method-assign]
    node = RecordingNode()

    async def main() -> None:
        present = found({"28-00000000000c"})
        plugin._apply(present, node)
        await until(lambda: plugin.running() == [], "the crash")
        plugin._apply(present, node)
        await until(lambda: len(runs) == 2, "the restart")
        assert plugin.running() == ["w1:28-00000000000c"]
        await plugin._stop_all()

    run(main())
    assert any("stopped unexpectedly" in r.getMessage() for r in caplog.records)


def test_cancelling_the_plugin_closes_every_device(tmp_path: Path) -> None:
    factory = MockPortFactory()
    bus = factory.add_i2c_bus(1)
    bus.attach(0x76, FakeBme280())
    serial_path = tmp_path / "ttyACM0"
    serial_path.touch()
    port = factory.add_serial(str(serial_path))
    plugin = HardwarePlugin(w1_root=tmp_path / "w1", dev=tmp_path / "dev", scan_interval=0.02,
                            interval=0.02, serial=[str(serial_path)], gpio=["input:17"],
                            factory=factory, runtime=fast_runtime())
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: len(plugin.running()) == 3 and node.of("i2c:1/0x76"),
                    "three sensors")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert plugin.running() == []
    assert port.closed and factory.pins["17"].closed
    count = len(node.published)
    run(asyncio.sleep(0.1))
    assert len(node.published) == count


def test_a_device_missing_for_one_scan_is_forgiven(tmp_path: Path) -> None:
    log: list[str] = []
    plugin = idle_plugin(tmp_path, log, missing_scans=2)
    node = RecordingNode()

    async def main() -> None:
        plugin._apply(found({UNIVERSE[0]}), node)
        plugin._apply({}, node)  # one NACK
        plugin._apply(found({UNIVERSE[0]}), node)
        plugin._apply({}, node)  # and another, later: the count started over
        await asyncio.sleep(0)
        assert plugin.running() == [f"w1:{UNIVERSE[0]}"]
        await plugin._stop_all()

    run(main())
    assert log == [f"start w1:{UNIVERSE[0]}", f"stop w1:{UNIVERSE[0]}"]


@pytest.mark.parametrize("spec", ["input:5:debounce=0", "counter:5:debounce=0,interval=60"])
def test_a_pin_sensor_cancelled_while_an_edge_is_queued_stops(tmp_path: Path, spec: str) -> None:
    """Regression: 3.11's wait_for swallowed a cancel that met a queued edge (a 60 s hang)."""
    factory = MockPortFactory()
    plugin = HardwarePlugin(w1_root=tmp_path, dev=tmp_path, gpio=[spec], factory=factory,
                            runtime=fast_runtime())
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: "5" in factory.pins and plugin.running(), "the pin")
        await asyncio.sleep(0.02)
        for i in range(20):
            factory.pins["5"].drive(i % 2 == 0, at=2000.0 + i)
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=3.0)
        assert task in done, "the plugin did not stop"

    for _ in range(5):
        run(main())
        factory.pins.clear()
