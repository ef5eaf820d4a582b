"""The ``hardware`` plugin: find sensors without configuration and publish their readings.

Theory of operation: :class:`HardwarePlugin` is an internal plugin (entry point
``hardware`` in ``ganglion.plugins``) that ``ganglion node`` enables by default.
Its ``run`` is a watcher loop: every ``scan_interval`` seconds it calls
:func:`hardware.detect.scan`, starts a sensor task
(:mod:`hardware.sensors`) for each device that appeared, and cancels the task of
each device that has been missing for ``missing_scans`` consecutive scans (one
missed scan is forgiven, so a chip that NACKs once is not torn down and
re-announced). Configured GPIO inputs have no presence to detect: they start
with the plugin. A sensor task that ends on its own (it never should) is
restarted by the next scan.

An idle node must cost a small board almost nothing, so a scan adds no wake-up of
its own. A scan that only lists directories (no I2C bus to probe: 1-Wire's sysfs
directory, ``/dev``, ``serial/by-id``) runs on the event loop, where it takes about
0.15 ms on the development machine; handing it to a worker thread cost more than
the scan (the thread's wake-up, the hand-back through the loop's self-pipe, the GIL
passed back and forth: about two wake-ups a second at the default interval). Only
a scan that talks to an I2C bus, which can block for a bus timeout, goes to a
thread. And the scans fall on the wall clock's multiples of ``scan_interval``
(:func:`ganglion.plugins.until_aligned`), the instants at which the node wakes for
its heartbeats anyway, so they run in that wake-up.

Each sensor handles its own failures (report once, back off, recover), so
nothing a device does reaches the watcher or the node. At start the plugin says
once what it looks at and what is there (:mod:`hardware.survey`: 1-Wire bus,
I2C buses, serial by-id devices, configured GPIO, with hints for the usual Pi
mistakes) and, after the first scan, how many sensors it found; each sensor
found, removed or failing is logged. The scans themselves log nothing: on a
machine without any devices a scan is a few failed ``listdir`` calls.

``fake`` swaps the machine for a :class:`~hardware.fakes.FakeRig` (the mocks of
:mod:`hardware.mock` in a temporary directory), so ``ganglion node
--fake-hardware ds18b20,bme280,nmea`` runs the real detection, drivers and
publishing without devices. ``sensors`` (``[sensors."ID"]`` in the config) names
sensors and calibrates their values (:mod:`hardware.calibration`).

Settings (keyword arguments; ``[plugin.hardware]`` in the config):
``w1_root``, ``dev``, ``onewire``, ``i2c``, ``i2c_buses``, ``serial_auto``,
``serial_baud``, ``serial``, ``gpio``, ``scan_interval``, ``interval``,
``missing_scans``, ``bme280_mode``, ``fake``, ``sensors``; docs/sensors.md describes each.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganglion.errors import ConfigError
from ganglion.plugins import until_aligned
from hardware.calibration import CalibratedPublisher, SensorSettings, parse_sensors
from hardware.detect import I2CSpec, OneWireSpec, Spec, scan
from hardware.drivers.ds18b20 import DEFAULT_ROOT
from hardware.messages import Counter, DigitalInput, Position, Reading, SensorInfo
from hardware.port import PortFactory
from hardware.readings import Humidity, Pressure, Temperature
from hardware.sensors import (
    Bme280Device,
    GpioCounterSensor,
    GpioInputSensor,
    OneWireProbe,
    Sensor,
    SerialSensor,
)
from hardware.settings import GpioSpec, SerialSpec, parse_gpio, parse_serial
from hardware.supervise import Runtime
from hardware.survey import Account, read_boot_config, read_model, survey

if TYPE_CHECKING:
    from hardware.fakes import FakeRig

__all__ = ["HardwarePlugin"]

_log = logging.getLogger("hardware")


class HardwarePlugin:
    """Watches for sensors and runs one task per device.

    Args:
        name: the plugin's name.
        w1_root: the 1-Wire sysfs devices directory.
        dev: the device directory (``/dev``: ``i2c-N`` and ``serial/by-id``).
        onewire: look for 1-Wire thermometers.
        i2c: look for BME280/BMP280 on the I2C buses.
        i2c_buses: only these bus numbers (None: every ``/dev/i2c-N``).
        serial_auto: open known USB-serial adapters under ``dev/serial/by-id``.
        serial_baud: baud rate of automatically opened ports.
        serial: configured serial ports (paths or tables: port, baud, format, units).
        gpio: GPIO inputs (``KIND:PIN[:KEY=VALUE,...]`` strings or tables).
        scan_interval: seconds between scans.
        interval: seconds between readings of polled sensors (1-Wire, I2C).
        missing_scans: scans a device must be missing before its task is stopped.
        bme280_mode: ``forced`` or ``normal``.
        fake: fake device names (:data:`hardware.fakes.FAKES`, or one comma-separated
            string): read those instead of the machine's devices.
        sensors: sensor id -> ``name``, ``offset``, ``scale`` and per-quantity tables
            (:func:`hardware.calibration.parse_sensors`).
        factory: the port factory; None for the real machine
            (:class:`hardware.backends.SystemPortFactory` on ``dev``).
        runtime: thread hand-off, sleep and backoff for the sensors.
        board: the board model for the start-up hints; None reads it from the system.
        account: who the node runs as, for the permission hints; None: this process.

    Raises:
        ConfigError: any setting is invalid (the message names it).
    """

    subscribes: tuple[type | str, ...] = ()
    publishes: tuple[type | str, ...] = (Temperature, Humidity, Pressure, Reading, Position,
                                         DigitalInput, Counter, SensorInfo)

    def __init__(
        self,
        name: str = "hardware",
        *,
        w1_root: str | Path = DEFAULT_ROOT,
        dev: str | Path = "/dev",
        onewire: bool = True,
        i2c: bool = True,
        i2c_buses: Sequence[int] | None = None,
        serial_auto: bool = True,
        serial_baud: int = 9600,
        serial: Iterable[Any] = (),
        gpio: Iterable[Any] = (),
        scan_interval: float = 2.0,
        interval: float = 5.0,
        missing_scans: int = 2,
        bme280_mode: str = "forced",
        fake: Iterable[str] | str = (),
        sensors: Mapping[str, Any] | None = None,
        factory: PortFactory | None = None,
        runtime: Runtime | None = None,
        board: str | None = None,
        account: Account | None = None,
    ) -> None:
        for key, value in (("onewire", onewire), ("i2c", i2c), ("serial_auto", serial_auto)):
            if not isinstance(value, bool):
                raise ConfigError(f"hardware: {key} must be true or false, not {value!r}")
        for key, seconds in (("scan_interval", scan_interval), ("interval", interval)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                    or not math.isfinite(seconds) or seconds <= 0:
                raise ConfigError(f"hardware: {key} must be a number of seconds > 0, "
                                  f"not {seconds!r}")
        if isinstance(missing_scans, bool) or not isinstance(missing_scans, int) \
                or missing_scans < 1:
            raise ConfigError(f"hardware: missing_scans must be an integer >= 1, "
                              f"not {missing_scans!r}")
        if bme280_mode not in ("forced", "normal"):
            raise ConfigError(f"hardware: bme280_mode must be 'forced' or 'normal', "
                              f"not {bme280_mode!r}")
        if i2c_buses is not None and (
                isinstance(i2c_buses, str | bytes)
                or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0
                           for b in i2c_buses)):
            raise ConfigError(f"hardware: i2c_buses must be a list of bus numbers, "
                              f"not {i2c_buses!r}")
        self.serial_specs: list[SerialSpec] = parse_serial(serial)
        # A configured port's baud check also covers the automatic default.
        parse_serial([{"port": "auto", "baud": serial_baud}])
        self.gpio_specs: list[GpioSpec] = parse_gpio(gpio)
        self.fake: tuple[str, ...] = ()
        if fake:
            # Only then: the fakes and their mocks are a dozen modules a real node never needs.
            from hardware.fakes import parse_fakes

            self.fake = parse_fakes(fake)
        self.sensor_settings: dict[str, SensorSettings] = parse_sensors(sensors or {})
        self.i2c = i2c
        self._board = board
        self._account = account
        self.name = name
        self.w1_root = Path(w1_root) if onewire else None
        self.dev = Path(dev)
        self.i2c_buses: Sequence[int] | None = (tuple(i2c_buses) if i2c_buses is not None
                                                else None) if i2c else ()
        self.serial_auto = serial_auto
        self.serial_baud = serial_baud
        self.scan_interval = float(scan_interval)
        self.interval = float(interval)
        self.missing_scans = missing_scans
        self.bme280_mode = bme280_mode
        self._factory = factory
        self.runtime = runtime or Runtime()
        self.sensors: dict[str, Sensor] = {}
        self.scans = 0
        self._specs: dict[str, Spec | GpioSpec] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._missing: dict[str, int] = {}

    @property
    def factory(self) -> PortFactory:
        """The port factory (the real machine's unless one was given)."""
        if self._factory is None:
            from hardware.backends import SystemPortFactory

            self._factory = SystemPortFactory(self.dev)
        return self._factory

    async def run(self, node: Any) -> None:
        """Scan, start and stop sensors until cancelled; then stop every sensor.

        Args:
            node: the node the sensors publish on.
        """
        rig: FakeRig | None = None
        animate: asyncio.Task[None] | None = None
        try:
            if self.fake:
                from hardware.fakes import FakeRig

                rig = await self.runtime.run_blocking(FakeRig, self.fake)
                self._use_rig(rig)
                animate = asyncio.create_task(rig.run(), name="fake hardware")
            await self.runtime.run_blocking(self.report_survey)
            for spec in self.gpio_specs:
                self._start(spec, node)
            first = True
            while True:
                found = await self._scan()
                self._apply(found, node)
                if first:
                    first = False
                    self._report_first_scan(found)
                await self.runtime.sleep(until_aligned(self.scan_interval))
        finally:
            if animate is not None:
                animate.cancel()
            await self._stop_all()
            if rig is not None:
                rig.close()

    def report_survey(self) -> None:
        """Log what the plugin looks at and what is there, and the hints (blocking)."""
        real = not self.fake
        buses = None if not self.i2c else (
            list(self.factory.i2c_buses()) if self.i2c_buses is None else list(self.i2c_buses))
        boot_path, boot_text = read_boot_config() if real else (Path("config.txt"), "")
        board = self._board if self._board is not None else (read_model() if real else "")
        account = self._account if self._account is not None else (
            Account.current() if real else None)
        found = survey(w1_root=self.w1_root, dev=self.dev, i2c_buses=buses,
                       serial_auto=self.serial_auto, serial=self.serial_specs,
                       gpio=self.gpio_specs, model=board, boot_config=boot_path,
                       boot_text=boot_text, account=account)
        for line in found.lines:
            _log.info("looking at %s", line)
        for hint in found.hints:
            _log.info("hint: %s", hint)

    def scan_once(self, i2c_buses: Sequence[int] | None = None) -> dict[str, Spec]:
        """One scan of the machine (blocking while it probes I2C buses).

        Args:
            i2c_buses: the buses to probe, when the caller has listed them already
                (:meth:`buses_to_probe`); None lists them here.

        Returns:
            Sensor id -> spec of every device present.
        """
        self.scans += 1
        return scan(self.factory, w1_root=self.w1_root,
                    dev=self.dev if self.serial_auto else None,
                    i2c_buses=self.i2c_buses if i2c_buses is None else i2c_buses,
                    serial=self.serial_specs, serial_baud=self.serial_baud)

    def buses_to_probe(self) -> list[int]:
        """The I2C buses a scan would probe now (listing ``/dev``: no bus traffic)."""
        if self.i2c_buses is not None:
            return list(self.i2c_buses)
        return list(self.factory.i2c_buses())

    def running(self) -> list[str]:
        """Sensor ids with a live task, sorted."""
        return sorted(sid for sid, task in self._tasks.items() if not task.done())

    def status(self) -> dict[str, Any]:
        """What ``ganglion status`` shows of this plugin: the sensors found, and the scans.

        Returns:
            ``{"sensors": [{id, name, kind, running, failing, published, last_error}],
            "scans": N, "fake": [...]}``.
        """
        rows = []
        for sensor_id in sorted(self._tasks):
            sensor = self.sensors.get(sensor_id)
            spec = self._specs.get(sensor_id)
            settings = self.sensor_settings.get(sensor_id)
            fault = getattr(sensor, "fault", None)
            rows.append({
                "id": sensor_id, "name": settings.name if settings is not None else "",
                "kind": _describe(spec) if spec is not None else "",
                "running": not self._tasks[sensor_id].done(),
                "failing": bool(fault is not None and fault.failing),
                "published": getattr(sensor, "published", None),
                "last_error": getattr(fault, "last_reason", None),
            })
        return {"sensors": rows, "scans": self.scans, "fake": list(self.fake)}

    # -- private -------------------------------------------------------------------------

    async def _scan(self) -> dict[str, Spec]:
        """One scan: on the loop when it only lists directories, in a thread when it
        probes a bus (see the module docstring)."""
        buses = self.buses_to_probe()
        if buses:
            found: dict[str, Spec] = await self.runtime.run_blocking(self.scan_once, buses)
            return found
        return self.scan_once(buses)

    def _use_rig(self, rig: FakeRig) -> None:
        _log.info("%s: no real device is read", rig.describe())
        if self.w1_root is not None:
            self.w1_root = rig.w1_root
        self.dev = rig.dev
        self._factory = rig.factory

    def _report_first_scan(self, found: dict[str, Spec]) -> None:
        if found or self._tasks:
            _log.info("first scan: %d sensor(s) running; scanning every %g s for more",
                      len(self.running()), self.scan_interval)
        else:
            _log.info("first scan: no sensors found; scanning every %g s (a sensor plugged "
                      "in later starts on its own; docs/sensors.md lists what is detected)",
                      self.scan_interval)
        for sensor_id in sorted(set(self.sensor_settings) - set(self._tasks)):
            _log.warning("[sensors.\"%s\"] is configured but no such sensor was found "
                         "(yet); the ids of the sensors found are logged above", sensor_id)

    def _apply(self, found: dict[str, Spec], node: Any) -> None:
        for sensor_id, spec in found.items():
            self._missing.pop(sensor_id, None)
            task = self._tasks.get(sensor_id)
            if task is not None and not task.done() and self._specs.get(sensor_id) == spec:
                continue
            if task is not None:
                self._cancel(sensor_id, "changed" if not task.done() else None)
            self._start(spec, node)
        for sensor_id in list(self._tasks):
            if sensor_id in found or isinstance(self._specs.get(sensor_id), GpioSpec):
                continue
            self._missing[sensor_id] = self._missing.get(sensor_id, 0) + 1
            if self._missing[sensor_id] >= self.missing_scans:
                del self._missing[sensor_id]
                self._cancel(sensor_id, "removed")

    def _start(self, spec: Spec | GpioSpec, node: Any) -> None:
        sensor = self._make(spec)
        self.sensors[sensor.sensor_id] = sensor
        self._specs[sensor.sensor_id] = spec
        settings = self.sensor_settings.get(sensor.sensor_id)
        publisher: Any = node
        extra = ""
        if settings is not None:
            publisher = CalibratedPublisher(node, settings, _describe(spec),
                                            clock=asyncio.get_running_loop().time)
            extra = _describe_settings(settings)
        self._tasks[sensor.sensor_id] = asyncio.create_task(
            self._guard(sensor, publisher), name=f"sensor {sensor.sensor_id}")
        _log.info("sensor %s found (%s)%s", sensor.sensor_id, _describe(spec), extra)

    def _cancel(self, sensor_id: str, why: str | None) -> None:
        task = self._tasks.pop(sensor_id)
        self._specs.pop(sensor_id, None)
        self.sensors.pop(sensor_id, None)
        task.cancel()
        if why:
            _log.info("sensor %s %s; stopped it", sensor_id, why)

    async def _stop_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        self._tasks.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    async def _guard(self, sensor: Sensor, node: Any) -> None:
        try:
            await sensor.run(node)
        except Exception:  # a bug in one sensor loop must not reach the watcher
            _log.exception("sensor %s stopped unexpectedly; the next scan restarts it",
                           sensor.sensor_id)

    def _make(self, spec: Spec | GpioSpec) -> Sensor:
        runtime = self.runtime
        if isinstance(spec, OneWireSpec):
            assert self.w1_root is not None
            return OneWireProbe(self.w1_root, spec.rom_id, interval=self.interval, runtime=runtime)
        if isinstance(spec, I2CSpec):
            return Bme280Device(self.factory, spec.bus, spec.address, interval=self.interval,
                                runtime=runtime, mode=self.bme280_mode)
        if isinstance(spec, SerialSpec):
            return SerialSensor(self.factory, spec, runtime=runtime)
        if spec.kind == "counter":
            return GpioCounterSensor(self.factory, spec, runtime=runtime)
        return GpioInputSensor(self.factory, spec, runtime=runtime)


def _describe_settings(settings: SensorSettings) -> str:
    parts = [f"named {settings.name!r}"] if settings.name else []
    corrections = ([("", settings.every)] if settings.every else []) + list(settings.quantities)
    parts += [f"{q + ' ' if q else ''}"
              + ", ".join([f"scale {c.scale:g}"] * (c.scale != 1) + [f"offset {c.offset:+g}"]
                          * (c.offset != 0 or c.scale == 1)) for q, c in corrections]
    return "; " + ", ".join(parts) if parts else ""


def _describe(spec: Spec | GpioSpec) -> str:
    if isinstance(spec, OneWireSpec):
        return "1-Wire thermometer"
    if isinstance(spec, I2CSpec):
        return f"{spec.chip} on I2C bus {spec.bus} at 0x{spec.address:02x}"
    if isinstance(spec, SerialSpec):
        how = "configured" if spec.configured else "known USB-serial adapter"
        return f"serial, {how}, {spec.baud} baud, format {spec.format}"
    return f"GPIO {spec.kind} on pin {spec.pin}"
