"""Message types of the control channel (heartbeats, agreement, last values, schemas, repair).

They travel in ordinary ganglion datagrams (docs/protocol.md) on the control group
``239.255.0.1`` and port 47801, so the network key's MAC, the size checks and the
sequence tracking protect them exactly as they protect data. The repair messages
are defined in :mod:`ganglion.repair.messages` and re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ganglion.repair.messages import HistoryRequest, Repair, RepairRequest, Tail
from ganglion.types import message

__all__ = ["Heartbeat", "HistoryRequest", "LastValue", "LastValueRequest", "PaxosFrame",
           "Repair", "RepairRequest", "SchemaAnnounce", "SchemaField", "SchemaRequest", "Tail"]


@message("ganglion.control.Heartbeat")
@dataclass
class Heartbeat:
    """I am alive. Sent every heartbeat interval, and once with ``goodbye`` on a clean stop.

    Also sent at once (rate-limited) when ``subscribes`` changes, so publishers
    start or stop sending a type within milliseconds (publisher-side matching).
    ``subscribes`` lists the types this node has a subscriber of (its own, its
    external plugins', observers' like ``ganglion tail``); None means "not said":
    a heartbeat from an older node, which does not send the field, or a list too
    long for one datagram. Receivers then assume it subscribes to every type.

    ``nonce``, ``ask`` and ``echo`` prove liveness (docs/protocol.md, section 7.2):
    ``nonce`` is random, fresh each time the node starts; ``ask`` lists the ids of
    the peers it has heard but wants proof from; ``echo`` holds the nonces of the
    peers whose heartbeat asked this node. A peer counts in the view once its
    heartbeat echoes our nonce. Older nodes send none of them (and ignore them).

    ``tails`` (docs/protocol.md 7.7) names the last sequence number of each type
    this node published within its history age and that has been quiet for a
    heartbeat interval or more, most recent first: a receiver whose copy of the
    stream ends lower missed the last messages of a burst and asks for them.
    None from older nodes, and when there is nothing to announce.

    ``repairs`` (docs/protocol.md 7.7) carries repair requests, each exactly a
    ``RepairRequest``'s fields, for one or several senders: a first request for a
    few missing numbers waits for the heartbeat the node sends anyway instead of
    costing a datagram of its own. Receivers take each as if it had come alone.
    None from older nodes, and when nothing rides.
    """

    name: str
    role: str
    version: str
    clock_synced: bool
    publishes: list[str] = field(default_factory=list)
    goodbye: bool = False
    subscribes: list[str] | None = None
    nonce: bytes | None = None
    ask: list[bytes] | None = None
    echo: list[bytes] | None = None
    tails: list[Tail] | None = None
    repairs: list[RepairRequest] | None = None


@message("ganglion.control.Paxos")
@dataclass
class PaxosFrame:
    """One consensus message (``msg.to_wire()`` as CBOR); ``to`` None means every node."""

    body: bytes
    to: int | None = None


@message("ganglion.control.LastValueRequest")
@dataclass
class LastValueRequest:
    """Who has a latest message of this type? (a late joiner asking)"""

    type_name: str


@message("ganglion.control.LastValue")
@dataclass
class LastValue:
    """The latest message this node published of a type, for node ``to``."""

    to: int
    type_name: str
    fingerprint: bytes
    seq: int
    boot: int
    sent_ns: int
    payload: bytes
    clock_synced: bool = True


@message("ganglion.control.SchemaRequest")
@dataclass
class SchemaRequest:
    """Who publishes this type, and what are its units and kinds? (docs/protocol.md 7.6)

    ``fingerprint`` None asks for any version; publishers of another version stay quiet.
    """

    type_name: str
    fingerprint: bytes | None = None


@dataclass
class SchemaField:
    """One field of an announced schema (:class:`ganglion.types.FieldSchema`)."""

    name: str
    wire: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    description: str = ""
    declared: bool = False


@message("ganglion.control.Schema")
@dataclass
class SchemaAnnounce:
    """A publisher's self-description of a type, sent to the group in answer to a request.

    The receiver checks that ``fingerprint`` is the hash of the fields' names and wire
    kinds (so a schema cannot claim another version's fingerprint by mistake).
    """

    type_name: str
    fingerprint: bytes
    description: str = ""
    key: list[str] = field(default_factory=list)
    fields: list[SchemaField] = field(default_factory=list)
