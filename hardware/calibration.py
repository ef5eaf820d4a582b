"""Sensor names and calibration (``[sensors."ID"]``), applied where the reading is made.

Theory of operation: each ``[sensors."<sensor id>"]`` table of the node's config
becomes a :class:`SensorSettings`: an optional ``name``, an optional
``offset``/``scale`` for every value of the sensor, and optional per-quantity
tables (``celsius = { offset = -0.5 }``) for a sensor that measures several
things (a BME280) or a serial device printing several values. The hardware
plugin wraps the node a configured sensor publishes on in a
:class:`CalibratedPublisher`, which replaces each reading's value by
``raw * scale + offset`` (rounded to 6 decimals to keep float noise out of the
logs) and, before the first reading and then at most every ``every`` seconds,
publishes a :class:`~hardware.messages.SensorInfo` with the name and the
calibration in force.

Why a separate message and not a ``raw`` or ``name`` field on the readings:
adding a field changes a type's schema fingerprint (docs/protocol.md §4.2), so
every not-yet-upgraded node would log a mismatch for every upgraded sender and
the logger would record a second version of ``sensors.Temperature`` even on
networks that calibrate nothing. With ``SensorInfo`` the reading types stay as
they are, sensors without a table publish exactly what they did, and the raw
value stays exact to the rounding: ``raw = (value - offset) / scale``.

:func:`calibrate` is pure (message in, message out); only the publisher holds
state (when the info was last sent).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from ganglion.errors import ConfigError
from hardware.messages import Calibration, Reading, SensorInfo
from hardware.readings import Humidity, Pressure, Temperature

__all__ = ["SENSOR_ID", "VALUE_FIELDS", "CalibratedPublisher", "Linear", "SensorSettings",
           "calibrate", "parse_sensors"]

#: What a sensor id looks like: ``w1:``, ``i2c:``, ``serial:`` or ``gpio:``, then the device.
SENSOR_ID: Final = re.compile(r"(w1|i2c|serial|gpio):.+")
#: The value field of each calibratable reading type (its ``quantity``).
VALUE_FIELDS: Final[dict[type, str]] = {Temperature: "celsius", Humidity: "percent",
                                        Pressure: "hpa", Reading: "value"}
_ROM: Final = re.compile(r"[0-9a-fA-F]{2}-[0-9a-fA-F]{12}")
_DIGITS: Final = 6


@dataclasses.dataclass(frozen=True, slots=True)
class Linear:
    """``raw * scale + offset``."""

    scale: float = 1.0
    offset: float = 0.0

    def apply(self, raw: float) -> float:
        """The corrected value, rounded to 6 decimals."""
        return round(raw * self.scale + self.offset, _DIGITS)


@dataclasses.dataclass(frozen=True, slots=True)
class SensorSettings:
    """One sensor's config table.

    Attributes:
        sensor_id: the sensor (``w1:28-0316a2795cff``).
        name: its human name; "" when not named.
        every: the correction of every value, or None.
        quantities: per-quantity corrections (win over ``every``).
    """

    sensor_id: str
    name: str = ""
    every: Linear | None = None
    quantities: tuple[tuple[str, Linear], ...] = ()

    def correction(self, quantity: str) -> Linear | None:
        """The correction of ``quantity``, or None to publish it as read."""
        return dict(self.quantities).get(quantity, self.every)

    def info(self, kind: str) -> SensorInfo:
        """The :class:`SensorInfo` announcing this table.

        Args:
            kind: what the sensor is, in words.

        Returns:
            The message.
        """
        table = ([Calibration("*", self.every.scale, self.every.offset)] if self.every else [])
        table += [Calibration(q, c.scale, c.offset) for q, c in self.quantities]
        return SensorInfo(sensor=self.sensor_id, name=self.name, kind=kind, calibration=table)


def parse_sensors(tables: Mapping[str, Any]) -> dict[str, SensorSettings]:
    """Check ``[sensors."ID"]`` tables.

    Args:
        tables: sensor id -> table with ``name``, ``offset``, ``scale`` and
            per-quantity tables of ``offset`` and ``scale``.

    Returns:
        Sensor id -> settings.

    Raises:
        ConfigError: a bad id or entry; the message names it and says what would do.
    """
    if not isinstance(tables, Mapping):
        raise ConfigError("sensors must be a table of [sensors.\"SENSOR ID\"] tables")
    out: dict[str, SensorSettings] = {}
    for sensor_id, table in tables.items():
        where = f'sensors."{sensor_id}"'
        if not isinstance(sensor_id, str) or not SENSOR_ID.fullmatch(sensor_id):
            raise ConfigError(f"{where}: {bad_id_hint(str(sensor_id))}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table (name, offset, scale)")
        name = table.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name must be a string, not {name!r}")
        every = _linear(table, where) if {"offset", "scale"} & set(table) else None
        if every is not None and sensor_id.startswith("i2c:"):
            raise ConfigError(f"{where}: a BME280 measures celsius, hpa and percent; "
                              f"calibrate each, e.g. celsius = {{ offset = -0.5 }}")
        quantities = []
        for key, sub in table.items():
            if key in ("name", "offset", "scale"):
                continue
            if not isinstance(sub, Mapping):
                raise ConfigError(f"{where}: unknown key {key!r}; valid: name, offset, scale, "
                                  f"or a table per quantity, e.g. celsius = {{ offset = -0.5 }}")
            quantities.append((key, _linear(sub, f"{where}.{key}", required=True)))
        out[sensor_id] = SensorSettings(sensor_id, name, every, tuple(quantities))
    return out


def bad_id_hint(text: str) -> str:
    """Why ``text`` is not a sensor id, and the id the user probably meant."""
    if _ROM.fullmatch(text):
        return f"not a sensor id; a 1-Wire probe is 'w1:{text}'"
    return ("not a sensor id; ids look like w1:28-0316a2795cff, i2c:1/0x76, "
            "serial:/dev/serial/by-id/..., gpio:17 (ganglion node logs each sensor it finds)")


def calibrate(msg: object, settings: SensorSettings) -> object:
    """``msg`` with its value corrected by ``settings`` (the same object when nothing applies).

    Args:
        msg: a reading.
        settings: the table of the reading's sensor.

    Returns:
        The corrected reading.
    """
    field = VALUE_FIELDS.get(type(msg))
    if field is None:
        return msg
    quantity = msg.quantity if isinstance(msg, Reading) else field
    correction = settings.correction(quantity)
    if correction is None:
        return msg
    return dataclasses.replace(msg, **{field: correction.apply(getattr(msg, field))})  # type: ignore[type-var]


class CalibratedPublisher:
    """Stands in for the node of one configured sensor: corrects, and announces the info.

    Args:
        node: the real node.
        settings: the sensor's table.
        kind: what the sensor is, for the info.
        clock: monotonic seconds.
        every: seconds between repeats of the info.
    """

    def __init__(self, node: Any, settings: SensorSettings, kind: str, *,
                 clock: Callable[[], float], every: float = 60.0) -> None:
        self.node = node
        self.settings = settings
        self.info = settings.info(kind)
        self._clock = clock
        self._every = every
        self._last: float | None = None

    @property
    def name(self) -> str:
        """The node's name."""
        return str(self.node.name)

    async def publish(self, msg: object) -> None:
        """Publish ``msg`` corrected, after the info when it is due.

        Args:
            msg: a reading of this sensor.
        """
        now = self._clock()
        if self._last is None or now - self._last >= self._every:
            self._last = now
            await self.node.publish(self.info)
        await self.node.publish(calibrate(msg, self.settings))


def _linear(table: Mapping[str, Any], where: str, *, required: bool = False) -> Linear:
    unknown = sorted(set(table) - {"offset", "scale"})
    if required and unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid: offset, scale")
    if required and not table:
        raise ConfigError(f"{where} is empty; give offset and/or scale")
    offset = table.get("offset", 0.0)
    scale = table.get("scale", 1.0)
    if isinstance(offset, bool) or not isinstance(offset, int | float) \
            or not math.isfinite(offset):
        raise ConfigError(f"{where}.offset must be a number (e.g. -0.3), not {offset!r}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) \
            or not math.isfinite(scale) or scale == 0:
        raise ConfigError(f"{where}.scale must be a non-zero number (e.g. 1.02), not {scale!r}")
    return Linear(float(scale), float(offset))
