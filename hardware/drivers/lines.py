"""Line protocols that serial devices print, turned into typed messages.

Theory of operation: a :class:`LineDecoder` takes one text line and returns the
messages in it, or raises :class:`~hardware.errors.BadReading` for a line it
cannot make sense of (the caller counts it and carries on with the next line, so
one garbled line never stops a device). Formats:

``json``
    One JSON object per line; every numeric (or boolean) member becomes a
    :class:`~hardware.messages.Reading` named by its key. ``{"t": 21.5, "h": 40}``.
``kv``
    ``key=value`` pairs separated by commas, semicolons or blanks:
    ``t=21.5, h=40``. A line holding one bare number is read as ``value=<n>``.
``csv``
    Comma-separated values under a header line: the first line with a
    non-numeric cell is the header; each later line must have as many cells. A
    new header (the device restarted) replaces the old one.
``nmea``
    NMEA 0183 from a GPS: GGA and RMC become :class:`~hardware.messages.Position`;
    other sentence types with a good checksum are ignored; bad ones are errors.
``auto``
    Decide per line: ``$``/``!`` NMEA, ``{`` JSON, ``=`` key/value, ``,`` CSV,
    a bare number key/value. This is what automatically opened ports use.

Non-numeric values (a status string) are skipped: a Reading holds a number.
Units come from the ``units`` mapping (quantity -> unit), empty otherwise.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Final

from hardware.drivers.nmea import parse_position, parse_sentence
from hardware.errors import BadReading
from hardware.messages import Reading

__all__ = ["FORMATS", "LineDecoder"]

FORMATS: Final = ("auto", "json", "kv", "csv", "nmea")
_PAIR_SPLIT: Final = re.compile(r"[,;\s]+")
_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")


class LineDecoder:
    """Decodes the lines of one device.

    Args:
        sensor: the device's identity, put in every message.
        fmt: one of :data:`FORMATS`.
        units: quantity name -> unit, for :class:`Reading` messages.

    Raises:
        ValueError: an unknown format.
    """

    def __init__(self, sensor: str, fmt: str = "auto",
                 units: Mapping[str, str] | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown serial format {fmt!r}; choose from {', '.join(FORMATS)}")
        self.sensor = sensor
        self.format = fmt
        self.units = dict(units or {})
        self.header: tuple[str, ...] | None = None
        self.lines = 0
        self.bad = 0
        self.ignored = 0

    def decode(self, line: str) -> list[object]:
        """The messages in one line (empty for a blank or ignorable line).

        Args:
            line: one line of text, with or without its terminator.

        Returns:
            :class:`Reading` or :class:`Position` messages.

        Raises:
            BadReading: the line does not parse in this format (also counted in ``bad``).
        """
        text = line.strip().strip("\x00")
        if not text:
            return []
        self.lines += 1
        try:
            out = self._decode(text)
        except BadReading:
            self.bad += 1
            raise
        if not out:
            self.ignored += 1
        return out

    def _decode(self, text: str) -> list[object]:
        fmt = self.format if self.format != "auto" else _sniff(text)
        if fmt == "nmea":
            position = parse_position(parse_sentence(text), self.sensor)
            return [position] if position is not None else []
        if fmt == "json":
            return self._json(text)
        if fmt == "kv":
            return self._kv(text)
        return self._csv(text)

    def _json(self, text: str) -> list[object]:
        try:
            data = json.loads(text)
        except ValueError:
            raise BadReading(f"not a JSON line: {text[:40]!r}") from None
        if not isinstance(data, dict):
            raise BadReading(f"a JSON line must hold an object, not {type(data).__name__}")
        return [self._reading(str(k), v) for k, v in data.items() if _number(v) is not None]

    def _kv(self, text: str) -> list[object]:
        if "=" not in text:
            if _number(text) is None:
                raise BadReading(f"no key=value pairs in {text[:40]!r}")
            return [self._reading("value", text)]
        out: list[object] = []
        for pair in _PAIR_SPLIT.split(text.replace(" = ", "=")):
            if not pair:
                continue
            key, eq, value = pair.partition("=")
            if not eq or not _KEY.fullmatch(key):
                raise BadReading(f"{pair[:30]!r} is not a key=value pair")
            if _number(value) is not None:
                out.append(self._reading(key, value))
        return out

    def _csv(self, text: str) -> list[object]:
        cells = tuple(c.strip() for c in text.split(","))
        numbers = [_number(c) for c in cells]
        if any(n is None for n in numbers):
            if all(_KEY.fullmatch(c) for c in cells) and len(set(cells)) == len(cells):
                self.header = cells  # a (new) header: the device (re)started
                return []
            if self.header is None or len(cells) != len(self.header):
                raise BadReading(f"not a CSV row: {text[:40]!r}")
        if self.header is None:
            raise BadReading("a CSV row before any header line")
        if len(cells) != len(self.header):
            raise BadReading(f"CSV row has {len(cells)} cells, header has {len(self.header)}")
        return [self._reading(name, cell) for name, cell in zip(self.header, cells, strict=True)
                if _number(cell) is not None]

    def _reading(self, quantity: str, raw: object) -> Reading:
        value = _number(raw)
        assert value is not None  # callers filter
        return Reading(sensor=self.sensor, quantity=quantity, value=value,
                       unit=self.units.get(quantity, ""))


def _sniff(text: str) -> str:
    if text[0] in "$!":
        return "nmea"
    if text[0] == "{":
        return "json"
    if "=" in text:
        return "kv"
    if "," in text:
        return "csv"
    return "kv"  # a bare number, or garbage that kv reports


def _number(value: object) -> float | None:
    """A finite float from a JSON number, bool or numeric string; None otherwise."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
