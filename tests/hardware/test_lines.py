"""Serial line formats: JSON lines, key=value, CSV with a header, NMEA and auto."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.drivers.lines import LineDecoder
from hardware.errors import BadReading
from hardware.messages import Position, Reading

S = "serial:/dev/ttyUSB0"


def r(quantity: str, value: float, unit: str = "") -> Reading:
    return Reading(sensor=S, quantity=quantity, value=value, unit=unit)


def test_json_lines_give_one_reading_per_numeric_member() -> None:
    dec = LineDecoder(S, "json", {"t": "°C"})
    out = dec.decode('{"t": 21.5, "h": 40, "ok": true, "status": "fine", "n": null}\r\n')
    assert out == [r("t", 21.5, "°C"), r("h", 40.0), r("ok", 1.0)]


@pytest.mark.parametrize("line", ['{"t": 21.5', "[1, 2]", "t=1"])
def test_json_garbage_is_bad_and_counted(line: str) -> None:
    dec = LineDecoder(S, "json")
    with pytest.raises(BadReading):
        dec.decode(line)
    assert (dec.lines, dec.bad) == (1, 1)


def test_key_value_pairs_with_any_separator() -> None:
    dec = LineDecoder(S, "kv")
    assert dec.decode("t=21.5, h=40;p=1013.2 state=open\tlux=12") == [
        r("t", 21.5), r("h", 40.0), r("p", 1013.2), r("lux", 12.0)]
    assert dec.decode("t = 3") == [r("t", 3.0)]


def test_a_bare_number_is_a_value() -> None:
    assert LineDecoder(S, "kv").decode("512\n") == [r("value", 512.0)]


@pytest.mark.parametrize("line", ["hello world", "=5", "t=1, =2", "1t=3"])
def test_key_value_garbage_is_bad(line: str) -> None:
    with pytest.raises(BadReading):
        LineDecoder(S, "kv").decode(line)


def test_csv_needs_a_header_and_follows_it() -> None:
    dec = LineDecoder(S, "csv", {"temp": "°C"})
    with pytest.raises(BadReading, match="before any header"):
        dec.decode("1,2")
    assert dec.decode("temp,hum,label") == []
    assert dec.decode("21.5,40,kitchen") == [r("temp", 21.5, "°C"), r("hum", 40.0)]
    with pytest.raises(BadReading, match="2 cells, header has 3"):
        dec.decode("1,2")
    assert dec.bad == 2 and dec.ignored == 1


def test_a_new_csv_header_replaces_the_old_one() -> None:
    dec = LineDecoder(S, "csv")
    dec.decode("a,b")
    dec.decode("x,y,z")  # the device restarted with other firmware
    assert dec.header == ("x", "y", "z")
    assert dec.decode("1,2,3") == [r("x", 1.0), r("y", 2.0), r("z", 3.0)]


def test_nmea_format_gives_positions_and_skips_other_sentences() -> None:
    dec = LineDecoder(S, "nmea")
    out = dec.decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n")
    assert len(out) == 1 and isinstance(out[0], Position) and out[0].sensor == S
    assert dec.decode("$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39") == []
    with pytest.raises(BadReading):
        dec.decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*46")
    assert (dec.lines, dec.bad, dec.ignored) == (3, 1, 1)


def test_auto_decides_per_line() -> None:
    dec = LineDecoder(S)
    assert dec.decode('{"a": 1}') == [r("a", 1.0)]
    assert dec.decode("b=2") == [r("b", 2.0)]
    assert dec.decode("c,d") == []
    assert dec.decode("3,4") == [r("c", 3.0), r("d", 4.0)]
    assert dec.decode("5") == [r("value", 5.0)]
    fix = dec.decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A")
    assert isinstance(fix[0], Position)


def test_blank_lines_and_nul_padding_are_nothing() -> None:
    dec = LineDecoder(S)
    assert dec.decode("\r\n") == [] and dec.decode("\x00\x00\n") == []
    assert dec.lines == 0


def test_non_finite_numbers_are_not_readings() -> None:
    assert LineDecoder(S, "kv").decode("a=nan, b=inf, c=1") == [r("c", 1.0)]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown serial format 'xml'"):
        LineDecoder(S, "xml")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["auto", "json", "kv", "csv", "nmea"]), st.lists(st.text(max_size=60),
                                                                          max_size=5))
def test_any_text_decodes_or_is_a_bad_reading(fmt: str, lines: list[str]) -> None:
    dec = LineDecoder(S, fmt)
    bad = 0
    for line in lines:
        try:
            for msg in dec.decode(line):
                assert isinstance(msg, Reading | Position)
        except BadReading:
            bad += 1
    assert dec.bad == bad
