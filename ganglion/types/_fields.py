"""Field kinds: from a Python annotation to a converter and a canonical schema.

Theory of operation: when a class is registered, every field annotation is
compiled once into a :class:`Kind`, a small object with three conversions:

* ``encode(value)``: Python value -> CBOR-ready value (raises ``ValueError``
  with a readable reason if the value does not match the annotation);
* ``plain(value)``: Python value -> plain data (dicts, lists, scalars and aware
  datetimes), the form :func:`ganglion.types.as_dict` and the logger use;
* ``decode(item)``: decoded CBOR item -> Python value (raises ``ValueError``).

and a ``schema`` string, the canonical spelling of the kind that the schema
fingerprint hashes (grammar in docs/protocol.md). Nothing here looks at
classes at encode or decode time: the work of walking annotations is done once.

Supported kinds: int, float, bool, str, bytes, datetime (timezone-aware),
enum.Enum with int or str values (sent by value), ``X | None`` / ``Optional[X]``,
``list[X]`` and nested dataclasses (which need not be registered).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from cbor2 import CBORTag

from ganglion.errors import TypeRegistrationError

SUPPORTED_KINDS = (
    "int, float, bool, str, bytes, datetime (timezone-aware), enum.Enum with int or str "
    "values, X | None (Optional[X]), list[X], and nested dataclasses"
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Within +-2**32 s of the epoch (years 1833..2106) a float64 count of seconds
#: still resolves microseconds, so tag 1 (epoch) round-trips exactly there.
_EPOCH_EXACT_US = 2**32 * 10**6


class Kind:
    """How one field kind is encoded, flattened, decoded and named in the schema."""

    __slots__ = ("decode", "encode", "exact", "plain", "schema")

    def __init__(
        self,
        schema: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
        plain: Callable[[Any], Any] | None = None,
        exact: type | None = None,
    ) -> None:
        self.schema = schema
        self.encode = encode
        self.decode = decode
        self.plain = plain if plain is not None else encode
        # A value of exactly this type passes encode and decode unchanged, so the
        # struct codec skips the call for it (the common case on the hot path).
        self.exact = exact

    def __repr__(self) -> str:
        return f"Kind({self.schema})"


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a message type: its name, kind, and whether it has a default."""

    name: str
    kind: Kind
    required: bool

    @property
    def schema(self) -> str:
        """The canonical schema spelling of this field's kind."""
        return self.kind.schema


