"""What is plugged in now: one cheap scan of 1-Wire, I2C and serial.

Theory of operation: :func:`scan` looks at the machine once and returns a spec
per device it finds, keyed by the device's sensor id; the watcher compares two
scans to start new devices and stop vanished ones. The rules:

* **1-Wire**: every thermometer directory under the w1 sysfs root
  (``/sys/bus/w1/devices/28-*`` etc.). Listing a directory; no bus traffic.
* **I2C**: on every ``/dev/i2c-N`` (or the configured buses), read the chip-id
  register at 0x76 and 0x77: two one-byte transfers per bus. Only a BME280
  (0x60) or BMP280 (0x58) counts; anything else at those addresses is left alone.
* **Serial**: never every tty. A port is opened automatically only if it is a
  USB serial adapter listed under ``/dev/serial/by-id`` whose name matches one of
  :data:`KNOWN_ADAPTERS` (USB-serial chips that Arduinos, GPS receivers and
  sensor boards use); explicitly configured ports are "present" whenever their
  path exists. A configured port wins over the automatic rule for the same path.

GPIO pins have no identity to detect; they come only from configuration. On a
machine with none of these, a scan is three failed ``listdir`` calls.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hardware.drivers.bme280 import ADDRESSES, probe
from hardware.drivers.ds18b20 import list_probes
from hardware.port import PortFactory
from hardware.settings import SerialSpec

__all__ = ["KNOWN_ADAPTERS", "I2CSpec", "OneWireSpec", "Spec", "known_adapter", "scan"]

#: Name patterns (case-insensitive, fnmatch) of ``/dev/serial/by-id`` entries that
#: are opened without configuration. udev names them ``usb-<vendor>_<product>_<serial>-if<N>``.
KNOWN_ADAPTERS: Final = (
    "usb-FTDI_*",                 # FT232R/FT231X: Arduino clones, many sensor boards
    "usb-Silicon_Labs_*",         # CP210x: ESP32/ESP8266 boards, GPS modules
    "usb-1a86_*",                 # WCH CH340/CH341: cheap Arduino clones
    "usb-wch.cn_*",               # WCH CH9102/CH343
    "usb-Prolific*",              # PL2303 cables
    "usb-Arduino*",               # genuine Arduino boards (ATmega16U2 bridge)
    "usb-u-blox*",                # u-blox GNSS receivers
    "usb-Adafruit*",              # Adafruit boards (CircuitPython, Feather)
    "usb-SparkFun*",              # SparkFun boards and GPS modules
    "usb-Raspberry_Pi_Pico*",     # Pico running MicroPython or C SDK stdio
    "usb-MicroPython*",           # MicroPython boards
    "usb-Espressif*",             # ESP32-S2/S3/C3 native USB
)


@dataclass(frozen=True, slots=True)
class OneWireSpec:
    """A 1-Wire thermometer."""

    rom_id: str

    @property
    def sensor_id(self) -> str:
        """``w1:<rom id>``."""
        return f"w1:{self.rom_id}"


@dataclass(frozen=True, slots=True)
class I2CSpec:
    """A Bosch environment sensor on I2C."""

    bus: int
    address: int
    chip: str

    @property
    def sensor_id(self) -> str:
        """``i2c:<bus>/0x<address>``."""
        return f"i2c:{self.bus}/0x{self.address:02x}"


Spec = OneWireSpec | I2CSpec | SerialSpec


def known_adapter(name: str) -> bool:
    """True if a ``/dev/serial/by-id`` entry name matches :data:`KNOWN_ADAPTERS`."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in KNOWN_ADAPTERS)


def scan(factory: PortFactory, *, w1_root: Path | None, dev: Path | None,
         i2c_buses: Sequence[int] | None = None, serial: Iterable[SerialSpec] = (),
         serial_baud: int = 9600) -> dict[str, Spec]:
    """Find the devices present now.

    Args:
        factory: for the I2C buses.
        w1_root: the w1 devices directory; None skips 1-Wire.
        dev: the device directory (for ``serial/by-id``); None skips automatic serial.
        i2c_buses: only these buses; None for every bus the factory lists; ``()`` skips I2C.
        serial: configured serial ports.
        serial_baud: the baud rate of automatically opened ports.

    Returns:
        Sensor id -> spec, in a stable order.
    """
    found: dict[str, Spec] = {}
    if w1_root is not None:
        for rom_id in list_probes(w1_root):
            probe_spec = OneWireSpec(rom_id)
            found[probe_spec.sensor_id] = probe_spec
    buses = factory.i2c_buses() if i2c_buses is None else i2c_buses
    for number in buses:
        found.update(_scan_bus(factory, number))
    configured = {s.port: s for s in serial}
    for spec in configured.values():
        if os.path.exists(spec.port):
            found[spec.sensor_id] = spec
    if dev is not None:
        for path in _adapters(dev / "serial" / "by-id"):
            if path not in configured:
                auto = SerialSpec(path, serial_baud, "auto", configured=False)
                found[auto.sensor_id] = auto
    return found


def _scan_bus(factory: PortFactory, number: int) -> dict[str, Spec]:
    try:
        bus = factory.i2c_bus(number)
    except OSError:
        return {}  # vanished since listed, or no permission: nothing to report per scan
    try:
        specs = (I2CSpec(number, address, chip) for address in ADDRESSES
                 if (chip := probe(bus, address)) is not None)
        return {spec.sensor_id: spec for spec in specs}
    finally:
        bus.close()


def _adapters(by_id: Path) -> list[str]:
    try:
        names = sorted(entry.name for entry in by_id.iterdir())
    except OSError:
        return []
    return [str(by_id / name) for name in names if known_adapter(name)]
