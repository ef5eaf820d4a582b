"""Payload codec: message object <-> CBOR map keyed by field name.

Theory of operation: :func:`encode_payload` turns a registered message (or a
:class:`Record`) into one CBOR map; :func:`decode_payload` turns bytes back into
the registered class where there is one, else into a :class:`Record`.

Decoding rules (docs/protocol.md, "Payload"):

* unknown fields are ignored, missing fields that have a default are filled;
* the payload's fingerprint equals the local one: the map must then convert to
  the class; if it does not, the sender broke its own schema and the payload is
  refused with :class:`DecodeError`;
* the fingerprints differ (or the caller does not know the sender's): the class
  is built if the fields allow it, otherwise the message comes back as a
  :class:`Record`. A schema mismatch is never fatal; counting and logging it
  once per (sender, type) is the receiver's job (:mod:`ganglion.sequence`);
* anything that is not one CBOR map with str keys of plain items (no tags but
  datetime and bignum, no shared or string references, no nesting deeper than
  :data:`MAX_DEPTH`) is a :class:`DecodeError`.

``decode_payload`` raises nothing but :class:`DecodeError`, whatever the bytes.
A registered class's generated decoder (:mod:`ganglion.types._decodegen`, behind
its layout templates) is tried first; it reads only the exact shape our encoder
writes and hands everything else to the generic path, so results and errors are
the same. Which routes exist and why each stays: :mod:`ganglion.types`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import cbor2

from ganglion.errors import DecodeError, EncodeError
from ganglion.types._decodegen import FALLBACK
from ganglion.types._fields import encode_datetime
from ganglion.types._record import Record
from ganglion.types._registry import MessageType, TypeRegistry, default_registry

#: Deepest nesting of containers a payload may have.
MAX_DEPTH = 32


def _refuse_tag(decoder: Any) -> Any:
    raise cbor2.CBORDecodeError("CBOR tag not allowed in a ganglion payload")


#: Semantic tags cbor2 would otherwise decode, refused: shared references
#: (28/29) and string references (25/256) let a 200-byte payload describe a
#: graph whose traversal takes hours; the rest (decimals, regexes, MIME, sets,
#: IP addresses, self-described CBOR...) are not ganglion field kinds.
#: Allowed: 0/1 (datetime) and 2/3 (bignum).
_REFUSED_TAGS: dict[int, Any] = dict.fromkeys(
    (4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 43000, 55799),
    _refuse_tag,
)

_SCALARS = (str, int, float, bool, bytes, type(None))


def encode_payload(obj: object, *, registry: TypeRegistry | None = None) -> bytes:
    """Encode a message as a CBOR map keyed by field name.

    Args:
        obj: an instance of a registered message class, or a :class:`Record`.
        registry: where to look the class up; the default registry if None.

    Returns:
        The CBOR bytes.

    Raises:
        TypeRegistrationError: ``obj``'s class is not registered.
        EncodeError: a field holds a value its annotation does not allow; the
            message names the field.
    """
    if isinstance(obj, Record):
        try:
            item: Any = {k: _encode_plain(v, 0) for k, v in obj.fields.items()}
        except ValueError as exc:
            raise EncodeError(f"{obj.type_name}: {exc}") from None
    else:
        return encode_message(
            obj, (registry if registry is not None else default_registry).type_of(obj))
    try:
        return cbor2.dumps(item)
    except Exception as exc:  # e.g. an int too large even for a CBOR bignum
        raise EncodeError(f"cannot encode {type(obj).__name__} as CBOR: {exc}") from exc


def encode_message(obj: object, mtype: MessageType) -> bytes:
    """Encode an instance of a registered class whose type the caller already looked up.

    :func:`encode_payload` for a publisher that needs the :class:`MessageType`
    anyway (name, fingerprint), so the registry is not asked twice per message.

    Args:
        obj: an instance of ``mtype.cls``.
        mtype: its registered type.

    Returns:
        The CBOR bytes, the same as ``encode_payload(obj)``.

    Raises:
        EncodeError: a field holds a value its annotation does not allow.
    """
    try:
        return mtype.encode(obj)
    except Exception:  # the generic path below names the bad field
        pass
    try:
        item = mtype.struct.encode(obj)
    except ValueError as exc:
        raise EncodeError(f"{mtype.name}.{exc}") from None
    try:
        return cbor2.dumps(item)
    except Exception as exc:  # e.g. an int too large even for a CBOR bignum
        raise EncodeError(f"cannot encode {type(obj).__name__} as CBOR: {exc}") from exc


def decode_payload(
    type_name: str,
    data: bytes,
    fingerprint: bytes | None = None,
    *,
    registry: TypeRegistry | None = None,
) -> object:
    """Decode a payload into its registered class, or a :class:`Record`.

    Args:
        type_name: the type name from the envelope.
        data: the CBOR payload.
        fingerprint: the sender's schema fingerprint from the envelope, or None
            when unknown (then decoding is lenient, as for a mismatch).
        registry: where to look the class up; the default registry if None.

    Returns:
        An instance of the registered class, or a :class:`Record` when the type
        is not registered here or (with a different fingerprint) the fields do
        not fit the local class.

    Raises:
        DecodeError: the bytes are not a CBOR map of plain items, or they carry
            the local fingerprint but do not fit the local class.
    """
    return payload_decoder(type_name, fingerprint, registry=registry)(data)


def payload_decoder(
    type_name: str,
    fingerprint: bytes | None = None,
    *,
    registry: TypeRegistry | None = None,
) -> Callable[[bytes], object]:
    """Return :func:`decode_payload` for one (type, fingerprint), with the lookup done once.

    A receiver decodes every message of a datagram with the same type and
    fingerprint; this hoists the registry lookup out of the per-message loop.
    The returned function looks the type up when it is made, so make a new
    one per datagram (or whenever a type may have been registered since).

    Args:
        type_name: the type name from the envelope.
        fingerprint: the sender's schema fingerprint, or None when unknown.
        registry: where to look the class up; the default registry if None.

    Returns:
        ``decode(data) -> object``, which behaves as ``decode_payload(type_name,
        data, fingerprint)`` and raises only :class:`DecodeError`.
    """
    mtype = (registry if registry is not None else default_registry).lookup(type_name)
    to_class = None if mtype is None else mtype.struct.decode
    strict = mtype is not None and fingerprint == mtype.fingerprint
    loads = cbor2.loads
    fast = None if mtype is None else mtype.decode_fast

    def decode(data: bytes) -> object:
        if fast is not None:
            # The generated decoder reads the shape our encoder writes, and hands
            # anything else to the generic path below (same results, same errors).
            obj = fast(data)
            if obj is not FALLBACK:
                return obj
        try:
            item = loads(data, max_depth=MAX_DEPTH, strict_hashable_types=True,
                         allow_duplicate_keys=False, semantic_decoders=_REFUSED_TAGS)
        except Exception as exc:  # cbor2 raises CBORDecodeError but also ValueError & co.
            raise DecodeError(f"{type_name}: payload is not valid CBOR ({exc})") from None
        if type(item) is not dict:
            raise DecodeError(
                f"{type_name}: payload must be a CBOR map, got {type(item).__name__}")
        if to_class is not None:
            try:
                return to_class(item)
            except (ValueError, RecursionError) as exc:
                if strict:
                    raise DecodeError(
                        f"{type_name}: payload does not match its own schema: {exc}"
                    ) from None
        return Record(type_name, _plain_map(item, type_name))

    return decode


def payload_problem(data: bytes) -> str | None:
    """Say why ``data`` is not a payload :func:`decode_payload` accepts, or None if it is.

    The structural check alone (one CBOR map with text keys of plain items, see the
    module docstring), whatever the type: a plugin bus that passes payloads on
    without decoding them uses it to drop exactly what a decoder would refuse.
    """
    try:
        item = cbor2.loads(data, max_depth=MAX_DEPTH, strict_hashable_types=True,
                           allow_duplicate_keys=False, semantic_decoders=_REFUSED_TAGS)
    except Exception as exc:  # cbor2 raises CBORDecodeError but also ValueError & co.
        return f"payload is not valid CBOR ({exc})"
    if type(item) is not dict:
        return f"payload must be a CBOR map, got {type(item).__name__}"
    try:
        _plain_map(item, "payload")
    except DecodeError as exc:
        return str(exc)
    return None


def as_dict(obj: object, *, registry: TypeRegistry | None = None) -> dict[str, Any]:
    """Return a message's fields as plain data, keyed by field name.

    Nested dataclasses become dicts, enums their values, lists stay lists;
    datetimes stay (aware) datetimes and bytes stay bytes. For a :class:`Record`
    this is a copy of its fields, so a message and the Record decoded from it
    without its class give equal dicts.

    Args:
        obj: a registered message or a :class:`Record`.
        registry: where to look the class up; the default registry if None.

    Returns:
        A new dict.

    Raises:
        TypeRegistrationError: ``obj`` is neither a Record nor registered.
    """
    if isinstance(obj, Record):
        return dict(obj.fields)
    plain: dict[str, Any] = (registry if registry is not None else default_registry).type_of(obj).struct.plain(obj)
    return plain


def type_name_of(obj: object, *, registry: TypeRegistry | None = None) -> str:
    """Return the type name of a registered message or a :class:`Record`.

    Raises:
        TypeRegistrationError: ``obj`` is neither a Record nor registered.
    """
    if isinstance(obj, Record):
        return obj.type_name
    return (registry if registry is not None else default_registry).type_of(obj).name


def _plain_map(item: dict[Any, Any], type_name: str) -> dict[str, Any]:
    try:
        return {_key(k): _plain(v, 1) for k, v in item.items()}
    except ValueError as exc:
        raise DecodeError(f"{type_name}: {exc}") from None


def _key(k: Any) -> str:
    if type(k) is not str:
        raise ValueError(f"map keys must be text strings, got {type(k).__name__}")
    return k


def _plain(v: Any, depth: int) -> Any:
    """Check that a decoded CBOR item is plain data (see module docstring)."""
    if isinstance(v, _SCALARS):
        return v
    if depth >= MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH}")
    if type(v) is list:
        return [_plain(e, depth + 1) for e in v]
    if type(v) is dict:
        return {_key(k): _plain(e, depth + 1) for k, e in v.items()}
    if isinstance(v, dt.datetime) and v.utcoffset() is not None:
        return v
    raise ValueError(f"unsupported CBOR item {type(v).__name__}")


def _encode_plain(v: Any, depth: int) -> Any:
    """Check a Record value is plain data and make it CBOR-ready."""
    if isinstance(v, _SCALARS):
        return v
    if depth >= MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH}")
    if isinstance(v, list | tuple):
        return [_encode_plain(e, depth + 1) for e in v]
    if isinstance(v, dict):
        return {_key(k): _encode_plain(e, depth + 1) for k, e in v.items()}
    if isinstance(v, dt.datetime):
        return encode_datetime(v)
    if dataclasses.is_dataclass(v):
        raise ValueError("a Record holds plain data; convert nested dataclasses with as_dict")
    raise ValueError(f"unsupported value {type(v).__name__} in a Record")
