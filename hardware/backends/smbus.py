"""The real I2C back-end: a bus of smbus2, behind :class:`hardware.port.I2CBus`.

smbus2 is imported when a bus is opened, not when this module is. The SMBus
object itself is injectable (``smbus=``) so the adapter's own logic (length
checks, closing) is tested against a stand-in with smbus2's method names.
"""

from __future__ import annotations

from typing import Any

from hardware.port import I2CBus

__all__ = ["SMBusI2C"]

_MAX_BLOCK = 32  # SMBus block transfers carry at most 32 bytes


class SMBusI2C(I2CBus):
    """``/dev/i2c-N`` through smbus2.

    Args:
        number: the bus number N.
        device: the bus device path; None for ``/dev/i2c-N``.
        smbus: an object with smbus2's ``SMBus`` methods; None opens ``smbus2.SMBus(device)``.

    Raises:
        OSError: the bus device cannot be opened.
        ImportError: smbus2 is not installed (``pip install ganglion-net[pi]``).
    """

    def __init__(self, number: int, *, device: str | None = None, smbus: Any = None) -> None:
        if smbus is None:
            import smbus2

            smbus = smbus2.SMBus(device if device is not None else number)
        self._number = number
        self._bus: Any = smbus

    @property
    def number(self) -> int:
        return self._number

    def read_byte_data(self, address: int, register: int) -> int:
        return int(self._open().read_byte_data(address, register))

    def read_block(self, address: int, register: int, length: int) -> bytes:
        if not 1 <= length <= _MAX_BLOCK:
            raise ValueError(f"an I2C block read is 1..{_MAX_BLOCK} bytes, not {length}")
        data = bytes(self._open().read_i2c_block_data(address, register, length))
        if len(data) != length:
            raise OSError(f"short I2C read: {len(data)} of {length} bytes from 0x{address:02x}")
        return data

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self._open().write_byte_data(address, register, value)

    def close(self) -> None:
        if self._bus is not None:
            bus, self._bus = self._bus, None
            bus.close()

    def _open(self) -> Any:
        if self._bus is None:
            raise OSError(f"I2C bus {self._number} is closed")
        return self._bus
