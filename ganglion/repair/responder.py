"""The sender's side of repair: answering requests from the history, within a budget.

Theory of operation: see docs/protocol.md 7.7. Stub of the interface; the body follows.
"""

from __future__ import annotations

from collections.abc import Callable

from ganglion.repair.history import History
from ganglion.repair.messages import HistoryRequest, Repair, RepairRequest

__all__ = ["Responder"]


class Responder:
    """Answers repair and history requests addressed to this node (sans-IO).

    Args:
        history: this node's history (its ``boot`` is the boot answered).
        node_id: this node's id (requests whose ``to`` is another node are ignored).
        fingerprint: the schema fingerprint of a type this node publishes, or None.
        clock_synced: whether this node's clock is synchronised now.
        max_bytes: most payload bytes of one Repair message (a big answer is split).
    """

    def __init__(self, history: History, *, node_id: bytes = b"\0" * 8,
                 fingerprint: Callable[[str], bytes | None] = lambda _name: None,
                 clock_synced: Callable[[], bool] = lambda: True,
                 max_bytes: int = 1200) -> None:
        self.history = history
        self.node_id = node_id
        self._fingerprint = fingerprint
        self._clock_synced = clock_synced
        self.max_bytes = max_bytes

    def on_request(self, requester: bytes, req: RepairRequest, now: float) -> None:
        """A repair request arrived (ignored unless addressed to this node and boot)."""
        raise NotImplementedError

    def on_history_request(self, requester: bytes, req: HistoryRequest, now: float) -> None:
        """A history request arrived (answered if this node publishes the type)."""
        raise NotImplementedError

    def poll(self, now: float) -> list[Repair]:
        """The answers due now, each fitting ``max_bytes``."""
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to send (None: nothing pending)."""
        raise NotImplementedError

    def stats(self) -> dict[str, dict[str, int]]:
        """Per type: requests_received, repaired_sent, gone_sent, rate_limited, ..."""
        raise NotImplementedError
