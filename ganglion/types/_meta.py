"""Types that describe themselves: per-field unit, kind and gauge-or-total, and a description.

Theory of operation: a field declares what it measures in the standard
``dataclasses.field(metadata=...)`` mapping, or with :func:`quantity`, which builds
exactly that::

    @message("brewery.Temperature", key="sensor")
    class Temperature:
        \"\"\"Wort temperature.\"\"\"
        sensor: str
        celsius: float = quantity(unit="°C", kind="temperature")
        total_litres: float = quantity(unit="L", kind="volume", state="total_increasing")

Recognised metadata keys (everything else in the mapping is left alone):

* ``unit``: the unit as people write it (``°C``, ``%``, ``hPa``, ``L/min``);
* ``kind``: what is measured, in Home Assistant's sensor ``device_class`` words
  (``temperature``, ``humidity``, ``pressure``, ``volume_flow_rate``, ...);
* ``state_class``: ``measurement`` (a gauge) or ``total_increasing`` (a running
  total that only grows, reset to zero at restarts) or ``total``;
* ``description``: one line about the field.

A type's description is the first line of its class docstring.

:func:`type_schema` gives the whole picture as a :class:`TypeSchema`. What a field
does not declare falls back to conventions, so types written before this existed
describe themselves too: a unit from the field name's ending (``celsius`` ->
``°C``, :func:`unit_of`), a kind from an unambiguous unit (``°C`` ->
``temperature``), ``total_increasing`` for numeric fields named ``total`` or
``total_*`` and ``measurement`` for every other numeric field.

Metadata is local knowledge, like a type's key: it is *not* hashed into the schema
fingerprint, so adding units to a type keeps it compatible with every running node.
Nodes without the class learn it from the control channel (docs/protocol.md 7.6),
as :meth:`TypeSchema.to_plain` / :meth:`TypeSchema.from_plain` spell it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from ganglion.errors import TypeRegistrationError

__all__ = [
    "DEVICE_CLASSES",
    "STATE_CLASSES",
    "FieldSchema",
    "TypeSchema",
    "quantity",
    "unit_of",
]

#: The ``state_class`` values a field may declare (Home Assistant's words).
STATE_CLASSES = frozenset({"measurement", "total", "total_increasing"})

#: Home Assistant's sensor device classes (developers.home-assistant.io, "Sensor entity").
#: A declared ``kind`` outside this set is refused at registration: a typo would make
#: Home Assistant reject the whole entity.
DEVICE_CLASSES = frozenset({
    "apparent_power", "aqi", "area", "atmospheric_pressure", "battery", "blood_glucose_concentration",
    "carbon_dioxide", "carbon_monoxide", "conductivity", "current", "data_rate", "data_size",
    "date", "distance", "duration", "energy", "energy_distance", "energy_storage", "enum",
    "frequency", "gas", "humidity", "illuminance", "irradiance", "moisture", "monetary",
    "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1", "pm10",
    "pm25", "power", "power_factor", "precipitation", "precipitation_intensity", "pressure",
    "reactive_energy", "reactive_power", "signal_strength", "sound_pressure", "speed",
    "sulphur_dioxide", "temperature", "timestamp", "volatile_organic_compounds",
    "volatile_organic_compounds_parts", "voltage", "volume", "volume_flow_rate",
    "volume_storage", "water", "weight", "wind_direction", "wind_speed",
})

#: Field-name endings that name a unit (longest match wins), after ganglion's
#: convention of carrying the unit in the field name (hardware/readings.py).
_UNITS: dict[str, str] = {
    "celsius": "°C", "fahrenheit": "°F", "kelvin": "K", "percent": "%", "hpa": "hPa",
    "pa": "Pa", "kpa": "kPa", "bar": "bar", "litres_per_minute": "L/min", "litres": "L",
    "liters": "L", "volts": "V", "volt": "V", "amps": "A", "ma": "mA", "watts": "W",
    "wh": "Wh", "kwh": "kWh", "meters": "m", "metres": "m", "mm": "mm", "cm": "cm",
    "seconds": "s", "ms": "ms", "hz": "Hz", "lux": "lx", "ppm": "ppm", "db": "dB",
    "rpm": "rpm", "degrees": "°", "m_s": "m/s", "ohms": "Ω",
}

#: Units that say what is measured without doubt (``%`` does not: humidity or battery?).
_KIND_OF_UNIT: dict[str, str] = {
    "°C": "temperature", "°F": "temperature", "K": "temperature", "hPa": "pressure",
    "Pa": "pressure", "kPa": "pressure", "bar": "pressure", "L/min": "volume_flow_rate",
    "L": "volume", "V": "voltage", "A": "current", "mA": "current", "W": "power",
    "Wh": "energy", "kWh": "energy", "m": "distance", "mm": "distance", "cm": "distance",
    "s": "duration", "ms": "duration", "Hz": "frequency", "lx": "illuminance",
    "dB": "sound_pressure", "m/s": "speed",
}

#: Wire kinds whose values are numbers (an optional number too).
_NUMERIC = frozenset({"int", "float", "optional<int>", "optional<float>"})
_META_KEYS = ("unit", "kind", "state_class", "description")
#: Bounds of a schema a peer sends (docs/protocol.md 7.6): fields, and characters per string.
MAX_SCHEMA_FIELDS = 64
MAX_META_TEXT = 200


def quantity(*, unit: str | None = None, kind: str | None = None, state: str | None = None,
             description: str | None = None, **field_kwargs: Any) -> Any:
    """A dataclass field that says what it measures.

    Args:
        unit: the unit (``°C``).
        kind: a Home Assistant ``device_class`` (``temperature``).
        state: ``measurement``, ``total_increasing`` or ``total``.
        description: one line about the field.
        field_kwargs: passed on to :func:`dataclasses.field` (``default=...``).

    Returns:
        ``dataclasses.field(metadata={"unit": ..., "kind": ..., ...}, **field_kwargs)``.
    """
    meta = dict(field_kwargs.pop("metadata", None) or {})
    for key, value in (("unit", unit), ("kind", kind), ("state_class", state),
                       ("description", description)):
        if value is not None:
            meta[key] = value
    return dataclasses.field(metadata=meta, **field_kwargs)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FieldSchema:
    """What one field of a type is.

    Attributes:
        name: the field name.
        wire: its wire kind, as in the canonical schema (``float``, ``optional<int>``).
        unit: the unit, or None.
        device_class: what it measures (Home Assistant's word), or None.
        state_class: ``measurement``, ``total_increasing``, ``total``, or None (not numeric).
        description: one line, or "".
        declared: True when the type declared the metadata, False when it is guessed
            from the field's name.
    """

    name: str
    wire: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    description: str = ""
    declared: bool = False

    @property
    def numeric(self) -> bool:
        """Whether the field's values are numbers (what a sensor entity can show)."""
        return self.wire in _NUMERIC


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TypeSchema:
    """A type as every node can know it, with or without its class.

    Attributes:
        name: the dotted type name.
        fingerprint: the 8-byte schema fingerprint.
        description: one line (the class docstring's first line), or "".
        key: the key fields (``("sensor",)``), empty for an unkeyed type.
        fields: the fields, in declaration order.
        source: ``class`` (from a class in this program) or ``network`` (announced by
            a publisher).
    """

    name: str
    fingerprint: bytes
    description: str = ""
    key: tuple[str, ...] = ()
    fields: tuple[FieldSchema, ...] = ()
    source: str = "class"

    def field(self, name: str) -> FieldSchema | None:
        """The field called ``name``, or None."""
        return next((f for f in self.fields if f.name == name), None)

    @property
    def canonical(self) -> str:
        """The canonical schema string whose hash is :attr:`fingerprint`."""
        return "{" + ",".join(f"{f.name}:{f.wire}" for f in sorted(self.fields,
                                                                  key=lambda f: f.name)) + "}"

    def to_plain(self) -> dict[str, Any]:
        """Plain data (JSON and CBOR): the form the control channel and the logger use."""
        return {
            "name": self.name, "fingerprint": self.fingerprint.hex(),
            "description": self.description, "key": list(self.key),
            "fields": [{k: v for k, v in (("name", f.name), ("wire", f.wire), ("unit", f.unit),
                                          ("device_class", f.device_class),
                                          ("state_class", f.state_class),
                                          ("description", f.description),
                                          ("declared", f.declared)) if v not in (None, "")}
                       for f in self.fields],
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any], *, source: str = "network") -> TypeSchema:
        """Read :meth:`to_plain`'s form back, checking every bound.

        Raises:
            ValueError: a field is missing, of the wrong kind, or beyond the bounds.
        """
        fields_in = data.get("fields")
        if not isinstance(fields_in, list) or len(fields_in) > MAX_SCHEMA_FIELDS:
            raise ValueError(f"fields must be a list of at most {MAX_SCHEMA_FIELDS}")
        key = data.get("key") or []
        if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
            raise ValueError("key must be a list of field names")
        fields = tuple(_field_from_plain(f) for f in fields_in)
        return cls(name=_text(data, "name", required=True) or "",
                   fingerprint=bytes.fromhex(_text(data, "fingerprint", required=True) or ""),
                   description=_text(data, "description") or "", key=tuple(key),
                   fields=fields, source=source)


