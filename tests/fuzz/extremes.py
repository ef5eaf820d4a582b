"""The values a structure-aware mutation puts into a field: integers at their extremes
and CBOR items that are deep, huge, tagged or malformed.

Pure and deterministic: every choice comes from the ``random.Random`` passed in, so a
seed replays the same values. Nothing here knows about sockets or nodes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import cbor2

#: The integers the issue names, plus their neighbours: a field is set to each of them
#: (cut to its width) to probe off-by-one and overflow handling.
INT_EXTREMES: tuple[int, ...] = (
    0, 1, 2, 127, 128, 255, 256, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1,
    2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1,
)

#: Integers beyond u64 or below zero, for fields a decoder reads from CBOR (any size).
WIDE_INTS: tuple[int, ...] = (-1, -(2**31), -(2**63), -(2**64), 2**64, 2**64 + 1, 2**128,
                              -(2**128), 2**(8 * 1000))

#: Largest name a type name may have (docs/protocol.md section 4.1), and the u8 limit.
MAX_NAME = 200

#: Deepest nesting the harness builds: the issue asks for 10,000 levels.
DEEP = 10_000


def fixed_extremes(width: int) -> list[int]:
    """The extremes that fit an unsigned big-endian field of ``width`` bytes.

    Args:
        width: the field's size in bytes (1, 2, 4 or 8).

    Returns:
        Every value of :data:`INT_EXTREMES` below ``2**(8*width)``, plus the signed
        boundaries of that width.
    """
    top = 1 << (8 * width)
    values = {v for v in INT_EXTREMES if v < top}
    values.update((top - 1, top >> 1, (top >> 1) - 1))
    return sorted(values)


def pick_int(rng: random.Random, *, wide: bool = False) -> int:
    """One extreme integer; ``wide`` adds negatives and values past u64."""
    pool = INT_EXTREMES + WIDE_INTS if wide else INT_EXTREMES
    return rng.choice(pool)


def leb128(value: int) -> bytes:
    """Unsigned LEB128 of any non-negative ``value`` (no 10-byte limit: past 2**64 on
    purpose, to build varints a decoder must refuse)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_variants(rng: random.Random) -> tuple[str, bytes]:
    """A varint encoding a decoder must either read exactly or refuse.

    Returns:
        (description, bytes): minimal encodings of extremes, 2**64 and above (11
        bytes), overlong encodings of small values, and a truncated one (high bit
        set on the last byte).
    """
    roll = rng.randrange(6)
    if roll <= 1:
        value = rng.choice(INT_EXTREMES)
        return f"varint {value:#x}", leb128(value)
    if roll == 2:
        value = rng.choice((2**64, 2**64 + 1, 2**70 - 1))
        return f"varint past u64 {value:#x}", leb128(value)
    if roll == 3:
        pad = rng.choice((1, 9, 10, 11, 20))
        return f"overlong zero ({pad + 1} bytes)", b"\x80" * pad + b"\x00"
    if roll == 4:
        return "truncated varint", b"\xff" * rng.choice((1, 5, 9, 10, 11))
    return "ten 0xff then 0x01", b"\xff" * 9 + b"\x01"


# -- CBOR -------------------------------------------------------------------------------


def cbor_head(major: int, value: int) -> bytes:
    """The head of a CBOR item (RFC 8949 section 3), with the shortest argument.

    ``value`` may be up to 2**64-1; larger values are cut to 64 bits on purpose (the
    wire cannot carry them).
    """
    value &= (1 << 64) - 1
    top = major << 5
    if value < 24:
        return bytes((top | value,))
    if value < 0x100:
        return bytes((top | 24, value))
    if value < 0x10000:
        return bytes((top | 25,)) + value.to_bytes(2, "big")
    if value < 0x1_0000_0000:
        return bytes((top | 26,)) + value.to_bytes(4, "big")
    return bytes((top | 27,)) + value.to_bytes(8, "big")


def _deep(rng: random.Random) -> tuple[str, bytes]:
    depth = rng.choice((33, 400, 401, DEEP, 5 * DEEP))
    opener = rng.choice((b"\x81", b"\xa1\x61k", b"\x9f", b"\xc2", b"\xd8\x1c\x81"))
    return f"nested x{depth} {opener.hex()}", opener * depth + b"\x00"


def _huge_length(rng: random.Random) -> tuple[str, bytes]:
    major = rng.choice((2, 3, 4, 5))
    length = rng.choice((2**31, 2**32, 2**32 - 1, 2**63 - 1, 2**64 - 1))
    return f"major {major} claiming {length:#x}", cbor_head(major, length) + b"\x00" * 16


