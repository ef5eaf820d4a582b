"""Agreement on which multicast group each message type uses: a sans-IO state machine.

The supported surface is what this module re-exports. A caller (the ganglion node, or
the simulator in :mod:`consensus.sim`) drives a :class:`PaxosNode`:

    node = PaxosNode(Config(node_id=7), rng=random.Random(seed), records=journal)
    node.set_view(live_member_ids)
    node.step(message_from_wire(cbor2.loads(datagram)))
    node.tick()
    rd = node.ready()
    journal.append_all(rd.to_persist); rd.mark_persisted()   # BEFORE sending
    for out in rd.outbox: send(out.to, cbor2.dumps(out.msg.to_wire()))
    node.advance(rd)

See ``docs/consensus.md`` for the protocol and the argument for its properties.
"""

from __future__ import annotations

from consensus.allocator import (
    CONTROL_BLOCK,
    DATA_RANGE,
    RESERVED,
    allocate,
    is_assignable,
    preferred_group,
)
from consensus.commands import Assign, Command, Move, Retire, decode_command
from consensus.errors import (
    AddressSpaceExhausted,
    ConsensusError,
    InvalidCommand,
    InvalidConfig,
    MalformedMessage,
    PersistOrderError,
)
from consensus.groupmap import GroupMap, MapChange
from consensus.journal import JournalRecord, record_from_wire
from consensus.limits import MAX_ROUND, ROUND_STEP, SLOT_WINDOW, Limits
from consensus.messages import (
    Accept,
    Accepted,
    Ballot,
    CatchUpReply,
    CatchUpRequest,
    Commit,
    Message,
    Nack,
    Prepare,
    Promise,
    ProposeRequest,
    RetireRequest,
    Status,
    message_from_wire,
)
from consensus.node import Config, NodeFailed, PaxosNode
from consensus.ready import Outbound, Ready

__all__ = [
    "CONTROL_BLOCK",
    "DATA_RANGE",
    "MAX_ROUND",
    "RESERVED",
    "ROUND_STEP",
    "SLOT_WINDOW",
    "Accept",
    "Accepted",
    "AddressSpaceExhausted",
    "Assign",
    "Ballot",
    "CatchUpReply",
    "CatchUpRequest",
    "Command",
    "Commit",
    "Config",
    "ConsensusError",
    "GroupMap",
    "InvalidCommand",
    "InvalidConfig",
    "JournalRecord",
    "Limits",
    "MalformedMessage",
    "MapChange",
    "Message",
    "Move",
    "Nack",
    "NodeFailed",
    "Outbound",
    "PaxosNode",
    "PersistOrderError",
    "Prepare",
    "Promise",
    "ProposeRequest",
    "Ready",
    "Retire",
    "RetireRequest",
    "Status",
    "allocate",
    "decode_command",
    "is_assignable",
    "message_from_wire",
    "preferred_group",
    "record_from_wire",
]
