"""The compiled plan's reader and writer (``plan_decode``, ``plan_encode``: what the
lanes do to each payload) against the Python codecs they stand in for.

The plan reads a subset of what the generated decoder reads and writes a subset of what
the generated encoder writes: where it answers, it must give the same message and the
same bytes; everywhere else it must answer None (the Python codecs then decide)."""

from __future__ import annotations

import cbor2
import pytest
from _lane_harness import KINDS, Sample, common, speedups, unusual
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.types import decode_payload, type_of
from ganglion.types._decodegen import FALLBACK, compile_decoder

pytestmark = pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")

MTYPE = type_of(Sample)
PLAN = MTYPE.plan
FIELDS = tuple((f.name, f.schema) for f in MTYPE.struct.fields)
GENERATED = compile_decoder(Sample, FIELDS)


@settings(max_examples=300, deadline=None)
@given(common)
def test_the_plan_writes_and_reads_what_the_generated_codecs_do(sample: Sample) -> None:
    payload = MTYPE.encode(sample)
    assert speedups.plan_encode(PLAN, sample) == payload
    got = speedups.plan_decode(PLAN, payload)
    assert type(got) is Sample and got == sample
    assert got == GENERATED(payload) == decode_payload(MTYPE.name, payload, MTYPE.fingerprint)


@pytest.mark.parametrize("cls", KINDS)
def test_each_construction_builds_what_calling_the_class_does(cls: type) -> None:
    mtype = type_of(cls)
    msg = cls(-5, 2.5, False, "ünïcode", b"\x00\xff")
    got = speedups.plan_decode(mtype.plan, mtype.encode(msg))
    assert type(got) is cls and got == msg


@settings(max_examples=200, deadline=None)
@given(unusual)
def test_values_the_generated_encoder_writes_another_way_are_left_to_it(sample: Sample) -> None:
    assert speedups.plan_encode(PLAN, sample) is None


ONE_AND_A_HALF = MTYPE.encode(Sample(1, 1.5, True, "", b""))
AS_FLOAT32 = ONE_AND_A_HALF.replace(b"\xfb\x3f\xf8" + bytes(6), b"\xfa\x3f\xc0\x00\x00")
assert AS_FLOAT32 != ONE_AND_A_HALF


@pytest.mark.parametrize("payload", [
    cbor2.dumps({"n": 1, "x": 1.0, "ok": True, "label": "", "raw": b""}, canonical=True),  # order
    AS_FLOAT32,
    MTYPE.encode(Sample(1, 1.0, True, "", b"")) + b"\x00",  # a trailing byte
    MTYPE.encode(Sample(1, 1.0, True, "", b""))[:-1],  # one short
    MTYPE.encode(Sample(1, 1.0, True, "ab", b"")).replace(b"ab", b"\xff\xfe"),  # not UTF-8
    b"",
])
def test_payloads_the_plan_does_not_read_are_left_to_python(payload: bytes) -> None:
    assert speedups.plan_decode(PLAN, payload) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80), st.data())
def test_on_any_bytes_the_plan_agrees_with_the_generated_decoder_or_abstains(
        noise: bytes, data: st.DataObject) -> None:
    # Mutations of a valid payload reach far deeper than random bytes alone.
    base = MTYPE.encode(data.draw(common))
    at = data.draw(st.integers(0, len(base)))
    for payload in (noise, base[:at] + noise[:4] + base[at + 4:]):
        try:
            got = speedups.plan_decode(PLAN, payload)
        except ValueError:
            continue  # the class refused the values (the lane then asks Python)
        if got is not None:
            assert got == GENERATED(payload) and GENERATED(payload) is not FALLBACK


def test_a_class_that_refuses_its_values_raises_through_the_plan() -> None:
    payload = MTYPE.encode(Sample(1, 1.0, True, "refusx", b"")).replace(b"refusx", b"refuse")
    with pytest.raises(ValueError, match="refuses"):
        speedups.plan_decode(PLAN, payload)


def test_what_is_not_a_plan_is_refused() -> None:
    with pytest.raises(TypeError, match="not a plan"):
        speedups.plan_decode((Sample,), b"")
    with pytest.raises(TypeError, match="not a plan"):
        speedups.plan_encode((*PLAN[:1], (b"x",), *PLAN[2:]), Sample(1, 1.0, True, "", b""))
    # Each part the readers index without checking: a head that is not bytes, a name
    # too few, a count that is not an int.
    for bad in ((*PLAN[:1], ("n",) * 5, *PLAN[2:]), (*PLAN[:5], PLAN[5][:4], PLAN[6]),
                (*PLAN[:3], "0", *PLAN[4:])):
        with pytest.raises(TypeError, match="not a plan"):
            speedups.plan_decode(bad, MTYPE.encode(Sample(1, 1.0, True, "", b"")))
        with pytest.raises(TypeError, match="not a plan"):
            speedups.batch_add(object(), 0, Sample(1, 1.0, True, "", b""), bad, 100)
    with pytest.raises(TypeError):
        speedups.plan_decode(PLAN)  # type: ignore[call-arg]
