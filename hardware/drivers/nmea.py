"""NMEA 0183 sentences from GPS receivers: checksums, GGA and RMC.

Theory of operation: a sentence is ``$<talker><type>,<fields>*<checksum>``, where
the checksum is two hex digits of the XOR of every character between ``$`` and
``*`` (NMEA 0183 v4.10 §5.3). :func:`parse_sentence` verifies the checksum and
splits the fields; a sentence without one is refused, since GPS receivers always
send it and a line without one is more likely noise. Any talker (GP, GN, GL, GA,
BD) is accepted. GGA gives position, altitude, satellites and HDOP; RMC gives
position, speed, course and the UTC date and time. A sentence that says there is
no fix (GGA quality 0, RMC status V) is valid but has no position: it yields None.
Coordinates are ``ddmm.mmmm`` / ``dddmm.mmmm`` with a hemisphere letter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from hardware.errors import BadReading
from hardware.messages import Position

__all__ = ["KNOTS_TO_MPS", "NmeaSentence", "checksum", "parse_position", "parse_sentence"]

KNOTS_TO_MPS: Final = 1852.0 / 3600.0
_MAX_SENTENCE: Final = 120  # 82 by the standard; some receivers run longer


@dataclass(frozen=True, slots=True)
class NmeaSentence:
    """A checked sentence: talker (``GP``), type (``GGA``) and its fields."""

    talker: str
    kind: str
    fields: tuple[str, ...]


def checksum(body: str) -> int:
    """XOR of the characters of ``body`` (the text between ``$`` and ``*``)."""
    value = 0
    for char in body.encode("ascii", "replace"):
        value ^= char
    return value


def parse_sentence(line: str) -> NmeaSentence:
    """Check and split one sentence.

    Args:
        line: the line, with or without its CR LF.

    Returns:
        The sentence.

    Raises:
        BadReading: not a sentence, too long, no checksum, or a wrong checksum.
    """
    line = line.strip()
    if not line.startswith(("$", "!")) or len(line) > _MAX_SENTENCE:
        raise BadReading(f"not an NMEA sentence: {line[:40]!r}")
    body, star, given = line[1:].rpartition("*")
    if not star or len(given) != 2:
        raise BadReading(f"NMEA sentence without a checksum: {line[:40]!r}")
    try:
        expected = int(given, 16)
    except ValueError:
        raise BadReading(f"NMEA checksum {given!r} is not hex") from None
    if checksum(body) != expected:
        raise BadReading(f"NMEA checksum mismatch ({checksum(body):02X} != {given}): "
                         f"{line[:40]!r}")
    address, *fields = body.split(",")
    if len(address) != 5 or not address.isalnum():
        raise BadReading(f"NMEA address {address!r} is not talker + type")
    return NmeaSentence(address[:2], address[2:], tuple(fields))


def parse_position(sentence: NmeaSentence, sensor: str) -> Position | None:
    """The fix in a GGA or RMC sentence.

    Args:
        sentence: from :func:`parse_sentence`.
        sensor: the receiver's identity.

    Returns:
        The position, or None when the sentence reports no fix or is another type.

    Raises:
        BadReading: a GGA or RMC sentence with missing or malformed fields.
    """
    try:
        if sentence.kind == "GGA":
            return _gga(sentence.fields, sensor)
        if sentence.kind == "RMC":
            return _rmc(sentence.fields, sensor)
    except (ValueError, IndexError) as exc:
        raise BadReading(f"malformed {sentence.kind} sentence: {exc}") from None
    return None


def _gga(f: tuple[str, ...], sensor: str) -> Position | None:
    # time, lat, N/S, lon, E/W, quality, satellites, hdop, altitude, M, separation, M, ...
    if len(f) < 9:
        raise ValueError(f"{len(f)} fields, expected at least 9")
    if f[5] in ("", "0"):
        return None
    int(f[5])
    return Position(sensor=sensor, latitude_deg=_coordinate(f[1], f[2], "NS", 2),
                    longitude_deg=_coordinate(f[3], f[4], "EW", 3), sentence="GGA",
                    altitude_m=float(f[8]) if f[8] else None,
                    satellites=int(f[6]) if f[6] else None,
                    hdop=float(f[7]) if f[7] else None)


def _rmc(f: tuple[str, ...], sensor: str) -> Position | None:
    # time, status, lat, N/S, lon, E/W, speed (knots), course, date (ddmmyy), ...
    if len(f) < 9:
        raise ValueError(f"{len(f)} fields, expected at least 9")
    if f[1] != "A":
        if f[1] != "V":
            raise ValueError(f"status {f[1]!r} is neither A nor V")
        return None
    return Position(sensor=sensor, latitude_deg=_coordinate(f[2], f[3], "NS", 2),
                    longitude_deg=_coordinate(f[4], f[5], "EW", 3), sentence="RMC",
                    speed_mps=float(f[6]) * KNOTS_TO_MPS if f[6] else None,
                    course_deg=float(f[7]) if f[7] else None,
                    gps_time=_utc(f[8], f[0]) if f[8] and f[0] else None)


def _coordinate(value: str, hemisphere: str, letters: str, degree_digits: int) -> float:
    if hemisphere not in letters or len(value) < degree_digits + 2:
        raise ValueError(f"bad coordinate {value!r} {hemisphere!r}")
    degrees = int(value[:degree_digits])
    minutes = float(value[degree_digits:])
    if not 0 <= minutes < 60 or degrees > (90 if degree_digits == 2 else 180):
        raise ValueError(f"coordinate {value!r} out of range")
    result = degrees + minutes / 60.0
    return -result if hemisphere == letters[1] else result


def _utc(date: str, clock: str) -> dt.datetime:
    day, month, yy = int(date[0:2]), int(date[2:4]), int(date[4:6])
    year = 1900 + yy if yy >= 80 else 2000 + yy  # GPS began in 1980: 80..99 are 19xx
    hour, minute = int(clock[0:2]), int(clock[2:4])
    seconds = float(clock[4:])
    whole = int(seconds)
    return dt.datetime(year, month, day, hour, minute, whole,
                       round((seconds - whole) * 1e6), tzinfo=dt.UTC)
