"""The port abstraction: what a driver needs from the machine, and nothing more.

Theory of operation: drivers never import a device library. They talk to an
:class:`I2CBus`, an :class:`InputPin` or a :class:`SerialPort`, which they get
from a :class:`PortFactory` passed in as a keyword argument (gpiozero's
``pin_factory=`` design without the class-level default). The factory also
owns the clock (:meth:`PortFactory.ticks`), so debouncing and rates are computed
from the same time the pins stamp their edges with.

Back-ends subclass these and *must* override every ``abc.abstractmethod``:

* :class:`hardware.backends.SystemPortFactory`: the real machine; imports
  smbus2, gpiozero and pyserial lazily, only when a bus, pin or port is first
  asked for, so a laptop without them still runs the rest.
* :class:`hardware.mock.MockPortFactory`: shipped in the package for tests and
  demos; I2C chips are emulated at the register level, pins are driven by the
  test, time is a fake clock.

1-Wire is not here: the Linux w1 driver exposes it as files, so its "port" is
just the sysfs directory, a path parameter (:mod:`hardware.drivers.ds18b20`).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Literal

__all__ = ["EdgeCallback", "I2CBus", "InputPin", "PortFactory", "Pull", "SerialPort"]

#: How an input pin is biased: pulled up, pulled down, or left floating.
Pull = Literal["up", "down", "none"]

#: Called with (seconds on the factory's clock, new level) on each edge.
EdgeCallback = Callable[[float, bool], None]


class _Closing:
    """Context-manager support for anything with ``close()``."""

    def close(self) -> None:
        """Release the device; calling it again does nothing."""

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class I2CBus(_Closing):
    """One I2C bus (``/dev/i2c-N``), addressed per transfer.

    Every method raises ``OSError`` when no device acknowledges the address
    (errno ``ENXIO``/``EREMOTEIO`` on Linux), as smbus2 does.
    """

    @property
    @abc.abstractmethod
    def number(self) -> int:
        """The bus number N of ``/dev/i2c-N``."""

    @abc.abstractmethod
    def read_byte_data(self, address: int, register: int) -> int:
        """Read one register.

        Args:
            address: 7-bit device address.
            register: register address, 0..255.

        Returns:
            The register's value, 0..255.

        Raises:
            OSError: no device answered.
        """

    @abc.abstractmethod
    def read_block(self, address: int, register: int, length: int) -> bytes:
        """Read ``length`` consecutive registers starting at ``register`` (auto-increment).

        Args:
            address: 7-bit device address.
            register: the first register.
            length: how many bytes, 1..32.

        Returns:
            Exactly ``length`` bytes.

        Raises:
            OSError: no device answered.
        """

    @abc.abstractmethod
    def write_byte_data(self, address: int, register: int, value: int) -> None:
        """Write one register.

        Args:
            address: 7-bit device address.
            register: register address.
            value: 0..255.

        Raises:
            OSError: no device answered.
        """


class InputPin(_Closing):
    """A GPIO pin configured as a digital input with edge detection."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The pin's name as the user gave it (``GPIO17``, ``17``, ``BOARD11``)."""

    @property
    @abc.abstractmethod
    def value(self) -> bool:
        """The current level, True for high."""

    @abc.abstractmethod
    def on_edge(self, callback: EdgeCallback | None) -> None:
        """Call ``callback(seconds, level)`` on every change of level; None stops.

        The callback may run in a back-end thread; receivers hand off to their
        event loop themselves (``loop.call_soon_threadsafe``).
        """


class SerialPort(_Closing):
    """A serial port opened for reading text lines."""

    @property
    @abc.abstractmethod
    def path(self) -> str:
        """The device path it was opened with."""

    @abc.abstractmethod
    def read_line(self, timeout: float) -> bytes | None:
        """Wait up to ``timeout`` seconds for one line.

        Args:
            timeout: seconds to wait for the line's end.

        Returns:
            The line including its terminator, or the partial bytes received when
            the timeout hit (possibly ``b""``); None once the port is closed.

        Raises:
            OSError: the device went away (USB unplugged).
        """


class PortFactory(abc.ABC):
    """Hands out buses, pins and serial ports, and owns the clock."""

    def ticks(self) -> float:
        """Monotonic seconds; the time base of pin edges and of rate calculations."""
        return time.monotonic()

    @abc.abstractmethod
    def i2c_buses(self) -> Sequence[int]:
        """The bus numbers present on this machine, ascending (cheap: no bus traffic)."""

    @abc.abstractmethod
    def i2c_bus(self, number: int) -> I2CBus:
        """Open bus ``number``.

        Raises:
            OSError: the bus does not exist or cannot be opened.
        """

    @abc.abstractmethod
    def input_pin(self, pin: str, *, pull: Pull = "up") -> InputPin:
        """Claim a GPIO pin as a digital input.

        Args:
            pin: the pin's name (``17``, ``GPIO17``, ``BOARD11``).
            pull: the bias resistor.

        Raises:
            OSError: the GPIO device cannot be opened.
            ValueError: no such pin, or it is already in use.
        """

    @abc.abstractmethod
    def serial_port(self, path: str, baudrate: int) -> SerialPort:
        """Open a serial port for reading.

        Raises:
            OSError: the device does not exist or cannot be opened.
        """
