"""MockPortFactory: buses, pins and serial ports for tests, on one fake clock.

Theory of operation: the factory is a registry the test fills before (or while)
the code under test runs: :meth:`MockPortFactory.add_i2c_bus` makes a bus that
then "exists" (as ``/dev/i2c-N`` would), pins are created on first claim and
kept so the test can drive them, and serial ports are registered by path. Time
is a :class:`~hardware.mock.clock.FakeClock` unless the test passes another.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence

from hardware.mock.clock import FakeClock
from hardware.mock.i2c import MockI2CBus
from hardware.mock.pins import MockInputPin
from hardware.mock.serial import MockSerialPort
from hardware.port import I2CBus, InputPin, PortFactory, Pull, SerialPort

__all__ = ["MockPortFactory"]


class MockPortFactory(PortFactory):
    """Mock ports.

    Args:
        clock: the time source; a new :class:`FakeClock` when None.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock: Callable[[], float] = clock if clock is not None else FakeClock()
        self.buses: dict[int, MockI2CBus] = {}
        self.pins: dict[str, MockInputPin] = {}
        self.serial: dict[str, MockSerialPort] = {}
        self.opened: list[str] = []

    def ticks(self) -> float:
        return self.clock()

    def add_i2c_bus(self, number: int = 1) -> MockI2CBus:
        """Create bus ``number`` (or return the existing one)."""
        return self.buses.setdefault(number, MockI2CBus(number))

    def remove_i2c_bus(self, number: int) -> None:
        """The bus goes away (its adapter was unplugged)."""
        self.buses.pop(number, None)

    def add_serial(self, path: str) -> MockSerialPort:
        """Register a serial device at ``path``; opening ``path`` gives this port."""
        port = MockSerialPort(path)
        self.serial[path] = port
        return port

    def i2c_buses(self) -> Sequence[int]:
        return sorted(self.buses)

    def i2c_bus(self, number: int) -> I2CBus:
        bus = self.buses.get(number)
        if bus is None:
            raise OSError(errno.ENOENT, f"no such I2C bus: {number}")
        self.opened.append(f"i2c-{number}")
        return bus.open()

    def input_pin(self, pin: str, *, pull: Pull = "up") -> InputPin:
        existing = self.pins.get(pin)
        if existing is not None and not existing.closed:
            raise ValueError(f"GPIO pin {pin} is already in use")
        self.pins[pin] = MockInputPin(pin, pull=pull, clock=self.clock)
        self.opened.append(f"gpio-{pin}")
        return self.pins[pin]

    def serial_port(self, path: str, baudrate: int) -> SerialPort:
        port = self.serial.get(path)
        if port is None or port.closed:
            raise OSError(errno.ENOENT, f"no such serial device: {path}")
        self.opened.append(path)
        return port
