"""Per-type generated payload decoders (the receive hot path).

Theory of operation: the generic decoder (``cbor2.loads`` into a dict, then
:meth:`StructKind.decode` checking and converting every field and calling the
class) costs several microseconds per message. Nearly every payload a receiver
sees was written by a ganglion encoder for the same class, so its bytes have
one predictable shape: a map head, then each field's key in declaration order
followed by a value in its shortest encoding. At registration,
:func:`compile_decoder` writes (and ``exec``-compiles) one plain function that
parses exactly that shape, inline, without building a dict:

* the map head and first key, and every later key, are compared as constant
  bytes (``startswith`` at the position, no slicing);
* int fields read major types 0 and 1 with any head length (a bignum tag is
  not read here); float fields read float64 (``0xfb``); bool fields ``0xf4`` and
  ``0xf5``; str and bytes fields definite-length heads up to two bytes of length
  (a datagram is far smaller), str decoded as strict UTF-8 as cbor2 does;
* the payload must end exactly after the last value, and the class is then
  called with the field values: by position where the class's ``__init__``
  takes that field as its next positional parameter (about half the cost of
  keywords, and binding exactly the same), by keyword otherwise, so the call
  binds exactly what the generic path's keyword call binds.

Anything else (another key order, an unknown or missing key, a float32, an int
where a float is declared, a trailing byte, a constructor that raises, any
error at all) returns :data:`FALLBACK`, and the caller runs the generic decoder
on the same bytes. So the generated decoder never changes a result or an
error: it either returns what the generic path would return for bytes it fully
understands, or hands over. Classes with a field of another kind (optional,
list, enum, datetime, nested) get no generated decoder.
"""

from __future__ import annotations

import dataclasses
import inspect
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

import cbor2

from ganglion.types._codegen import cbor_head

#: Returned by a generated decoder for bytes it does not handle: use the generic path.
FALLBACK: Any = object()

Decoder = Callable[[bytes], Any]

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_F64 = struct.Struct(">d").unpack_from


class _Unhandled(Exception):
    """Raised inside a generated decoder for a shape it does not read."""


def _uint_at(d: bytes, p: int, info: int) -> tuple[int, int]:
    """Read the argument of a head whose additional info is ``info`` (24..27)."""
    if info == 24:
        return d[p + 1], p + 2
    if info == 25:
        return _U16(d, p + 1)[0], p + 3
    if info == 26:
        return _U32(d, p + 1)[0], p + 5
    if info == 27:
        return _U64(d, p + 1)[0], p + 9
    raise _Unhandled


def _int_at(d: bytes, p: int) -> tuple[int, int]:
    """Read a CBOR int (major type 0 or 1) at ``p``; returns (value, next position)."""
    b = d[p]
    major, info = b >> 5, b & 0x1F
    if major > 1:
        raise _Unhandled
    n, p = (info, p + 1) if info < 24 else _uint_at(d, p, info)
    return (n if major == 0 else -1 - n), p


def _len_at(d: bytes, p: int, major: int) -> tuple[int, int]:
    """Read the head of a definite-length str or bytes of ``major`` type at ``p``."""
    b = d[p]
    if b >> 5 != major:
        raise _Unhandled
    info = b & 0x1F
    if info < 24:
        return info, p + 1
    if info > 25:
        raise _Unhandled
    return _uint_at(d, p, info)


