"""Layout templates give exactly the generated decoder's results, only faster.

Every check compares a template-fronted decoder (``with_templates``) with the
generated decoder it wraps, on the same bytes: valid payloads of many layouts,
payloads of one length with other layouts (a bool flipped, an int head changed
width while a blob shrank), mutated payloads and a constructor that raises.
Results are compared by type and repr (NaN and -0.0 count). Also checked: a
template is really made and used for what our encoder writes, is refused for
what it cannot read, and at most ``MAX_TEMPLATES`` lengths get one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from test_types_decodegen import Checked, Scalars

from ganglion.types import encode_message, type_of
from ganglion.types._decodegen import FALLBACK, compile_decoder
from ganglion.types._templates import MAX_TEMPLATES, compile_template, with_templates

# The generated decoder's own test classes: the same types, checked the same way.
Reading = Scalars


READING_FIELDS = (("seq", "int"), ("t_ns", "int"), ("data", "bytes"), ("label", "str"),
                  ("ratio", "float"), ("ok", "bool"))


def generated_for(cls: type, fields: tuple[tuple[str, str], ...]) -> Any:
    decoder = compile_decoder(cls, fields)
    assert decoder is not None
    return decoder


def same(a: object, b: object) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)


ints = st.one_of(st.integers(-30, 30), st.integers(-2**64, 2**64 - 1))
readings = st.builds(
    Reading,
    seq=ints,
    t_ns=ints,
    data=st.binary(max_size=300),
    label=st.text(max_size=40),
    ratio=st.floats(allow_nan=True, allow_infinity=True),
    ok=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(readings, min_size=1, max_size=12))
def test_templates_agree_with_generated_decoder_on_valid_payloads(msgs: list[Reading]) -> None:
    generated = generated_for(Reading, READING_FIELDS)
    fronted = with_templates(Reading, READING_FIELDS, generated)
    mtype = type_of(Reading)
    for msg in msgs * 2:  # the second pass meets the templates the first one made
        payload = encode_message(msg, mtype)
        assert same(fronted(payload), generated(payload))


@settings(max_examples=150, deadline=None)
@given(readings, st.data())
def test_templates_agree_on_mutated_payloads(msg: Reading, data: st.DataObject) -> None:
    generated = generated_for(Reading, READING_FIELDS)
    fronted = with_templates(Reading, READING_FIELDS, generated)
    payload = encode_message(msg, type_of(Reading))
    fronted(payload)  # learn this length's template
    mutated = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    assert same(fronted(bytes(mutated)), generated(bytes(mutated)))


def test_a_template_is_made_and_used_for_what_the_encoder_writes() -> None:
    mtype = type_of(Reading)
    first = encode_message(Reading(seq=5, t_ns=2**40, data=b"abc", label="hé", ratio=1.5,
                                   ok=False), mtype)
    template = compile_template(Reading, READING_FIELDS, first)
    assert template is not None
    other = Reading(seq=17, t_ns=2**40 + 99, data=b"xyz", label="hà", ratio=-2.0, ok=False)
    assert template(encode_message(other, mtype)) == other


def test_small_and_negative_ints_stay_in_their_head_byte() -> None:
    fields = (("value", "int"),)
    generated = generated_for(Checked, fields)
    template = compile_template(Checked, fields, cbor2.dumps({"value": 5}))
    assert template is not None
    assert template(cbor2.dumps({"value": 23})) == Checked(23)
    # Same length, but the head is the start of a longer int or a negative one.
    assert template(b"\xa1evalue\x18") is FALLBACK
    assert template(cbor2.dumps({"value": -4})) is FALLBACK
    negative = compile_template(Checked, fields, cbor2.dumps({"value": -4}))
    assert negative is not None
    assert negative(cbor2.dumps({"value": -24})) == Checked(-24)
    assert negative(cbor2.dumps({"value": 4})) is FALLBACK
    fronted = with_templates(Checked, fields, generated)
    for value in (5, -4, 23, -24, 0, -1):
        payload = cbor2.dumps({"value": value})
        assert same(fronted(payload), generated(payload))


def test_same_length_other_layout_goes_to_the_generated_decoder() -> None:
    mtype = type_of(Reading)
    generated = generated_for(Reading, READING_FIELDS)
    fronted = with_templates(Reading, READING_FIELDS, generated)
    learned = encode_message(Reading(seq=5, t_ns=1, data=b"abcd", ok=True), mtype)
    # seq takes one byte more (0x18 head), data one byte less: same length, other layout.
    shifted = encode_message(Reading(seq=200, t_ns=1, data=b"abc", ok=True), mtype)
    flipped = encode_message(Reading(seq=5, t_ns=1, data=b"abcd", ok=False), mtype)
    assert len(learned) == len(shifted) == len(flipped)
    fronted(learned)
    assert fronted(shifted) == Reading(seq=200, t_ns=1, data=b"abc", ok=True)
    assert fronted(flipped) == Reading(seq=5, t_ns=1, data=b"abcd", ok=False)


def test_a_raising_constructor_is_the_generated_decoders_business() -> None:
    fields = (("value", "int"),)
    generated = generated_for(Checked, fields)
    fronted = with_templates(Checked, fields, generated)
    assert fronted(cbor2.dumps({"value": 12})) == Checked(12)
    assert fronted(cbor2.dumps({"value": 13})) is FALLBACK
    assert generated(cbor2.dumps({"value": 13})) is FALLBACK


def test_templates_are_not_made_for_layouts_they_cannot_read() -> None:
    fields = (("value", "int"),)
    assert compile_template(Checked, fields, cbor2.dumps({"other": 1})) is None
    assert compile_template(Checked, fields, cbor2.dumps({"value": 1}) + b"\x00") is None
    # A bignum (tag 2) is read by the generic decoder only.
    assert compile_template(Checked, fields, cbor2.dumps({"value": 2**70})) is None


def test_at_most_max_templates_lengths_get_a_template() -> None:
    calls: list[bytes] = []
    fields = (("data", "bytes"),)

    @dataclass
    class Blob:
        data: bytes

    real = generated_for(Blob, fields)

    def counting(payload: bytes) -> Any:
        calls.append(payload)
        return real(payload)

    fronted = with_templates(Blob, fields, counting)
    sizes = range(MAX_TEMPLATES + 3)
    payloads = [cbor2.dumps({"data": bytes(n)}) for n in sizes]
    for n, payload in zip(sizes, payloads, strict=True):
        assert fronted(payload) == Blob(bytes(n))
    calls.clear()
    for n, payload in zip(sizes, payloads, strict=True):
        assert fronted(payload) == Blob(bytes(n))
    # Templated lengths skip the generated decoder; the ones past the bound take it.
    assert len(calls) == 3
