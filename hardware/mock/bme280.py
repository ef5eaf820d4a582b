"""FakeBme280: the BME280's register map, so the real driver runs unchanged.

Theory of operation: the fake holds the chip's 256 registers. At power-on they
hold the chip id (0xD0 = 0x60, or 0x58 for a BMP280), the calibration blocks
(0x88..0xA1 and 0xE1..0xE7, from a :class:`Bme280Calibration`), and the "skipped"
pattern 0x80000 / 0x8000 in the data registers 0xF7..0xFE, as the real chip
does before its first measurement. Writes behave as in datasheet section 5.4:

* ``ctrl_hum`` (0xF2) is latched and only applied at the next ``ctrl_meas`` write;
* ``ctrl_meas`` (0xF4) with mode 01 or 10 (forced) runs one measurement: the
  ``measuring`` bit of ``status`` (0xF3) is set for the next
  :attr:`busy_polls` status reads, the raw ADC values the test set are copied
  into the data registers (a quantity whose oversampling is 0 reads as skipped),
  and the mode falls back to sleep; mode 11 (normal) measures continuously,
  i.e. the data registers follow :meth:`set_raw` at once;
* ``reset`` (0xE0) with 0xB6 restores the power-on state.

The test sets raw ADC values (:meth:`set_raw`); the datasheet's worked example
values then come out of the driver's compensation. Failure modes for the
failure-handling tests: :attr:`stuck` (the measurement never finishes) and
:attr:`garbage` (data registers read 0xFF).
"""

from __future__ import annotations

from hardware.drivers.bme280_calibration import Bme280Calibration

__all__ = ["DATASHEET_CALIBRATION", "FakeBme280"]

#: The calibration of the datasheet's worked example (BMP280 datasheet table 16 for
#: T and P; typical humidity values from a real BME280 for H).
DATASHEET_CALIBRATION = Bme280Calibration(
    dig_T1=27504, dig_T2=26435, dig_T3=-1000,
    dig_P1=36477, dig_P2=-10685, dig_P3=3024, dig_P4=2855, dig_P5=140, dig_P6=-7,
    dig_P7=15500, dig_P8=-14600, dig_P9=6000,
    dig_H1=75, dig_H2=362, dig_H3=0, dig_H4=324, dig_H5=50, dig_H6=30,
)


class FakeBme280:
    """An emulated BME280 (or BMP280) for :class:`~hardware.mock.i2c.MockI2CBus`.

    Args:
        calibration: the trimming values in its NVM.
        chip_id: 0x60 (BME280) or 0x58 (BMP280).
        adc_t, adc_p, adc_h: the raw values its next measurement gives.
    """

    def __init__(self, calibration: Bme280Calibration = DATASHEET_CALIBRATION, *, chip_id: int = 0x60,
                 adc_t: int = 519888, adc_p: int = 415148, adc_h: int = 30000) -> None:
        self.calibration = calibration
        self.chip_id = chip_id
        self.adc = (adc_t, adc_p, adc_h)
        self.busy_polls = 1
        self.stuck = False
        self.garbage = False
        self.measurements = 0
        self._reset()

    def set_raw(self, *, adc_t: int | None = None, adc_p: int | None = None,
                adc_h: int | None = None) -> None:
        """Set what the next measurement reads (normal mode: at once)."""
        t, p, h = self.adc
        self.adc = (t if adc_t is None else adc_t, p if adc_p is None else adc_p,
                    h if adc_h is None else adc_h)
        if self.mode == 0b11:
            self._measure()

    @property
    def mode(self) -> int:
        """The mode bits of ctrl_meas: 00 sleep, 01/10 forced, 11 normal."""
        return self.regs[0xF4] & 0b11

    def read(self, register: int) -> int:
        if register == 0xF3:
            if self._busy > 0 or self.stuck:
                self._busy -= 1
                return 0x08
            return 0x00
        if self.garbage and 0xF7 <= register <= 0xFE:
            return 0xFF
        return self.regs[register]

    def write(self, register: int, value: int) -> None:
        if register == 0xE0:
            if value == 0xB6:
                self._reset()
            return
        if register in (0xF2, 0xF4, 0xF5):
            if register == 0xF2:
                self._pending_hum = value & 0b111
                return
            self.regs[register] = value
            if register == 0xF4:
                self.regs[0xF2] = self._pending_hum
                if self.mode in (0b01, 0b10):
                    self._measure()
                    self._busy = self.busy_polls
                    self.regs[0xF4] &= ~0b11 & 0xFF  # back to sleep after one measurement
                elif self.mode == 0b11:
                    self._measure()
        # Other registers are read-only: the chip ignores writes to them.

    def _reset(self) -> None:
        self.regs = bytearray(256)
        self.regs[0xD0] = self.chip_id
        tp, hum = self.calibration.to_registers()
        self.regs[0x88:0x88 + len(tp)] = tp
        if self.chip_id == 0x60:
            self.regs[0xE1:0xE1 + len(hum)] = hum
        self.regs[0xF7:0xFF] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])
        self._pending_hum = 0
        self._busy = 0

    def _measure(self) -> None:
        self.measurements += 1
        osrs_t = self.regs[0xF4] >> 5
        osrs_p = (self.regs[0xF4] >> 2) & 0b111
        osrs_h = self.regs[0xF2] & 0b111
        t, p, h = self.adc
        t = t if osrs_t else 0x80000
        p = p if osrs_p else 0x80000
        h = h if osrs_h and self.chip_id == 0x60 else 0x8000
        self.regs[0xF7:0xFA] = bytes([p >> 12 & 0xFF, p >> 4 & 0xFF, (p & 0xF) << 4])
        self.regs[0xFA:0xFD] = bytes([t >> 12 & 0xFF, t >> 4 & 0xFF, (t & 0xF) << 4])
        self.regs[0xFD:0xFF] = bytes([h >> 8 & 0xFF, h & 0xFF])
