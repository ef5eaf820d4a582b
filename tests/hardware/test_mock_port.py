"""The mocks are tested too: the emulated BME280's registers, the mock bus, the w1 tree."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from hardware.drivers.bme280_calibration import parse_calibration
from hardware.drivers.ds18b20 import parse_w1_slave
from hardware.mock import (
    DATASHEET_CALIBRATION,
    FakeBme280,
    FakeClock,
    FakeW1Tree,
    MockI2CBus,
    MockPortFactory,
    MockSerialPort,
    RegisterDevice,
    scratchpad_lines,
)


def test_fake_bme280_powers_up_with_id_calibration_and_skipped_data() -> None:
    chip = FakeBme280()
    assert chip.read(0xD0) == 0x60
    tp = bytes(chip.read(r) for r in range(0x88, 0xA2))
    hum = bytes(chip.read(r) for r in range(0xE1, 0xE8))
    assert parse_calibration(tp, hum) == DATASHEET_CALIBRATION
    assert [chip.read(r) for r in range(0xF7, 0xFF)] == [0x80, 0, 0, 0x80, 0, 0, 0x80, 0]


def test_fake_bme280_ctrl_hum_applies_only_after_ctrl_meas() -> None:
    chip = FakeBme280()
    chip.write(0xF2, 0b001)
    assert chip.read(0xF2) == 0
    chip.write(0xF4, 0b001_001_00)
    assert chip.read(0xF2) == 0b001


def test_fake_bme280_forced_measurement_fills_the_data_registers() -> None:
    chip = FakeBme280(adc_t=0x7EED0, adc_p=0x65AAC, adc_h=0x7530)
    chip.write(0xF2, 1)
    chip.write(0xF4, 0b001_001_01)
    assert chip.read(0xF3) == 0x08  # measuring, for busy_polls reads
    assert chip.read(0xF3) == 0x00
    data = [chip.read(r) for r in range(0xF7, 0xFF)]
    assert data == [0x65, 0xAA, 0xC0, 0x7E, 0xED, 0x00, 0x75, 0x30]
    assert chip.mode == 0  # forced mode returns to sleep


def test_fake_bme280_disabled_oversampling_reads_as_skipped() -> None:
    chip = FakeBme280()
    chip.write(0xF4, 0b001_000_01)  # pressure oversampling 0: skipped
    assert [chip.read(r) for r in (0xF7, 0xF8, 0xF9)] == [0x80, 0, 0]


def test_fake_bme280_reset_restores_power_on() -> None:
    chip = FakeBme280()
    chip.write(0xF4, 0b001_001_11)
    chip.write(0xE0, 0x12)  # only 0xB6 resets
    assert chip.mode == 0b11
    chip.write(0xE0, 0xB6)
    assert chip.mode == 0 and chip.read(0xFA) == 0x80


def test_fake_bme280_ignores_writes_to_read_only_registers() -> None:
    chip = FakeBme280()
    chip.write(0xD0, 0x00)
    chip.write(0x88, 0x00)
    assert chip.read(0xD0) == 0x60 and parse_calibration(
        bytes(chip.read(r) for r in range(0x88, 0xA2)),
        bytes(chip.read(r) for r in range(0xE1, 0xE8))) == DATASHEET_CALIBRATION


def test_fake_bme280_normal_mode_follows_set_raw() -> None:
    chip = FakeBme280()
    chip.write(0xF4, 0b001_001_11)
    chip.set_raw(adc_t=0x12345)
    assert [chip.read(r) for r in (0xFA, 0xFB, 0xFC)] == [0x12, 0x34, 0x50]


def test_mock_bus_logs_transfers_and_fails_like_smbus_for_absent_devices() -> None:
    bus = MockI2CBus(2, {0x40: RegisterDevice({1: 7})})
    bus.write_byte_data(0x40, 2, 9)
    assert bus.read_byte_data(0x40, 1) == 7
    assert bus.read_block(0x40, 1, 2) == bytes([7, 9])
    assert bus.log == [("write", 0x40, 2, 9), ("read", 0x40, 1, 7), ("block", 0x40, 1, 2)]
    assert bus.writes(0x40) == [(2, 9)]
    with pytest.raises(OSError) as info:
        bus.read_byte_data(0x41, 0)
    assert info.value.errno == errno.EREMOTEIO
    with pytest.raises(ValueError):
        bus.write_byte_data(0x40, 0, 256)


def test_mock_bus_handles_are_independent() -> None:
    factory = MockPortFactory()
    factory.add_i2c_bus(1).attach(0x40, RegisterDevice({0: 1}))
    first, second = factory.i2c_bus(1), factory.i2c_bus(1)
    first.close()
    assert second.read_byte_data(0x40, 0) == 1
    with pytest.raises(OSError):
        first.read_byte_data(0x40, 0)
    factory.remove_i2c_bus(1)
    assert list(factory.i2c_buses()) == []
    with pytest.raises(OSError):
        factory.i2c_bus(1)


def test_mock_bus_is_safe_across_threads() -> None:
    bus = MockI2CBus(1, {0x40: RegisterDevice()})

    def hammer(register: int) -> None:
        for value in range(200):
            bus.write_byte_data(0x40, register, value)

    threads = [threading.Thread(target=hammer, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(bus.log) == 800
    assert [bus.read_byte_data(0x40, r) for r in range(4)] == [199] * 4


def test_w1_tree_looks_like_the_kernels(tmp_path: Path) -> None:
    tree = FakeW1Tree(tmp_path / "w1")
    where = tree.add_probe("28-000000000001", 23.125, temperature_file=True)
    assert (tree.root / "w1_bus_master1").is_dir()
    assert (where / "name").read_text() == "28-000000000001\n"
    assert parse_w1_slave((where / "w1_slave").read_text()) == 23125
    assert (where / "temperature").read_text() == "23125\n"
    tree.set_temperature("28-000000000001", -1.5)
    assert (where / "temperature").read_text() == "-1500\n"
    tree.remove_probe("28-000000000001")
    assert not where.exists()


def test_scratchpad_lines_encode_negative_temperatures_in_twos_complement() -> None:
    first = scratchpad_lines(-10_125).split()
    assert first[:2] == ["5e", "ff"]  # -10.125 * 16 = -162 = 0xFF5E
    assert scratchpad_lines(21_000, crc_ok=False).splitlines()[0].endswith("NO")


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(5.0)
    assert clock() == 5.0
    clock.sleep(0.5)
    assert (clock(), clock.slept) == (5.5, [0.5])
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_mock_serial_port_joins_chunks_and_reports_unplug() -> None:
    port = MockSerialPort()
    port.feed(b"a=")
    port.feed("1\nb=2\n")
    assert port.read_line(0.1) == b"a=1\n"
    assert port.read_line(0.1) == b"b=2\n"
    port.unplug()
    with pytest.raises(OSError) as info:
        port.read_line(0.1)
    assert info.value.errno == errno.EIO


def test_mock_factory_serial_ports_open_by_path_and_not_after_close() -> None:
    factory = MockPortFactory()
    port = factory.add_serial("/dev/ttyACM0")
    assert factory.serial_port("/dev/ttyACM0", 9600) is port
    port.close()
    with pytest.raises(OSError):
        factory.serial_port("/dev/ttyACM0", 9600)
    assert factory.opened == ["/dev/ttyACM0"]


def test_mock_input_pin_records_states_and_pulses() -> None:
    factory = MockPortFactory(FakeClock(0.0))
    pin = factory.input_pin("6", pull="up")
    pin_mock = factory.pins["6"]
    pin_mock.pulse(at=1.0, width=0.01)
    assert pin_mock.states == [(0.0, True), (1.0, False), (1.01, True)]
    assert pin.value is True
