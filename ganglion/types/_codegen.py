"""Per-type generated payload encoders and size bounds (the publish hot path).

Theory of operation: the generic encoder (:meth:`StructKind.encode` then
``cbor2.dumps``) walks the fields, builds a dict and has cbor2 serialise it:
~1.9 us for a three-field reading, most of it in ``cbor2.dumps``. At
registration, :func:`compile_codecs` writes (and ``exec``-compiles) two plain
functions for the class instead, one statement block per field, no per-field
dispatch:

* ``encode(obj) -> bytes`` writes the CBOR map itself: a constant map head and
  constant key strings, and for the common values inline code: ints in
  -2**64..2**64-1, finite floats (as float64), bools, str and bytes. The bytes
  are exactly what ``cbor2.dumps`` writes for the same map (minimal heads,
  float64 for finite floats, half-precision for NaN and infinities, which go the
  generic way). Any other value, or a value whose type is not exactly the
  field's kind, goes through that field's generic converter and ``cbor2.dumps``
  (the result is the item's CBOR, valid inside the map because cbor2 uses no
  string references or sharing by default).
* ``size_bound(obj) -> int`` returns an upper bound of ``len(encode(obj))``
  without encoding, while checking what the encoder would refuse: an int in the
  u64 range counts 9 bytes (the longest head), a float 9, a bool 1, an ASCII str
  or a bytes value its length plus a 9-byte head; the map head and keys are a
  constant. A non-ASCII str is encoded to UTF-8 (its exact length, and lone
  surrogates are refused), and every other value (datetime, enum, optional,
  list, nested dataclass, or a value of another type) is encoded by its field's
  generic path and measured exactly, which also validates it.

Both functions raise whatever the generic path raises for a bad value
(``ValueError`` and cbor2's errors); the caller re-runs the generic encoder to
get its readable :class:`~ganglion.errors.EncodeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import cbor2

#: Beyond this an int is a CBOR bignum (tag 2 or 3): the generic path writes it.
_U64 = 1 << 64
#: Head bytes of ints 0..23 (major type 0), the common case for counters and enums.
_SMALL = tuple(bytes((i,)) for i in range(24))
#: A float64 with its CBOR head (0xfb).
_PACK_F64 = struct.Struct(">Bd").pack
#: An initial byte and a 2-, 4- or 8-byte big-endian argument (the longer int heads).
_PACK_2, _PACK_4, _PACK_8 = (struct.Struct(f">B{c}").pack for c in "HIQ")

Encoder = Callable[[Any], bytes]
SizeBound = Callable[[Any], int]


def cbor_head(major: int, n: int) -> bytes:
    """The shortest CBOR head of major type ``major`` (0..7) with argument ``n`` (< 2**64)."""
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((mt | 26,)) + n.to_bytes(4, "big")
    return bytes((mt | 27,)) + n.to_bytes(8, "big")


#: Heads of arguments 0..255 of major types 0 (ints), 2 (bytes) and 3 (text), prebuilt.
_HEAD0, _HEAD2, _HEAD3 = (tuple(cbor_head(major, n) for n in range(0x100)) for major in (0, 2, 3))


def _int(v: int, slow: Encoder) -> bytes:
    if 0 <= v < _U64:
        return cbor_head(0, v)
    if -_U64 <= v < 0:
        return cbor_head(1, -1 - v)
    return slow(v)


def _text(v: str) -> bytes:
    b = v.encode()
    return cbor_head(3, len(b)) + b


def _blob(v: bytes) -> bytes:
    return cbor_head(2, len(v)) + v


def _slow_path(convert: Callable[[Any], Any]) -> Encoder:
    dumps = cbor2.dumps

    def slow(v: Any) -> bytes:
        return dumps(convert(v))

    return slow


# Per kind: (encode statement, size-bound statement). ``{i}`` is the field index;
# ``v`` holds the field's value; the encoder assigns ``b{i}``, the bound adds to ``n``.
_INT = (
    "if type(v) is int and v >= 0:\n"
    "    if v < 24:\n        b{i} = _SMALL[v]\n"
    "    elif v < 0x100:\n        b{i} = _HEAD0[v]\n"
    "    elif v < 0x10000:\n        b{i} = _p2(25, v)\n"
    "    elif v < 0x100000000:\n        b{i} = _p4(26, v)\n"
    "    elif v < _U64:\n        b{i} = _p8(27, v)\n"
    "    else:\n        b{i} = _slow{i}(v)\n"
    "elif type(v) is int:\n    b{i} = _int(v, _slow{i})\n"
    "else:\n    b{i} = _slow{i}(v)\n",
    "if type(v) is int and -_U64 <= v < _U64:\n    n += 9\n"
    "else:\n    n += len(_slow{i}(v))\n",
)
_FLOAT = (
    "if type(v) is float and v - v == 0.0:\n    b{i} = _pd(251, v)\n"
    "else:\n    b{i} = _slow{i}(v)\n",
    "if type(v) is float:\n    n += 9\nelse:\n    n += len(_slow{i}(v))\n",
)
_BOOL = (
    "if v is True:\n    b{i} = b'\\xf5'\nelif v is False:\n    b{i} = b'\\xf4'\n"
    "else:\n    b{i} = _slow{i}(v)\n",
    "if v is True or v is False:\n    n += 1\nelse:\n    n += len(_slow{i}(v))\n",
)
_STR = (
    "if type(v) is str and v.isascii() and len(v) < 0x100:\n    b{i} = _HEAD3[len(v)] + v.encode()\n"
    "elif type(v) is str:\n    b{i} = _text(v)\nelse:\n    b{i} = _slow{i}(v)\n",
    "if type(v) is str and v.isascii():\n    n += 9 + len(v)\n"
    "else:\n    n += len(_slow{i}(v))\n",
)
# The head and the content of a byte string are separate parts of the join, so the
# content (often the bulk of a message) is copied once, not twice.
_BYTES = (
    "if type(v) is bytes and len(v) < 0x100:\n    h{i} = _HEAD2[len(v)]\n    b{i} = v\n"
    "elif type(v) is bytes and len(v) < 0x10000:\n    h{i} = _p2(0x59, len(v))\n    b{i} = v\n"
    "elif type(v) is bytes:\n    h{i} = b''\n    b{i} = _blob(v)\n"
    "else:\n    h{i} = b''\n    b{i} = _slow{i}(v)\n",
    "if type(v) is bytes:\n    n += 9 + len(v)\nelse:\n    n += len(_slow{i}(v))\n",
)
_OTHER = ("b{i} = _slow{i}(v)\n", "n += len(_slow{i}(v))\n")
_BY_SCHEMA = {"int": _INT, "float": _FLOAT, "bool": _BOOL, "str": _STR, "bytes": _BYTES}


def compile_codecs(cls: type, fields: tuple[tuple[str, str, Callable[[Any], Any]], ...],
                   generic: Encoder) -> tuple[Encoder, SizeBound]:
    """Generate ``encode`` and ``size_bound`` for one message class.

    Args:
        cls: the dataclass; an instance of any other class (a subclass) is
            handed to ``generic``.
        fields: ``(name, schema, convert)`` per field in declaration order, where
            ``convert`` is the field kind's generic encoder (value -> CBOR-ready item).
        generic: the generic encoder, for instances of other classes.

    Returns:
        ``(encode, size_bound)`` as described in the module docstring.
    """
    env: dict[str, Any] = {
        "_CLS": cls, "_generic": generic, "_SMALL": _SMALL, "_U64": _U64, "_int": _int,
        "_text": _text, "_blob": _blob, "_pd": _PACK_F64,
        "_p2": _PACK_2, "_p4": _PACK_4, "_p8": _PACK_8, "_HEAD0": _HEAD0, "_HEAD2": _HEAD2,
        "_HEAD3": _HEAD3,
    }
    keys = [cbor2.dumps(name) for name, _schema, _convert in fields]
    head = cbor_head(5, len(fields))
    enc = ["def encode(obj):\n", "    if type(obj) is not _CLS:\n        return _generic(obj)\n"]
    bnd = ["def size_bound(obj):\n",
           "    if type(obj) is not _CLS:\n        return len(_generic(obj))\n",
           f"    n = {len(head) + sum(len(k) for k in keys)}\n"]
    parts = []
    for i, (name, schema, convert) in enumerate(fields):
        env[f"_slow{i}"] = _slow_path(convert)
        env[f"_K{i}"] = (head if i == 0 else b"") + keys[i]
        enc_code, bnd_code = _BY_SCHEMA.get(schema, _OTHER)
        for lines, code in ((enc, enc_code), (bnd, bnd_code)):
            lines.append(f"    v = obj.{name}\n")
            lines.extend("    " + line + "\n" for line in code.format(i=i).splitlines())
        parts.append(f"_K{i}, h{i}, b{i}" if enc_code is _BYTES[0] else f"_K{i}, b{i}")
    if fields:
        enc.append(f"    return b''.join(({', '.join(parts)},))\n")
    else:
        enc.append(f"    return {head!r}\n")
    bnd.append("    return n\n")
    exec(compile("".join(enc) + "".join(bnd), f"<ganglion codec {cls.__qualname__}>", "exec"), env)
    return env["encode"], env["size_bound"]


