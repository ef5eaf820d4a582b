"""Unsigned LEB128 varints and zigzag signed mapping (as in protobuf).

A varint stores 7 bits per byte, least significant group first; the high bit
says another byte follows. Values here are below 2**64, so at most 10 bytes.
Zigzag maps signed to unsigned so that small magnitudes stay short:
0, -1, 1, -2 ... -> 0, 1, 2, 3 ...
"""

from __future__ import annotations

from ganglion.errors import DecodeError

U64 = 1 << 64


def encode_varint(value: int) -> bytes:
    """Return the varint bytes of ``0 <= value < 2**64``."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:  # two bytes: payload lengths up to 16 KiB, deltas up to 8 us
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """Return how many bytes :func:`encode_varint` uses for ``value``."""
    return max(1, (value.bit_length() + 6) // 7)


def zigzag(value: int) -> int:
    """Map a signed int in [-2**63, 2**63) to an unsigned one."""
    return (value << 1) if value >= 0 else ((-value) << 1) - 1


def unzigzag(value: int) -> int:
    """Inverse of :func:`zigzag`."""
    return (value >> 1) if not value & 1 else -((value + 1) >> 1)


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a varint at ``pos``, not past ``end``.

    Returns:
        (value, position after the varint).

    Raises:
        DecodeError: the varint runs past ``end``, is longer than 10 bytes, or
            its value is 2**64 or more.
    """
    if pos >= end:
        raise DecodeError("datagram truncated inside a varint")
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end:
            raise DecodeError("datagram truncated inside a varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise DecodeError("varint longer than 10 bytes")
    if value >= U64:
        raise DecodeError("varint value does not fit in 64 bits")
    return value, pos
