"""The invite/join exchange as two sans-IO state machines: bytes in, bytes out.

Theory of operation (the message flow of magic-wormhole, over one TCP connection)::

    joiner                                             inviter
    HELLO   version | nameplate | SPAKE2 msg (B)  ->
                                                   <-  PAKE     SPAKE2 msg (A)
    CONFIRM HMAC(k_joiner, "joiner-confirm" | T)  ->   checked: wrong -> REFUSED, counted
                                                   <-  KEY      HMAC(k_inviter, "inviter-confirm" | T)
                                                                | ChaCha20-Poly1305(k_seal, key file, aad T)
    ACK     HMAC(k_joiner, "joiner-ack" | T | H(key file)) ->

SPAKE2 (Abdalla and Pointcheval 2005, RFC 9382; the ``spake2`` package on
Ed25519) turns the code into a strong shared secret ``K`` without revealing the
code to an eavesdropper, and gives an active attacker one guess per exchange,
never an offline dictionary attack. Side A is the inviter and side B the joiner,
with identities that carry the protocol name and the nameplate, so a message
from one exchange is worthless in another. ``T`` is SHA-256 over the protocol
label and both first frames (the transcript); HKDF-SHA256 (RFC 5869) with ``T``
as salt expands ``K`` into three keys: one to confirm the joiner, one to confirm
the inviter, one to seal the key file.

The joiner proves it knows the code first, and the inviter reveals nothing that
depends on the network key until that proof checks out: a wrong code leaves the
joiner with nothing but a refusal. The seal key is used once, so its nonce is
fixed at zero. These classes read no clock and open no socket; randomness comes
from the ``entropy`` function they are given (:func:`os.urandom` by default).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

from ganglion.errors import (
    InviteBusyError,
    InviteClosedError,
    PairingProtocolError,
    WrongCodeError,
)
from ganglion.pairing.codes import InviteCode
from ganglion.pairing.frames import FrameKind, FrameReader, Refusal, encode_frame

__all__ = [
    "MAX_KEY_FILE",
    "PROTOCOL_VERSION",
    "InviterSession",
    "InviterState",
    "JoinerSession",
    "refusal",
]

#: Version byte of HELLO; an inviter refuses others with ``Refusal.VERSION``.
PROTOCOL_VERSION: Final = 1

#: Largest key file an invite sends (a file of several keys during a rotation fits).
MAX_KEY_FILE: Final = 4096

_LABEL: Final = b"ganglion-invite-v1"
_SPAKE_SIZE: Final = 33  # side byte + Ed25519 point
_MAC_SIZE: Final = 32
_TAG_SIZE: Final = 16
_HELLO: Final = struct.Struct(">BH")
_HELLO_SIZE: Final = _HELLO.size + _SPAKE_SIZE
_NONCE: Final = bytes(12)  # the seal key seals exactly one message

Entropy = Callable[[int], bytes]


class InviterState(enum.Enum):
    """Where an inviter's exchange with one joiner stands."""

    AWAIT_HELLO = "await-hello"
    AWAIT_CONFIRM = "await-confirm"
    AWAIT_ACK = "await-ack"
    DELIVERED = "delivered"  # key sent, and the joiner acknowledged it
    WRONG_CODE = "wrong-code"  # the joiner's confirmation did not check out
    REFUSED = "refused"  # another nameplate or protocol version: not an attempt at the code


def refusal(reason: Refusal) -> bytes:
    """The REFUSED frame an inviter sends before it closes a connection.

    Args:
        reason: why.

    Returns:
        The frame's bytes.
    """
    return encode_frame(FrameKind.REFUSED, bytes([reason]))