# Per kind: the statements that read the value at ``p`` into ``v{i}`` and advance ``p``.
_READ = {
    "int": (
        "b = d[p]\n"
        "if b < 24:\n    v{i} = b\n    p += 1\n"
        "elif b == 27:\n    v{i} = _U64(d, p + 1)[0]\n    p += 9\n"
        "elif b == 25:\n    v{i} = _U16(d, p + 1)[0]\n    p += 3\n"
        "elif b == 26:\n    v{i} = _U32(d, p + 1)[0]\n    p += 5\n"
        "else:\n    v{i}, p = _int_at(d, p)\n"
    ),
    "float": (
        "if d[p] != 0xfb:\n    raise _Unhandled\n"
        "v{i} = _F64(d, p + 1)[0]\np += 9\n"
    ),
    "bool": (
        "b = d[p]\n"
        "if b == 0xf5:\n    v{i} = True\nelif b == 0xf4:\n    v{i} = False\n"
        "else:\n    raise _Unhandled\n"
        "p += 1\n"
    ),
    "str": (
        "b = d[p]\n"
        "if 0x60 <= b < 0x78:\n    n = b - 0x60\n    p += 1\n"
        "elif b == 0x79:\n    n = _U16(d, p + 1)[0]\n    p += 3\n"
        "else:\n    n, p = _len_at(d, p, 3)\n"
        "v{i} = d[p:p + n].decode()\np += n\n"
    ),
    "bytes": (
        "b = d[p]\n"
        "if 0x40 <= b < 0x58:\n    n = b - 0x40\n    p += 1\n"
        "elif b == 0x59:\n    n = _U16(d, p + 1)[0]\n    p += 3\n"
        "else:\n    n, p = _len_at(d, p, 2)\n"
        "v{i} = d[p:p + n]\np += n\n"
    ),
}


def positional_count(cls: type, names: Sequence[str]) -> int:
    """How many of the fields, in order, can be passed to ``cls`` by position.

    A field goes by position while it is the next positional-or-keyword parameter
    of ``cls.__init__`` (a dataclass's fields, in order, unless ``kw_only``); from
    the first one that is not, every field goes by keyword. Either way Python
    binds every value to the same parameter as ``cls(name=value, ...)`` would.
    """
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # no signature to read: keywords only
        return 0
    for index, name in enumerate(names):
        param = params[index] if index < len(params) else None
        if param is None or param.name != name \
                or param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            return index
    return len(names)


def call_args(cls: type, names: Sequence[str], values: Sequence[str]) -> str:
    """The argument list (source text) that calls ``cls`` with each field's value:
    the first :func:`positional_count` by position, the rest by keyword.

    Args:
        cls: the class to call.
        names: the field names, in the order the values come.
        values: the source expression of each field's value.
    """
    npos = positional_count(cls, names)
    return ", ".join(value if index < npos else f"{name}={value}"
                     for index, (name, value) in enumerate(zip(names, values, strict=True)))


#: Field kinds of a native plan, by position: the codes ``ganglion/_c/plan.c`` reads.
PLAN_KINDS = ("int", "float", "bool", "str", "bytes")
#: Most fields a plan may have (the C reader's fixed array).
PLAN_MAX_FIELDS = 64

#: How the compiled reader makes an instance (a plan's last element): by calling the
#: class (CALL), or by doing what a dataclass's generated ``__init__`` does, each field
#: set in order through the class's ``__setattr__`` (SET) or, for a frozen dataclass,
#: ``object.__setattr__`` (SET_FROZEN). See :func:`construction`.
CALL, SET, SET_FROZEN = 0, 1, 2
_OBJECT_NEW: Any = object.__new__

#: A plan: (class, the constant bytes before each field's value, one kind code per
#: field, how many go by position, the keyword names of the rest, every field's name,
#: its construction).
Plan = tuple[type, tuple[bytes, ...], bytes, int, tuple[str, ...], tuple[str, ...], int]


