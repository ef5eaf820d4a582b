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

Payload routes. A payload is read one of four ways and written one of three; each is
kept because it is measurably faster than the one behind it where it runs
(``bench/payload_routes.py`` times them all in one run; the ratios below are its
same-run medians, on this project's test machine, against the generic route):

* the generic route (``cbor2`` and :class:`~ganglion.types._fields.StructKind`):
  every payload, every field kind, :class:`Record`, and the readable errors. It is
  the reference every other route must agree with (and falls back to).
* the generated decoder and encoder (:mod:`._decodegen`, :mod:`._codegen`): plain
  Python written per class at registration for the five scalar kinds. Decoding
  0.63-0.87x the generic time, encoding 0.40-0.57x. The encoder writes every
  message the compiled lanes leave to Python (the first of each datagram under
  load, a plugin's, a pure-Python install's); the decoder reads what the templates
  do not: the first payload of a length, and types whose payloads come in more
  lengths than templates are kept for (a stream of 25 lengths: 0.64x generic).
* layout templates (:mod:`._templates`), in front of the generated decoder: two
  ``struct`` calls for a layout seen before, 0.28-0.36x generic (0.32-0.57x the
  generated decoder) on a steady stream: what a plugin client
  (:mod:`ganglion.client`) and a pure-Python node decode with. On a stream of many
  lengths they cost a little (1.25x the generated decoder alone).
* the compiled plan (``ganglion._speedups``, :func:`._decodegen.native_plan`): the C
  lanes read and write the generated codecs' common case themselves, 0.14-0.17x
  generic to decode, 0.09x to encode, with no Python frame on the way: a node's
  receive and publish paths wherever the extension is built. It reads and writes a
  subset of what the generated codecs do, to the same values and bytes
  (``tests/runtime/test_speedups_plan.py``), and leaves the rest to them.
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
