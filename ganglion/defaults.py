"""Documented network defaults shared by every part of ganglion.

Ports and groups here are part of the protocol (docs/protocol.md): two nodes
interoperate only if they agree on them, so change them only with a config option
that every node on the network is given.
"""

from __future__ import annotations

#: UDP port every data group uses. One port for all groups: receiving sockets are
#: bound to the wildcard address on this port with IP_MULTICAST_ALL=0, so a socket
#: only sees the groups it joined (up to the kernel's per-socket membership limit,
#: more sockets beyond it); see ganglion/runtime/transport.py for why not one
#: socket bound to each group address.
DATA_PORT = 47800

#: The reserved control block 239.255.0.0/24 carries heartbeats, agreement and
#: catch-up; data groups are never handed out from it.
CONTROL_BLOCK = "239.255.0.0/24"
CONTROL_GROUP = "239.255.0.1"
CONTROL_PORT = 47801

#: Largest datagram ganglion sends, in bytes (UDP payload). 1,400 keeps a datagram
#: inside one Ethernet frame with room for IP/UDP headers and VPN/PPPoE overhead.
MAX_DATAGRAM = 1400

#: Multicast TTL: 1 keeps traffic on the local link.
DEFAULT_TTL = 1

#: Receive buffer ganglion asks the kernel for on every multicast socket.
RCVBUF_BYTES = 4 * 1024 * 1024

#: IGMP-snooping switches time a group out after ~260 s without a report;
#: memberships are re-announced well before that.
REANNOUNCE_SECONDS = 60.0
