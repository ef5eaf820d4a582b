"""Layout templates: decode a payload with two ``struct`` calls when its layout is known.

Theory of operation: the payloads one sender publishes for a type nearly always
have the same *layout*: the same keys, and values whose CBOR heads have the same
widths (an 8-byte timestamp, a 4-byte counter, a 48-byte blob), so each value sits
at the same offset every time. The generated decoder (:mod:`._decodegen`) still
walks such a payload byte by byte in Python. Instead, the first payload of each
length that the generated decoder accepts is turned into a *template*:

* a *skeleton* ``struct`` that unpacks every byte that is not a value (the map
  head, every key, every value head that carries a width or a length), and the
  tuple it gave for that payload;
* a *values* ``struct`` that unpacks every value (``>B/H/I/Q`` for an int's
  argument, ``>d`` for a float64, ``Ns`` for a str's or bytes' content), skipping
  the skeleton bytes.

A later payload of that length is decoded by the template when its skeleton
tuple is equal: then every head, hence every width and offset, is the one of the
payload the template was made from, so the values struct reads exactly what the
generated decoder would read. The few values that live in the head byte itself
(an int below 24, a bool) are read as a byte and checked (an int head must stay a
one-byte int, a bool stays the template's constant, being in the skeleton).
Negative ints (major type 1) become ``-1 - n`` and str contents are decoded as
strict UTF-8, as the generated decoder does; the class is called with the same
arguments. Anything else, a constructor that raises included, returns
:data:`~ganglion.types._decodegen.FALLBACK` and the generated decoder runs. So a
template never changes a result, only how fast it comes.

Templates are kept per payload length, at most :data:`MAX_TEMPLATES` per type
(a payload whose length has none just takes the generated decoder).
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2

from ganglion.types._codegen import cbor_head
from ganglion.types._decodegen import FALLBACK, Decoder, call_args

#: Payload lengths per type that get a template.
MAX_TEMPLATES = 8
#: ``struct`` codes for an int head's additional info 24..27.
_WIDTH = {24: "B", 25: "H", 26: "I", 27: "Q"}


class _Layout:
    """The struct formats and code of one template, built while walking a payload."""

    def __init__(self) -> None:
        self.skeleton: list[str] = []  # struct codes of the skeleton struct
        self.values: list[str] = []  # struct codes of the values struct
        self.pending = 0  # skeleton bytes not yet emitted (adjacent ones merge)
        self.names: list[str] = []  # value variable per field, in order
        self.code: list[str] = []  # checks and conversions after unpacking
        self.count = 0  # values unpacked

    def skel(self, size: int) -> None:
        self.pending += size

    def _flush(self) -> None:
        if self.pending:
            self.skeleton.append(f"{self.pending}s")
            self.values.append(f"{self.pending}x")
            self.pending = 0

    def value(self, code: str, size: int) -> str:
        self._flush()
        self.skeleton.append(f"{size}x")
        self.values.append(code)
        name = f"u{self.count}"
        self.count += 1
        return name

    def finish(self) -> tuple[str, str]:
        self._flush()
        return ">" + "".join(self.skeleton), ">" + "".join(self.values)


def _walk_value(layout: _Layout, data: bytes, pos: int, schema: str, index: int) -> int | None:
    """Add one value at ``pos`` to the layout; return the next position, None if unsupported."""
    head = data[pos]
    major, info = head >> 5, head & 0x1F
    var = f"v{index}"
    if schema == "int" and major in (0, 1):
        if info < 24:
            raw = layout.value("B", 1)
            low = 0 if major == 0 else 0x20
            layout.code.append(f"if not {low} <= {raw} < {low + 24}:\n    return FALLBACK\n")
            layout.code.append(f"{var} = {raw}\n" if major == 0 else f"{var} = 0x1f - {raw}\n")
            layout.names.append(var)
            return pos + 1
        if info not in _WIDTH:
            return None
        size = 1 << (info - 24)
        layout.skel(1)
        raw = layout.value(_WIDTH[info], size)
        layout.code.append(f"{var} = {raw}\n" if major == 0 else f"{var} = -1 - {raw}\n")
        layout.names.append(var)
        return pos + 1 + size
    if schema == "float" and head == 0xFB:
        layout.skel(1)
        layout.names.append(layout.value("d", 8))
        return pos + 9
    if schema == "bool" and head in (0xF4, 0xF5):
        layout.skel(1)
        layout.names.append("True" if head == 0xF5 else "False")
        return pos + 1
    if (schema, major) in (("bytes", 2), ("str", 3)):
        if info < 24:
            size, start = info, pos + 1
        elif info in (24, 25):
            width = 1 << (info - 24)
            size = int.from_bytes(data[pos + 1:pos + 1 + width], "big")
            start = pos + 1 + width
        else:
            return None
        layout.skel(start - pos)
        raw = layout.value(f"{size}s", size)
        if schema == "str":
            layout.code.append(f"{var} = {raw}.decode()\n")
            layout.names.append(var)
        else:
            layout.names.append(raw)
        return start + size
    return None


def compile_template(cls: type, fields: tuple[tuple[str, str], ...], data: bytes) -> Decoder | None:
    """Make the template of ``data``'s layout, or None when it has a part templates do not read.

    Args:
        cls: the message class.
        fields: ``(name, schema)`` per field in declaration order.
        data: a payload the generated decoder accepted.

    Returns:
        ``decode(payload) -> instance or FALLBACK`` for payloads of ``len(data)`` bytes.
    """
    layout = _Layout()
    head = cbor_head(5, len(fields))
    if not data.startswith(head):
        return None
    pos = len(head)
    layout.skel(pos)
    for index, (name, schema) in enumerate(fields):
        key = cbor2.dumps(name)
        if not data.startswith(key, pos):
            return None
        pos += len(key)
        layout.skel(len(key))
        nxt = _walk_value(layout, data, pos, schema, index)
        if nxt is None or nxt > len(data):
            return None
        pos = nxt
    if pos != len(data):
        return None
    skeleton_fmt, values_fmt = layout.finish()
    skeleton = struct.Struct(skeleton_fmt)
    env: dict[str, Any] = {"_CLS": cls, "FALLBACK": FALLBACK, "_SK": skeleton.unpack,
                           "_SKV": skeleton.unpack(data), "_V": struct.Struct(values_fmt).unpack}
    raws = ", ".join(f"u{i}" for i in range(layout.count))
    args = call_args(cls, [name for name, _schema in fields], layout.names)
    lines = ["def decode(d):\n", "    try:\n", "        if _SK(d) != _SKV:\n",
             "            return FALLBACK\n"]
    if layout.count:
        lines.append(f"        {raws}{',' if layout.count == 1 else ''} = _V(d)\n")
    lines.extend("        " + line + "\n" for line in "".join(layout.code).splitlines())
    lines.append(f"        return _CLS({args})\n")
    lines.append("    except Exception:\n        return FALLBACK\n")
    exec(compile("".join(lines), f"<ganglion template {cls.__qualname__}>", "exec"), env)
    decode: Decoder = env["decode"]
    return decode


def with_templates(cls: type, fields: tuple[tuple[str, str], ...], generated: Decoder) -> Decoder:
    """Wrap a generated decoder so payloads of a known layout take a template first.

    Args:
        cls: the message class.
        fields: ``(name, schema)`` per field in declaration order.
        generated: the class's generated decoder (:func:`._decodegen.compile_decoder`).

    Returns:
        A decoder with the same results as ``generated`` for every input.
    """
    templates: dict[int, Decoder | None] = {}
    missing = object()

    def decode(data: bytes) -> Any:
        template = templates.get(len(data), missing)
        if template is missing:
            obj = generated(data)
            if obj is not FALLBACK and len(templates) < MAX_TEMPLATES:
                templates[len(data)] = compile_template(cls, fields, bytes(data))
            return obj
        if template is not None:
            obj = template(data)  # type: ignore[operator]
            if obj is not FALLBACK:
                return obj
        return generated(data)

    return decode
