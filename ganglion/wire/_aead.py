"""Encrypted datagrams: ChaCha20-Poly1305 under per-sender keys derived from the network key.

Theory of operation (docs/protocol.md section 5.2 has the byte table): an encrypted
datagram is a v1 datagram with flag bit 3 set whose header, up to and including the
batch header (first seq, base ts, count), stays in clear for routing and sequence
tracking. After it come a 4-byte *key id* (which network key), an 8-byte *session*
(random, chosen by the sender each time it starts), the messages encrypted with
ChaCha20-Poly1305 (RFC 8439), and the 16-byte Poly1305 tag. Everything before the
ciphertext is the associated data, so no header byte can change unnoticed.

* The AEAD key is per (network key, sender node id, session, type name)::

      HKDF-SHA256(IKM = network key, salt = none, L = 32,
                  info = "ganglion-aead-v1" | node id | session | type name)

* The nonce is ``boot (u32) | first seq (u64)``, read from the header.

A (key, nonce) pair must never encrypt two different bodies. Sequence numbers are
per (sender, type) and never reused within a boot, and a datagram's first seq is
never another datagram's first seq of the same stream (datagrams partition the
numbers), so the nonce is unique per stream and boot; the type name in the key
keeps two types of one sender apart (both start at seq 0). The boot counter alone
could repeat (a control endpoint whose boot is the wall clock restarting within one
second, a Pi whose clock steps back, a cloned SD card with the same node id and boot
counter); the random session in the key makes a repeat of the whole (key, nonce)
need a 64-bit collision as well.

:class:`Sealer` encrypts one stream's datagrams (the sender side, one per packer);
:class:`Opener` decrypts for a receiver, deriving and caching a cipher per (key id,
node id, session, type name) it has seen *verify*: a forged datagram costs one
derivation and one failed tag check and leaves nothing behind. The cache is bounded
(:data:`OPENER_CAP`, least recently used evicted, counted in ``evictions``).

This module imports ``cryptography`` (the ``secure`` extra) at import time; the rest
of :mod:`ganglion.wire` imports it only when a key with encryption is used.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ganglion.wire.keys import KEY_ID_SIZE, SESSION_SIZE

#: Poly1305 tag size in bytes.
TAG_SIZE = 16
#: Bytes between the batch header and the ciphertext: key id then session.
AEAD_HEAD_SIZE = KEY_ID_SIZE + SESSION_SIZE
#: HKDF ``info`` prefix: domain separation of the derived keys.
INFO = b"ganglion-aead-v1"
#: Ciphers an :class:`Opener` keeps before evicting the least recently used.
OPENER_CAP = 4096
#: Where the boot counter is in the header (wire format v1).
_BOOT_AT = 12
_BATCH_SIZE = 18  # first seq, base ts, count
#: Where the type name's length byte is, and where the name starts.
_NAME_LEN_AT = 24
_NAME_AT = 25
_NONCE = struct.Struct(">IQ").pack
#: RFC 5869 section 2.2: no salt means HashLen zero bytes.
_NO_SALT = bytes(32)


def prk_of(key: bytes) -> bytes:
    """HKDF-Extract of a network key (computed once per key).

    Args:
        key: the 32-byte network key (the input keying material).

    Returns:
        The 32-byte pseudorandom key.
    """
    return hmac.digest(_NO_SALT, key, "sha256")


def derive_key(prk: bytes, node_id: bytes, session: bytes, type_name: bytes) -> bytes:
    """HKDF-Expand to the 32-byte AEAD key of one sender's stream of one type.

    One HMAC block is enough for 32 bytes: ``T(1) = HMAC(PRK, info | 0x01)``.

    Args:
        prk: :func:`prk_of` the network key.
        node_id: the sender's 8-byte node id.
        session: the sender's 8-byte session.
        type_name: the type name as sent (ASCII bytes).

    Returns:
        The AEAD key.
    """
    return hmac.digest(prk, b"".join((INFO, node_id, session, type_name, b"\x01")), "sha256")


def nonce(boot: int, first_seq: int) -> bytes:
    """The 12-byte nonce of a datagram: boot counter then first sequence number."""
    return _NONCE(boot, first_seq)


class Sealer:
    """Encrypts the datagrams of one (sender, session, type) under the sending key.

    Args:
        key: the sending network key.
        key_id: its :func:`~ganglion.wire.keys.key_id`.
        node_id: the sender's node id.
        session: the sender's session (random, per start).
        type_name: the stream's type name.

    Attributes:
        head: the key id and session, written right after the batch header.
    """

    __slots__ = ("_cipher", "head")

    def __init__(self, key: bytes, key_id: bytes, node_id: bytes, session: bytes,
                 type_name: str) -> None:
        if len(session) != SESSION_SIZE:
            raise ValueError(f"a session is {SESSION_SIZE} bytes")
        self.head = key_id + session
        self._cipher = ChaCha20Poly1305(
            derive_key(prk_of(key), node_id, session, type_name.encode("ascii")))

    def seal(self, header: bytes, body: bytes | bytearray, boot: int, first_seq: int) -> bytes:
        """Return the datagram: ``header`` (ending with :attr:`head`), ciphertext, tag.

        Args:
            header: every clear byte, through the key id and session.
            body: the messages, in clear.
            boot: the sender's boot counter (in ``header`` too).
            first_seq: the datagram's first sequence number (in ``header`` too).
        """
        return header + self._cipher.encrypt(_NONCE(boot, first_seq), bytes(body), header)

    def seal_datagram(self, clear: bytes) -> bytes:
        """Encrypt a datagram built in clear: what :meth:`seal` returns for its parts.

        The compiled send lane's sealer (``Packer._seal``): it builds the datagram as if
        it were unsigned, with the encrypted flag already set (the packer's header), and
        hands it here once per datagram. The nonce's boot and first seq are read from
        the header, where :meth:`seal`'s caller also wrote them.

        Args:
            clear: the header (flag bit 3 set), the batch header, then the messages.

        Returns:
            The encrypted datagram: the header through the batch header, :attr:`head`,
            the ciphertext and the tag.
        """
        body = _NAME_AT + clear[_NAME_LEN_AT] + _BATCH_SIZE
        header = clear[:body] + self.head
        return header + self._cipher.encrypt(
            clear[_BOOT_AT:_BOOT_AT + 4] + clear[body - _BATCH_SIZE:body - 10], clear[body:],
            header)


class Opener:
    """Decrypts datagrams for a receiver holding one or two network keys.

    Args:
        keys: the accepted network keys.
        key_ids: their key ids, in the same order.
        cap: ciphers kept (least recently used evicted).

    Attributes:
        evictions: ciphers evicted from the cache so far.
    """

    __slots__ = ("_cap", "_ciphers", "_prks", "evictions")

    def __init__(self, keys: Sequence[bytes], key_ids: Sequence[bytes], *,
                 cap: int = OPENER_CAP) -> None:
        self._prks = {kid: prk_of(key) for key, kid in zip(keys, key_ids, strict=True)}
        self._ciphers: dict[tuple[bytes, bytes, bytes], ChaCha20Poly1305] = {}
        self._cap = cap
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._ciphers)

    def open(self, data: bytes, pos: int, node_id: bytes, name: bytes) -> bytes | None:
        """Verify and decrypt an encrypted datagram.

        Args:
            data: the whole datagram.
            pos: where its batch header starts (after the type name).
            node_id: the sender's node id (bytes 4..12 of ``data``).
            name: the type name's bytes as sent.

        Returns:
            The datagram as if it had been sent in clear without a MAC: every byte up to
            the end of the batch header, then the decrypted messages. None when the key
            id is unknown, the datagram is too short, or the tag does not verify.
        """
        body = pos + _BATCH_SIZE + AEAD_HEAD_SIZE
        if len(data) < body + TAG_SIZE + 1:
            return None
        ident = data[pos + _BATCH_SIZE:body]
        ciphers = self._ciphers
        found = (ident, node_id, name)
        cipher = ciphers.get(found)
        fresh = cipher is None
        if cipher is None:
            prk = self._prks.get(ident[:KEY_ID_SIZE])
            if prk is None:
                return None
            cipher = ChaCha20Poly1305(derive_key(prk, node_id, ident[KEY_ID_SIZE:], name))
        try:
            plain = cipher.decrypt(data[_BOOT_AT:_BOOT_AT + 4] + data[pos:pos + 8],
                                   data[body:], data[:body])
        except InvalidTag:
            return None
        if fresh:
            # Only verified senders enter the cache: a forger cannot fill it.
            if len(ciphers) >= self._cap:
                del ciphers[next(iter(ciphers))]
                self.evictions += 1
            ciphers[found] = cipher
        else:
            ciphers[found] = ciphers.pop(found)  # most recently used last
        return data[:pos + _BATCH_SIZE] + plain
