"""The SPAKE2 exchange in memory: joiner and inviter state machines wired back to back."""

from __future__ import annotations

import pytest

pytest.importorskip("spake2")
pytest.importorskip("cryptography")

from hypothesis import given, settings
from hypothesis import strategies as st
from pairing_support import key_bytes, other_code, seeded

from ganglion.errors import (
    InviteBusyError,
    InviteClosedError,
    PairingProtocolError,
    WrongCodeError,
)
from ganglion.pairing.codes import InviteCode
from ganglion.pairing.exchange import (
    MAX_KEY_FILE,
    InviterSession,
    InviterState,
    JoinerSession,
    refusal,
)
from ganglion.pairing.frames import FrameKind, FrameReader, Refusal, encode_frame

CODE = InviteCode(7, ("guitarist", "reindeer", "molecule"))
KEY = key_bytes(1)


class Pair:
    """A joiner and an inviter, with everything each sent recorded."""

    def __init__(self, joiner_code: InviteCode = CODE, key_file: bytes = KEY,
                 seed: int = 0) -> None:
        self.inviter = InviterSession(CODE, key_file, entropy=seeded(seed))
        self.joiner = JoinerSession(joiner_code, entropy=seeded(seed + 1000))
        self.from_inviter: list[bytes] = []
        self.from_joiner: list[bytes] = []

    def run(self) -> None:
        """Exchange frames until one side has nothing to say; errors propagate."""
        data = self.joiner.start()
        while data:
            self.from_joiner.append(data)
            reply = self.inviter.receive(data)
            if not reply:
                return
            self.from_inviter.append(reply)
            data = self.joiner.receive(reply)

    def inviter_kinds(self) -> list[FrameKind]:
        return [FrameKind(frame[0]) for frame in self.from_inviter]


def test_the_right_code_delivers_the_key_file_byte_for_byte() -> None:
    pair = Pair()
    pair.run()
    assert pair.joiner.done and pair.joiner.key_file == KEY
    assert pair.inviter.state is InviterState.DELIVERED
    assert pair.inviter.spent and pair.inviter.key_sent and pair.inviter.finished
    assert pair.inviter_kinds() == [FrameKind.PAKE, FrameKind.KEY]
    assert [FrameKind(f[0]) for f in pair.from_joiner] == [FrameKind.HELLO, FrameKind.CONFIRM, FrameKind.ACK]


def test_the_key_never_crosses_the_wire_in_clear() -> None:
    pair = Pair()
    pair.run()
    wire = b"".join(pair.from_inviter + pair.from_joiner)
    assert KEY not in wire
    assert KEY[:8] not in wire and KEY[-8:] not in wire


