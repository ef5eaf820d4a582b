"""Bosch BME280 (and BMP280) on I2C: detection, configuration and one reading.

Theory of operation: :func:`probe` reads the chip-id register (0xD0) and says
which chip answers (0x60 BME280, 0x58 BMP280); a bus with nothing at the address
raises ``OSError`` and is just "absent". :class:`Bme280` reads the calibration
blocks once, then configures the chip (datasheet section 5.4): ``ctrl_hum``
(0xF2) first, because it only takes effect on the next write of ``ctrl_meas``
(0xF4), then ``config`` (0xF5, standby and IIR filter), then ``ctrl_meas``.

In **forced** mode (the default, and the datasheet's recommendation for weather
monitoring, section 3.5.1) each :meth:`Bme280.read` writes ``ctrl_meas`` with mode
01, waits the maximum measurement time of datasheet section 9.1, polls the
``measuring`` bit of ``status`` (0xF3), and burst-reads 0xF7..0xFE. In **normal**
mode the chip measures continuously and a read is just the burst. A burst read
is one transaction, so the three values always come from the same measurement
(datasheet 4: shadowing).

Every failure is a :class:`~hardware.errors.SensorError`: ``OSError`` from the
bus becomes :class:`SensorGone`; a wrong chip id, a skipped measurement (0x80000)
or a value outside the chip's operating range becomes :class:`BadReading`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from hardware.drivers.bme280_calibration import (
    CALIB_HUM,
    CALIB_HUM_LEN,
    CALIB_TP,
    CALIB_TP_LEN,
    Bme280Calibration,
    compensate_humidity,
    compensate_pressure,
    compensate_temperature,
    parse_calibration,
)
from hardware.errors import BadReading, SensorGone
from hardware.port import I2CBus

__all__ = ["ADDRESSES", "CHIP_IDS", "Bme280", "Bme280Reading", "probe"]

ADDRESSES: Final = (0x76, 0x77)  # SDO to GND, SDO to VDDIO
CHIP_IDS: Final = {0x60: "BME280", 0x58: "BMP280"}

REG_CHIP_ID: Final = 0xD0
REG_CTRL_HUM: Final = 0xF2
REG_STATUS: Final = 0xF3
REG_CTRL_MEAS: Final = 0xF4
REG_CONFIG: Final = 0xF5
REG_DATA: Final = 0xF7
DATA_LEN: Final = 8
STATUS_MEASURING: Final = 0x08
MODE_SLEEP, MODE_FORCED, MODE_NORMAL = 0b00, 0b01, 0b11
SKIPPED_20BIT: Final = 0x80000  # what the chip leaves in a disabled measurement
SKIPPED_16BIT: Final = 0x8000

_OVERSAMPLING: Final = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}  # factor -> osrs field
_STATUS_POLLS: Final = 20


@dataclass(frozen=True, slots=True)
class Bme280Reading:
    """One compensated measurement; ``percent`` is None on a BMP280."""

    celsius: float
    pascal: float
    percent: float | None


def probe(bus: I2CBus, address: int) -> str | None:
    """Which Bosch chip answers at ``address``, if any.

    Args:
        bus: the bus.
        address: 0x76 or 0x77.

    Returns:
        ``"BME280"``, ``"BMP280"``, or None when nothing (or something else) answers.
    """
    try:
        chip_id = bus.read_byte_data(address, REG_CHIP_ID)
    except OSError:
        return None
    return CHIP_IDS.get(chip_id)


class Bme280:
    """A BME280 or BMP280 at one bus address.

    Args:
        bus: the I2C bus it is on.
        address: its address, 0x76 or 0x77.
        mode: ``forced`` (one measurement per read) or ``normal`` (continuous).
        oversampling: 1, 2, 4, 8 or 16, for all three quantities.
        sleep: waits for a forced measurement (injected by tests).

    Raises:
        SensorGone: the chip does not answer.
        BadReading: the address holds a different chip.
        ValueError: a bad mode or oversampling.
    """

    def __init__(self, bus: I2CBus, address: int = 0x76, *,
                 mode: Literal["forced", "normal"] = "forced", oversampling: int = 1,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if mode not in ("forced", "normal"):
            raise ValueError(f"BME280 mode must be 'forced' or 'normal', not {mode!r}")
        if oversampling not in _OVERSAMPLING:
            raise ValueError(f"oversampling must be one of {sorted(_OVERSAMPLING)}, "
                             f"not {oversampling!r}")
        self.bus = bus
        self.address = address
        self.mode = mode
        self.oversampling = oversampling
        self._sleep = sleep
        with _as_sensor_errors(self.sensor_id):
            chip_id = bus.read_byte_data(address, REG_CHIP_ID)
            if chip_id not in CHIP_IDS:
                raise BadReading(f"{self.sensor_id}: chip id 0x{chip_id:02x} is not a "
                                 "BME280 (0x60) or BMP280 (0x58)")
            self.chip = CHIP_IDS[chip_id]
            hum = bus.read_block(address, CALIB_HUM, CALIB_HUM_LEN) if self.has_humidity \
                else bytes(CALIB_HUM_LEN)
            self.calibration: Bme280Calibration = parse_calibration(
                bus.read_block(address, CALIB_TP, CALIB_TP_LEN), hum)
            if self.calibration.dig_T1 == 0 or self.calibration.dig_P1 == 0:
                raise BadReading(f"{self.sensor_id}: calibration data is blank")
            self._configure()

    @property
    def sensor_id(self) -> str:
        """``i2c:<bus>/0x<address>``: where the chip is, which is all that names it."""
        return f"i2c:{self.bus.number}/0x{self.address:02x}"

    @property
    def has_humidity(self) -> bool:
        """True for a BME280; a BMP280 has no humidity sensor."""
        return self.chip == "BME280"

    def read(self) -> Bme280Reading:
        """Measure (in forced mode) and compensate.

        Returns:
            The reading.

        Raises:
            SensorGone: the chip stopped answering, or never finished measuring.
            BadReading: a skipped measurement or a value outside the chip's range.
        """
        with _as_sensor_errors(self.sensor_id):
            if self.mode == "forced":
                self.bus.write_byte_data(self.address, REG_CTRL_MEAS, self._ctrl_meas(MODE_FORCED))
                self._sleep(self._measure_seconds())
                self._wait_until_done()
            raw = self.bus.read_block(self.address, REG_DATA, DATA_LEN)
        return self._compensate(raw)

    # -- private -------------------------------------------------------------------------

    def _configure(self) -> None:
        osrs = _OVERSAMPLING[self.oversampling]
        self.bus.write_byte_data(self.address, REG_CTRL_MEAS, self._ctrl_meas(MODE_SLEEP))
        if self.has_humidity:
            self.bus.write_byte_data(self.address, REG_CTRL_HUM, osrs)
        # Normal mode: 1000 ms standby (t_sb = 101), filter off; forced ignores t_sb.
        self.bus.write_byte_data(self.address, REG_CONFIG, 0b101 << 5)
        mode = MODE_NORMAL if self.mode == "normal" else MODE_SLEEP
        self.bus.write_byte_data(self.address, REG_CTRL_MEAS, self._ctrl_meas(mode))

    def _ctrl_meas(self, mode: int) -> int:
        osrs = _OVERSAMPLING[self.oversampling]
        return (osrs << 5) | (osrs << 2) | mode

    def _measure_seconds(self) -> float:
        # Datasheet 9.1, maximum measurement time in ms.
        n = self.oversampling
        ms = 1.25 + 2.3 * n + (2.3 * n + 0.575) + ((2.3 * n + 0.575) if self.has_humidity else 0)
        return ms / 1000.0

    def _wait_until_done(self) -> None:
        for _ in range(_STATUS_POLLS):
            if not self.bus.read_byte_data(self.address, REG_STATUS) & STATUS_MEASURING:
                return
            self._sleep(0.001)
        raise SensorGone(f"{self.sensor_id}: measurement did not finish")

    def _compensate(self, raw: bytes) -> Bme280Reading:
        adc_p = (raw[0] << 12) | (raw[1] << 4) | (raw[2] >> 4)
        adc_t = (raw[3] << 12) | (raw[4] << 4) | (raw[5] >> 4)
        adc_h = (raw[6] << 8) | raw[7]
        if adc_t == SKIPPED_20BIT or adc_p == SKIPPED_20BIT or (
                self.has_humidity and adc_h == SKIPPED_16BIT):
            raise BadReading(f"{self.sensor_id}: the chip skipped a measurement "
                             "(reset or not configured)")
        celsius, t_fine = compensate_temperature(adc_t, self.calibration)
        try:
            pascal = compensate_pressure(adc_p, t_fine, self.calibration)
        except ValueError as exc:
            raise BadReading(f"{self.sensor_id}: {exc}") from None
        # The chip's operating range (datasheet table 1): outside it, the data is garbage.
        if not -40.0 <= celsius <= 85.0 or not 30_000.0 <= pascal <= 110_000.0:
            raise BadReading(f"{self.sensor_id}: implausible reading {celsius:.2f} °C, "
                             f"{pascal:.0f} Pa")
        percent = compensate_humidity(adc_h, t_fine, self.calibration) \
            if self.has_humidity else None
        return Bme280Reading(celsius, pascal, percent)


class _as_sensor_errors:
    """Turn the bus's ``OSError`` into :class:`SensorGone` naming the sensor."""

    def __init__(self, sensor_id: str) -> None:
        self._sensor_id = sensor_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if isinstance(exc, OSError) and not isinstance(exc, SensorGone):
            reason = exc.strerror or str(exc)
            raise SensorGone(f"{self._sensor_id}: {reason}") from exc