def type_schema_of(name: str, cls: type, fingerprint: bytes, wire: Mapping[str, str],
                   key: tuple[str, ...]) -> TypeSchema:
    """The schema of a registered class (used by :func:`ganglion.types.type_schema`)."""
    declared = {f.name: f for f in dataclasses.fields(cls)}
    fields = tuple(_field_schema(fname, kind, declared[fname].metadata)
                   for fname, kind in wire.items())
    return TypeSchema(name=name, fingerprint=fingerprint, description=_first_line(cls),
                      key=key, fields=fields, source="class")


def check_metadata(owner: str, cls: type) -> None:
    """Refuse declared metadata Home Assistant and the schema would not accept.

    Raises:
        TypeRegistrationError: naming the field and the bad value.
    """
    for f in dataclasses.fields(cls):
        meta = f.metadata
        for key in _META_KEYS:
            value = meta.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_META_TEXT):
                raise TypeRegistrationError(f"{owner}.{f.name}: metadata {key!r} must be text "
                                            f"of at most {MAX_META_TEXT} characters")
        kind = meta.get("kind")
        if kind is not None and kind not in DEVICE_CLASSES:
            raise TypeRegistrationError(f"{owner}.{f.name}: kind {kind!r} is not a Home "
                                        f"Assistant device class (e.g. temperature, humidity)")
        state = meta.get("state_class")
        if state is not None and state not in STATE_CLASSES:
            raise TypeRegistrationError(f"{owner}.{f.name}: state_class {state!r} must be one "
                                        f"of {', '.join(sorted(STATE_CLASSES))}")


