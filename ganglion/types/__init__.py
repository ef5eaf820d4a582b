"""Typed messages: the ``@message`` registry, schema fingerprints, Record, payload codec.

A message type is a dataclass registered under a dotted name::

    @message("brewery.Temperature")
    class Temperature:
        celsius: float
        sensor: str = "probe"

Its payload is a CBOR map keyed by field name (:func:`encode_payload`);
:func:`decode_payload` gives the class back where it is registered and a
:class:`Record` where it is not. docs/protocol.md has the byte-level details.
Fields may say what they measure (:func:`quantity`); :func:`type_schema` tells.
"""

from __future__ import annotations

from ganglion.types._fields import SUPPORTED_KINDS, FieldSpec
from ganglion.types._meta import (
    DEVICE_CLASSES,
    STATE_CLASSES,
    FieldSchema,
    TypeSchema,
    quantity,
    unit_of,
)
from ganglion.types._names import MAX_TYPE_NAME, is_valid_type_name, validate_type_name
from ganglion.types._payload import (
    MAX_DEPTH,
    as_dict,
    decode_payload,
    encode_message,
    encode_payload,
    payload_decoder,
    type_name_of,
)
from ganglion.types._record import Record
from ganglion.types._registry import (
    FINGERPRINT_SIZE,
    MessageType,
    TypeRegistry,
    default_registry,
    lookup,
    message,
    registered,
    schema_fingerprint,
    type_of,
    type_schema,
)

__all__ = [
    "DEVICE_CLASSES",
    "FINGERPRINT_SIZE",
    "MAX_DEPTH",
    "MAX_TYPE_NAME",
    "STATE_CLASSES",
    "SUPPORTED_KINDS",
    "FieldSchema",
    "FieldSpec",
    "MessageType",
    "Record",
    "TypeRegistry",
    "TypeSchema",
    "as_dict",
    "decode_payload",
    "default_registry",
    "encode_message",
    "encode_payload",
    "is_valid_type_name",
    "lookup",
    "message",
    "payload_decoder",
    "quantity",
    "registered",
    "schema_fingerprint",
    "type_name_of",
    "type_of",
    "type_schema",
    "unit_of",
    "validate_type_name",
]
