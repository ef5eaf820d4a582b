"""BME280 calibration data and the datasheet's compensation formulas.

Theory of operation: each BME280 leaves the factory with its own trimming
parameters in two non-volatile register blocks, 0x88..0xA1 (temperature,
pressure, H1) and 0xE1..0xE7 (the rest of humidity). :func:`parse_calibration`
unpacks them as the datasheet's table 16 lays them out (little-endian words;
H4 and H5 are 12-bit values sharing register 0xE5). The compensation functions
are the double-precision formulas of the Bosch BME280 datasheet, section 8.1
(BST-BME280-DS002); their results agree with the integer versions of section 4.2.3
to within the integer versions' resolution. Temperature is computed first: its
intermediate ``t_fine`` feeds the pressure and humidity formulas.

Pure functions only: no I/O here, so the worked example of the datasheet
(dig_T1 = 27504 ... adc_T = 519888 gives 25.08 °C, t_fine 128422; adc_P =
415148 gives 100653.27 Pa) is checked directly by the tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "CALIB_HUM",
    "CALIB_HUM_LEN",
    "CALIB_TP",
    "CALIB_TP_LEN",
    "Bme280Calibration",
    "compensate_humidity",
    "compensate_pressure",
    "compensate_temperature",
    "parse_calibration",
]

CALIB_TP = 0x88  # dig_T1 .. dig_P9, then a reserved byte, then dig_H1 at 0xA1
CALIB_TP_LEN = 26
CALIB_HUM = 0xE1  # dig_H2 .. dig_H6
CALIB_HUM_LEN = 7


@dataclass(frozen=True, slots=True)
class Bme280Calibration:
    """A chip's trimming parameters, named as in the datasheet."""

    dig_T1: int
    dig_T2: int
    dig_T3: int
    dig_P1: int
    dig_P2: int
    dig_P3: int
    dig_P4: int
    dig_P5: int
    dig_P6: int
    dig_P7: int
    dig_P8: int
    dig_P9: int
    dig_H1: int = 0
    dig_H2: int = 0
    dig_H3: int = 0
    dig_H4: int = 0
    dig_H5: int = 0
    dig_H6: int = 0

    def to_registers(self) -> tuple[bytes, bytes]:
        """The two register blocks that hold these values (for emulating a chip).

        Returns:
            (26 bytes from 0x88, 7 bytes from 0xE1).
        """
        tp = struct.pack("<HhhHhhhhhhhhBB", self.dig_T1, self.dig_T2, self.dig_T3,
                         self.dig_P1, self.dig_P2, self.dig_P3, self.dig_P4, self.dig_P5,
                         self.dig_P6, self.dig_P7, self.dig_P8, self.dig_P9, 0, self.dig_H1)
        h4, h5 = self.dig_H4 & 0xFFF, self.dig_H5 & 0xFFF
        hum = struct.pack("<hB", self.dig_H2, self.dig_H3) + bytes(
            [h4 >> 4, (h4 & 0x0F) | ((h5 & 0x0F) << 4), h5 >> 4]) + struct.pack("<b", self.dig_H6)
        return tp, hum


def parse_calibration(tp: bytes, hum: bytes) -> Bme280Calibration:
    """Unpack the calibration registers.

    Args:
        tp: 26 bytes read from 0x88.
        hum: 7 bytes read from 0xE1.

    Returns:
        The parameters.

    Raises:
        ValueError: a block has the wrong length.
    """
    if len(tp) != CALIB_TP_LEN or len(hum) != CALIB_HUM_LEN:
        raise ValueError(f"calibration blocks must be {CALIB_TP_LEN} and {CALIB_HUM_LEN} bytes, "
                         f"got {len(tp)} and {len(hum)}")
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, _reserved, h1 = struct.unpack(
        "<HhhHhhhhhhhhBB", tp)
    h2, h3 = struct.unpack_from("<hB", hum, 0)
    e4, e5, e6 = hum[3], hum[4], hum[5]
    h4 = _signed12((e4 << 4) | (e5 & 0x0F))
    h5 = _signed12((e6 << 4) | (e5 >> 4))
    (h6,) = struct.unpack_from("<b", hum, 6)
    return Bme280Calibration(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6)


def compensate_temperature(adc_t: int, cal: Bme280Calibration) -> tuple[float, int]:
    """Datasheet 8.1, ``BME280_compensate_T_double``.

    Args:
        adc_t: the 20-bit raw temperature.
        cal: the chip's calibration.

    Returns:
        (degrees Celsius, t_fine for the other two formulas).
    """
    var1 = (adc_t / 16384.0 - cal.dig_T1 / 1024.0) * cal.dig_T2
    var2 = (adc_t / 131072.0 - cal.dig_T1 / 8192.0) ** 2 * cal.dig_T3
    t_fine = int(var1 + var2)  # the datasheet's (BME280_S32_t) cast truncates toward zero
    return (var1 + var2) / 5120.0, t_fine


def compensate_pressure(adc_p: int, t_fine: int, cal: Bme280Calibration) -> float:
    """Datasheet 8.1, ``BME280_compensate_P_double``.

    Args:
        adc_p: the 20-bit raw pressure.
        t_fine: from :func:`compensate_temperature`.
        cal: the chip's calibration.

    Returns:
        Pascals.

    Raises:
        ValueError: the calibration gives a zero divisor (dig_P1 = 0: not a real chip).
    """
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * cal.dig_P6 / 32768.0
    var2 = var2 + var1 * cal.dig_P5 * 2.0
    var2 = var2 / 4.0 + cal.dig_P4 * 65536.0
    var1 = (cal.dig_P3 * var1 * var1 / 524288.0 + cal.dig_P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.dig_P1
    if var1 == 0.0:
        raise ValueError("pressure compensation divides by zero (dig_P1 is 0)")
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.dig_P9 * p * p / 2147483648.0
    var2 = p * cal.dig_P8 / 32768.0
    return p + (var1 + var2 + cal.dig_P7) / 16.0


def compensate_humidity(adc_h: int, t_fine: int, cal: Bme280Calibration) -> float:
    """Datasheet 8.1, ``bme280_compensate_H_double``, clamped to 0..100 as there.

    Args:
        adc_h: the 16-bit raw humidity.
        t_fine: from :func:`compensate_temperature`.
        cal: the chip's calibration.

    Returns:
        Percent relative humidity.
    """
    var_h = t_fine - 76800.0
    var_h = (adc_h - (cal.dig_H4 * 64.0 + cal.dig_H5 / 16384.0 * var_h)) * (
        cal.dig_H2 / 65536.0 * (1.0 + cal.dig_H6 / 67108864.0 * var_h * (
            1.0 + cal.dig_H3 / 67108864.0 * var_h)))
    var_h = var_h * (1.0 - cal.dig_H1 * var_h / 524288.0)
    return min(100.0, max(0.0, var_h))


def _signed12(value: int) -> int:
    return value - 0x1000 if value & 0x800 else value
