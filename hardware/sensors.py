"""The running sensors: one object per device, each with its own loop.

Theory of operation: the watcher (:mod:`hardware.plugin`) creates one of these
per device it finds and runs ``await sensor.run(node)`` in a task; cancelling the
task stops the sensor and releases its device. Every loop catches its device's
failures itself (see :mod:`hardware.supervise`), so ``run`` only ends by
cancellation. Blocking driver calls (sysfs reads wait for a 750 ms conversion,
I2C transfers, serial reads) go through ``runtime.run_blocking``, a worker
thread by default, never the event loop.

* :class:`PolledSensor` reads a driver every ``interval`` seconds: 1-Wire
  thermometers (:class:`OneWireProbe`) and BME280s (:class:`Bme280Device`).
* :class:`SerialSensor` reads lines as they come and decodes them; garbled lines
  are counted and skipped (reported once), a vanished port is retried.
* :class:`GpioInputSensor` publishes debounced state changes (and repeats the
  state every ``interval`` so late subscribers learn it);
  :class:`GpioCounterSensor` publishes rate and total every ``interval``.
  Pin callbacks may come from a gpiozero thread; they are handed to the event
  loop with ``call_soon_threadsafe`` so the counting logic has one owner.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hardware.drivers.bme280 import Bme280
from hardware.drivers.ds18b20 import read_probe
from hardware.drivers.lines import LineDecoder
from hardware.drivers.pulses import InputState, PulseCounter
from hardware.errors import BadReading, SensorError, SensorGone
from hardware.messages import Counter, DigitalInput
from hardware.port import I2CBus, InputPin, PortFactory, SerialPort
from hardware.readings import Humidity, Pressure, Temperature
from hardware.settings import GpioSpec, SerialSpec
from hardware.supervise import FaultLog, Runtime

__all__ = ["Bme280Device", "GpioCounterSensor", "GpioInputSensor", "OneWireProbe",
           "PolledSensor", "Sensor", "SerialSensor"]

_log = logging.getLogger("hardware")
_MAX_LINE = 4096


class Sensor(Protocol):
    """What the watcher runs."""

    @property
    def sensor_id(self) -> str: ...

    async def run(self, node: Any) -> None: ...


class PolledSensor(abc.ABC):
    """A device read on a schedule; subclasses implement :meth:`read` and :meth:`close`.

    Args:
        sensor_id: its identity.
        interval: seconds between readings.
        runtime: thread hand-off, sleep and backoff.
    """

    def __init__(self, sensor_id: str, *, interval: float, runtime: Runtime) -> None:
        self.sensor_id = sensor_id
        self.interval = interval
        self.runtime = runtime
        self.fault = FaultLog(sensor_id, initial=runtime.initial_backoff,
                              maximum=runtime.max_backoff)
        self.published = 0

    @abc.abstractmethod
    def read(self) -> list[object]:
        """Take one reading (blocking; runs in a worker thread).

        Raises:
            SensorError: the device failed.
        """

    def close(self) -> None:  # noqa: B027 - most polled devices hold nothing open
        """Release the device (it is reopened by the next :meth:`read`)."""

    async def run(self, node: Any) -> None:
        """Read and publish every ``interval`` seconds until cancelled.

        Args:
            node: publishes the readings.
        """
        try:
            while True:
                try:
                    messages = await self.runtime.run_blocking(self.read)
                except Exception as exc:  # any driver failure is this sensor's alone
                    self.close()
                    await self.runtime.sleep(self.fault.failed(exc))
                    continue
                self.fault.succeeded()
                for msg in messages:
                    await node.publish(msg)
                    self.published += 1
                await self.runtime.sleep(self.interval)
        finally:
            self.close()


class OneWireProbe(PolledSensor):
    """A DS18B20 (or other w1_therm thermometer) under a w1 sysfs root."""

    def __init__(self, root: Path, rom_id: str, *, interval: float, runtime: Runtime) -> None:
        super().__init__(f"w1:{rom_id}", interval=interval, runtime=runtime)
        self.root = root
        self.rom_id = rom_id

    def read(self) -> list[object]:
        return [Temperature(sensor=self.sensor_id, celsius=read_probe(self.root, self.rom_id))]


class Bme280Device(PolledSensor):
    """A BME280 or BMP280: temperature, pressure and (BME280) humidity."""

    def __init__(self, factory: PortFactory, bus: int, address: int, *, interval: float,
                 runtime: Runtime, mode: str = "forced") -> None:
        super().__init__(f"i2c:{bus}/0x{address:02x}", interval=interval, runtime=runtime)
        self.factory = factory
        self.bus_number = bus
        self.address = address
        self.mode = mode
        self._bus: I2CBus | None = None
        self._chip: Bme280 | None = None

    def read(self) -> list[object]:
        if self._chip is None:
            try:
                self._bus = self.factory.i2c_bus(self.bus_number)
            except OSError as exc:
                raise SensorGone(f"{self.sensor_id}: {exc}") from exc
            self._chip = Bme280(self._bus, self.address,
                                mode="normal" if self.mode == "normal" else "forced")
        reading = self._chip.read()
        out: list[object] = [Temperature(sensor=self.sensor_id, celsius=round(reading.celsius, 2)),
                             Pressure(sensor=self.sensor_id, hpa=round(reading.pascal / 100.0, 3))]
        if reading.percent is not None:
            out.append(Humidity(sensor=self.sensor_id, percent=round(reading.percent, 2)))
        return out

    def close(self) -> None:
        self._chip = None
        if self._bus is not None:
            bus, self._bus = self._bus, None
            bus.close()


class SerialSensor:
    """A serial device printing readings, one per line.

    Args:
        factory: opens the port.
        spec: port, baud rate, format, units.
        runtime: thread hand-off, sleep and backoff.
    """

    def __init__(self, factory: PortFactory, spec: SerialSpec, *, runtime: Runtime) -> None:
        self.sensor_id = spec.sensor_id
        self.spec = spec
        self.factory = factory
        self.runtime = runtime
        self.decoder = LineDecoder(self.sensor_id, spec.format, dict(spec.units))
        self.fault = FaultLog(self.sensor_id, initial=runtime.initial_backoff,
                              maximum=runtime.max_backoff)
        self.published = 0
        self._warned_bad = False

    async def run(self, node: Any) -> None:
        """Read, decode and publish lines until cancelled; reopen after failures.

        Args:
            node: publishes the readings.
        """
        while True:
            port: SerialPort | None = None
            try:
                port = await self.runtime.run_blocking(
                    self.factory.serial_port, self.spec.port, self.spec.baud)
                await self._read_lines(port, node)
            except (OSError, SensorError) as exc:
                reason = exc if isinstance(exc, SensorError) else SensorGone(
                    f"{self.sensor_id}: {exc.strerror or exc}")
                await self.runtime.sleep(self.fault.failed(reason))
            finally:
                if port is not None:
                    port.close()

    async def _read_lines(self, port: SerialPort, node: Any) -> None:
        pending = b""
        while True:
            chunk = await self.runtime.run_blocking(port.read_line, 0.5)
            if chunk is None:
                raise SensorGone(f"{self.sensor_id}: port closed")
            pending += chunk
            if not pending.endswith(b"\n"):
                if len(pending) > _MAX_LINE:  # noise without newlines: drop it, resync
                    pending = b""
                    self._bad(BadReading("a line longer than 4096 bytes"))
                continue
            line, pending = pending.decode("utf-8", "replace"), b""
            try:
                messages = self.decoder.decode(line)
            except BadReading as exc:
                self._bad(exc)
                continue
            self.fault.succeeded()
            for msg in messages:
                await node.publish(msg)
                self.published += 1

    def _bad(self, exc: BadReading) -> None:
        if not self._warned_bad:
            self._warned_bad = True
            _log.warning("sensor %s: skipping a line it cannot read (%s); wrong baud rate or "
                         "format? Further bad lines are counted, logged at debug level",
                         self.sensor_id, exc)
        else:
            _log.debug("sensor %s: bad line %d: %s", self.sensor_id, self.decoder.bad, exc)


class _PinSensor(abc.ABC):
    """Shared by the two GPIO sensors: claim the pin, retry with backoff, hand edges over."""

    def __init__(self, factory: PortFactory, spec: GpioSpec, *, runtime: Runtime) -> None:
        self.sensor_id = spec.sensor_id
        self.spec = spec
        self.factory = factory
        self.runtime = runtime
        self.fault = FaultLog(self.sensor_id, initial=runtime.initial_backoff,
                              maximum=runtime.max_backoff)
        self.published = 0

    async def run(self, node: Any) -> None:
        """Claim the pin and publish until cancelled.

        Args:
            node: publishes the readings.
        """
        while True:
            try:
                pin = self.factory.input_pin(self.spec.pin, pull=self.spec.pull)
            except (OSError, ValueError, ImportError) as exc:
                await self.runtime.sleep(self.fault.failed(exc))
                continue
            self.fault.succeeded()
            edges: asyncio.Queue[tuple[float, bool]] = asyncio.Queue()
            pin.on_edge(_hand_over(asyncio.get_running_loop(), edges))
            try:
                await self._serve(pin, edges, node)
            finally:
                pin.close()

    @abc.abstractmethod
    async def _serve(self, pin: InputPin, edges: asyncio.Queue[tuple[float, bool]],
                     node: Any) -> None:
        """Publish from the claimed pin until cancelled."""

    async def _publish(self, node: Any, msg: object) -> None:
        await node.publish(msg)
        self.published += 1


class GpioInputSensor(_PinSensor):
    """A digital input: publishes the state at start, on each change, and every interval."""

    def __init__(self, factory: PortFactory, spec: GpioSpec, *, runtime: Runtime) -> None:
        super().__init__(factory, spec, runtime=runtime)
        self.state: InputState | None = None

    async def _serve(self, pin: InputPin, edges: asyncio.Queue[tuple[float, bool]],
                     node: Any) -> None:
        state = InputState(pin.value, debounce=self.spec.debounce,
                           active_low=self.spec.active_low)
        self.state = state
        await self._publish(node, self._message(state))
        while True:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that arrives as the queue hands over an item.
                async with asyncio.timeout(self.spec.interval):
                    seconds, level = await edges.get()
            except TimeoutError:
                await self._publish(node, self._message(state))  # unchanged: a reminder
                continue
            if not state.edge(seconds, level):
                continue
            await self._publish(node, self._message(state))
            # The bounce may settle on the other level inside the lock-out: look again.
            await self.runtime.sleep(self.spec.debounce)
            if state.settle(self.factory.ticks(), pin.value):
                await self._publish(node, self._message(state))

    def _message(self, state: InputState) -> DigitalInput:
        return DigitalInput(sensor=self.sensor_id, active=state.active, changes=state.changes)


class GpioCounterSensor(_PinSensor):
    """A pulse counter: publishes rate per minute and running total every interval."""

    def __init__(self, factory: PortFactory, spec: GpioSpec, *, runtime: Runtime) -> None:
        super().__init__(factory, spec, runtime=runtime)
        self.counter = PulseCounter(per_unit=spec.per_unit, debounce=spec.debounce,
                                    edge=spec.edge, start=factory.ticks())

    async def _serve(self, pin: InputPin, edges: asyncio.Queue[tuple[float, bool]],
                     node: Any) -> None:
        deadline = asyncio.get_running_loop().time() + self.spec.interval
        while True:
            loop_now = asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(0.0, deadline - loop_now)):
                    seconds, level = await edges.get()
                self.counter.edge(seconds, level)
                continue
            except TimeoutError:
                pass
            while not edges.empty():  # count everything that arrived before sampling
                self.counter.edge(*edges.get_nowait())
            sample = self.counter.sample(self.factory.ticks())
            await self._publish(node, Counter(sensor=self.sensor_id, unit=self.spec.unit,
                                              per_minute=sample.per_minute, total=sample.total,
                                              pulses=sample.pulses))
            deadline = asyncio.get_running_loop().time() + self.spec.interval


def _hand_over(loop: asyncio.AbstractEventLoop,
               edges: asyncio.Queue[tuple[float, bool]]) -> Callable[[float, bool], None]:
    """An edge callback, safe from any thread, that queues the edge on ``loop``."""
    def on_edge(seconds: float, level: bool) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the node is shutting down
            loop.call_soon_threadsafe(edges.put_nowait, (seconds, level))
    return on_edge
