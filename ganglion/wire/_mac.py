"""The datagram MAC: keyed BLAKE2b-128 under the 32-byte network key.

Theory of operation: with a network key, the sender appends
``BLAKE2b(key=network key, digest_size=16, person=b"ganglion-wire-v1")`` of
every byte before it, and sets flag bit 0. BLAKE2b's keyed mode is a MAC by
design (RFC 7693 section 2.5), needs one pass (HMAC needs two), and the
personalisation string keeps these tags from being valid for any other use of
the same key. Verification compares in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

from ganglion._blake2 import blake2b, compare_digest
from ganglion.errors import ConfigError

#: Network key size in bytes.
KEY_SIZE = 32
#: MAC size in bytes (BLAKE2b-128).
MAC_SIZE = 16
#: BLAKE2b personalisation: domain separation for data-plane datagrams.
PERSON = b"ganglion-wire-v1"


def check_key(key: bytes) -> bytes:
    """Return ``key`` if it is a valid network key.

    Raises:
        ConfigError: the key is not bytes of length :data:`KEY_SIZE`.
    """
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise ConfigError(f"a network key is {KEY_SIZE} bytes, got {size}")
    return key


def compute_mac(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """Return the 16-byte MAC of ``data`` under ``key`` (no key check: hot path)."""
    return blake2b(data, key=key, digest_size=MAC_SIZE, person=PERSON).digest()


def sign(key: bytes, data: bytes) -> bytes:
    """Return ``data`` followed by its MAC under ``key``: a clear datagram made signed.

    The compiled send lane's sealer for MAC-only packers (``Packer._seal``): it builds
    the datagram with the MAC flag set, as :meth:`Packer.build <ganglion.wire.Packer.build>`
    does, and hands it here once per datagram.
    """
    return data + blake2b(data, key=key, digest_size=MAC_SIZE, person=PERSON).digest()


def mac_ok(key: bytes, data: bytes, tag: bytes) -> bool:
    """Return True if ``tag`` is the MAC of ``data`` under ``key`` (constant-time compare)."""
    return compare_digest(
        blake2b(data, key=key, digest_size=MAC_SIZE, person=PERSON).digest(), tag
    )
