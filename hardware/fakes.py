"""Fake devices for trying the hardware plugin without hardware (``--fake-hardware``).

Theory of operation: a :class:`FakeRig` builds, in a temporary directory, the
same things a Pi shows the plugin, out of the mocks that :mod:`hardware.mock`
ships for the tests: a w1 sysfs tree (:class:`~hardware.mock.FakeW1Tree`) with
DS18B20 probes, an I2C bus (:class:`~hardware.mock.MockI2CBus`) with a BME280 or
BMP280 emulated at the register level (:class:`~hardware.mock.FakeBme280`), and a
``dev/serial/by-id`` entry named like a u-blox GPS receiver whose port
(:class:`~hardware.mock.MockSerialPort`) prints NMEA sentences. The plugin then
runs unchanged on the rig's paths and port factory: the same scan detects the
devices, the same drivers decode sysfs text, registers and sentences, and the
same sensors publish typed readings. :meth:`FakeRig.step` moves the values
(slow sine waves, a GPS walking a small circle) and :meth:`FakeRig.run` calls it
every second.

Names: ``ds18b20`` (repeat it for more probes), ``bme280``, ``bmp280`` (two
chips at most: the addresses 0x76 and 0x77), ``nmea`` (once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from ganglion.errors import ConfigError
from hardware.drivers.bme280 import ADDRESSES
from hardware.drivers.nmea import checksum
from hardware.mock.bme280 import FakeBme280
from hardware.mock.factory import MockPortFactory
from hardware.mock.serial import MockSerialPort
from hardware.mock.w1 import FakeW1Tree

__all__ = ["FAKES", "FakeRig", "parse_fakes"]

#: The fake device names, with what each is.
FAKES: Final = {
    "bme280": "BME280 (temperature, pressure, humidity) on I2C bus 1",
    "bmp280": "BMP280 (temperature, pressure) on I2C bus 1",
    "ds18b20": "DS18B20 1-Wire thermometer (repeat for more probes)",
    "nmea": "GPS receiver printing NMEA 0183 on a USB-serial port",
}
#: The by-id name of the fake GPS: a u-blox receiver, so the automatic rule opens it.
GPS_NAME: Final = "usb-u-blox_AG_-_www.u-blox.com_u-blox_GNSS_receiver_FAKE0001-if00"
_CHIP_IDS: Final = {"bme280": 0x60, "bmp280": 0x58}
_HOME: Final = (48.1173, 11.5167)  # degrees N, E: where the fake GPS walks its circle


def parse_fakes(names: Iterable[str] | str) -> tuple[str, ...]:
    """Check fake device names.

    Args:
        names: names, or one comma-separated string (``"ds18b20,bme280"``).

    Returns:
        The names in order (lower case, blanks dropped).

    Raises:
        ConfigError: an unknown name (the valid ones are listed), no names, or
            more of a device than the rig can make.
    """
    if isinstance(names, str):
        names = [names]
    flat = [n.strip().lower() for item in names for n in str(item).split(",") if n.strip()]
    valid = ", ".join(sorted(FAKES))
    for name in flat:
        if name not in FAKES:
            raise ConfigError(f"unknown fake device {name!r}; valid: {valid}")
    if not flat:
        raise ConfigError(f"name at least one fake device: {valid}")
    chips = sum(n in _CHIP_IDS for n in flat)
    if chips > len(ADDRESSES):
        raise ConfigError(f"at most {len(ADDRESSES)} fake BME280/BMP280 (I2C addresses "
                          f"0x76 and 0x77), not {chips}")
    if flat.count("nmea") > 1:
        raise ConfigError("at most one fake nmea device")
    return tuple(flat)


class FakeRig:
    """Fake devices in a temporary directory, and the port factory that reaches them.

    Args:
        names: fake device names (:func:`parse_fakes` checks them).
        root: where to build the sysfs and /dev trees; a new temporary
            directory (removed by :meth:`close`) when None.
        clock: monotonic seconds, for the factory and the value curves.

    Raises:
        ConfigError: a bad name.

    Attributes:
        w1_root: the fake ``/sys/bus/w1/devices``.
        dev: the fake ``/dev`` (``serial/by-id``).
        factory: the port factory with the fake I2C bus and serial port.
        probes: the ROM ids of the fake DS18B20s.
    """

    def __init__(self, names: Iterable[str] | str, *, root: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.names = parse_fakes(names)
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="ganglion-fake-hw-")) if root is None \
            else Path(root)
        self.clock = clock
        self.w1_root = self.root / "w1"
        self.dev = self.root / "dev"
        (self.dev / "serial" / "by-id").mkdir(parents=True, exist_ok=True)
        self.factory = MockPortFactory(clock)
        self.tree = FakeW1Tree(self.w1_root)
        self.probes: list[str] = []
        self.chips: dict[int, FakeBme280] = {}
        self.gps: MockSerialPort | None = None
        for name in self.names:
            self._add(name)
        self._start = clock()
        self.step(0.0)

    def step(self, elapsed: float) -> None:
        """Set every device's values for ``elapsed`` seconds since start; the GPS speaks.

        Args:
            elapsed: seconds since the rig was made.
        """
        wave = math.sin(2 * math.pi * elapsed / 600.0)  # a ten-minute swing
        for index, rom in enumerate(self.probes):
            # Whole sixteenths of a degree, as a DS18B20 reports; never 85.0 (the reset value).
            celsius = round((18.0 + 1.5 * index + 0.8 * wave) * 16) / 16
            self.tree.set_temperature(rom, celsius)
        for chip in self.chips.values():
            # Near the datasheet example (25.08 °C, 1006.5 hPa): about ±1 °C, ±2 hPa.
            chip.set_raw(adc_t=519888 + round(3000 * wave), adc_p=415148 - round(2000 * wave),
                         adc_h=30000 + round(800 * wave))
        if self.gps is not None:
            for line in _nmea(elapsed):
                self.gps.feed(line)

    async def run(self, period: float = 1.0) -> None:
        """Call :meth:`step` every ``period`` seconds until cancelled.

        Args:
            period: seconds between steps.
        """
        while True:
            await asyncio.sleep(period)
            self.step(self.clock() - self._start)

    def describe(self) -> str:
        """One line: which fakes, where."""
        counts = {n: self.names.count(n) for n in dict.fromkeys(self.names)}
        what = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())
        return f"fake hardware ({what}) under {self.root}"

    def close(self) -> None:
        """Unplug the GPS and remove the temporary tree (if the rig made it)."""
        if self.gps is not None:
            self.gps.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _add(self, name: str) -> None:
        if name == "ds18b20":
            rom = f"28-0000fa4e{len(self.probes) + 1:04x}"
            self.tree.add_probe(rom)
            self.probes.append(rom)
        elif name in _CHIP_IDS:
            address = ADDRESSES[len(self.chips)]
            self.chips[address] = FakeBme280(chip_id=_CHIP_IDS[name])
            self.factory.add_i2c_bus(1).attach(address, self.chips[address])
        else:
            path = self.dev / "serial" / "by-id" / GPS_NAME
            path.touch()
            self.gps = self.factory.add_serial(str(path))


def _nmea(elapsed: float) -> list[str]:
    """A GGA and an RMC sentence for the fake GPS at ``elapsed`` seconds: a 20 m circle."""
    now = dt.datetime.now(dt.UTC)
    angle = 2 * math.pi * elapsed / 120.0
    lat = _HOME[0] + 0.00018 * math.sin(angle)
    lon = _HOME[1] + 0.00027 * math.cos(angle)
    clock = now.strftime("%H%M%S.00")
    lat_text = f"{int(lat):02d}{(lat % 1) * 60:07.4f},N"
    lon_text = f"{int(lon):03d}{(lon % 1) * 60:07.4f},E"
    gga = f"GPGGA,{clock},{lat_text},{lon_text},1,08,0.9,545.4,M,46.9,M,,"
    rmc = f"GPRMC,{clock},A,{lat_text},{lon_text},0.5,{math.degrees(angle) % 360:.1f}," \
          f"{now.strftime('%d%m%y')},,,A"
    return [f"${body}*{checksum(body):02X}\r\n" for body in (gga, rmc)]
