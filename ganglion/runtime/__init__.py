"""The I/O edge of the node: the only package that opens sockets or talks to zeroconf.

Everything here performs I/O on behalf of the pure cores (the wire codec, the
message types, ``consensus``): :mod:`~ganglion.runtime.transport` moves datagrams
between the chosen interface and the multicast groups, :mod:`~ganglion.runtime.endpoint`
publishes and receives typed messages over it, :mod:`~ganglion.runtime.control` drives
the agreement on the control group, :mod:`~ganglion.runtime.discovery` advertises and
browses over mDNS, and :mod:`~ganglion.runtime.bus` serves the plugin bus over zmq
(whose other end, a plugin's, is :mod:`ganglion.client`).

It is not the only package that imports :mod:`asyncio`: the node facade
(:mod:`ganglion.node`), the plugin host, the logger, the CLI and the hardware plugins
run coroutines too, but none of them opens a socket. A few modules here are pure
helpers kept beside the I/O they serve (``control_messages``, ``_advert``,
``_bus_report``, ``_bus_routes``, ``lastvalues``, ``replayed``). The rule and the test that keeps it
are in docs/architecture.md and tests/test_layering.py.

The names below are imported lazily, so importing one of the pure helpers does not
load the transport (and asyncio).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ganglion.runtime.transport import (
        DatagramCallback,
        MulticastReceiver,
        MulticastSender,
        ReceiverStats,
        SenderStats,
    )

_LAZY = frozenset(
    {"DatagramCallback", "MulticastReceiver", "MulticastSender", "ReceiverStats", "SenderStats"})


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ganglion.runtime' has no attribute {name!r}")
    from ganglion.runtime import transport

    return getattr(transport, name)


__all__ = [
    "DatagramCallback",
    "MulticastReceiver",
    "MulticastSender",
    "ReceiverStats",
    "SenderStats",
]
