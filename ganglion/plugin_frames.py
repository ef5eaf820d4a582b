"""The plugin bus's frames and addresses, shared by the node and the plugin client.

Pure definitions (no zmq, no sockets): the node's side of the bus
(:mod:`ganglion.runtime.bus`) and a plugin's (:mod:`ganglion.client`) both import
them, so neither end depends on the other. The byte layout of each frame is
documented in docs/plugin-frames.md.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

import cbor2

from ganglion.errors import DecodeError

#: File name (without the ``.pub``/``.sub`` suffix) of a node's bus sockets in its state dir.
STATE_DIR_BUS_NAME = "bus"

#: Messages each bus socket queues before zmq refuses more (SNDHWM/RCVHWM).
DEFAULT_HWM = 1000


class BusAddress(NamedTuple):
    """The two zmq addresses of one plugin bus.

    Attributes:
        publish: where a plugin connects its PUB/XPUB socket (the node's XSUB).
        subscribe: where a plugin connects its SUB socket (the node's XPUB).
    """

    publish: str
    subscribe: str


@dataclasses.dataclass(frozen=True, slots=True)
class PluginMeta:
    """Where a message delivered to a plugin came from (the third frame).

    Attributes:
        sender: the publishing node's 8-byte id.
        seq: the sender's sequence number for (sender, type).
        sent_ns: the sender's timestamp, ns since the epoch.
        local: True when it was published on this node (by a plugin or in-process).
    """

    sender: bytes
    seq: int
    sent_ns: int
    local: bool

    def encode(self) -> bytes:
        """Return the meta frame: a CBOR map ``{sender, seq, sent_ns, local}``."""
        return bytes(cbor2.dumps(
            {"sender": self.sender, "seq": self.seq, "sent_ns": self.sent_ns, "local": self.local}
        ))

    @classmethod
    def decode(cls, frame: bytes) -> PluginMeta:
        """Parse a meta frame; unknown keys are ignored.

        Raises:
            DecodeError: the frame is not a CBOR map with the four keys well typed.
        """
        try:
            item = cbor2.loads(frame, max_depth=4)
        except Exception as exc:  # cbor2 raises several exception types
            raise DecodeError(f"meta frame is not valid CBOR ({exc})") from None
        if type(item) is not dict:
            raise DecodeError("meta frame must be a CBOR map")
        sender, seq, sent_ns, local = (item.get(k) for k in ("sender", "seq", "sent_ns", "local"))
        if not (type(sender) is bytes and type(seq) is int and type(sent_ns) is int
                and type(local) is bool):
            raise DecodeError(f"meta frame has missing or mistyped keys: {sorted(map(str, item))}")
        return cls(sender=sender, seq=seq, sent_ns=sent_ns, local=local)

    @property
    def sender_hex(self) -> str:
        """The sender's node id as hex digits."""
        return self.sender.hex()


def bus_address(where: str | os.PathLike[str] | BusAddress) -> BusAddress:
    """Resolve where a node's bus is into its two zmq addresses.

    Args:
        where: a :class:`BusAddress`; a ``tcp://HOST:PORT`` URL (publish at PORT,
            subscribe at PORT + 1); an ``ipc://BASE`` URL; a node's state
            directory (an existing directory: the base is ``<dir>/bus``); or an
            ipc base path.

    Returns:
        The pair of addresses to connect to.

    Raises:
        ValueError: a ``tcp://`` URL without a usable port.
    """
    if isinstance(where, BusAddress):
        return where
    text = os.fspath(where)
    if text.startswith("tcp://"):
        host, _, port_text = text[len("tcp://"):].rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65535:
            raise ValueError(f"{text!r}: expected tcp://HOST:PORT with PORT in 1..65534")
        port = int(port_text)
        return BusAddress(f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}")
    if text.startswith("ipc://"):
        return ipc_address(text[len("ipc://"):])
    path = Path(text)
    return ipc_address(path / STATE_DIR_BUS_NAME if path.is_dir() else path)


def ipc_address(base: str | os.PathLike[str]) -> BusAddress:
    """Return the ipc:// pair for a socket base path (``<base>.pub``, ``<base>.sub``)."""
    text = os.fspath(base)
    return BusAddress(f"ipc://{text}.pub", f"ipc://{text}.sub")
