"""decode_fields, the receive hot path, agrees with decode_datagram on every input.

decode_datagram is decode_fields wrapped in an Envelope, so the two must accept
the same bytes with the same fields and refuse the same bytes with the same
error (class and message). Checked on valid datagrams (batched, signed or not)
and on a fuzz corpus of random bytes, truncations, bit flips and splices.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import DecodeError
from ganglion.wire import Packer, decode_datagram, decode_fields, encode_datagram

KEY = bytes(range(32))
KEYS = st.sampled_from([None, KEY])

valid = st.builds(
    lambda name, seq, boot, stamp, gaps, payloads, key: encode_datagram(
        node_id=b"\x00\x11\x22\x33\x44\x55\x66\x77", type_name=name, fingerprint=b"f" * 8,
        first_seq=seq, timestamps=[stamp + sum(gaps[:i]) for i in range(len(payloads))],
        payloads=payloads, boot=boot, key=key, max_datagram=None),
    st.sampled_from(["a.b", "brewery.Temperature"]),
    st.integers(0, 2**40),
    st.integers(0, 2**32 - 1),
    st.integers(2**40, 2**62),
    st.lists(st.integers(-(2**30), 2**30), min_size=6, max_size=6),
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=6),
    KEYS,
)


def outcome(fn: object, data: bytes, key: bytes | None) -> object:
    """The decoded fields as a tuple, or the error's class and message."""
    try:
        if fn is decode_datagram:
            env = decode_datagram(data, key=key)
            return (env.node_id, env.type_name, env.fingerprint, env.first_seq,
                    list(env.timestamps), list(env.payloads), env.boot, env.flags)
        return decode_fields(data, key)
    except DecodeError as exc:
        return type(exc), str(exc)


def agree(data: bytes, key: bytes | None) -> None:
    assert outcome(decode_fields, data, key) == outcome(decode_datagram, data, key)


@settings(max_examples=300, deadline=None)
@given(valid, KEYS)
def test_valid_datagrams_agree(data: bytes, key: bytes | None) -> None:
    agree(data, key)  # with the wrong key (or none) both refuse, with the same AuthError


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), KEYS)
def test_random_bytes_agree(data: bytes, key: bytes | None) -> None:
    agree(data, key)


@settings(max_examples=500, deadline=None)
@given(valid, st.data())
def test_mutations_agree(data: bytes, draw: st.DataObject) -> None:
    kind = draw.draw(st.sampled_from(["truncate", "flip", "overwrite", "append"]))
    buf = bytearray(data)
    if kind == "truncate":
        del buf[draw.draw(st.integers(0, len(buf) - 1)):]
    elif kind == "flip":
        pos = draw.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << draw.draw(st.integers(0, 7))
    elif kind == "overwrite":
        buf[draw.draw(st.integers(0, len(buf) - 1))] = draw.draw(st.integers(0, 255))
    else:
        buf += draw.draw(st.binary(min_size=1, max_size=20))
    for key in (None, KEY):
        agree(bytes(buf), key)


@settings(max_examples=200, deadline=None)
@given(valid, valid, st.data())
def test_splices_agree(a: bytes, b: bytes, draw: st.DataObject) -> None:
    data = a[: draw.draw(st.integers(0, len(a)))] + b[draw.draw(st.integers(0, len(b))):]
    for key in (None, KEY):
        agree(data, key)


@pytest.mark.parametrize("key", [None, KEY])
def test_packer_batches_decode_to_what_was_added(key: bytes | None) -> None:
    p = Packer(node_id=b"n" * 8, type_name="a.b", fingerprint=b"f" * 8, boot=3, key=key,
               first_seq=40, max_datagram=65_000)
    stamps = [10**18, 10**18 + 5, 10**18 + 20_000, 10**18 - 3, 10**18 + 2**40]
    payloads = [b"x", b"y" * 127, b"z" * 128, b"w" * 16383, b"v" * 16384]
    for ts, payload in zip(stamps, payloads, strict=True):
        assert p.add(payload, ts)
    fields = decode_fields(p.build(), key)
    assert fields == (b"n" * 8, "a.b", b"f" * 8, 40, stamps, payloads, 3, 1 if key else 0)


def test_a_memoryview_is_copied_so_payloads_survive_buffer_reuse() -> None:
    buf = bytearray(encode_datagram(node_id=b"n" * 8, type_name="a.b", fingerprint=b"f" * 8,
                                    first_seq=0, timestamps=[1], payloads=[b"abc"]))
    fields = decode_fields(memoryview(buf), None)
    buf[:] = bytes(len(buf))
    assert fields[5] == [b"abc"]
