"""BME280: the datasheet's worked example, the compensation against the integer
formulas, calibration layout, and the real driver on the emulated chip."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.drivers.bme280 import Bme280, probe
from hardware.drivers.bme280_calibration import (
    Bme280Calibration,
    compensate_humidity,
    compensate_pressure,
    compensate_temperature,
    parse_calibration,
)
from hardware.errors import BadReading, SensorGone
from hardware.mock import DATASHEET_CALIBRATION, FakeBme280, FakeClock, MockI2CBus

# -- the datasheet's worked example (calibration dig_T1 = 27504 ... dig_P9 = 6000) -----------


def test_datasheet_example_temperature_is_25_08_with_t_fine_128422() -> None:
    celsius, t_fine = compensate_temperature(519888, DATASHEET_CALIBRATION)
    assert t_fine == 128422
    assert round(celsius, 2) == 25.08


def test_datasheet_example_pressure_is_100653_27_pa() -> None:
    _, t_fine = compensate_temperature(519888, DATASHEET_CALIBRATION)
    pascal = compensate_pressure(415148, t_fine, DATASHEET_CALIBRATION)
    # The datasheet prints 100653.27 from its own float intermediates; double
    # precision gives 100653.258, within the chip's 0.18 Pa resolution of it.
    assert pascal == pytest.approx(100653.27, abs=0.05)


def _pressure_int64(adc_p: int, t_fine: int, c: Bme280Calibration) -> float:
    """Datasheet 4.2.3 BME280_compensate_P_int64, as an independent check (Q24.8 Pa)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * c.dig_P6
    var2 = var2 + ((var1 * c.dig_P5) << 17)
    var2 = var2 + (c.dig_P4 << 35)
    var1 = ((var1 * var1 * c.dig_P3) >> 8) + ((var1 * c.dig_P2) << 12)
    var1 = (((1 << 47) + var1) * c.dig_P1) >> 33
    p = 1048576 - adc_p
    p = int((((p << 31) - var2) * 3125) / var1)  # C division truncates toward zero
    var1 = (c.dig_P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (c.dig_P8 * p) >> 19
    return (((p + var1 + var2) >> 8) + (c.dig_P7 << 4)) / 256.0


def _temperature_int32(adc_t: int, c: Bme280Calibration) -> tuple[float, int]:
    """Datasheet 4.2.3 BME280_compensate_T_int32."""
    var1 = (((adc_t >> 3) - (c.dig_T1 << 1)) * c.dig_T2) >> 11
    var2 = (((((adc_t >> 4) - c.dig_T1) * ((adc_t >> 4) - c.dig_T1)) >> 12) * c.dig_T3) >> 14
    t_fine = var1 + var2
    return ((t_fine * 5 + 128) >> 8) / 100.0, t_fine


def _humidity_int32(adc_h: int, t_fine: int, c: Bme280Calibration) -> float:
    """Datasheet 4.2.3 bme280_compensate_H_int32 (Q22.10 %RH)."""
    v = t_fine - 76800
    v = ((((adc_h << 14) - (c.dig_H4 << 20) - (c.dig_H5 * v)) + 16384) >> 15) * (
        ((((((v * c.dig_H6) >> 10) * (((v * c.dig_H3) >> 11) + 32768)) >> 10) + 2097152)
         * c.dig_H2 + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * c.dig_H1) >> 4)
    v = min(max(v, 0), 419430400)
    return (v >> 12) / 1024.0


def test_datasheet_example_agrees_with_the_integer_formulas() -> None:
    celsius_int, t_fine_int = _temperature_int32(519888, DATASHEET_CALIBRATION)
    assert (celsius_int, t_fine_int) == (25.08, 128422)
    assert _pressure_int64(415148, 128422, DATASHEET_CALIBRATION) == pytest.approx(100653.27,
                                                                                abs=0.05)


@settings(max_examples=200, deadline=None)
@given(adc_t=st.integers(400_000, 600_000), adc_p=st.integers(250_000, 500_000),
       adc_h=st.integers(15_000, 50_000))
def test_double_formulas_match_the_integer_formulas(adc_t: int, adc_p: int, adc_h: int) -> None:
    cal = DATASHEET_CALIBRATION
    celsius, t_fine = compensate_temperature(adc_t, cal)
    celsius_int, t_fine_int = _temperature_int32(adc_t, cal)
    assert abs(t_fine - t_fine_int) <= 16  # 16/5120 °C: the integer shifts truncate
    assert celsius == pytest.approx(celsius_int, abs=0.011)
    assert compensate_pressure(adc_p, t_fine, cal) == pytest.approx(
        _pressure_int64(adc_p, t_fine, cal), abs=0.5)
    assert compensate_humidity(adc_h, t_fine, cal) == pytest.approx(
        _humidity_int32(adc_h, t_fine, cal), abs=0.05)


def test_humidity_is_clamped_to_0_and_100() -> None:
    _, t_fine = compensate_temperature(519888, DATASHEET_CALIBRATION)
    assert compensate_humidity(0, t_fine, DATASHEET_CALIBRATION) == 0.0
    assert compensate_humidity(65535, t_fine, DATASHEET_CALIBRATION) == 100.0


def test_pressure_refuses_a_zero_dig_p1() -> None:
    blank = Bme280Calibration(27504, 26435, -1000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="dig_P1"):
        compensate_pressure(415148, 128422, blank)


# -- calibration register layout ---------------------------------------------------------------

s16 = st.integers(-32768, 32767)
u16 = st.integers(0, 65535)
s12 = st.integers(-2048, 2047)


@settings(max_examples=100, deadline=None)
@given(st.builds(Bme280Calibration, u16, s16, s16, u16, s16, s16, s16, s16, s16, s16, s16, s16,
                 st.integers(0, 255), s16, st.integers(0, 255), s12, s12, st.integers(-128, 127)))
def test_calibration_survives_the_register_layout(cal: Bme280Calibration) -> None:
    assert parse_calibration(*cal.to_registers()) == cal


def test_h4_and_h5_share_register_0xe5_as_the_datasheet_says() -> None:
    # 0xE4 = 0x14, 0xE5 = 0x3A (low nibble -> H4[3:0], high nibble -> H5[3:0]), 0xE6 = 0x03
    hum = bytes([0x6A, 0x01, 0x00, 0x14, 0x3A, 0x03, 0x1E])
    cal = parse_calibration(bytes(26), hum)
    assert (cal.dig_H2, cal.dig_H3, cal.dig_H4, cal.dig_H5, cal.dig_H6) == (362, 0, 0x14A, 0x033, 30)


def test_calibration_blocks_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="26 and 7"):
        parse_calibration(bytes(25), bytes(7))


