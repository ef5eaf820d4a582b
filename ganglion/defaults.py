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

#: Most datagrams one segmented send (UDP GSO) may carry (the kernel's
#: UDP_MAX_SEGMENTS was 64 before Linux 6.2, 128 since), and most bytes: one UDP
#: datagram over IPv4. A limit of the kernel, not of the protocol.
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65507

#: Multicast TTL: 1 keeps traffic on the local link.
DEFAULT_TTL = 1

#: Receive buffer ganglion asks the kernel for on every multicast socket.
RCVBUF_BYTES = 4 * 1024 * 1024

#: IGMP-snooping switches time a group out after ~260 s without a report;
#: memberships are re-announced well before that.
REANNOUNCE_SECONDS = 60.0

# -- the keyless control plane's budgets (docs/security.md) ---------------------------
# Everything below bounds what datagrams on the control group can make a node
# remember or do; a network without a key cannot tell a forger from a peer, so
# these limits are what stands between a flood and a stalled node.

#: Peers counted in the quorum view (proven live members), at most.
MAX_MEMBERS = 256
#: Proven live observers (short-lived tools) remembered, at most.
MAX_OBSERVERS = 256
#: Peers heard but not yet proven live (either role), at most; when full the
#: oldest one heard only once makes room, else the newcomer is refused.
MAX_CANDIDATES = 64
#: New node ids admitted per second (token bucket: rate, burst). Heartbeats of
#: new ids beyond it are dropped and counted; the sender is heard again with its
#: next heartbeat.
ADMIT_NEW_PEERS = (5.0, 32)
#: Seconds a peer that cannot prove it is live (an older ganglion that does not
#: echo the heartbeat nonce) must be heard continuously before it counts, when
#: that is allowed (by default only without a network key).
LEGACY_PROBATION_SECONDS = 10.0

#: ProposeRequests served (rate per second, burst): per requester node id, per
#: source address, and for the whole node. A request for a type that already
#: has a group costs nothing; one from a node never heard is dropped.
PROPOSE_PER_REQUESTER = (8.0, 64)
PROPOSE_PER_SOURCE = (16.0, 128)
PROPOSE_TOTAL = (32.0, 256)
#: Catch-up requests answered (rate per second, burst): per requester node id,
#: and for the whole node. Each answer is the whole map, so these are low.
CATCHUP_PER_REQUESTER = (1.0, 2)
CATCHUP_TOTAL = (4.0, 8)
#: LastValueRequests answered (rate per second, burst): per requester node id, and
#: for the whole node. A node that starts asks once per type it subscribes to, so
#: the bursts are generous; a flood under made-up ids meets the total.
LAST_VALUE_PER_REQUESTER = (16.0, 256)
LAST_VALUE_TOTAL = (64.0, 512)
#: Schema announcements sent in answer to ``SchemaRequest`` (rate per second, burst):
#: per requester node id, and for the whole node. A tool asks once per type it has
#: no class of; the answer is a few hundred bytes.
SCHEMA_PER_REQUESTER = (4.0, 32)
SCHEMA_TOTAL = (16.0, 64)
#: Messages sent again in answer to RepairRequests (rate per second, burst): per
#: requester node id, and for the whole node (docs/protocol.md 7.3 and 7.7). One
#: token per message repaired; a receiver at 20 % loss of a 50 Hz stream needs 10.
REPAIR_PER_REQUESTER = (200.0, 512)
REPAIR_TOTAL = (1000.0, 2048)
#: Messages sent in answer to HistoryRequests (rate per second, burst): per
#: requester node id, and for the whole node. A late logger asks once per type;
#: an answer larger than the burst keeps the newest messages.
HISTORY_PER_REQUESTER = (500.0, 4096)
HISTORY_TOTAL = (1000.0, 8192)
#: Schemas learned from the network a node remembers ((type, fingerprint) pairs).
SCHEMA_CACHE_ENTRIES = 256
#: Seconds before the same (type, fingerprint) is asked for again.
SCHEMA_ASK_SECONDS = 1.0
#: Keys (node ids, addresses) each per-key rate table remembers, at most.
RATE_TABLE_KEYS = 1024
