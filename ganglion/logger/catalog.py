"""What the logger knows of a type version: fingerprint, fields and units.

Theory of operation: a type's *version* is (name, fingerprint, field names).
When the logger has the class (a registered type whose reading decoded into
it), the fingerprint and the declared field kinds come from the registry; when
it has not (a :class:`~ganglion.types.Record`), the fields and their JSON kinds
are what the reading carried, and the fingerprint is whatever the envelope told
(``MessageInfo.fingerprint`` once the node exposes it; NULL until then). Units
are known by convention only: ganglion's reading types name the unit in the
field (``celsius``, ``percent``, ``hpa``), so a field whose name ends in a
known unit word gets that unit.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, lookup

__all__ = ["TypeVersion", "describe", "fingerprint_of", "unit_of"]

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


class TypeVersion(NamedTuple):
    """One version of a type as stored in the ``types`` table.

    Attributes:
        name: the dotted type name.
        fingerprint: 16 hex digits, or None when unknown.
        fields: JSON text: a list of ``{"name": ..., "kind": ...}``.
        units: JSON text: field -> unit, or None when no unit is known.
        source: ``class`` or ``observed``.
    """

    name: str
    fingerprint: str | None
    fields: str
    units: str | None
    source: str


def fingerprint_of(info: MessageInfo) -> bytes | None:
    """The sender's schema fingerprint (None when unknown, or all zeros: a Record's)."""
    fp = info.fingerprint
    return fp if fp is not None and any(fp) else None


def describe(type_name: str, msg: object, fields: dict[str, Any],
             fingerprint: bytes | None) -> TypeVersion:
    """Describe the version of ``type_name`` that ``msg`` is an instance of.

    Args:
        type_name: the reading's type name.
        msg: the delivered message (a registered class instance or a Record).
        fields: its fields as plain data.
        fingerprint: the envelope's fingerprint, if known.

    Returns:
        The :class:`TypeVersion` to store.
    """
    known = None if isinstance(msg, Record) else lookup(type_name)
    if known is not None:
        specs = [{"name": f.name, "kind": f.schema} for f in known.fields]
        fp: str | None = known.fingerprint.hex()
        source = "class"
    else:
        specs = [{"name": k, "kind": _json_kind(v)} for k, v in fields.items()]
        fp = fingerprint.hex() if fingerprint else None
        source = "observed"
    units = {s["name"]: u for s in specs if (u := unit_of(s["name"])) is not None}
    return TypeVersion(type_name, fp, json.dumps(specs, separators=(",", ":")),
                       json.dumps(units, ensure_ascii=False) if units else None, source)


def unit_of(field_name: str) -> str | None:
    """The unit a field's name ends in (``celsius`` -> ``°C``), or None."""
    lowered = field_name.lower()
    best: tuple[int, str] | None = None
    for word, unit in _UNITS.items():
        named = lowered == word or lowered.endswith("_" + word)
        if named and (best is None or len(word) > best[0]):
            best = (len(word), unit)
    return None if best is None else best[1]


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__
