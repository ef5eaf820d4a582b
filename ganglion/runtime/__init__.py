"""The I/O edge of ganglion: the only package that imports asyncio and sockets.

Everything below ``ganglion.runtime`` performs I/O on behalf of the pure cores
(wire codec, consensus). :mod:`ganglion.runtime.transport` moves datagrams
between the chosen interface and multicast groups.
"""

from __future__ import annotations

from ganglion.runtime.transport import (
    DatagramCallback,
    MulticastReceiver,
    MulticastSender,
    ReceiverStats,
    SenderStats,
)

__all__ = [
    "DatagramCallback",
    "MulticastReceiver",
    "MulticastSender",
    "ReceiverStats",
    "SenderStats",
]