class InviterSession:
    """The inviter's side of one exchange.

    Args:
        code: the invite's code.
        key_file: the bytes to deliver (the key file, at most :data:`MAX_KEY_FILE`).
        entropy: the SPAKE2 randomness source.

    Raises:
        ValueError: ``key_file`` is empty or too long (our bug, not a peer's).
    """

    __slots__ = ("_code", "_entropy", "_file", "_keys", "_reader", "_transcript", "state")

    def __init__(self, code: InviteCode, key_file: bytes, *, entropy: Entropy = os.urandom) -> None:
        if not 0 < len(key_file) <= MAX_KEY_FILE:
            raise ValueError(f"a key file to send is 1..{MAX_KEY_FILE} bytes, not {len(key_file)}")
        self._code = code
        self._file = key_file
        self._entropy = entropy
        self._reader = FrameReader()
        self._keys: _Keys | None = None
        self._transcript = b""
        self.state = InviterState.AWAIT_HELLO

    @property
    def spent(self) -> bool:
        """True once a joiner's SPAKE2 message was answered: the exchange counts as an attempt."""
        return self._keys is not None

    @property
    def key_sent(self) -> bool:
        """True once the sealed key file went out (the invite is used from then on)."""
        return self.state in (InviterState.AWAIT_ACK, InviterState.DELIVERED)

    @property
    def finished(self) -> bool:
        """True when the exchange has nothing more to say or hear."""
        return self.state in (InviterState.DELIVERED, InviterState.WRONG_CODE,
                              InviterState.REFUSED)

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the joiner and return what to send back (maybe nothing yet).

        Args:
            data: bytes read from the connection.

        Returns:
            Bytes to write (a PAKE, KEY or REFUSED frame), or ``b""``.

        Raises:
            PairingProtocolError: the joiner broke the protocol; drop the connection.
        """
        if self.finished:
            if data:
                raise PairingProtocolError("bytes after the exchange ended")
            return b""
        expect = {
            InviterState.AWAIT_HELLO: FrameKind.HELLO,
            InviterState.AWAIT_CONFIRM: FrameKind.CONFIRM,
            InviterState.AWAIT_ACK: FrameKind.ACK,
        }[self.state]
        frame = self._reader.feed(data, frozenset((expect,)))
        if frame is None:
            return b""
        body = frame[1]
        if self.state is InviterState.AWAIT_HELLO:
            return self._on_hello(body)
        if self.state is InviterState.AWAIT_CONFIRM:
            return self._on_confirm(body)
        return self._on_ack(body)

    def _on_hello(self, body: bytes) -> bytes:
        """Answer a joiner's SPAKE2 message with ours, or refuse its version or nameplate."""
        if len(body) != _HELLO_SIZE:
            raise PairingProtocolError(f"a HELLO is {_HELLO_SIZE} bytes, not {len(body)}")
        version, nameplate = _HELLO.unpack_from(body)
        if version != PROTOCOL_VERSION or nameplate != self._code.nameplate:
            self.state = InviterState.REFUSED
            return refusal(Refusal.VERSION if version != PROTOCOL_VERSION else Refusal.NAMEPLATE)
        spake = SPAKE2_A(self._code.password, idA=_identity(b"inviter", nameplate),
                         idB=_identity(b"joiner", nameplate), entropy_f=self._entropy)
        ours = spake.start()
        shared = _finish(spake, body[_HELLO.size:])
        self._transcript = _transcript(body, ours)
        self._keys = _Keys.derive(shared, self._transcript)
        self.state = InviterState.AWAIT_CONFIRM
        return encode_frame(FrameKind.PAKE, ours)

    def _on_confirm(self, body: bytes) -> bytes:
        """Check the joiner's proof; only then seal and send the key file."""
        keys = self._checked_keys()
        if not hmac.compare_digest(body, keys.mac_joiner(b"joiner-confirm", self._transcript)):
            self.state = InviterState.WRONG_CODE
            return refusal(Refusal.WRONG_CODE)
        sealed = ChaCha20Poly1305(keys.seal).encrypt(_NONCE, self._file, self._transcript)
        self.state = InviterState.AWAIT_ACK
        return encode_frame(FrameKind.KEY, keys.mac_inviter(self._transcript) + sealed)

    def _on_ack(self, body: bytes) -> bytes:
        """Check the joiner's receipt of the key file."""
        keys = self._checked_keys()
        expected = keys.mac_joiner(b"joiner-ack", self._transcript, _digest(self._file))
        if not hmac.compare_digest(body, expected):
            raise PairingProtocolError("the joiner's acknowledgement does not check out")
        self.state = InviterState.DELIVERED
        return b""

    def _checked_keys(self) -> _Keys:
        """The derived keys; they exist in every state after HELLO."""
        if self._keys is None:  # unreachable: the reader only lets HELLO through first
            raise PairingProtocolError("no HELLO yet")
        return self._keys


