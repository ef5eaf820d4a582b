"""Framing of the invite/join exchange over one TCP connection: bytes <-> frames, no I/O.

Theory of operation: every frame is ``kind u8 | length u16 big-endian | body``.
The reader accepts only the kinds it is told to expect and bodies up to
:data:`MAX_BODY` bytes, so a peer can never make it buffer more than one
header plus that (a few kilobytes), however much it sends; anything else is a
:class:`~ganglion.errors.PairingProtocolError` and the connection is dropped.
docs/guide.md ("Sharing the key: invite and join") lists the frames in order.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from ganglion.errors import PairingProtocolError

__all__ = ["HEADER", "MAX_BODY", "FrameKind", "FrameReader", "Refusal", "encode_frame"]

#: Bytes of a frame header.
HEADER: Final = 3

#: Largest body any frame may have. The biggest is the sealed key file
#: (:data:`ganglion.pairing.exchange.MAX_KEY_FILE` plus a 32-byte MAC and a 16-byte tag).
MAX_BODY: Final = 4200

_HEADER: Final = struct.Struct(">BH")


class FrameKind(enum.IntEnum):
    """Frame kinds, in the order they are exchanged."""

    HELLO = 1  # joiner -> inviter: version, nameplate, SPAKE2 message (side B)
    PAKE = 2  # inviter -> joiner: SPAKE2 message (side A)
    CONFIRM = 3  # joiner -> inviter: the joiner's key-confirmation MAC
    KEY = 4  # inviter -> joiner: the inviter's confirmation MAC and the sealed key file
    ACK = 5  # joiner -> inviter: a MAC saying the key file arrived intact
    REFUSED = 6  # inviter -> joiner: one reason byte, then the connection closes


class Refusal(enum.IntEnum):
    """Why an inviter refused; unauthenticated, so a joiner only reports it."""

    WRONG_CODE = 1  # key confirmation failed
    BUSY = 2  # another joiner's exchange is running, or the last began < 1 s ago
    CLOSED = 3  # used, burnt by wrong codes, or expired
    NAMEPLATE = 4  # this inviter's code has another number
    VERSION = 5  # a protocol version this inviter does not speak


def encode_frame(kind: FrameKind, body: bytes) -> bytes:
    """One frame.

    Args:
        kind: the frame kind.
        body: at most :data:`MAX_BODY` bytes.

    Returns:
        Header and body.

    Raises:
        ValueError: the body is too long (a bug on our side, never a peer's doing).
    """
    if len(body) > MAX_BODY:
        raise ValueError(f"a {kind.name} frame body is at most {MAX_BODY} bytes, not {len(body)}")
    return _HEADER.pack(kind, len(body)) + body


class FrameReader:
    """Cut a byte stream into frames, refusing anything unexpected as soon as its header is in."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes, expect: frozenset[FrameKind]) -> tuple[FrameKind, bytes] | None:
        """Add received bytes and return the next whole frame, if there is one.

        Args:
            data: bytes just read from the connection.
            expect: the kinds allowed next.

        Returns:
            ``(kind, body)``, or None while the frame is incomplete.

        Raises:
            PairingProtocolError: an unknown or unexpected kind, a body longer than
                :data:`MAX_BODY`, or bytes beyond one frame (the exchange is
                lock-step, so the buffer never holds more than one frame and one read).
        """
        self._buffer += data
        if len(self._buffer) < HEADER:
            return None
        raw_kind, length = _HEADER.unpack_from(self._buffer)
        try:
            kind = FrameKind(raw_kind)
        except ValueError:
            raise PairingProtocolError(f"unknown frame kind {raw_kind}") from None
        if kind not in expect:
            wanted = " or ".join(sorted(k.name for k in expect))
            raise PairingProtocolError(f"got a {kind.name} frame, expected {wanted}")
        if length > MAX_BODY:
            raise PairingProtocolError(f"a frame of {length} bytes is over the {MAX_BODY} limit")
        end = HEADER + length
        if len(self._buffer) < end:
            return None
        if len(self._buffer) > end:
            # The exchange is lock-step: an honest peer speaks only after it was
            # answered, so bytes beyond one frame are a peer not following it.
            raise PairingProtocolError(f"{len(self._buffer) - end} bytes sent after a "
                                       f"{kind.name} frame before it was answered")
        body = bytes(self._buffer[HEADER:end])
        self._buffer.clear()
        return kind, body

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame."""
        return len(self._buffer)
