"""What the logger knows of a type version: fingerprint, fields and units.

Theory of operation: a type's *version* is (name, fingerprint, field names).
When the logger has the class (a registered type whose reading decoded into
it), the fingerprint and the declared field kinds come from the registry; when
it has not (a :class:`~ganglion.types.Record`), the fields and their JSON kinds
are what the reading carried, and the fingerprint is whatever the envelope told
(``MessageInfo.fingerprint`` once the node exposes it; NULL until then).

Units, kinds and descriptions (``units`` and ``schema`` columns) come from the
type's self-description (:func:`ganglion.types.type_schema`): the class's
declared metadata, or the schema a publisher announced on the control channel
(the ``schemas`` lookup the recorder passes, :meth:`ganglion.Node.type_schema`),
else ganglion's convention of naming the unit in the field (``celsius``,
``percent``, ``hpa``: :func:`unit_of`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, TypeSchema, lookup, type_schema, unit_of

#: ``schemas(type_name, fingerprint)``: a type's schema learned from the network, or None.
SchemaLookup = Callable[[str, bytes | None], TypeSchema | None]

__all__ = ["SchemaLookup", "TypeVersion", "describe", "fingerprint_of", "unit_of"]

class TypeVersion(NamedTuple):
    """One version of a type as stored in the ``types`` table.

    Attributes:
        name: the dotted type name.
        fingerprint: 16 hex digits, or None when unknown.
        fields: JSON text: a list of ``{"name": ..., "kind": ...}``.
        units: JSON text: field -> unit, or None when no unit is known.
        source: ``class`` or ``observed``.
        schema: JSON text: :meth:`TypeSchema.to_plain`, or None when neither the class
            nor a publisher's announcement is known.
    """

    name: str
    fingerprint: str | None
    fields: str
    units: str | None
    source: str
    schema: str | None = None


def fingerprint_of(info: MessageInfo) -> bytes | None:
    """The sender's schema fingerprint (None when unknown, or all zeros: a Record's)."""
    fp = info.fingerprint
    return fp if fp is not None and any(fp) else None


def describe(type_name: str, msg: object, fields: dict[str, Any],
             fingerprint: bytes | None, schemas: SchemaLookup | None = None) -> TypeVersion:
    """Describe the version of ``type_name`` that ``msg`` is an instance of.

    Args:
        type_name: the reading's type name.
        msg: the delivered message (a registered class instance or a Record).
        fields: its fields as plain data.
        fingerprint: the envelope's fingerprint, if known.
        schemas: where to find a schema a publisher announced (for a Record).

    Returns:
        The :class:`TypeVersion` to store.
    """
    known = None if isinstance(msg, Record) else lookup(type_name)
    schema: TypeSchema | None
    if known is not None:
        specs = [{"name": f.name, "kind": f.schema} for f in known.fields]
        fp: str | None = known.fingerprint.hex()
        source = "class"
        schema = type_schema(known)
    else:
        specs = [{"name": k, "kind": _json_kind(v)} for k, v in fields.items()]
        fp = fingerprint.hex() if fingerprint else None
        source = "observed"
        schema = None
        if schemas is not None and fingerprint:
            try:
                schema = schemas(type_name, fingerprint)
            except Exception:  # a lookup must never cost a reading
                schema = None
    declared = {f.name: f.unit for f in schema.fields} if schema is not None else {}
    units = {s["name"]: u for s in specs
             if (u := declared.get(s["name"]) or unit_of(s["name"])) is not None}
    return TypeVersion(type_name, fp, json.dumps(specs, separators=(",", ":")),
                       json.dumps(units, ensure_ascii=False) if units else None, source,
                       None if schema is None else json.dumps(schema.to_plain(),
                                                              ensure_ascii=False))


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