def construction(cls: type, names: Sequence[str]) -> int:
    """How the compiled reader may make an instance of ``cls`` from every field's value.

    SET or SET_FROZEN only when calling the class would run nothing but the
    ``__init__`` that :mod:`dataclasses` generated, and that ``__init__`` would only
    store each of ``names`` in order: no ``__post_init__``, no ``InitVar``, every field
    an ``__init__`` parameter, and ``object.__new__``. Calling the class then makes
    the same object, only more slowly (a Python frame, at a cold cache several
    microseconds). CALL otherwise (an ``__init__`` written by hand, say).
    """
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    params = getattr(cls, "__dataclass_params__", None)
    declared = getattr(cls, "__dataclass_fields__", None)
    if code is None or params is None or not isinstance(declared, dict):
        return CALL
    # dataclasses compiles the __init__ it generates from source, nested in a
    # function named __create_fn__ (Python 3.11 to 3.13); its code keeps that name.
    if code.co_filename != "<string>" \
            or not getattr(code, "co_qualname", "").startswith("__create_fn__.") \
            or hasattr(cls, "__post_init__") or cls.__new__ is not _OBJECT_NEW:
        return CALL
    fields = dataclasses.fields(cls)
    if len(fields) != len(declared) or [f.name for f in fields] != list(names) \
            or not all(f.init for f in fields):
        return CALL
    return SET_FROZEN if params.frozen else SET


def native_plan(cls: type, fields: tuple[tuple[str, str], ...]) -> Plan | None:
    """The description of the generated codecs' common case that the compiled paths
    (``ganglion._speedups``) read and write: the same constant bytes, the same kinds,
    the same call (or what it does: :func:`construction`). None when there is no
    generated decoder, or no fields.

    The C reader accepts a subset of what :func:`compile_decoder`'s decoder accepts
    (it leaves the rest to it) and builds the same values and the same call; the C
    writer encodes a subset of what the generated encoder
    (:mod:`ganglion.types._codegen`) encodes, to the same bytes.
    """
    if not fields or len(fields) > PLAN_MAX_FIELDS \
            or any(schema not in PLAN_KINDS for _name, schema in fields):
        return None
    head = cbor_head(5, len(fields))
    heads = tuple((head if i == 0 else b"") + cbor2.dumps(name)
                  for i, (name, _schema) in enumerate(fields))
    kinds = bytes(PLAN_KINDS.index(schema) for _name, schema in fields)
    names = [name for name, _schema in fields]
    npos = positional_count(cls, names)
    return (cls, heads, kinds, npos, tuple(names[npos:]), tuple(sys.intern(n) for n in names),
            construction(cls, names))


def compile_decoder(cls: type, fields: tuple[tuple[str, str], ...]) -> Decoder | None:
    """Generate the fast decoder of one message class.

    Args:
        cls: the dataclass the decoder builds.
        fields: ``(name, schema)`` per field in declaration order (the encoder's order).

    Returns:
        ``decode(data) -> instance or FALLBACK``, or None when a field's kind has no
        fast reader (the generic decoder is then the only one).
    """
    if any(schema not in _READ for _name, schema in fields):
        return None
    env: dict[str, Any] = {
        "_CLS": cls, "FALLBACK": FALLBACK, "_Unhandled": _Unhandled, "_U64": _U64,
        "_U16": _U16, "_U32": _U32,
        "_F64": _F64, "_int_at": _int_at, "_len_at": _len_at,
    }
    head = cbor_head(5, len(fields))
    lines = ["def decode(d):\n", "    try:\n"]
    if not fields:
        lines.append(f"        if d != {head!r}:\n            return FALLBACK\n")
        lines.append("        return _CLS()\n")
    else:
        lines.append("        p = 0\n")
    for i, (name, schema) in enumerate(fields):
        key = (head if i == 0 else b"") + cbor2.dumps(name)
        env[f"_K{i}"] = key
        lines.append(f"        if not d.startswith(_K{i}, p):\n            return FALLBACK\n")
        lines.append(f"        p += {len(key)}\n")
        lines.extend("        " + line + "\n" for line in _READ[schema].format(i=i).splitlines())
    if fields:
        args = call_args(cls, [name for name, _schema in fields],
                         [f"v{i}" for i in range(len(fields))])
        lines.append("        if p != len(d):\n            return FALLBACK\n")
        lines.append(f"        return _CLS({args})\n")
    lines.append("    except Exception:\n        return FALLBACK\n")
    exec(compile("".join(lines), f"<ganglion decoder {cls.__qualname__}>", "exec"), env)
    decode: Decoder = env["decode"]
    return decode