# -- the driver on the emulated chip ---------------------------------------------------------------


def make(chip: FakeBme280 | None = None, address: int = 0x76) -> tuple[MockI2CBus, FakeBme280]:
    chip = chip or FakeBme280()
    return MockI2CBus(1, {address: chip}), chip


def test_probe_names_the_chip_or_nothing() -> None:
    bus = MockI2CBus(1, {0x76: FakeBme280(), 0x77: FakeBme280(chip_id=0x58)})
    assert probe(bus, 0x76) == "BME280"
    assert probe(bus, 0x77) == "BMP280"
    assert probe(MockI2CBus(1), 0x76) is None


def test_probe_ignores_another_chip_at_the_address() -> None:
    bus, chip = make()
    chip.chip_id = 0x61  # a BME680 answers at 0x76 too
    chip.write(0xE0, 0xB6)
    assert probe(bus, 0x76) is None


def test_forced_reading_gives_the_datasheet_values() -> None:
    bus, _ = make()
    clock = FakeClock()
    sensor = Bme280(bus, 0x76, sleep=clock.sleep)
    reading = sensor.read()
    assert round(reading.celsius, 2) == 25.08
    assert reading.pascal == pytest.approx(100653.27, abs=0.05)
    assert reading.percent is not None and 0.0 < reading.percent < 100.0
    assert sensor.sensor_id == "i2c:1/0x76"
    assert clock.slept[0] == pytest.approx(0.0093)  # datasheet 9.1: 1.25 + 2.3 + 2 x 2.875 ms


