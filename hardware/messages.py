"""Message types of the device plugins, beyond the four in :mod:`hardware.readings`.

Every reading names its sensor (``w1:<rom id>``, ``i2c:<bus>/0x<address>``,
``serial:<path>``, ``gpio:<pin>``) and carries its unit, in the field name where
it is fixed (``latitude_deg``, ``per_minute``) or in a ``unit`` field where the
user chose it. docs/sensors.md has the table of every field.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ganglion import message
from ganglion import quantity as _quantity  # Reading has a field named quantity

__all__ = ["Calibration", "Counter", "DigitalInput", "Position", "Reading", "SensorInfo"]


@message("sensors.Reading", key=("sensor", "quantity"))
@dataclass
class Reading:
    """One named value from a device that prints its own readings (serial lines).

    ``quantity`` is the device's own name for the value (a JSON key, a CSV column);
    ``unit`` is what the config says it is, or empty when nobody said.
    """

    sensor: str
    quantity: str
    value: float = _quantity(state="measurement",
                            description="the value, in `unit` (empty when nobody said)")
    unit: str = ""


@message("sensors.Position", key="sensor")
@dataclass
class Position:
    """A position fix from a GPS receiver (NMEA 0183 GGA or RMC).

    Fields a sentence does not carry are None: GGA has altitude, satellites and
    HDOP; RMC has speed, course and the date.
    """

    sensor: str
    latitude_deg: float = _quantity(unit="°", state="measurement")
    longitude_deg: float = _quantity(unit="°", state="measurement")
    sentence: str = _quantity(description="the NMEA sentence of the fix (GGA, RMC)")
    altitude_m: float | None = _quantity(unit="m", kind="distance", state="measurement",
                                        default=None)
    speed_mps: float | None = _quantity(unit="m/s", kind="speed", state="measurement",
                                       default=None)
    course_deg: float | None = _quantity(unit="°", state="measurement", default=None)
    satellites: int | None = _quantity(state="measurement", description="satellites in use",
                                      default=None)
    hdop: float | None = _quantity(state="measurement", description="horizontal dilution of "
                                  "precision", default=None)
    gps_time: dt.datetime | None = None


@message("sensors.DigitalInput", key="sensor")
@dataclass
class DigitalInput:
    """The state of a digital input (door contact, float switch, button).

    ``active`` is the logical state: True when the input is active, which for the
    default pull-up wiring (switch to ground) is a low pin. ``changes`` counts the
    accepted changes since the plugin started.
    """

    sensor: str
    active: bool = _quantity(description="the logical state: True when active")
    changes: int = _quantity(state="total_increasing",
                            description="accepted changes since the plugin started")


@message("sensors.Counter", key="sensor")
@dataclass
class Counter:
    """A pulse counter (flow meter, rain gauge, energy meter LED).

    ``per_minute`` is the rate in ``unit`` per minute over the last publishing
    interval, ``total`` the running total in ``unit`` since the plugin started,
    ``pulses`` the raw pulse count behind it.
    """

    sensor: str
    unit: str
    per_minute: float = _quantity(state="measurement", description="unit per minute")
    total: float = _quantity(state="total_increasing", description="unit since the plugin started")
    pulses: int = _quantity(state="total_increasing", description="raw pulses counted")


@dataclass
class Calibration:
    """How a node corrected one quantity of a sensor: ``published = raw * scale + offset``.

    ``quantity`` is the value field (``celsius``, ``percent``, ``hpa``) or, for a
    serial device's ``sensors.Reading``, its ``quantity``; ``*`` for every value.
    """

    quantity: str
    scale: float
    offset: float


@message("sensors.SensorInfo", key="sensor")
@dataclass
class SensorInfo:
    """A sensor's name and calibration, from the publishing node's ``[sensors."ID"]`` table.

    Published before a configured sensor's first reading and again with its
    readings at most every minute, so loggers and late subscribers have it. It
    is how the raw value is kept without changing the reading types (and their
    fingerprints): ``raw = (value - offset) / scale`` with the entry whose
    ``quantity`` matches (else ``*``); no entry means the value is raw.
    """

    sensor: str
    name: str
    kind: str
    calibration: list[Calibration]