class JoinerSession:
    """The joiner's side of one exchange.

    Args:
        code: the code the user typed.
        entropy: the SPAKE2 randomness source.
    """

    __slots__ = ("_code", "_hello", "_keys", "_reader", "_spake", "_state", "_transcript",
                 "key_file")

    def __init__(self, code: InviteCode, *, entropy: Entropy = os.urandom) -> None:
        self._code = code
        self._spake = SPAKE2_B(code.password, idA=_identity(b"inviter", code.nameplate),
                               idB=_identity(b"joiner", code.nameplate), entropy_f=entropy)
        self._reader = FrameReader()
        self._hello = b""
        self._transcript = b""
        self._keys: _Keys | None = None
        self._state = "new"
        self.key_file: bytes | None = None

    @property
    def done(self) -> bool:
        """True once the key file is received, checked and acknowledged."""
        return self._state == "done"

    def start(self) -> bytes:
        """The first frame to send.

        Returns:
            The HELLO frame.

        Raises:
            PairingProtocolError: called twice.
        """
        if self._state != "new":
            raise PairingProtocolError("start() runs once per exchange")
        self._hello = _HELLO.pack(PROTOCOL_VERSION, self._code.nameplate) + self._spake.start()
        self._state = "await-pake"
        return encode_frame(FrameKind.HELLO, self._hello)

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the inviter and return what to send back (maybe nothing yet).

        Args:
            data: bytes read from the connection.

        Returns:
            Bytes to write (CONFIRM or ACK), or ``b""``.

        Raises:
            WrongCodeError: the inviter refused our proof, or its proof or seal did
                not check out: the code is wrong or expired.
            InviteClosedError: the inviter refused for another reason
                (:class:`~ganglion.errors.InviteBusyError`: try again in a second).
            PairingProtocolError: the inviter broke the protocol.
        """
        if self._state not in ("await-pake", "await-key"):
            if data:
                raise PairingProtocolError(f"unexpected bytes in state {self._state}")
            return b""
        wanted = FrameKind.PAKE if self._state == "await-pake" else FrameKind.KEY
        frame = self._reader.feed(data, frozenset((wanted, FrameKind.REFUSED)))
        if frame is None:
            return b""
        kind, body = frame
        if kind is FrameKind.REFUSED:
            self._state = "refused"
            raise _refused(body)
        if kind is FrameKind.PAKE:
            return self._on_pake(body)
        return self._on_key(body)

    def _on_pake(self, body: bytes) -> bytes:
        """Finish SPAKE2 and prove we know the code."""
        if len(body) != _SPAKE_SIZE:
            raise PairingProtocolError(f"a PAKE frame is {_SPAKE_SIZE} bytes, not {len(body)}")
        shared = _finish(self._spake, body)
        self._transcript = _transcript(self._hello, body)
        self._keys = _Keys.derive(shared, self._transcript)
        self._state = "await-key"
        return encode_frame(FrameKind.CONFIRM, self._keys.mac_joiner(b"joiner-confirm",
                                                                self._transcript))

    def _on_key(self, body: bytes) -> bytes:
        """Check the inviter's proof, open the sealed key file and acknowledge it."""
        keys = self._keys
        if keys is None or len(body) < _MAC_SIZE + _TAG_SIZE + 1:
            raise PairingProtocolError(f"a KEY frame of {len(body)} bytes is too short")
        if not hmac.compare_digest(body[:_MAC_SIZE], keys.mac_inviter(self._transcript)):
            self._state = "failed"
            raise WrongCodeError("the code is wrong or expired (the inviter's proof does not "
                                 "match: is another machine answering with the same number?)")
        try:
            key_file = ChaCha20Poly1305(keys.seal).decrypt(_NONCE, body[_MAC_SIZE:],
                                                            self._transcript)
        except InvalidTag:
            self._state = "failed"
            raise PairingProtocolError("the sealed key file does not check out") from None
        self.key_file = key_file
        self._state = "done"
        return encode_frame(FrameKind.ACK, keys.mac_joiner(b"joiner-ack", self._transcript,
                                                      _digest(key_file)))


