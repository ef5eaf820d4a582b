"""Wire format v1: datagram envelope, batching packer, network key and MAC.

Pure code: bytes in, bytes out, no sockets and no clock (timestamps and node
ids are passed in). docs/protocol.md specifies the format byte by byte.

* :func:`encode_datagram` / :func:`decode_datagram`: one datagram <-> :class:`Envelope`.
  ``decode_datagram`` raises only :class:`~ganglion.errors.DecodeError` (or its
  subclass :class:`~ganglion.errors.AuthError`), whatever the bytes.
* :class:`Origin`, :func:`encode_origin` / :func:`split_origin`: a replayed message's
  original sender, boot, sequence number and time, carried after its payload's map.
* :class:`Packer`: batch messages of one type into datagrams within the size budget.
* :func:`generate_key_file` / :func:`load_key` / :func:`load_keyring`: the network
  key(s); :class:`KeyRing`: the keys a node holds and whether it encrypts;
  :func:`rotate_key_file`, :func:`switch_key_file`, :func:`retire_key_file`: rotation.

Encryption (ChaCha20-Poly1305, flag bit 3) lives in ``ganglion.wire._aead``, which
imports ``cryptography`` and is itself imported only when a key ring encrypts or an
encrypted datagram arrives.
"""

from __future__ import annotations

from ganglion.wire._envelope import (
    AEAD_HEAD_SIZE,
    FLAG_AEAD,
    FLAG_CLOCK_UNSYNCED,
    FLAG_MAC,
    FLAG_REPLAYED,
    HEADER_SIZE,
    MAGIC,
    MAX_BATCH,
    MAX_UDP_PAYLOAD,
    MIN_DATAGRAM,
    NODE_ID_SIZE,
    VERSION,
    Envelope,
    decode_batch,
    decode_datagram,
    decode_fields,
    encode_datagram,
    overhead,
)
from ganglion.wire._mac import KEY_SIZE, MAC_SIZE, compute_mac, mac_ok
from ganglion.wire._origin import ORIGIN_MAX_SIZE, Origin, encode_origin, split_origin
from ganglion.wire._packer import Packer, datagram_size
from ganglion.wire.keys import (
    ENV_KEY,
    ENV_KEY_FILE,
    MAX_KEYS,
    KeyRing,
    aead_available,
    as_keyring,
    generate_key_file,
    key_id,
    load_key,
    load_keyring,
    read_key_file,
    read_keys,
    retire_key_file,
    rotate_key_file,
    switch_key_file,
)

__all__ = [
    "AEAD_HEAD_SIZE",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "FLAG_AEAD",
    "FLAG_CLOCK_UNSYNCED",
    "FLAG_MAC",
    "FLAG_REPLAYED",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAC_SIZE",
    "MAGIC",
    "MAX_BATCH",
    "MAX_KEYS",
    "MAX_UDP_PAYLOAD",
    "MIN_DATAGRAM",
    "NODE_ID_SIZE",
    "ORIGIN_MAX_SIZE",
    "VERSION",
    "Envelope",
    "KeyRing",
    "Origin",
    "Packer",
    "aead_available",
    "as_keyring",
    "compute_mac",
    "datagram_size",
    "decode_batch",
    "decode_datagram",
    "decode_fields",
    "encode_datagram",
    "encode_origin",
    "generate_key_file",
    "key_id",
    "load_key",
    "load_keyring",
    "mac_ok",
    "overhead",
    "read_key_file",
    "read_keys",
    "retire_key_file",
    "rotate_key_file",
    "split_origin",
    "switch_key_file",
]