class StructKind(Kind):
    """A dataclass as a CBOR map keyed by field name (messages and nested types).

    The codec walks a precomputed tuple of ``(name, encode, decode, exact,
    required)`` per field rather than the :class:`FieldSpec` objects, and skips
    the converter call for a value of the kind's ``exact`` type: this is the
    per-message cost of every publish and every delivery.
    """

    __slots__ = ("_plan", "cls", "fields")

    def __init__(self, cls: type, fields: tuple[FieldSpec, ...]) -> None:
        self.cls = cls
        self.fields = fields
        self._plan = tuple((f.name, f.kind.encode, f.kind.decode, f.kind.exact, f.required)
                           for f in fields)
        schema = "{" + ",".join(f"{f.name}:{f.schema}" for f in sorted(fields, key=_by_name)) + "}"
        super().__init__(schema, self._encode, self._decode, self._plain)

    def _encode(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, self.cls):
            raise ValueError(f"expected {self.cls.__qualname__}, got {type(obj).__name__}")
        out: dict[str, Any] = {}
        for name, encode, _decode, exact, _required in self._plan:
            value = getattr(obj, name)
            if type(value) is not exact:
                try:
                    value = encode(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
            out[name] = value
        return out

    def _plain(self, obj: Any) -> dict[str, Any]:
        return {f.name: f.kind.plain(getattr(obj, f.name)) for f in self.fields}

    def _decode(self, item: Any) -> Any:
        if type(item) is not dict:
            raise ValueError(f"expected a map for {self.cls.__qualname__}, got {_cbor_name(item)}")
        kwargs: dict[str, Any] = {}
        get = item.get
        for name, _encode, decode, exact, required in self._plan:
            value = get(name, _MISSING)
            if value is _MISSING:
                if required:
                    raise ValueError(f"missing field {name!r} (it has no default)")
                continue
            if type(value) is not exact:
                try:
                    value = decode(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
            kwargs[name] = value
        try:
            return self.cls(**kwargs)
        except Exception as exc:  # user __init__/__post_init__ code may raise anything
            raise ValueError(f"{self.cls.__qualname__}({kwargs!r}) raised {exc!r}") from None


#: Marks a field absent from a decoded map (None is a valid field value).
_MISSING: Any = object()


def struct_kind(cls: type, owner: str, _active: frozenset[type] = frozenset()) -> StructKind:
    """Compile a dataclass into a :class:`StructKind`.

    Args:
        cls: a dataclass.
        owner: what to call the type in error messages (its registered name).

    Returns:
        The compiled kind.

    Raises:
        TypeRegistrationError: a field's annotation is not supported or cannot be
            resolved, or the dataclass refers to itself.
    """
    if cls in _active:
        raise TypeRegistrationError(
            f"{owner}: {cls.__qualname__} contains itself; recursive types are not supported"
        )
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise TypeRegistrationError(
            f"{owner}: cannot resolve the annotations of {cls.__qualname__} ({exc}); "
            f"every type a field names must be importable from the class's module"
        ) from exc
    specs: list[FieldSpec] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue  # derived in __post_init__; never on the wire
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kind = _kind(hints[f.name], f"{owner}.{f.name}", _active | {cls})
        specs.append(FieldSpec(f.name, kind, required))
    return StructKind(cls, tuple(specs))


def _kind(hint: Any, where: str, active: frozenset[type]) -> Kind:
    """Compile one annotation, or raise naming the field and the supported kinds."""
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return simple
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return _optional(_kind(args[0], where, active))
    elif origin is list:
        (arg,) = typing.get_args(hint) or (None,)
        if arg is not None:
            return _list(_kind(arg, where, active))
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint, where)
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return struct_kind(hint, where, active)
    raise TypeRegistrationError(
        f"field {where} has unsupported type {_hint_name(hint)}; supported: {SUPPORTED_KINDS}"
    )


def _hint_name(hint: Any) -> str:
    return hint.__qualname__ if isinstance(hint, type) else repr(hint)


def _by_name(f: FieldSpec) -> str:
    return f.name


def _cbor_name(item: Any) -> str:
    return "null" if item is None else type(item).__name__


# -- scalars ------------------------------------------------------------------


def _enc_int(v: Any) -> int:
    if type(v) is int:
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    raise ValueError(f"expected int, got {type(v).__name__}")


def _dec_int(v: Any) -> int:
    if type(v) is int:
        return v
    raise ValueError(f"expected int, got {_cbor_name(v)}")


def _enc_float(v: Any) -> float:
    if type(v) is float:
        return v
    if isinstance(v, float | int) and not isinstance(v, bool):
        return float(v)
    raise ValueError(f"expected float, got {type(v).__name__}")


def _dec_float(v: Any) -> float:
    # Encoders in other languages may send a whole number as a CBOR integer.
    if type(v) is float:
        return v
    if type(v) is int:
        try:
            return float(v)
        except OverflowError:
            raise ValueError("integer too large for a float") from None
    raise ValueError(f"expected float, got {_cbor_name(v)}")


def _bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    raise ValueError(f"expected bool, got {_cbor_name(v)}")


def _enc_str(v: Any) -> str:
    if type(v) is str:
        return v
    if isinstance(v, str):
        return str(v)
    raise ValueError(f"expected str, got {type(v).__name__}")


def _dec_str(v: Any) -> str:
    if type(v) is str:
        return v
    raise ValueError(f"expected str, got {_cbor_name(v)}")


def _enc_bytes(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    raise ValueError(f"expected bytes, got {type(v).__name__}")


def _dec_bytes(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    raise ValueError(f"expected bytes, got {_cbor_name(v)}")


def _check_aware(v: Any) -> dt.datetime:
    if not isinstance(v, dt.datetime):
        raise ValueError(f"expected datetime, got {type(v).__name__}")
    if v.utcoffset() is None:
        raise ValueError(
            "naive datetime; use a timezone-aware one, e.g. datetime.now(timezone.utc)"
        )
    return v


def encode_datetime(v: Any) -> Any:
    """An aware datetime as CBOR tag 1 (epoch seconds) where exact, else tag 0 (RFC 3339)."""
    v = _check_aware(v)
    delta = v - _EPOCH
    us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if -_EPOCH_EXACT_US < us < _EPOCH_EXACT_US:
        seconds, frac = divmod(us, 1_000_000)
        return CBORTag(1, seconds if frac == 0 else us / 1_000_000)
    return v  # cbor2 writes a datetime as tag 0, an RFC 3339 string: exact for any year


def _dec_datetime(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime) and v.utcoffset() is not None:
        return v
    raise ValueError(f"expected an aware datetime (CBOR tag 0 or 1), got {_cbor_name(v)}")


_SIMPLE: dict[Any, Kind] = {
    int: Kind("int", _enc_int, _dec_int, exact=int),
    float: Kind("float", _enc_float, _dec_float, exact=float),
    bool: Kind("bool", _bool, _bool, exact=bool),
    str: Kind("str", _enc_str, _dec_str, exact=str),
    bytes: Kind("bytes", _enc_bytes, _dec_bytes, exact=bytes),
    dt.datetime: Kind("datetime", encode_datetime, _dec_datetime, _check_aware),
}


# -- composites -----------------------------------------------------------------


def _optional(inner: Kind) -> Kind:
    enc, dec, plain = inner.encode, inner.decode, inner.plain

    def encode(v: Any) -> Any:
        return None if v is None else enc(v)

    def to_plain(v: Any) -> Any:
        return None if v is None else plain(v)

    def decode(v: Any) -> Any:
        return None if v is None else dec(v)

    return Kind(f"optional<{inner.schema}>", encode, decode, to_plain)


def _list(inner: Kind) -> Kind:
    enc, dec, plain = inner.encode, inner.decode, inner.plain

    def encode(v: Any) -> list[Any]:
        if not isinstance(v, list | tuple):
            raise ValueError(f"expected list, got {type(v).__name__}")
        return [enc(e) for e in v]

    def to_plain(v: Any) -> list[Any]:
        return [plain(e) for e in v]

    def decode(v: Any) -> list[Any]:
        if type(v) is not list:
            raise ValueError(f"expected list, got {_cbor_name(v)}")
        return [dec(e) for e in v]

    return Kind(f"list<{inner.schema}>", encode, decode, to_plain)


def _enum(cls: type[enum.Enum], where: str) -> Kind:
    if issubclass(cls, enum.Flag):
        raise TypeRegistrationError(
            f"field {where}: Flag enums are not supported (combined values are not members)"
        )
    members = list(cls)
    value_types = {type(m.value) for m in members}
    if not members or not (value_types == {int} or value_types == {str}):
        raise TypeRegistrationError(
            f"field {where}: enum {cls.__qualname__} must have members whose values are "
            f"all int or all str (it is sent by value)"
        )
    (vtype,) = value_types
    # Keyed by (type, value) so that CBOR true never decodes as the member valued 1.
    by_value = {(type(m.value), m.value): m for m in members}
    values = sorted(m.value for m in members)
    spelled = ",".join(str(v) if vtype is int else _quote(v) for v in values)

    def encode(v: Any) -> Any:
        if isinstance(v, cls):
            return v.value
        raise ValueError(f"expected {cls.__qualname__}, got {type(v).__name__}")

    def decode(v: Any) -> Any:
        try:
            return by_value[(type(v), v)]
        except (KeyError, TypeError):
            raise ValueError(f"{v!r} is not a value of {cls.__qualname__}") from None

    return Kind(f"enum<{vtype.__name__}>[{spelled}]", encode, decode)


def _quote(s: str) -> str:
    """A str as a JSON-style quoted string, so the schema spelling is unambiguous."""
    return json.dumps(s, ensure_ascii=True)
