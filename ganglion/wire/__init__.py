"""Wire format v1: datagram envelope, batching packer, network key and MAC.

Pure code: bytes in, bytes out, no sockets and no clock (timestamps and node
ids are passed in). docs/protocol.md specifies the format byte by byte.

* :func:`encode_datagram` / :func:`decode_datagram`: one datagram <-> :class:`Envelope`.
  ``decode_datagram`` raises only :class:`~ganglion.errors.DecodeError` (or its
  subclass :class:`~ganglion.errors.AuthError`), whatever the bytes.
* :class:`Packer`: batch messages of one type into datagrams within the size budget.
* :func:`generate_key_file` / :func:`load_key`: the network key.
"""

from __future__ import annotations

from ganglion.wire._envelope import (
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
from ganglion.wire._packer import Packer, datagram_size
from ganglion.wire.keys import ENV_KEY, ENV_KEY_FILE, generate_key_file, load_key, read_key_file

__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "FLAG_CLOCK_UNSYNCED",
    "FLAG_MAC",
    "FLAG_REPLAYED",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAC_SIZE",
    "MAGIC",
    "MAX_BATCH",
    "MAX_UDP_PAYLOAD",
    "MIN_DATAGRAM",
    "NODE_ID_SIZE",
    "VERSION",
    "Envelope",
    "Packer",
    "compute_mac",
    "datagram_size",
    "decode_batch",
    "decode_datagram",
    "decode_fields",
    "encode_datagram",
    "generate_key_file",
    "load_key",
    "mac_ok",
    "overhead",
    "read_key_file",
]
