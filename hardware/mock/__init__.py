"""Mock back-ends, shipped in the package so tests and demos need no hardware.

* :class:`MockPortFactory`: the :class:`~hardware.port.PortFactory` of tests.
* :class:`MockI2CBus` and :class:`FakeBme280`: a bus and a chip emulated at the
  register level, so the real BME280 driver runs unchanged.
* :class:`FakeW1Tree`: a fake ``/sys/bus/w1/devices`` directory.
* :class:`MockSerialPort` and :class:`PtyDevice`: a serial device in memory, or on
  a real pseudo-terminal pair for the pyserial back-end.
* :class:`MockInputPin`: a GPIO input the test drives, on :class:`FakeClock` time.
"""

from __future__ import annotations

from hardware.mock.bme280 import DATASHEET_CALIBRATION, FakeBme280
from hardware.mock.clock import FakeClock
from hardware.mock.factory import MockPortFactory
from hardware.mock.i2c import I2CDevice, MockI2CBus, MockI2CHandle, RegisterDevice
from hardware.mock.pins import MockInputPin
from hardware.mock.serial import MockSerialPort, PtyDevice
from hardware.mock.w1 import FakeW1Tree, scratchpad_lines

__all__ = [
    "DATASHEET_CALIBRATION",
    "FakeBme280",
    "FakeClock",
    "FakeW1Tree",
    "I2CDevice",
    "MockI2CBus",
    "MockI2CHandle",
    "MockInputPin",
    "MockPortFactory",
    "MockSerialPort",
    "PtyDevice",
    "RegisterDevice",
    "scratchpad_lines",
]
