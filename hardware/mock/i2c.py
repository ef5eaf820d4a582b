"""A mock I2C bus with devices emulated at the register level.

Theory of operation: a :class:`MockI2CBus` holds devices by address; a transfer
to an address with no device raises ``OSError(EREMOTEIO)``, exactly what smbus2
raises on Linux when nobody acknowledges. A device is anything with
``read(register)`` and ``write(register, value)`` (:class:`I2CDevice`); a block
read is a run of single reads with the register pointer auto-incrementing, as
real chips do. Every transfer is recorded in :attr:`MockI2CBus.log` so tests can
check what a driver wrote. Devices can be attached and detached while a driver
runs (a sensor unplugged) and the bus is thread-safe, since drivers run in
worker threads.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Protocol

from hardware.port import I2CBus

__all__ = ["I2CDevice", "MockI2CBus", "MockI2CHandle", "RegisterDevice"]


class I2CDevice(Protocol):
    """What a mock bus needs from an emulated chip."""

    def read(self, register: int) -> int:
        """The byte at ``register``."""

    def write(self, register: int, value: int) -> None:
        """Store ``value`` at ``register`` (and do whatever the chip does then)."""


class RegisterDevice:
    """A plain 256-byte register file: reads give what was written or preset.

    Args:
        registers: initial values by register.
    """

    def __init__(self, registers: dict[int, int] | None = None) -> None:
        self.registers = bytearray(256)
        for register, value in (registers or {}).items():
            self.registers[register] = value

    def read(self, register: int) -> int:
        return self.registers[register]

    def write(self, register: int, value: int) -> None:
        self.registers[register] = value


class MockI2CBus(I2CBus):
    """Bus ``number`` with emulated devices.

    Args:
        number: the bus number.
        devices: address -> device.
    """

    def __init__(self, number: int = 1, devices: dict[int, I2CDevice] | None = None) -> None:
        self._number = number
        self.devices: dict[int, I2CDevice] = dict(devices or {})
        self.log: list[tuple[str, int, int, int]] = []  # (op, address, register, value/len)
        self.closed = False
        self._lock = threading.Lock()

    @property
    def number(self) -> int:
        return self._number

    def attach(self, address: int, device: I2CDevice) -> None:
        """Plug a device in at ``address``."""
        with self._lock:
            self.devices[address] = device

    def detach(self, address: int) -> None:
        """Unplug the device at ``address``; later transfers to it fail."""
        with self._lock:
            self.devices.pop(address, None)

    def read_byte_data(self, address: int, register: int) -> int:
        with self._lock:
            value = self._device(address).read(register & 0xFF)
            self.log.append(("read", address, register, value))
            return value

    def read_block(self, address: int, register: int, length: int) -> bytes:
        if not 1 <= length <= 32:
            raise ValueError(f"an I2C block read is 1..32 bytes, not {length}")
        with self._lock:
            device = self._device(address)
            data = bytes(device.read((register + i) & 0xFF) for i in range(length))
            self.log.append(("block", address, register, length))
            return data

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"a register holds 0..255, not {value}")
        with self._lock:
            self._device(address).write(register & 0xFF, value)
            self.log.append(("write", address, register, value))

    def close(self) -> None:
        self.closed = True

    def open(self) -> MockI2CHandle:
        """A handle of its own on this bus, as each ``open("/dev/i2c-N")`` gives."""
        return MockI2CHandle(self)

    def writes(self, address: int) -> list[tuple[int, int]]:
        """(register, value) of every write to ``address``, in order."""
        return [(reg, val) for op, addr, reg, val in self.log if op == "write" and addr == address]

    def _device(self, address: int) -> I2CDevice:
        if self.closed:
            raise OSError(errno.EBADF, f"I2C bus {self._number} is closed")
        device = self.devices.get(address)
        if device is None:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        return device


class MockI2CHandle(I2CBus):
    """One opened handle on a :class:`MockI2CBus`: closing it leaves the bus to others."""

    def __init__(self, bus: MockI2CBus) -> None:
        self.bus = bus
        self.closed = False

    @property
    def number(self) -> int:
        return self.bus.number

    def read_byte_data(self, address: int, register: int) -> int:
        self._check()
        return self.bus.read_byte_data(address, register)

    def read_block(self, address: int, register: int, length: int) -> bytes:
        self._check()
        return self.bus.read_block(address, register, length)

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self._check()
        self.bus.write_byte_data(address, register, value)

    def close(self) -> None:
        self.closed = True

    def _check(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, f"this handle on I2C bus {self.number} is closed")
