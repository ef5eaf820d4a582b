"""The real back-ends where they can run here: gpiozero's factory selection and its
thread hand-off, smbus2 and pyserial open errors, and lazy imports."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from hw_support import RecordingNode, fast_runtime, run, until

from hardware.backends import SystemPortFactory
from hardware.messages import Counter, DigitalInput
from hardware.plugin import HardwarePlugin

HAVE_GPIOZERO = importlib.util.find_spec("gpiozero") is not None
needs_gpiozero = pytest.mark.skipif(not HAVE_GPIOZERO, reason="gpiozero is not installed")


def test_importing_hardware_imports_no_device_library() -> None:
    code = ("import sys, hardware.plugin, hardware.backends, hardware.mock; "
            "print(sorted(m for m in ('gpiozero', 'smbus2', 'serial', 'lgpio') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


@needs_gpiozero
def test_without_gpio_hardware_claiming_a_pin_is_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    if Path("/proc/device-tree/model").exists():
        pytest.skip("this machine may have real GPIO")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gpiozero warns for each factory it falls back from
        with pytest.raises(OSError, match="no GPIO back-end works here"):
            SystemPortFactory().input_pin("17")


@needs_gpiozero
def test_gpiozero_pin_factory_env_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpiozero.pins.mock import MockFactory

    from hardware.backends.gpio import default_pin_factory

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    assert isinstance(default_pin_factory(), MockFactory)


@needs_gpiozero
def test_edges_from_another_thread_reach_the_plugin(tmp_path: Path) -> None:
    """Real back-ends call back from their own thread: the hand-off must be thread-safe."""
    from gpiozero.pins.mock import MockFactory

    gfactory = MockFactory()
    plugin = HardwarePlugin(w1_root=tmp_path / "w1", dev=tmp_path / "dev", scan_interval=0.05,
                            gpio=["input:17:debounce=0", "counter:27:interval=0.05,debounce=0"],
                            factory=SystemPortFactory(tmp_path, pin_factory=gfactory),
                            runtime=fast_runtime())
    node = RecordingNode()

    def toggle() -> None:
        door = gfactory.pin(17)
        meter = gfactory.pin(27)
        door.drive_low()
        for _ in range(50):
            meter.drive_low()
            meter.drive_high()

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        try:
            await until(lambda: len(plugin.running()) == 2 and node.of("gpio:17"), "both pins")
            await asyncio.sleep(0.05)
            thread = threading.Thread(target=toggle)
            thread.start()
            await asyncio.to_thread(thread.join, 10)
            await until(lambda: any(m.active for m in node.of("gpio:17", DigitalInput)),
                        "the door change")
            await until(lambda: any(m.pulses == 50 for m in node.of("gpio:27", Counter)),
                        "50 pulses")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())
    counts = [m.pulses for m in node.of("gpio:27", Counter)]
    assert counts == sorted(counts) and counts[-1] == 50


@needs_gpiozero
def test_stopping_the_plugin_releases_the_pins(tmp_path: Path) -> None:
    from gpiozero.pins.mock import MockFactory

    gfactory = MockFactory()
    plugin = HardwarePlugin(w1_root=tmp_path / "w1", dev=tmp_path / "dev",
                            gpio=["input:17"],
                            factory=SystemPortFactory(tmp_path, pin_factory=gfactory),
                            runtime=fast_runtime())
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: node.published, "the first state")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert gfactory.pin(17).when_changed is None  # our callback is gone


def test_a_missing_i2c_device_file_is_oserror(tmp_path: Path) -> None:
    if importlib.util.find_spec("smbus2") is None:
        pytest.skip("smbus2 is not installed")
    (tmp_path / "i2c-1").write_text("")  # a regular file: the I2C ioctl must fail
    factory = SystemPortFactory(tmp_path)
    assert list(factory.i2c_buses()) == [1]
    with pytest.raises(OSError):
        bus = factory.i2c_bus(1)
        bus.read_byte_data(0x76, 0xD0)


def test_the_plugin_on_the_real_factory_finds_nothing_here_and_only_reports_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The default factory against an empty /dev tree: scans run, nothing is opened."""
    caplog.set_level("DEBUG", logger="hardware")
    plugin = HardwarePlugin(w1_root=tmp_path / "w1", dev=tmp_path, scan_interval=0.01)
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: plugin.scans >= 3, "three scans")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert isinstance(plugin.factory, SystemPortFactory)
    assert node.published == []
    # Only the start-up report (what was looked at, the first scan): no per-scan noise.
    said = [r.getMessage() for r in caplog.records]
    assert said and said[-1].startswith("first scan: no sensors found")
    assert all(m.startswith(("looking at ", "hint: ", "first scan: ")) for m in said), said