def test_a_key_file_of_several_keys_up_to_the_limit_is_delivered() -> None:
    big = bytes(range(256)) * (MAX_KEY_FILE // 256)
    pair = Pair(key_file=big)
    pair.run()
    assert pair.joiner.key_file == big


@pytest.mark.parametrize("word", [0, 1, 2])
def test_a_wrong_code_gets_a_refusal_and_nothing_that_depends_on_the_key(word: int) -> None:
    pair = Pair(joiner_code=other_code(CODE, word=word))
    with pytest.raises(WrongCodeError, match="the code is wrong or expired"):
        pair.run()
    assert pair.joiner.key_file is None and not pair.joiner.done
    assert pair.inviter.state is InviterState.WRONG_CODE
    assert pair.inviter.spent and not pair.inviter.key_sent and pair.inviter.finished
    assert pair.inviter_kinds() == [FrameKind.PAKE, FrameKind.REFUSED]
    assert pair.from_inviter[-1] == refusal(Refusal.WRONG_CODE)


def test_a_code_with_another_number_is_refused_before_any_guess() -> None:
    pair = Pair(joiner_code=InviteCode(8, CODE.words))
    with pytest.raises(WrongCodeError, match="another number"):
        pair.run()
    assert not pair.inviter.spent and pair.inviter.finished
    assert pair.inviter.state is InviterState.REFUSED


def test_another_protocol_version_is_refused_before_any_guess() -> None:
    inviter = InviterSession(CODE, KEY)
    hello = bytearray(JoinerSession(CODE).start())
    hello[3] = 2  # the version byte, first byte of the HELLO body
    assert inviter.receive(bytes(hello)) == refusal(Refusal.VERSION)
    assert not inviter.spent and inviter.finished
    joiner = JoinerSession(CODE)
    joiner.start()
    with pytest.raises(PairingProtocolError, match="another version"):
        joiner.receive(refusal(Refusal.VERSION))


@pytest.mark.parametrize("point", [b"B" + bytes(32), b"B" + b"\xff" * 32, b"A" + b"\x01" * 32,
                                   b"X" + bytes(32)])
def test_a_hello_that_is_no_spake2_message_is_a_protocol_error(point: bytes) -> None:
    inviter = InviterSession(CODE, KEY)
    with pytest.raises(PairingProtocolError, match="not a SPAKE2 message"):
        inviter.receive(encode_frame(FrameKind.HELLO, b"\x01\x00\x07" + point))
    assert not inviter.key_sent


@pytest.mark.parametrize("size", [0, 3, 35, 37])
def test_a_hello_of_the_wrong_size_is_a_protocol_error(size: int) -> None:
    with pytest.raises(PairingProtocolError, match="a HELLO is 36 bytes"):
        InviterSession(CODE, KEY).receive(encode_frame(FrameKind.HELLO, bytes(size)))


def test_a_reflected_message_is_refused() -> None:
    """The inviter's own SPAKE2 message sent back to it as a joiner's must not pass."""
    inviter = InviterSession(CODE, KEY, entropy=seeded(5))
    pake = inviter.receive(JoinerSession(CODE).start())
    second = InviterSession(CODE, KEY, entropy=seeded(5))
    with pytest.raises(PairingProtocolError):
        second.receive(encode_frame(FrameKind.HELLO, b"\x01\x00\x07" + pake[3:]))


def test_a_tampered_seal_is_a_protocol_error_and_yields_no_key() -> None:
    pair = Pair()
    joiner, inviter = pair.joiner, pair.inviter
    pake = inviter.receive(joiner.start())
    key_frame = bytearray(inviter.receive(joiner.receive(pake)))
    key_frame[-1] ^= 1  # the Poly1305 tag
    with pytest.raises(PairingProtocolError, match="sealed key file does not check out"):
        joiner.receive(bytes(key_frame))
    assert joiner.key_file is None


def test_an_inviter_that_does_not_know_the_code_is_caught_by_its_proof() -> None:
    """A machine answering with our nameplate but another code cannot prove itself."""
    impostor = InviterSession(other_code(CODE), KEY)
    joiner = JoinerSession(CODE)
    pake = impostor.receive(joiner.start())
    confirm = joiner.receive(pake)
    assert impostor.receive(confirm) == refusal(Refusal.WRONG_CODE)  # it sees our proof fail
    honest = InviterSession(CODE, KEY)
    joiner = JoinerSession(CODE)
    honest_pake = honest.receive(joiner.start())
    key_frame = bytearray(honest.receive(joiner.receive(honest_pake)))
    key_frame[3] ^= 1  # the inviter's confirmation MAC
    with pytest.raises(WrongCodeError, match="inviter's proof does not match"):
        joiner.receive(bytes(key_frame))


def test_a_forged_acknowledgement_is_a_protocol_error_but_the_key_was_sent() -> None:
    pair = Pair()
    joiner, inviter = pair.joiner, pair.inviter
    inviter.receive(joiner.receive(inviter.receive(joiner.start())))
    with pytest.raises(PairingProtocolError, match="acknowledgement"):
        inviter.receive(encode_frame(FrameKind.ACK, bytes(32)))
    assert inviter.key_sent and inviter.state is InviterState.AWAIT_ACK


@pytest.mark.parametrize(("reason", "error", "text"), [
    (Refusal.BUSY, InviteBusyError, "busy"),
    (Refusal.CLOSED, InviteClosedError, "used, expired, or burnt"),
    (Refusal.WRONG_CODE, WrongCodeError, "wrong or expired"),
])
def test_a_joiner_turns_each_refusal_into_its_error(reason: Refusal, error: type[Exception],
                                                    text: str) -> None:
    joiner = JoinerSession(CODE)
    joiner.start()
    with pytest.raises(error, match=text):
        joiner.receive(refusal(reason))


def test_a_refusal_with_a_junk_reason_is_a_protocol_error() -> None:
    joiner = JoinerSession(CODE)
    joiner.start()
    with pytest.raises(PairingProtocolError, match="reason"):
        joiner.receive(encode_frame(FrameKind.REFUSED, b"\x99\x98"))


def test_frames_out_of_turn_are_refused_on_both_sides() -> None:
    with pytest.raises(PairingProtocolError, match="expected HELLO"):
        InviterSession(CODE, KEY).receive(encode_frame(FrameKind.CONFIRM, bytes(32)))
    joiner = JoinerSession(CODE)
    joiner.start()
    with pytest.raises(PairingProtocolError, match="expected"):
        joiner.receive(encode_frame(FrameKind.KEY, bytes(64)))
    with pytest.raises(PairingProtocolError, match="once"):
        joiner.start()


def test_bytes_after_the_end_are_refused() -> None:
    pair = Pair()
    pair.run()
    with pytest.raises(PairingProtocolError):
        pair.inviter.receive(b"\x00")
    with pytest.raises(PairingProtocolError):
        pair.joiner.receive(b"\x00")


def test_the_same_entropy_replays_the_same_exchange() -> None:
    first, second = Pair(seed=9), Pair(seed=9)
    first.run()
    second.run()
    assert first.from_inviter == second.from_inviter and first.from_joiner == second.from_joiner
    third = Pair(seed=10)
    third.run()
    assert third.from_inviter[0] != first.from_inviter[0]


def test_an_inviter_refuses_to_send_an_empty_or_oversized_key_file() -> None:
    for bad in (b"", bytes(MAX_KEY_FILE + 1)):
        with pytest.raises(ValueError):
            InviterSession(CODE, bad)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=6), st.booleans())
def test_any_bytes_from_a_peer_give_replies_or_a_protocol_error_never_the_key(
        chunks: list[bytes], start_with_hello: bool) -> None:
    inviter = InviterSession(CODE, KEY)
    sent = b""
    if start_with_hello:
        sent += inviter.receive(JoinerSession(other_code(CODE)).start())
    try:
        for chunk in chunks:
            sent += inviter.receive(chunk)
    except PairingProtocolError:
        pass
    assert not inviter.key_sent
    reader, kinds = FrameReader(), []
    while sent:
        frame = reader.feed(sent[:3 + int.from_bytes(sent[1:3], "big")], frozenset(FrameKind))
        assert frame is not None
        kinds.append(frame[0])
        sent = sent[3 + len(frame[1]):]
    assert FrameKind.KEY not in kinds
