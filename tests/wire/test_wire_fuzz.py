"""Fuzz: any byte string either decodes or raises DecodeError, never anything else.

As h11's afl harness puts it: "either successfully parse it, or else throw a
RemoteProtocolError, never any other error". Inputs are random bytes and
truncations, bit flips, byte overwrites and splices of valid datagrams, with
and without a network key. Whatever decodes must also be self-consistent.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import AuthError, DecodeError
from ganglion.types import decode_payload
from ganglion.wire import Envelope, decode_datagram, encode_datagram

KEY = bytes(range(32))
KEYS = st.sampled_from([None, KEY])

names = st.sampled_from(["a.b", "brewery.Temperature", "x" * 50 + ".Y"])
valid = st.builds(
    lambda name, seq, boot, stamps, payloads, key: encode_datagram(
        node_id=b"\x00\x11\x22\x33\x44\x55\x66\x77", type_name=name, fingerprint=b"f" * 8,
        first_seq=seq, timestamps=[stamps + i * 997 for i in range(len(payloads))],
        payloads=payloads, boot=boot, key=key, max_datagram=None),
    names,
    st.integers(0, 2**40),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**62),
    st.lists(st.binary(min_size=1, max_size=150), min_size=1, max_size=6),
    KEYS,
)


def check(data: bytes, key: bytes | None) -> None:
    """Decode and, if it decodes, check what came out is sane; else only DecodeError."""
    try:
        env = decode_datagram(data, key=key)
    except DecodeError:
        return
    assert isinstance(env, Envelope)
    assert env.count == len(env.timestamps) >= 1
    assert len(env.node_id) == 8 and len(env.fingerprint) == 8
    assert env.signed is (key is not None)
    assert sum(map(len, env.payloads)) < len(data)
    for payload in env.payloads:
        try:
            decoded = decode_payload(env.type_name, payload, env.fingerprint)
        except DecodeError:
            continue
        assert decoded is not None


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=400), KEYS)
def test_random_bytes(data: bytes, key: bytes | None) -> None:
    check(data, key)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), KEYS)
def test_random_bytes_after_a_valid_prefix(tail: bytes, key: bytes | None) -> None:
    check(b"GN\x01\x00" + tail, key)
    check(b"GN\x01\x01" + tail, key)


@settings(max_examples=500, deadline=None)
@given(valid, st.data())
def test_truncations(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(0, len(data)))
    for key in (None, KEY):
        check(data[:cut], key)
        check(data[cut:], key)


@settings(max_examples=1000, deadline=None)
@given(valid, st.data())
def test_bit_flips_and_overwrites(data: bytes, draw: st.DataObject) -> None:
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 6))):
        i = draw.draw(st.integers(0, len(buf) - 1))
        if draw.draw(st.booleans()):
            buf[i] ^= 1 << draw.draw(st.integers(0, 7))
        else:
            buf[i] = draw.draw(st.integers(0, 255))
    for key in (None, KEY):
        check(bytes(buf), key)


@settings(max_examples=500, deadline=None)
@given(valid, valid, st.data())
def test_splices_of_two_datagrams(a: bytes, b: bytes, draw: st.DataObject) -> None:
    i = draw.draw(st.integers(0, len(a)))
    j = draw.draw(st.integers(0, len(b)))
    for key in (None, KEY):
        check(a[:i] + b[j:], key)
        check(a + b, key)


@settings(max_examples=300, deadline=None)
@given(valid, st.data())
def test_any_change_to_a_signed_datagram_fails_authentication(
    data: bytes, draw: st.DataObject
) -> None:
    if data[3] != 1:
        return  # unsigned sample
    buf = bytearray(data)
    i = draw.draw(st.integers(4, len(buf) - 1))  # past magic/version/flags
    buf[i] ^= 1 << draw.draw(st.integers(0, 7))
    try:
        decode_datagram(bytes(buf), key=KEY)
    except AuthError:
        return
    raise AssertionError("a modified signed datagram was accepted")
