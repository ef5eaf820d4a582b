"""Encrypted datagrams (flag bit 3): round trip, tampering, keys, nonces, the spec vector.

docs/protocol.md section 5.2 is the reference; these tests check the code against it
(the HKDF against ``cryptography``'s own HKDF, the nonce by decrypting by hand).
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import AuthError, DecodeError, EncodeError
from ganglion.wire import (
    FLAG_AEAD,
    FLAG_MAC,
    KeyRing,
    Packer,
    decode_datagram,
    decode_fields,
    encode_datagram,
    key_id,
)
from ganglion.wire._aead import OPENER_CAP, Opener, derive_key, prk_of
from ganglion.wire._packer import datagram_size

KEY = bytes(range(32))
NEW_KEY = bytes(range(100, 132))
NODE = bytes(range(1, 9))
FP = bytes(range(1, 9))
SESSION = bytes(range(8))
TS = 0x0102030405060708
#: docs/protocol.md section 5.2: the section 2 example (type a.B, seq 258, boot 5, the
#: empty map) encrypted under the key 00..1f with session 00..07.
SPEC_VECTOR = bytes.fromhex(
    "474e0108" "0102030405060708" "00000005" "0102030405060708" "03612e42"
    "0000000000000102" "0102030405060708" "0001"
    "73454591" "0001020304050607"
    "35ff52"
    "8da662e9678c30967c7fc06913b9fc85"
)
#: The same datagram signed (MAC-only), as docs/protocol.md section 2 gives it.
SPEC_SIGNED = bytes.fromhex(
    "474e0101" "0102030405060708" "00000005" "0102030405060708" "03612e42"
    "0000000000000102" "0102030405060708" "0001" "0001a0"
    "17b05356db7cad4aa1414e3a7462f309"
)


def sealer(key: bytes = KEY, session: bytes = SESSION, name: str = "a.B",
           node: bytes = NODE) -> object:
    return KeyRing([key]).sealer(node, session, name)


def encrypted(payloads: list[bytes], *, first_seq: int = 258, boot: int = 5,
              key: bytes = KEY, session: bytes = SESSION, name: str = "a.B") -> bytes:
    return encode_datagram(node_id=NODE, type_name=name, fingerprint=FP, first_seq=first_seq,
                           timestamps=[TS + i for i in range(len(payloads))],
                           payloads=payloads, boot=boot,
                           sealer=sealer(key, session, name))  # type: ignore[arg-type]


# -- the format ---------------------------------------------------------------------


def test_the_spec_vector_is_what_the_encoder_writes_and_the_decoder_reads() -> None:
    assert encrypted([b"\xa0"]) == SPEC_VECTOR
    env = decode_datagram(SPEC_VECTOR, key=KEY)
    assert (env.node_id, env.type_name, env.first_seq, env.boot) == (NODE, "a.B", 258, 5)
    assert env.payloads == (b"\xa0",) and env.timestamps == (TS,)
    assert env.encrypted and not env.signed and env.flags == FLAG_AEAD


def test_the_header_stays_readable_and_the_payload_does_not() -> None:
    data = encrypted([b"\xa1\x61x\x19\x04\xd2"] * 3)
    name_end = 25 + 3
    # Routing and sequence tracking read the clear header without the key.
    assert data[4:12] == NODE and struct.unpack(">I", data[12:16]) == (5,)
    assert data[25:name_end] == b"a.B"
    assert struct.unpack(">QQH", data[name_end:name_end + 18]) == (258, TS, 3)
    assert data[name_end + 18:name_end + 22] == key_id(KEY)
    assert data[name_end + 22:name_end + 30] == SESSION
    assert b"\xa1\x61x" not in data  # no payload in clear


def test_key_derivation_is_rfc5869_hkdf_sha256() -> None:
    info = b"ganglion-aead-v1" + NODE + SESSION + b"a.B"
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(KEY)
    assert derive_key(prk_of(KEY), NODE, SESSION, b"a.B") == expected


def test_the_nonce_is_the_boot_counter_then_the_first_sequence_number() -> None:
    data = encrypted([b"\xa0", b"\xa0"], first_seq=2**40 + 7, boot=0xDEADBEEF)
    aead = ChaCha20Poly1305(derive_key(prk_of(KEY), NODE, SESSION, b"a.B"))
    body = 25 + 3 + 18 + 12
    plain = aead.decrypt(struct.pack(">IQ", 0xDEADBEEF, 2**40 + 7), data[body:], data[:body])
    assert plain == b"\x00\x01\xa0\x02\x01\xa0"  # two messages, 1 ns apart


def test_the_packer_builds_the_same_bytes_as_the_encoder() -> None:
    p = Packer(node_id=NODE, type_name="a.B", fingerprint=FP, first_seq=258, boot=5,
               sealer=sealer())  # type: ignore[arg-type]
    assert p.build_one(b"\xa0", TS) == SPEC_VECTOR
    p = Packer(node_id=NODE, type_name="a.B", fingerprint=FP, first_seq=258, boot=5,
               sealer=sealer())  # type: ignore[arg-type]
    for i in range(4):
        assert p.add(b"\xa0" * (i + 1), TS + i)
    expected = encrypted([b"\xa0" * (i + 1) for i in range(4)])
    assert p.size == len(expected)
    assert p.build() == expected


def test_a_datagram_built_in_clear_and_sealed_is_what_the_packer_builds() -> None:
    # What the compiled send lane does: the clear datagram, under the packer's own
    # header (flags already say signed or encrypted), through the packer's _seal.
    assert Packer(node_id=NODE, type_name="a.B", fingerprint=FP)._seal is None
    for keys in ({"sealer": sealer()}, {"key": KEY}):
        p = Packer(node_id=NODE, type_name="a.B", fingerprint=FP, first_seq=258, boot=5,
                   **keys)  # type: ignore[arg-type]
        clear = p._prefix + struct.pack(">QQHBB", 258, TS, 1, 0, 1) + b"\xa0"
        assert p._seal is not None
        assert p._seal(clear) == (SPEC_VECTOR if "sealer" in keys else SPEC_SIGNED)
        assert p.build_one(b"\xa0", TS) == p._seal(clear)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=150), min_size=1, max_size=8),
       st.integers(0, 2**64 - 9), st.integers(0, 2**32 - 1), st.booleans())
def test_sealing_a_clear_batch_gives_the_built_datagram(payloads: list[bytes], first: int,
                                                        boot: int, signed: bool) -> None:
    keys = {"key": KEY} if signed else {"sealer": sealer(name="x.Y")}
    p = Packer(node_id=NODE, type_name="x.Y", fingerprint=FP, first_seq=first, boot=boot,
               **keys)  # type: ignore[arg-type]
    clear = Packer(node_id=NODE, type_name="x.Y", fingerprint=FP, first_seq=first, boot=boot)
    for i, payload in enumerate(payloads):
        assert p.add(payload, TS + 3 * i) and clear.add(payload, TS + 3 * i)
    plain = bytearray(clear.build())
    plain[3] = p._prefix[3]  # the clear datagram the lane builds has the keyed flags
    assert p._seal is not None
    assert p._seal(bytes(plain)) == p.build()


def test_the_packer_respects_the_budget_with_the_larger_overhead() -> None:
    budget = 200
    p = Packer(node_id=NODE, type_name="a.B", fingerprint=FP, max_datagram=budget,
               sealer=sealer())  # type: ignore[arg-type]
    largest = max(n for n in range(1, p.limit) if p.fits(n))
    data = p.build_one(b"x" * largest, TS)
    assert len(data) == budget == datagram_size("a.B", largest, encrypted=True, signed=False)
    assert datagram_size("a.B", 10, signed=False, encrypted=True) == \
        datagram_size("a.B", 10, signed=True) + 12
    batch: list[bytes] = []
    while p.add(b"y" * 20, TS):
        pass
    batch.append(p.build())
    assert len(batch[0]) <= budget
    decode_datagram(batch[0], key=KEY)


def test_a_key_and_a_sealer_together_are_refused() -> None:
    with pytest.raises(EncodeError):
        Packer(node_id=NODE, type_name="a.B", fingerprint=FP, key=KEY,
               sealer=sealer())  # type: ignore[arg-type]


# -- what the receiver refuses ------------------------------------------------------


def test_every_changed_byte_is_refused() -> None:
    data = encrypted([b"\xa1\x61x\x19\x04\xd2", b"\xa0"])
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            forged = bytearray(data)
            forged[i] ^= flip
            with pytest.raises(DecodeError):
                decode_datagram(bytes(forged), key=KEY)
            if i >= 4 and i != 24:  # past magic, version and flags, but the name length
                with pytest.raises(AuthError):
                    decode_datagram(bytes(forged), key=KEY)


def test_truncated_or_extended_datagrams_are_refused() -> None:
    data = encrypted([b"\xa0"])
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            decode_datagram(data[:end], key=KEY)
    with pytest.raises(AuthError):
        decode_datagram(data + b"\x00", key=KEY)


def test_wrong_key_no_key_and_an_unknown_key_id_are_authentication_failures() -> None:
    with pytest.raises(AuthError, match="does not verify"):
        decode_datagram(SPEC_VECTOR, key=NEW_KEY)
    with pytest.raises(AuthError, match="no network key"):
        decode_datagram(SPEC_VECTOR, key=None)
    # The right key under another id: found by id, never by trial.
    forged = bytearray(SPEC_VECTOR)
    forged[46:50] = key_id(NEW_KEY)
    with pytest.raises(AuthError):
        decode_datagram(bytes(forged), key=KeyRing([KEY, NEW_KEY]))


def test_mac_and_aead_flags_together_are_refused() -> None:
    forged = bytearray(SPEC_VECTOR)
    forged[3] |= FLAG_MAC
    with pytest.raises(DecodeError, match="not both"):
        decode_datagram(bytes(forged), key=KEY)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_encrypted_datagrams_decode_or_raise_decode_error(data: st.DataObject) -> None:
    payloads = data.draw(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5))
    raw = bytearray(encrypted(payloads, first_seq=data.draw(st.integers(0, 2**64 - 6)),
                              boot=data.draw(st.integers(0, 2**32 - 1))))
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    blob = bytes(raw[:cut]) + data.draw(st.binary(max_size=8))
    for key in (KEY, KeyRing([NEW_KEY, KEY]), None):
        try:
            fields = decode_fields(blob, key)
        except DecodeError:
            continue
        # What verifies is exactly what was encrypted (same sender and type).
        assert fields[0] == NODE and fields[1] == "a.B"


# -- keys: rotation, MAC-only, and the cache ----------------------------------------


def test_a_ring_of_two_keys_reads_both_kinds_under_both_keys() -> None:
    ring = KeyRing([NEW_KEY, KEY])
    old_encrypted = SPEC_VECTOR
    new_encrypted = encrypted([b"\xa0"], key=NEW_KEY)
    old_signed = SPEC_SIGNED
    new_signed = encode_datagram(node_id=NODE, type_name="a.B", fingerprint=FP, first_seq=258,
                                 timestamps=[TS], payloads=[b"\xa0"], boot=5, key=NEW_KEY)
    for data in (old_encrypted, new_encrypted, old_signed, new_signed):
        assert decode_datagram(data, key=ring).payloads == (b"\xa0",)
    with pytest.raises(AuthError):
        decode_datagram(new_encrypted, key=KEY)
    with pytest.raises(AuthError):
        decode_datagram(new_signed, key=KEY)


def test_mac_only_is_byte_identical_to_the_v1_format() -> None:
    ring = KeyRing([KEY], encrypt=False)
    p = Packer(node_id=NODE, type_name="a.B", fingerprint=FP, first_seq=258, boot=5,
               key=ring.sending)
    assert p.build_one(b"\xa0", TS) == SPEC_SIGNED
    assert decode_datagram(SPEC_SIGNED, key=ring).signed


def test_the_decryption_cache_is_bounded_and_keeps_only_verified_senders() -> None:
    opener = Opener([KEY], [key_id(KEY)], cap=3)
    for n in range(5):
        data = encrypted([b"\xa0"], session=bytes([n]) * 8)
        assert opener.open(data, 28, NODE, b"a.B") is not None
    assert (len(opener), opener.evictions) == (3, 2)
    forged = bytearray(encrypted([b"\xa0"], session=b"\xff" * 8))
    forged[-1] ^= 1
    assert opener.open(bytes(forged), 28, NODE, b"a.B") is None
    assert (len(opener), opener.evictions) == (3, 2)
    assert OPENER_CAP == 4096


# -- nonces never repeat --------------------------------------------------------------


def test_nonces_are_unique_across_batches_types_and_restarts() -> None:
    seen: set[tuple[bytes, bytes, int, int]] = set()
    for boot in (1, 2):  # a restart: the boot counter grows (and the session is new)
        for name in ("a.B", "a.C"):  # both types start at seq 0: separate keys
            session = bytes([boot]) * 8
            p = Packer(node_id=NODE, type_name=name, fingerprint=FP, boot=boot,
                       max_datagram=120, sealer=sealer(session=session, name=name))  # type: ignore[arg-type]
            datagrams = []
            for i in range(200):
                payload = b"z" * (1 + i % 37)
                if not p.add(payload, TS + i):
                    datagrams.append(p.build())
                    p.add(payload, TS + i)
            datagrams.append(p.build())
            datagrams.append(p.build_one(b"\xa0", TS))
            total = 0
            for d in datagrams:
                env = decode_datagram(d, key=KEY)
                nonce = (name.encode(), session, env.boot, env.first_seq)
                assert nonce not in seen
                seen.add(nonce)
                total += env.count
            assert total == 201
