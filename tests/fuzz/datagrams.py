"""Valid datagrams from the project's own encoder, cut into the fields of
docs/protocol.md, and structure-aware mutations of those fields.

Theory of operation: :func:`fields_of` encodes a datagram with
:func:`ganglion.wire.encode_datagram` and cuts the bytes at the offsets the protocol
page gives (magic, version, flags, node id, boot, fingerprint, name length, name,
first seq, base ts, count, then per message its ts delta varint, length varint and
payload, then the MAC). It checks that the pieces join back to the encoder's bytes,
so the cut and the encoder cannot drift apart unnoticed. A mutation replaces one
piece (an integer field with an extreme of its width, a varint with an overlong or
truncated one, the name with an empty, maximal or inconsistent one, a payload with a
deep or huge CBOR item) and joins the pieces again. Everything is pure and every
choice comes from the caller's ``random.Random``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from ganglion.wire import encode_datagram
from ganglion.wire._varint import encode_varint, zigzag

from .extremes import MAX_NAME, cbor_item, fixed_extremes, leb128, varint_variants

#: The fixed-width unsigned fields of the envelope and their widths (docs/protocol.md 2).
FIXED_FIELDS: dict[str, int] = {
    "version": 1, "flags": 1, "boot": 4, "name_len": 1, "first_seq": 8, "base_ts": 8,
    "count": 2,
}
#: Fields that are opaque bytes of a fixed size.
OPAQUE_FIELDS: dict[str, int] = {"magic": 2, "node_id": 8, "fingerprint": 8}


@dataclasses.dataclass
class Field:
    """One named piece of a datagram."""

    name: str
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """What to encode: the arguments of :func:`ganglion.wire.encode_datagram`."""

    node_id: bytes
    type_name: str
    fingerprint: bytes
    first_seq: int
    timestamps: tuple[int, ...]
    payloads: tuple[bytes, ...]
    boot: int = 0
    key: bytes | None = None


def fields_of(shape: Shape) -> list[Field]:
    """Encode ``shape`` with the project's encoder and cut it into named fields.

    Raises:
        AssertionError: the pieces do not join back to the encoder's bytes (the
            harness's reading of docs/protocol.md disagrees with the code).
    """
    data = encode_datagram(node_id=shape.node_id, type_name=shape.type_name,
                           fingerprint=shape.fingerprint, first_seq=shape.first_seq,
                           timestamps=shape.timestamps, payloads=shape.payloads,
                           boot=shape.boot, key=shape.key, max_datagram=None)
    name = shape.type_name.encode("ascii")
    fixed = [("magic", 2), ("version", 1), ("flags", 1), ("node_id", 8), ("boot", 4),
             ("fingerprint", 8), ("name_len", 1), ("name", len(name)), ("first_seq", 8),
             ("base_ts", 8), ("count", 2)]
    out: list[Field] = []
    pos = 0
    for fname, size in fixed:
        out.append(Field(fname, data[pos:pos + size]))
        pos += size
    prev = shape.timestamps[0]
    for i, (ts, payload) in enumerate(zip(shape.timestamps, shape.payloads, strict=True)):
        delta = encode_varint(zigzag(ts - prev))
        length = encode_varint(len(payload))
        out += [Field(f"delta{i}", data[pos:pos + len(delta)]),
                Field(f"length{i}", data[pos + len(delta):pos + len(delta) + len(length)]),
                Field(f"payload{i}", payload)]
        pos += len(delta) + len(length) + len(payload)
        prev = ts
    if shape.key is not None:
        out.append(Field("mac", data[pos:]))
        pos = len(data)
    joined = join(out)
    assert joined == data and pos == len(data), "the field cut disagrees with encode_datagram"
    return out


def join(fields: Sequence[Field]) -> bytes:
    """The datagram the fields make."""
    return b"".join(f.data for f in fields)


def _get(fields: list[Field], name: str) -> Field:
    for f in fields:
        if f.name == name:
            return f
    raise KeyError(name)


def set_int(fields: list[Field], name: str, value: int) -> None:
    """Set a fixed-width field (:data:`FIXED_FIELDS`) to ``value``, big-endian, cut to its width."""
    width = FIXED_FIELDS[name]
    _get(fields, name).data = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")


def _mutate_fixed(rng: random.Random, fields: list[Field]) -> str:
    name = rng.choice(sorted(FIXED_FIELDS))
    value = rng.choice(fixed_extremes(FIXED_FIELDS[name]))
    set_int(fields, name, value)
    return f"{name}={value:#x}"


def _mutate_opaque(rng: random.Random, fields: list[Field]) -> str:
    name = rng.choice(sorted(OPAQUE_FIELDS))
    size = OPAQUE_FIELDS[name]
    value = rng.choice((b"\x00" * size, b"\xff" * size, rng.randbytes(size)))
    _get(fields, name).data = value
    return f"{name}={value.hex()}"


def _mutate_name(rng: random.Random, fields: list[Field]) -> str:
    roll = rng.randrange(7)
    if roll == 0:
        name = b""
    elif roll == 1:
        name = b"a" * 98 + b"." + b"B" * (MAX_NAME - 99)  # exactly 200: valid, maximal
    elif roll == 2:
        name = b"a." + b"b" * (MAX_NAME - 1)  # 201: one too long
    elif roll == 3:
        name = b"a." + b"c" * 253  # 255: the u8 maximum
    elif roll == 4:
        name = rng.choice((b"a", b".", b"a..b", b"a.b\x00", b"\xc3\xa9.b", b"1a.b", b"a.b "))
    else:
        name = _get(fields, "name").data
    _get(fields, "name").data = name
    if roll >= 5:  # keep the name, lie about its length
        claimed = rng.choice((0, 1, len(name) - 1, len(name) + 1, 255))
        set_int(fields, "name_len", claimed)
        return f"name_len={claimed} for {len(name)} bytes"
    set_int(fields, "name_len", len(name))
    return f"name={name[:20]!r}... ({len(name)} bytes)"


def _messages(fields: list[Field]) -> int:
    return sum(1 for f in fields if f.name.startswith("payload"))


def _mutate_varint(rng: random.Random, fields: list[Field]) -> str:
    i = rng.randrange(_messages(fields))
    which = rng.choice(("delta", "length"))
    detail, data = varint_variants(rng)
    _get(fields, f"{which}{i}").data = data
    return f"{which}{i}: {detail}"


def _mutate_payload(rng: random.Random, fields: list[Field]) -> str:
    i = rng.randrange(_messages(fields))
    detail, item = cbor_item(rng)
    payload = _get(fields, f"payload{i}")
    roll = rng.randrange(3)
    if roll == 0:
        payload.data = item  # the whole payload
    elif roll == 1:  # as the value of a known field: the generated decoders look there
        payload.data = b"\xa1\x65value" + item
    elif 0xA0 <= payload.data[0] < 0xB7:  # one more entry after the valid ones
        payload.data = bytes((payload.data[0] + 1,)) + payload.data[1:] + b"\x61z" + item
    else:
        payload.data = b"\xa1\x61z" + item
    length = _get(fields, f"length{i}")
    if rng.random() < 0.9:  # mostly keep the length honest, so the payload is reached
        length.data = leb128(len(payload.data))
    return f"payload{i}: {detail}"


def _mutate_count(rng: random.Random, fields: list[Field]) -> str:
    n = _messages(fields)
    value = rng.choice((0, 1, n - 1, n + 1, 0xFFFF))
    set_int(fields, "count", value)
    return f"count={value} for {n} messages"


def _mutate_bytes(rng: random.Random, fields: list[Field]) -> str:
    data = bytearray(join(fields))
    roll = rng.randrange(4)
    if roll == 0:
        cut = rng.randrange(len(data))
        fields[:] = [Field("truncated", bytes(data[:cut]))]
        return f"truncated to {cut}"
    if roll == 1:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        fields[:] = [Field("flipped", bytes(data))]
        return "bit flips"
    if roll == 2:
        extra = rng.choice((1, 16, 1000))
        fields[:] = [Field("trailing", bytes(data) + rng.randbytes(extra))]
        return f"{extra} trailing bytes"
    at = rng.randrange(len(data))
    fields[:] = [Field("overwritten", bytes(data[:at]) + rng.randbytes(8) + bytes(data[at + 8:]))]
    return f"8 random bytes at {at}"


#: Mutation kinds and their weights.
MUTATIONS = (
    (_mutate_fixed, 5), (_mutate_opaque, 2), (_mutate_name, 3), (_mutate_varint, 3),
    (_mutate_payload, 6), (_mutate_count, 2), (_mutate_bytes, 3),
)


def mutate(rng: random.Random, fields: list[Field]) -> str:
    """Apply one structure-aware mutation to ``fields`` in place.

    Returns:
        A one-line description of what changed.
    """
    funcs = [f for f, _ in MUTATIONS]
    weights = [w for _, w in MUTATIONS]
    return rng.choices(funcs, weights)[0](rng, fields)
