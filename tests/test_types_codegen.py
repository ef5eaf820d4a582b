"""The generated per-type encoders and size bounds (ganglion.types._codegen).

They must write exactly the bytes of the generic path (``cbor2.dumps`` of the
field map), bound the size from above without encoding, and refuse what the
generic path refuses.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import EncodeError
from ganglion.types import TypeRegistry, encode_message
from ganglion.types._codegen import cbor_head

reg = TypeRegistry()


class Colour(enum.Enum):
    RED = 1
    BLUE = 300


@dataclass
class Inner:
    x: int


@reg.message("codegen.All")
@dataclass
class All:
    i: int
    f: float
    b: bool
    s: str
    y: bytes
    e: Colour
    o: int | None
    items: list[int]
    inner: Inner
    when: dt.datetime


@reg.message("codegen.Empty")
@dataclass
class Empty:
    pass


class Sub(All):
    pass


ALL = reg.lookup("codegen.All")
assert ALL is not None


def _generic(obj: object) -> bytes:
    assert ALL is not None
    return cbor2.dumps(ALL.struct.encode(obj))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.booleans(), st.text(),
       st.binary(max_size=300), st.sampled_from(Colour), st.none() | st.integers(),
       st.lists(st.integers(-(2**65), 2**65), max_size=5), st.integers(),
       st.datetimes(timezones=st.just(dt.UTC)))
def test_same_bytes_as_generic_and_bound_holds(i: int, f: float, b: bool, s: str, y: bytes,
                                               e: Colour, o: int | None, items: list[int],
                                               n: int, when: dt.datetime) -> None:
    assert ALL is not None
    msg = All(i, f, b, s, y, e, o, items, Inner(n), when)
    want = _generic(msg)
    assert ALL.encode(msg) == want
    assert ALL.size_bound(msg) >= len(want)
    assert cbor2.loads(ALL.encode(msg))["s"] == s


def _sample(**kw: object) -> All:
    fields: dict[str, object] = dict(i=1, f=1.5, b=True, s="x", y=b"", e=Colour.RED, o=None,
                                     items=[], inner=Inner(0),
                                     when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    fields.update(kw)
    return All(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [
    {"i": True}, {"i": 1.0}, {"f": "1"}, {"b": 1}, {"s": b"x"}, {"y": "x"}, {"e": 1},
    {"o": "x"}, {"items": [1.5]}, {"inner": 3}, {"when": dt.datetime(2024, 1, 1)},
    {"s": "\ud800"},
])
def test_bad_values_raise_like_the_generic_path(kw: dict[str, object]) -> None:
    assert ALL is not None
    msg = _sample(**kw)
    (field,) = kw
    # The field converters of the generic path raise ValueError (cbor2's and the
    # codec's own); the generated functions must raise the same, not pass the value.
    with pytest.raises(ValueError):
        ALL.encode(msg)
    with pytest.raises(ValueError):
        ALL.size_bound(msg)
    # names the field; a str that is not UTF-8 fails later, in cbor2, for the whole message
    with pytest.raises(EncodeError, match=rf"^codegen\.All\.{field}: |^cannot encode All as CBOR"):
        encode_message(msg, ALL)


def test_converted_values_take_the_generic_path() -> None:
    assert ALL is not None
    # an int subclass and a bytearray are converted by the field kinds, as before
    msg = _sample(i=Colour.RED.__class__.RED.value, y=bytearray(b"ab"), f=3)
    assert ALL.encode(msg) == _generic(msg)
    assert ALL.size_bound(msg) >= len(_generic(msg))


def test_special_floats_and_big_ints_match() -> None:
    assert ALL is not None
    for f in (float("nan"), float("inf"), -0.0, 5e-324):
        for i in (23, 24, 2**64 - 1, 2**64, -(2**64), -(2**64) - 1):
            msg = _sample(f=f, i=i)
            assert ALL.encode(msg) == _generic(msg)
            assert ALL.size_bound(msg) >= len(ALL.encode(msg))


def test_subclass_instances_use_the_generic_encoder() -> None:
    assert ALL is not None
    msg = Sub(**_sample().__dict__)
    assert ALL.encode(msg) == _generic(msg)


def test_empty_message() -> None:
    empty = reg.lookup("codegen.Empty")
    assert empty is not None
    assert empty.encode(Empty()) == b"\xa0" == cbor2.dumps({})
    assert empty.size_bound(Empty()) == 1


@pytest.mark.parametrize("n", [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])
def test_cbor_head_is_minimal(n: int) -> None:
    assert cbor_head(0, n) == cbor2.dumps(n)