def unit_of(field_name: str) -> str | None:
    """The unit a field's name ends in (``celsius`` -> ``°C``, ``total_litres`` -> ``L``)."""
    lowered = field_name.lower()
    best: tuple[int, str] | None = None
    for word, unit in _UNITS.items():
        named = lowered == word or lowered.endswith("_" + word)
        if named and (best is None or len(word) > best[0]):
            best = (len(word), unit)
    return None if best is None else best[1]


def guessed_field(name: str, wire: str) -> FieldSchema:
    """A field described by conventions only (a type that declares nothing)."""
    return _field_schema(name, wire, {})


# -- helpers ------------------------------------------------------------------------


def _field_schema(name: str, wire: str, meta: Mapping[str, Any]) -> FieldSchema:
    numeric = wire in _NUMERIC
    declared = any(meta.get(k) is not None for k in _META_KEYS)
    unit = meta.get("unit") or (unit_of(name) if numeric else None)
    kind = meta.get("kind") or (_KIND_OF_UNIT.get(unit) if unit else None)
    state = meta.get("state_class")
    if state is None and numeric:
        lowered = name.lower()
        state = ("total_increasing" if lowered == "total" or lowered.startswith("total_")
                 else "measurement")
    return FieldSchema(name=name, wire=wire, unit=unit, device_class=kind, state_class=state,
                       description=meta.get("description") or "", declared=declared)


def _first_line(cls: type) -> str:
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclass's generated signature
        return ""
    return inspect.cleandoc(doc).splitlines()[0].strip()[:MAX_META_TEXT]


def _text(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise ValueError(f"{key} is missing")
        return None
    if not isinstance(value, str) or len(value) > MAX_META_TEXT:
        raise ValueError(f"{key} must be text of at most {MAX_META_TEXT} characters")
    return value


def _field_from_plain(data: Any) -> FieldSchema:
    if not isinstance(data, Mapping):
        raise ValueError("a field must be a map")
    state = _text(data, "state_class")
    if state is not None and state not in STATE_CLASSES:
        raise ValueError(f"state_class {state!r} is not one of {sorted(STATE_CLASSES)}")
    kind = _text(data, "device_class")
    if kind is not None and kind not in DEVICE_CLASSES:
        raise ValueError(f"device_class {kind!r} is not a known device class")
    declared = data.get("declared", False)
    return FieldSchema(name=_text(data, "name", required=True) or "",
                       wire=_text(data, "wire", required=True) or "", unit=_text(data, "unit"),
                       device_class=kind, state_class=state,
                       description=_text(data, "description") or "",
                       declared=declared is True)