def test_configuration_writes_ctrl_hum_before_ctrl_meas() -> None:
    bus, _ = make()
    Bme280(bus, 0x76, oversampling=4, sleep=lambda s: None)
    writes = bus.writes(0x76)
    assert writes[0] == (0xF4, 0b011_011_00)  # sleep first, so config may be written
    assert writes.index((0xF2, 0b011)) < writes.index((0xF5, 0b101 << 5)) < len(writes) - 1
    assert writes[-1] == (0xF4, 0b011_011_00)


def test_every_forced_read_triggers_one_measurement() -> None:
    bus, chip = make()
    sensor = Bme280(bus, 0x76, sleep=lambda s: None)
    before = chip.measurements
    sensor.read()
    chip.set_raw(adc_t=530000)
    second = sensor.read()
    assert chip.measurements == before + 2
    assert second.celsius > 25.08
    assert chip.mode == 0  # back to sleep after a forced measurement


def test_the_driver_waits_while_the_chip_is_measuring() -> None:
    bus, chip = make()
    chip.busy_polls = 3
    clock = FakeClock()
    sensor = Bme280(bus, 0x76, sleep=clock.sleep)
    sensor.read()
    assert clock.slept[1:] == [0.001] * 3


def test_normal_mode_reads_without_triggering() -> None:
    bus, chip = make()
    sensor = Bme280(bus, 0x76, mode="normal", sleep=lambda s: None)
    assert chip.mode == 0b11
    count = chip.measurements
    first = sensor.read()
    assert chip.measurements == count
    assert round(first.celsius, 2) == 25.08


def test_a_bmp280_reads_without_humidity() -> None:
    bus, _ = make(FakeBme280(chip_id=0x58))
    sensor = Bme280(bus, 0x76, sleep=lambda s: None)
    reading = sensor.read()
    assert (sensor.chip, sensor.has_humidity, reading.percent) == ("BMP280", False, None)
    assert all(reg != 0xF2 for reg, _ in bus.writes(0x76))


def test_a_wrong_chip_id_is_a_bad_reading() -> None:
    chip = FakeBme280(chip_id=0x61)
    bus, _ = make(chip)
    with pytest.raises(BadReading, match="chip id 0x61"):
        Bme280(bus, 0x76)


def test_blank_calibration_is_refused() -> None:
    bus, _ = make(FakeBme280(Bme280Calibration(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)))
    with pytest.raises(BadReading, match="blank"):
        Bme280(bus, 0x76)


def test_no_chip_is_sensor_gone_naming_the_address() -> None:
    with pytest.raises(SensorGone, match=r"i2c:1/0x77") as info:
        Bme280(MockI2CBus(1), 0x77)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EREMOTEIO


def test_an_unplugged_chip_fails_the_next_read() -> None:
    bus, _ = make()
    sensor = Bme280(bus, 0x76, sleep=lambda s: None)
    sensor.read()
    bus.detach(0x76)
    with pytest.raises(SensorGone):
        sensor.read()


def test_a_chip_stuck_measuring_is_reported() -> None:
    bus, chip = make()
    sensor = Bme280(bus, 0x76, sleep=lambda s: None)
    chip.stuck = True
    with pytest.raises(SensorGone, match="did not finish"):
        sensor.read()


def test_garbage_data_is_a_bad_reading() -> None:
    bus, chip = make()
    sensor = Bme280(bus, 0x76, sleep=lambda s: None)
    chip.garbage = True
    with pytest.raises(BadReading, match=r"implausible|skipped"):
        sensor.read()


def test_a_chip_reset_behind_the_drivers_back_reads_as_skipped() -> None:
    bus, chip = make()
    sensor = Bme280(bus, 0x76, mode="normal", sleep=lambda s: None)
    chip.write(0xE0, 0xB6)  # power glitch: registers back to power-on values
    with pytest.raises(BadReading, match="skipped"):
        sensor.read()


@pytest.mark.parametrize("kwargs, match", [({"mode": "turbo"}, "mode"),
                                           ({"oversampling": 3}, "oversampling")])
def test_bad_driver_settings_are_value_errors(kwargs: dict[str, object], match: str) -> None:
    bus, _ = make()
    with pytest.raises(ValueError, match=match):
        Bme280(bus, 0x76, **kwargs)  # type: ignore[arg-type]