class _Keys:
    """The three keys HKDF expands the SPAKE2 secret into."""

    __slots__ = ("inviter", "joiner", "seal")

    def __init__(self, joiner: bytes, inviter: bytes, seal: bytes) -> None:
        self.joiner, self.inviter, self.seal = joiner, inviter, seal

    @classmethod
    def derive(cls, shared: bytes, transcript: bytes) -> _Keys:
        okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=transcript,
                   info=_LABEL + b" keys").derive(shared)
        return cls(okm[:32], okm[32:64], okm[64:])

    def mac_joiner(self, label: bytes, *parts: bytes) -> bytes:
        return hmac.new(self.joiner, label + b"".join(parts), hashlib.sha256).digest()

    def mac_inviter(self, transcript: bytes) -> bytes:
        return hmac.new(self.inviter, b"inviter-confirm" + transcript, hashlib.sha256).digest()


def _identity(role: bytes, nameplate: int) -> bytes:
    """A SPAKE2 identity: protocol, role and nameplate, so messages do not cross exchanges."""
    return b"%s:%s:%d" % (_LABEL, role, nameplate)


def _transcript(hello: bytes, pake: bytes) -> bytes:
    """SHA-256 over the protocol label and both first messages."""
    return hashlib.sha256(_LABEL + hello + pake).digest()


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _finish(spake: SPAKE2_A | SPAKE2_B, message: bytes) -> bytes:
    """Finish SPAKE2 on a peer's message; a point that is no point is a protocol error."""
    if len(message) != _SPAKE_SIZE:
        raise PairingProtocolError(f"a SPAKE2 message is {_SPAKE_SIZE} bytes, not {len(message)}")
    try:
        shared: bytes = spake.finish(message)
    except Exception as exc:  # spake2 raises ValueError, NotOnCurve, OffSides, ...
        raise PairingProtocolError(f"not a SPAKE2 message ({type(exc).__name__}: {exc})") from None
    return shared


def _refused(body: bytes) -> Exception:
    """The error a joiner raises for a REFUSED frame."""
    reason = body[0] if len(body) == 1 else 0
    if reason == Refusal.WRONG_CODE:
        return WrongCodeError("the code is wrong or expired")
    if reason == Refusal.NAMEPLATE:
        return WrongCodeError("the code is wrong or expired (this inviter's code has "
                              "another number)")
    if reason == Refusal.BUSY:
        return InviteBusyError("the inviter is busy with another joiner; try again")
    if reason == Refusal.CLOSED:
        return InviteClosedError("the invite is used, expired, or burnt by wrong codes; "
                                 "run 'ganglion invite' again for a new code")
    if reason == Refusal.VERSION:
        return PairingProtocolError("the inviter runs another version of the invite "
                                    "protocol; update ganglion on one side")
    return PairingProtocolError(f"a REFUSED frame with reason {body[:4].hex() or 'missing'}")
