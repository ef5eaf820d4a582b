"""The payload codec's fast paths behave exactly like the general ones.

* ``payload_decoder(name, fp)(data)`` is ``decode_payload(name, data, fp)``: same
  value or the same DecodeError message, for registered types (matching or
  mismatched fingerprint), unregistered ones, and arbitrary bytes.
* ``encode_message(obj, type_of(obj))`` is ``encode_payload(obj)``, errors included.
* The struct codec skips the converter only for values of exactly the kind's
  type; subclasses (bool for int, IntEnum, bytearray, str subclasses) still go
  through it, so they are converted or refused as before.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import DecodeError, EncodeError
from ganglion.types import (
    Record,
    TypeRegistry,
    decode_payload,
    encode_message,
    encode_payload,
    message,
    payload_decoder,
    type_of,
)


@message("test_fastpath.Sample")
@dataclass
class Sample:
    seq: int
    t_ns: int
    data: bytes
    label: str = "x"
    ratio: float = 0.5
    ok: bool = True
    tags: list[str] = field(default_factory=list)
    note: str | None = None


FP = type_of(Sample).fingerprint
NAME = "test_fastpath.Sample"


def outcome(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        result = fn(*args, **kw)
    except (DecodeError, EncodeError) as exc:
        return type(exc), str(exc)
    # Compared by type and repr where repr is exact (floats: NaN is not equal to itself).
    if isinstance(result, Record) or dataclasses.is_dataclass(result):
        return type(result), repr(result)
    return result


samples = st.builds(
    Sample, st.integers(-(2**70), 2**70), st.integers(0, 2**63), st.binary(max_size=40),
    st.text(max_size=10), st.floats(allow_nan=False), st.booleans(),
    st.lists(st.text(max_size=5), max_size=3), st.none() | st.text(max_size=5))

# Maps that may or may not fit Sample: right and wrong kinds, missing and extra keys.
values = st.one_of(st.integers(-5, 2**64), st.binary(max_size=5), st.text(max_size=5),
                   st.floats(), st.booleans(), st.none(), st.lists(st.text(max_size=3), max_size=2))
maps = st.dictionaries(
    st.sampled_from(["seq", "t_ns", "data", "label", "ratio", "ok", "tags", "note", "extra"]),
    values, max_size=9).map(cbor2.dumps)


@settings(max_examples=300, deadline=None)
@given(samples)
def test_encode_message_is_encode_payload(msg: Sample) -> None:
    assert encode_message(msg, type_of(msg)) == encode_payload(msg)


@settings(max_examples=300, deadline=None)
@given(st.one_of(maps, st.binary(max_size=60), samples.map(encode_payload)),
       st.sampled_from([FP, b"other fp", None]),
       st.sampled_from([NAME, "test_fastpath.Unknown"]))
def test_payload_decoder_is_decode_payload(data: bytes, fp: bytes | None, name: str) -> None:
    assert outcome(payload_decoder(name, fp), data) == outcome(decode_payload, name, data, fp)


def test_payload_decoder_uses_an_explicit_empty_registry() -> None:
    data = encode_payload(Sample(1, 2, b"3"))
    back = payload_decoder(NAME, FP, registry=TypeRegistry())(data)
    assert isinstance(back, Record) and back.fields["seq"] == 1


class Small(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


def test_subclass_values_still_go_through_the_converter() -> None:
    msg = Sample(Small.ONE, 5, bytearray(b"ab"), label=Text("t"), ratio=2)  # type: ignore[arg-type]
    item = cbor2.loads(encode_payload(msg))
    assert type(item["seq"]) is int and type(item["data"]) is bytes
    assert type(item["label"]) is str and type(item["ratio"]) is float
    with pytest.raises(EncodeError, match="seq: expected int, got bool"):
        encode_payload(Sample(True, 5, b""))
    with pytest.raises(EncodeError, match="ok: expected bool, got int"):
        encode_payload(Sample(1, 5, b"", ok=1))  # type: ignore[arg-type]


def test_decode_refuses_wrong_kinds_naming_the_field_and_fills_defaults() -> None:
    good = {"seq": 1, "t_ns": 2, "data": b""}
    assert decode_payload(NAME, cbor2.dumps(good), FP) == Sample(1, 2, b"")
    for name, bad, want in [("seq", True, "seq: expected int, got bool"),
                            ("data", "s", "data: expected bytes, got str"),
                            ("note", 3, "note: expected str, got int")]:
        with pytest.raises(DecodeError, match=want):
            decode_payload(NAME, cbor2.dumps({**good, name: bad}), FP)
    with pytest.raises(DecodeError, match="missing field 't_ns'"):
        decode_payload(NAME, cbor2.dumps({"seq": 1, "data": b""}), FP)
    # An int for a float field is converted (other encoders send whole floats as ints).
    back = decode_payload(NAME, cbor2.dumps({**good, "ratio": 3}), FP)
    assert isinstance(back, Sample) and type(back.ratio) is float


def test_none_is_a_value_not_a_missing_field() -> None:
    back = decode_payload(NAME, cbor2.dumps({"seq": 1, "t_ns": 2, "data": b"", "note": None}), FP)
    assert isinstance(back, Sample) and back.note is None
    reg = TypeRegistry()
    cls = dataclasses.make_dataclass("N", [("v", int)])
    reg.register(cls, "x.N")
    with pytest.raises(DecodeError, match="v: expected int, got null"):
        decode_payload("x.N", cbor2.dumps({"v": None}), reg.type_of(cls).fingerprint, registry=reg)
