"""Repair of lost datagrams (NACKs) and history for late subscribers: the sans-IO core.

Theory of operation (docs/protocol.md 7.7): every publisher keeps a bounded
:class:`History` of what it published. A receiver that sees a gap in a stream
(a jump in the numbering, or a heartbeat's ``tails`` naming a higher last number)
tells its :class:`Requester`, which waits a short random delay, then asks the
sender with a :class:`RepairRequest` on the control group, unless it overheard
another receiver asking for the same numbers first (suppression). The sender's
:class:`Responder` answers from the history with :class:`Repair` messages, to
the group, within a token-bucket budget: the messages as published, and "gone"
ranges for numbers it no longer holds. What is never repaired becomes a
:class:`PermanentGap`, recorded, never stormed for.

Pure: nothing here reads a clock, draws from the OS's randomness or touches a
socket; ``ganglion.runtime.control`` drives it.
"""

from __future__ import annotations

from ganglion.repair.history import DEFAULT_LIMITS, DEFAULT_TOTAL_BYTES, History, HistoryLimits
from ganglion.repair.messages import (
    MAX_RANGES,
    MAX_REQUESTED,
    HistoryRequest,
    Repair,
    RepairRequest,
    Tail,
)
from ganglion.repair.requester import (
    PermanentGap,
    RepairStreamStats,
    RequestAction,
    Requester,
    RequesterConfig,
    StreamKey,
)
from ganglion.repair.responder import Responder

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TOTAL_BYTES",
    "MAX_RANGES",
    "MAX_REQUESTED",
    "History",
    "HistoryLimits",
    "HistoryRequest",
    "PermanentGap",
    "Repair",
    "RepairRequest",
    "RepairStreamStats",
    "RequestAction",
    "Requester",
    "RequesterConfig",
    "Responder",
    "StreamKey",
    "Tail",
]
