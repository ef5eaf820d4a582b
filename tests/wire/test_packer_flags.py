"""The clock-unsynchronised flag (flag bit 1) survives encoding and decoding."""

from __future__ import annotations

from ganglion.wire import FLAG_CLOCK_UNSYNCED, Packer, decode_datagram

NODE = bytes(range(8))
FP = bytes(8)


def test_packer_sets_the_flag_after_set_clock_synced_false() -> None:
    packer = Packer(node_id=NODE, type_name="test.Clock", fingerprint=FP)
    packer.add(b"\xa0", 1)
    synced = decode_datagram(packer.build(), key=None)
    packer.set_clock_synced(False)
    packer.add(b"\xa0", 2)
    unsynced = decode_datagram(packer.build(), key=None)
    assert synced.clock_synced and not synced.flags & FLAG_CLOCK_UNSYNCED
    assert not unsynced.clock_synced and unsynced.flags & FLAG_CLOCK_UNSYNCED
    assert unsynced.first_seq == 1


def test_the_flag_is_covered_by_the_mac() -> None:
    key = bytes(32)
    packer = Packer(node_id=NODE, type_name="test.Clock", fingerprint=FP, key=key)
    packer.set_clock_synced(False)
    packer.add(b"\xa0", 1)
    data = bytearray(packer.build())
    assert not decode_datagram(bytes(data), key=key).clock_synced
    data[3] &= ~FLAG_CLOCK_UNSYNCED  # a forger clearing the flag breaks the MAC
    import pytest

    from ganglion.errors import AuthError

    with pytest.raises(AuthError):
        decode_datagram(bytes(data), key=key)


def test_skip_to_leaves_a_gap_in_the_numbering() -> None:
    import pytest

    from ganglion.errors import EncodeError

    packer = Packer(node_id=NODE, type_name="test.Clock", fingerprint=FP)
    packer.add(b"\xa0", 1)
    with pytest.raises(EncodeError):
        packer.skip_to(5)  # a datagram is being built
    assert decode_datagram(packer.build(), key=None).first_seq == 0
    packer.skip_to(5)
    packer.add(b"\xa0", 2)
    assert decode_datagram(packer.build(), key=None).first_seq == 5
    with pytest.raises(EncodeError):
        packer.skip_to(3)  # numbers never go back