def _big_string(rng: random.Random, room: int) -> tuple[str, bytes]:
    size = rng.choice((0, 1, 23, 24, 255, 256, 1400, max(0, room)))
    if rng.random() < 0.5:
        return f"bytes({size})", cbor_head(2, size) + rng.randbytes(size)
    text = rng.choice(("x", "\u00e9", "\U0001f600", "\x00")) * size
    return f"text({size} chars)", cbor2.dumps(text)


def _bignum(rng: random.Random, room: int) -> tuple[str, bytes]:
    size = rng.choice((0, 8, 9, 64, 1000, max(0, room)))
    tag = rng.choice((b"\xc2", b"\xc3"))
    return f"bignum tag {tag[0] - 0xc0} of {size} bytes", tag + cbor_head(2, size) + b"\xff" * size


def _tagged(rng: random.Random) -> tuple[str, bytes]:
    tag = rng.choice((0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 55799, 256, 258, 2**32, 2**64 - 1))
    inner = rng.choice((b"\x00", b"\x1b" + b"\xff" * 8, b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",
                        b"\x60", b"\x80", b"\x3b" + b"\xff" * 8, b"\x6411:1"))
    return f"tag {tag} on {inner.hex()}", cbor_head(6, tag) + inner


def _laughs(rng: random.Random) -> tuple[str, bytes]:
    """Shared references (tags 28/29) doubling at each level: a few hundred bytes
    naming a graph of 2**levels leaves."""
    levels = rng.choice((20, 40, 64))
    out = cbor_head(4, levels) + b"\xd8\x1c\x82\x01\x01"
    for i in range(1, levels):
        ref = b"\xd8\x1d" + cbor_head(0, i - 1)
        out += b"\xd8\x1c\x82" + ref + ref
    return f"shared-reference laughs x{levels}", out


def _odd_simple(rng: random.Random) -> tuple[str, bytes]:
    item = rng.choice((b"\xf7", b"\xf8\x20", b"\xf8\xff", b"\xf9\x7c\x00", b"\xf9\x7e\x00",
                       b"\xfa\x7f\x80\x00\x00", b"\xfb\xff\xf0\x00\x00\x00\x00\x00\x00",
                       b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x01", b"\xff", b"\x1c", b"\x3e", b"\x5f",
                       b"\x7f\x61a\x41b\xff", b"\xbf\x61a\x01", b"\xa2\x61a\x01\x61a\x02",
                       b"\xa1\x01\x02", b"\xa1\x41a\x02", b"\xa1\xf6\x00", b"\x1b" + b"\xff" * 8,
                       b"\x3b" + b"\xff" * 8, b""))
    return f"odd item {item.hex() or 'empty'}", item


#: The makers of one CBOR item a field can be replaced with; the argument after the rng
#: is how many bytes the datagram has left (a string that fills it).
_MAKERS: tuple[Callable[..., tuple[str, bytes]], ...] = (
    _deep, _huge_length, _tagged, _laughs, _odd_simple,
)


def cbor_item(rng: random.Random, room: int = 1200) -> tuple[str, bytes]:
    """One CBOR item (possibly malformed) at an extreme.

    Args:
        rng: where every choice comes from.
        room: the largest size a string or bignum may take.

    Returns:
        (description, bytes).
    """
    roll = rng.randrange(len(_MAKERS) + 3)
    if roll < len(_MAKERS):
        return _MAKERS[roll](rng)
    if roll == len(_MAKERS):
        return _big_string(rng, room)
    if roll == len(_MAKERS) + 1:
        return _bignum(rng, room)
    value = pick_int(rng, wide=True)
    return f"int {value if abs(value) < 2**70 else 'huge'}", cbor2.dumps(value)


def cbor_value(rng: random.Random) -> tuple[str, object]:
    """A Python value at an extreme that cbor2 can encode (for fields we encode ourselves).

    Returns:
        (description, value).
    """
    roll = rng.randrange(9)
    if roll == 0:
        value = pick_int(rng, wide=True)
        return f"int {value if abs(value) < 2**70 else 'huge'}", value
    if roll == 1:
        f = rng.choice((float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324))
        return f"float {f!r}", f
    if roll == 2:
        n = rng.choice((0, 1, MAX_NAME, MAX_NAME + 1, 4000))
        return f"str({n})", "x" * n
    if roll == 3:
        n = rng.choice((0, 1, 1400, 8000))
        return f"bytes({n})", rng.randbytes(n)
    if roll == 4:
        n = rng.choice((0, 1, 100, 2000))
        return f"list of {n} ints", [rng.choice(INT_EXTREMES) for _ in range(n)]
    if roll == 5:
        return "nested map", {"a": {"b": {"c": [1, 2, 3]}}}
    if roll == 6:
        return "null", None
    if roll == 7:
        return "bool", rng.random() < 0.5
    return "not-a-str-key map", {1: 2}


def float64(value: float) -> bytes:
    """The CBOR float64 item of ``value`` (cbor2 may pick a shorter form)."""
    return b"\xfb" + struct.pack(">d", value)
