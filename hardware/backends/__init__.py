"""The real machine's ports: I2C via smbus2, GPIO via gpiozero, serial via pyserial.

Theory of operation: :class:`SystemPortFactory` finds what exists with cheap
filesystem checks (``/dev/i2c-*``) and opens a device only when a driver asks
for it; the device library is imported at that moment, so a machine without
smbus2, gpiozero or pyserial runs everything that does not need them. The
``/dev`` root and the gpiozero pin factory are parameters, so tests point the
factory at a fake tree or at gpiozero's ``MockFactory``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hardware.port import I2CBus, InputPin, PortFactory, Pull, SerialPort

__all__ = ["SystemPortFactory"]

_I2C_NAME = re.compile(r"i2c-(\d+)")


class SystemPortFactory(PortFactory):
    """Ports of this machine.

    Args:
        dev: the device directory (``/dev``); tests use a tmp tree.
        pin_factory: a gpiozero pin factory; None picks gpiozero's default when a
            pin is first claimed (lgpio on a Pi 5).
    """

    def __init__(self, dev: Path | str = "/dev", *, pin_factory: Any = None) -> None:
        self.dev = Path(dev)
        self._pin_factory = pin_factory

    def i2c_buses(self) -> Sequence[int]:
        # Names only, no Path per entry: the plugin lists /dev (a hundred entries or
        # more) at every scan, which is most of what an idle node's scan costs.
        try:
            names = os.listdir(self.dev)
        except OSError:
            return []
        found = (_I2C_NAME.fullmatch(n) for n in names if n.startswith("i2c-"))
        return sorted(int(m.group(1)) for m in found if m)

    def i2c_bus(self, number: int) -> I2CBus:
        from hardware.backends.smbus import SMBusI2C

        return SMBusI2C(number, device=str(self.dev / f"i2c-{number}"))

    def input_pin(self, pin: str, *, pull: Pull = "up") -> InputPin:
        from hardware.backends.gpio import GpiozeroInputPin, default_pin_factory

        if self._pin_factory is None:
            self._pin_factory = default_pin_factory()
        return GpiozeroInputPin(self._pin_factory, pin, pull=pull, clock=self.ticks)

    def serial_port(self, path: str, baudrate: int) -> SerialPort:
        from hardware.backends.serial import PySerialPort

        return PySerialPort(path, baudrate)
