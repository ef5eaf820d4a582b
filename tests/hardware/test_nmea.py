"""NMEA 0183: checksums, GGA and RMC fields, no-fix sentences and garbage."""

from __future__ import annotations

import datetime as dt
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.drivers.nmea import KNOTS_TO_MPS, checksum, parse_position, parse_sentence
from hardware.errors import BadReading

GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body):02X}"


def test_checksum_is_the_xor_between_dollar_and_star() -> None:
    body = GGA[1:GGA.index("*")]
    assert checksum(body) == 0x47 == reduce(lambda a, c: a ^ ord(c), body, 0)


def test_gga_gives_position_altitude_satellites_hdop() -> None:
    fix = parse_position(parse_sentence(GGA), "gps")
    assert fix is not None
    assert fix.latitude_deg == pytest.approx(48 + 7.038 / 60)
    assert fix.longitude_deg == pytest.approx(11 + 31.0 / 60)
    assert (fix.altitude_m, fix.satellites, fix.hdop, fix.sentence) == (545.4, 8, 0.9, "GGA")
    assert fix.speed_mps is None and fix.gps_time is None


def test_rmc_gives_position_speed_course_and_utc_time() -> None:
    fix = parse_position(parse_sentence(RMC), "gps")
    assert fix is not None
    assert fix.speed_mps == pytest.approx(22.4 * KNOTS_TO_MPS)
    assert fix.course_deg == 84.4
    assert fix.gps_time == dt.datetime(1994, 3, 23, 12, 35, 19, tzinfo=dt.UTC)
    assert fix.altitude_m is None


def test_rmc_time_with_fractional_seconds() -> None:
    line = sentence("GNRMC,083559.25,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A")
    fix = parse_position(parse_sentence(line), "gps")
    assert fix is not None
    assert fix.gps_time == dt.datetime(2002, 12, 9, 8, 35, 59, 250000, tzinfo=dt.UTC)
    assert fix.latitude_deg == pytest.approx(47 + 17.11437 / 60)


def test_southern_and_western_hemispheres_are_negative() -> None:
    line = sentence("GPGGA,000000,3351.000,S,15112.000,W,1,05,1.2,10.0,M,,M,,")
    fix = parse_position(parse_sentence(line), "gps")
    assert fix is not None
    assert fix.latitude_deg == pytest.approx(-(33 + 51 / 60))
    assert fix.longitude_deg == pytest.approx(-(151 + 12 / 60))


def test_any_talker_is_accepted() -> None:
    for talker in ("GN", "GL", "GA", "BD"):
        parsed = parse_sentence(sentence(f"{talker}GGA,1,4807.038,N,01131.000,E,1,08,0.9,1,M,,M,,"))
        assert parsed.talker == talker and parsed.kind == "GGA"


def test_no_fix_sentences_are_valid_but_give_no_position() -> None:
    assert parse_position(parse_sentence(sentence("GPGGA,123519,,,,,0,00,,,M,,M,,")), "g") is None
    assert parse_position(parse_sentence(sentence("GPRMC,123519,V,,,,,,,230394,,")), "g") is None


def test_other_sentence_types_give_nothing() -> None:
    gsv = sentence("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00")
    assert parse_position(parse_sentence(gsv), "gps") is None


@pytest.mark.parametrize("line, match", [
    (GGA.replace("*47", "*48"), "checksum mismatch"),
    (GGA.replace("4807.038", "4807.039"), "checksum mismatch"),
    (GGA[:GGA.index("*")], "without a checksum"),
    (GGA.replace("*47", "*ZZ"), "not hex"),
    ("GPGGA,1,2,3", "not an NMEA sentence"),
    ("$" + "A" * 200, "not an NMEA sentence"),
    (sentence("GPGGAX,1"), "talker"),
])
def test_bad_sentences_are_bad_readings(line: str, match: str) -> None:
    with pytest.raises(BadReading, match=match):
        parse_sentence(line)


@pytest.mark.parametrize("body", [
    "GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,,M,,",
    "GPGGA,123519,48,N,01131.000,E,1,08,0.9,545.4,M,,M,,",
    "GPGGA,123519,4807.038,N,01131.000,E,1,08",
    "GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,",
    "GPGGA,123519,4807.038,N,01131.000,E,x,08,0.9,545.4,M,,M,,",
    "GPRMC,123519,Q,4807.038,N,01131.000,E,022.4,084.4,230394,,",
    "GPRMC,123519,A,4807.038,N,01131.000,E,fast,084.4,230394,,",
])
def test_malformed_fields_with_a_good_checksum_are_bad_readings(body: str) -> None:
    with pytest.raises(BadReading, match="malformed"):
        parse_position(parse_sentence(sentence(body)), "gps")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_any_text_parses_or_is_a_bad_reading(text: str) -> None:
    try:
        parsed = parse_sentence(text)
        parse_position(parsed, "gps")
    except BadReading:
        pass
