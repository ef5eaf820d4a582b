"""The generated payload decoders give exactly the generic decoder's results and errors.

The generic path is ``payload_decoder`` over a registry whose types have no
generated decoder; the fast path is the same function over the real registry.
For valid payloads (written by the encoder), for maps of the right keys with
values of every kind in any order, for mutated payloads and for arbitrary
bytes, both must return the same thing (compared by type and repr, so NaN and
-0.0 count) or raise the same :class:`DecodeError` message. Also checked: the
fast decoder really handles what our encoder writes, hands everything it does
not read to the generic path (``FALLBACK``), and is not made for field kinds
it does not read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import DecodeError
from ganglion.types import (
    MessageType,
    Record,
    encode_message,
    message,
    payload_decoder,
    type_of,
)
from ganglion.types._decodegen import FALLBACK, call_args, compile_decoder


@message("test_decodegen.Scalars")
@dataclass
class Scalars:
    seq: int
    t_ns: int
    data: bytes
    label: str = "x"
    ratio: float = 0.5
    ok: bool = True


@message("test_decodegen.Checked")
@dataclass
class Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value == 13:
            raise ValueError("unlucky")


@message("test_decodegen.Empty")
@dataclass
class Empty:
    pass


@message("test_decodegen.WithOptional")
@dataclass
class WithOptional:
    value: int
    note: str | None = None


class _GenericOnly:
    """A registry stand-in whose types have no generated decoder."""

    def lookup(self, name: str) -> MessageType | None:
        from ganglion.types import lookup

        found = lookup(name)
        return None if found is None else dataclasses.replace(found, decode_fast=None)


def outcome(cls: type, data: bytes, fp: bytes | None, generic: bool) -> Any:
    registry: Any = _GenericOnly() if generic else None
    name = type_of(cls).name
    try:
        result = payload_decoder(name, fp, registry=registry)(data)
    except DecodeError as exc:
        return type(exc), str(exc)
    return type(result), repr(result)


def same(cls: type, data: bytes) -> None:
    for fp in (type_of(cls).fingerprint, b"other fp", None):
        assert outcome(cls, data, fp, generic=False) == outcome(cls, data, fp, generic=True)


ints = st.integers(-(2**70), 2**70) | st.integers(-300, 70000)
texts = st.text(max_size=300)
blobs = st.binary(max_size=300)
scalars = st.builds(Scalars, ints, st.integers(0, 2**64 - 1), blobs, texts,
                    st.floats(), st.booleans())
any_value = st.one_of(ints, st.floats(width=16), st.floats(width=32), st.floats(), texts, blobs,
                      st.booleans(), st.none(), st.lists(st.integers(), max_size=2))
keys = st.sampled_from(["seq", "t_ns", "data", "label", "ratio", "ok", "extra"])
maps = st.dictionaries(keys, any_value, max_size=7).map(cbor2.dumps)
ordered = st.permutations(["seq", "t_ns", "data", "label", "ratio", "ok"]).flatmap(
    lambda order: st.tuples(*(any_value for _ in order)).map(
        lambda vals: cbor2.dumps(dict(zip(order, vals, strict=True)))))


@settings(max_examples=300, deadline=None)
@given(scalars)
def test_encoder_output_takes_the_fast_path(msg: Scalars) -> None:
    data = encode_message(msg, type_of(Scalars))
    fast = type_of(Scalars).decode_fast
    assert fast is not None
    back = fast(data)
    if msg.ratio == msg.ratio and (msg.ratio - msg.ratio == 0.0) and -(2**64) <= msg.seq < 2**64:
        assert back is not FALLBACK  # finite float64, int within a head: our shape
        assert repr(back) == repr(msg)
    same(Scalars, data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(maps, ordered, st.binary(max_size=40)))
def test_any_map_or_bytes_decode_as_the_generic_path(data: bytes) -> None:
    same(Scalars, data)


@settings(max_examples=300, deadline=None)
@given(scalars, st.data())
def test_mutated_payloads_decode_as_the_generic_path(msg: Scalars, draw: st.DataObject) -> None:
    data = bytearray(encode_message(msg, type_of(Scalars)))
    how = draw.draw(st.sampled_from(["flip", "cut", "append", "insert"]))
    pos = draw.draw(st.integers(0, len(data) - 1))
    if how == "flip":
        data[pos] ^= draw.draw(st.integers(1, 255))
    elif how == "cut":
        del data[pos:]
    elif how == "append":
        data += draw.draw(st.binary(min_size=1, max_size=3))
    else:
        data[pos:pos] = draw.draw(st.binary(min_size=1, max_size=3))
    same(Scalars, bytes(data))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 30) | st.integers(-(2**65), 2**65))
def test_a_constructor_that_raises_behaves_as_on_the_generic_path(value: int) -> None:
    data = cbor2.dumps({"value": value})
    same(Checked, data)
    if value == 13:
        assert type_of(Checked).decode_fast(data) is FALLBACK  # type: ignore[misc]
        assert outcome(Checked, data, type_of(Checked).fingerprint, False)[0] is DecodeError
        assert outcome(Checked, data, None, False)[0] is Record


def test_an_empty_class_round_trips() -> None:
    data = encode_message(Empty(), type_of(Empty))
    fast = type_of(Empty).decode_fast
    assert fast is not None and fast(data) == Empty()
    assert fast(data + b"\x00") is FALLBACK
    same(Empty, data)
    same(Empty, data + b"\x00")


def test_non_minimal_heads_decode_to_the_same_values() -> None:
    # seq = 5 in a two-byte head, and data with a one-byte length head for 3 bytes.
    key = cbor2.dumps
    rest = key("label") + b"\x78\x01x" + key("ratio") + cbor2.dumps(0.5) + key("ok") + b"\xf5"
    data = (b"\xa6" + key("seq") + b"\x18\x05" + key("t_ns") + b"\x19\x00\x07"
            + key("data") + b"\x58\x03abc" + rest)
    fast = type_of(Scalars).decode_fast
    assert fast is not None and fast(data) == Scalars(5, 7, b"abc")
    same(Scalars, data)
    # Fields with defaults left out: the generic path fills them in.
    short = b"\xa3" + key("seq") + b"\x05" + key("t_ns") + b"\x07" + key("data") + b"\x43abc"
    assert fast(short) is FALLBACK
    same(Scalars, short)


def test_kinds_it_does_not_read_get_no_fast_decoder() -> None:
    assert type_of(WithOptional).decode_fast is None
    assert compile_decoder(WithOptional, (("value", "int"), ("note", "optional<str>"))) is None
    data = encode_message(WithOptional(3, "n"), type_of(WithOptional))
    same(WithOptional, data)


def test_invalid_utf8_and_wrong_kinds_fall_back() -> None:
    fast = type_of(Scalars).decode_fast
    assert fast is not None
    good = encode_message(Scalars(1, 2, b"x", "ab"), type_of(Scalars))
    bad_text = good.replace(b"\x62ab", b"\x62\xff\xfe")
    assert fast(bad_text) is FALLBACK
    same(Scalars, bad_text)
    as_int = cbor2.dumps({"seq": 1, "t_ns": 2, "data": b"x", "label": "ab", "ratio": 1,
                          "ok": True})
    assert fast(as_int) is FALLBACK  # an int where a float is declared: generic converts
    same(Scalars, as_int)


@message("test_decodegen.KwOnly")
@dataclass
class KwOnly:
    seq: int
    label: str = dataclasses.field(default="k", kw_only=True)
    t_ns: int = 0


@message("test_decodegen.Reordered")
@dataclass(init=False)
class Reordered:
    a: int
    b: int

    def __init__(self, b: int, a: int) -> None:  # the fields, in another order
        self.a, self.b = a, b


def test_call_args_go_by_position_only_where_the_parameter_is_that_field() -> None:
    assert call_args(Scalars, ["seq", "t_ns", "data"], ["x", "y", "z"]) == "x, y, z"
    # A kw_only field and every field after it go by keyword.
    assert call_args(KwOnly, ["seq", "label", "t_ns"], ["x", "y", "z"]) == "x, label=y, t_ns=z"
    assert call_args(Reordered, ["a", "b"], ["x", "y"]) == "a=x, b=y"


@settings(max_examples=100, deadline=None)
@given(st.integers(-(2**40), 2**40), texts, st.integers(0, 2**40))
def test_kw_only_and_reordered_classes_decode_as_the_generic_path(a: int, label: str,
                                                                   b: int) -> None:
    data = encode_message(KwOnly(a, label=label, t_ns=b), type_of(KwOnly))
    fast = type_of(KwOnly).decode_fast
    assert fast is not None and fast(data) == KwOnly(a, label=label, t_ns=b)
    same(KwOnly, data)
    data = encode_message(Reordered(b=b, a=a), type_of(Reordered))
    fast = type_of(Reordered).decode_fast
    assert fast is not None
    got = fast(data)
    assert (got.a, got.b) == (a, b)
    same(Reordered, data)
