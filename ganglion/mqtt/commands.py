"""Commands in: JSON messages on an MQTT topic become ganglion publishes of a type.

``--subscribe TOPIC=TYPE`` routes a topic (MQTT wildcards allowed) to a type.
Each message must be a JSON object whose keys are the type's fields; it is
validated exactly as a datagram of that type would be (the object is encoded as
CBOR and decoded by the type's own decoder),
so a value of the wrong kind, an unknown field or a missing required field is
refused with a one-line reason. A type this program has no class of is checked
against the schema its publishers announced (field names and kinds) and sent as
a :class:`~ganglion.types.Record`; a type nobody described is refused.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import cbor2

from ganglion.errors import ConfigError, TypeNameError
from ganglion.types import Record, TypeSchema, lookup, validate_type_name

__all__ = ["MAX_COMMAND_BYTES", "CommandRoute", "parse_route", "to_message"]

#: Largest command payload read (a set-point is a few dozen bytes).
MAX_COMMAND_BYTES = 16_384
_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
}


@dataclasses.dataclass(frozen=True, slots=True)
class CommandRoute:
    """``TOPIC=TYPE``: messages on ``topic`` become publishes of ``type_name``."""

    topic: str
    type_name: str


def parse_route(text: str) -> CommandRoute:
    """Read ``TOPIC=TYPE``.

    Raises:
        ConfigError: no ``=``, an empty topic, or an invalid type name.
    """
    topic, sep, type_name = text.rpartition("=")
    if not sep or not topic or not type_name:
        raise ConfigError(f"--subscribe {text!r}: expected TOPIC=TYPE, e.g. "
                          f"ganglion/set/boiler=brewery.SetPoint")
    try:
        validate_type_name(type_name)
    except TypeNameError as exc:
        raise ConfigError(f"--subscribe {text!r}: {exc}") from None
    return CommandRoute(topic, type_name)


def to_message(type_name: str, payload: bytes, schema: TypeSchema | None = None) -> object:
    """Turn one MQTT payload into a message of ``type_name``.

    Args:
        type_name: the route's type.
        payload: the MQTT payload (a JSON object).
        schema: the type's announced schema, for a type without a class here.

    Returns:
        An instance of the registered class, or a Record checked against ``schema``.

    Raises:
        ValueError: one line saying why the payload is not a message of the type.
    """
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes (at most {MAX_COMMAND_BYTES})")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    mtype = lookup(type_name)
    if mtype is not None:
        known = {f.name for f in mtype.fields}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"{type_name} has no field {', '.join(unknown)} "
                             f"(fields: {', '.join(sorted(known))})")
        try:
            # the type's own decoder, on the CBOR a datagram would carry (JSON ints for
            # float fields, missing required fields and wrong kinds handled as on the wire)
            return mtype.struct.decode(cbor2.loads(cbor2.dumps(doc)))
        except (ValueError, cbor2.CBORError) as exc:
            raise ValueError(f"not a {type_name}: {exc}") from None
    if schema is None:
        raise ValueError(f"{type_name} has no class here and no publisher announced its schema")
    return Record(type_name, _checked(schema, doc))


def _checked(schema: TypeSchema, doc: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name: f for f in schema.fields}
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise ValueError(f"{schema.name} has no field {', '.join(unknown)}")
    for name, f in fields.items():
        wire = f.wire.removeprefix("optional<").removesuffix(">")
        value = doc.get(name)
        if value is None:  # absent or null: the receivers' classes fill defaults or refuse
            continue
        kinds = _JSON_KINDS.get(wire)
        if kinds is not None and (not isinstance(value, kinds)
                                  or (wire != "bool" and isinstance(value, bool))):
            raise ValueError(f"{schema.name}.{name}: expected {wire}, got "
                             f"{type(value).__name__}")
    return doc
