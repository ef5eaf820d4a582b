"""DS18B20 via a fake w1 sysfs tree: parsing, CRC, the 85 °C power-on value, listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.drivers.ds18b20 import crc8, list_probes, parse_w1_slave, read_probe
from hardware.errors import BadReading, SensorGone
from hardware.mock import FakeW1Tree, scratchpad_lines

ROM = "28-0316a2795cff"


@pytest.fixture
def tree(tmp_path: Path) -> FakeW1Tree:
    return FakeW1Tree(tmp_path / "w1")


def test_the_kernels_own_example_parses() -> None:
    text = ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n"
            "72 01 4b 46 7f ff 0e 10 57 t=23125\n")
    assert parse_w1_slave(text) == 23125


def test_crc8_of_a_scratchpad_with_its_crc_is_zero() -> None:
    pad = bytes.fromhex("7201 4b46 7fff 0e10 57".replace(" ", ""))
    assert crc8(pad[:8]) == 0x57
    assert crc8(pad) == 0


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=16))
def test_crc8_detects_any_single_bit_flip(data: bytes) -> None:
    crc = crc8(data)
    flipped = bytes([data[0] ^ 0x01]) + data[1:]
    assert crc8(flipped) != crc
    assert crc8(data + bytes([crc])) == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(-55_000, 125_000).filter(lambda m: m != 85_000))
def test_any_in_range_value_reads_back(millic: int) -> None:
    assert parse_w1_slave(scratchpad_lines(millic)) == millic


def test_read_probe_gives_celsius(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM, 21.4375)
    assert read_probe(tree.root, ROM) == pytest.approx(21.4375, abs=0.001)


def test_negative_temperatures_read(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM, -10.125)
    assert read_probe(tree.root, ROM) == -10.125


def test_a_no_verdict_is_rejected(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM)
    tree.set_w1_slave(ROM, scratchpad_lines(21000, crc_ok=False))
    with pytest.raises(BadReading, match="kernel said NO"):
        read_probe(tree.root, ROM)


def test_a_crc_mismatch_is_rejected_even_when_the_file_says_yes(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM)
    tree.set_w1_slave(ROM, scratchpad_lines(21000, crc_ok=False, verdict="YES"))
    with pytest.raises(BadReading, match="CRC mismatch"):
        read_probe(tree.root, ROM)


def test_the_power_on_value_is_an_error_not_a_reading(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM)
    tree.power_on_value(ROM)
    with pytest.raises(BadReading, match=r"85\.000 °C is the power-on value"):
        read_probe(tree.root, ROM)


def test_85_point_0625_is_a_real_reading(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM, 85.0625)
    assert read_probe(tree.root, ROM) == pytest.approx(85.0625, abs=0.001)


@pytest.mark.parametrize("text, match", [
    ("", "0 lines"),
    ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", "1 lines"),
    ("zz 01 4b 46 7f ff 0e 10 57 : crc=57 YES\nzz t=1\n", "unreadable scratchpad"),
    ("72 01 4b 46 7f ff 0e 10 : crc=57 YES\n72 t=1\n", "CRC mismatch"),
    ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57\n", "no t= value"),
])
def test_truncated_or_garbled_files_are_bad_readings(text: str, match: str) -> None:
    with pytest.raises(BadReading, match=match):
        parse_w1_slave(text, ROM)


def test_out_of_range_values_are_rejected(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM)
    tree.set_w1_slave(ROM, scratchpad_lines(127_937))
    with pytest.raises(BadReading, match="outside the probe's range"):
        read_probe(tree.root, ROM)


def test_the_temperature_file_is_preferred_where_the_kernel_has_it(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM, 19.5, temperature_file=True)
    tree.set_w1_slave(ROM, "garbage")  # would fail if read
    assert read_probe(tree.root, ROM) == 19.5


def test_garbage_in_the_temperature_file_is_a_bad_reading(tree: FakeW1Tree) -> None:
    where = tree.add_probe(ROM, temperature_file=True)
    (where / "temperature").write_text("error\n")
    with pytest.raises(BadReading, match="holds 'error'"):
        read_probe(tree.root, ROM)


def test_the_power_on_value_in_the_temperature_file_is_an_error(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM, 85.0, temperature_file=True)
    with pytest.raises(BadReading, match="power-on"):
        read_probe(tree.root, ROM)


def test_a_removed_probe_is_sensor_gone_naming_it(tree: FakeW1Tree) -> None:
    tree.add_probe(ROM)
    tree.remove_probe(ROM)
    with pytest.raises(SensorGone, match=f"w1:{ROM}"):
        read_probe(tree.root, ROM)


def test_list_probes_finds_thermometers_only(tree: FakeW1Tree) -> None:
    tree.add_probe("28-000000000002")
    tree.add_probe("10-000000000001")
    (tree.root / "29-000000000003").mkdir()  # DS2408 switch: not a thermometer
    (tree.root / "28-short").mkdir()
    assert list_probes(tree.root) == ["10-000000000001", "28-000000000002"]


def test_list_probes_without_1_wire_is_empty(tmp_path: Path) -> None:
    assert list_probes(tmp_path / "no-such-dir") == []
