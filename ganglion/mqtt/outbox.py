"""The bounded queue of what waits for the broker.

While the broker is away (down at start, restarting, unreachable) readings wait
here, at most ``max_messages`` and ``max_bytes`` (topic and payload); the oldest
are dropped first and counted, so a long outage costs bounded memory and the
newest readings are the ones delivered. Retained configuration and availability
messages do not wait here: the bridge re-publishes them from its state on every
reconnect.
"""

from __future__ import annotations

import collections
import dataclasses

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_MESSAGES", "Outbox"]

#: Readings kept at most while the broker is away.
DEFAULT_MAX_MESSAGES = 10_000
#: Bytes (topics and payloads) kept at most while the broker is away.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class _Item:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    @property
    def size(self) -> int:
        return len(self.topic) + len(self.payload)


class Outbox:
    """A FIFO bounded by count and bytes; the oldest item goes when a new one does not fit.

    Args:
        max_messages: items kept at most (at least 1).
        max_bytes: bytes of topics and payloads kept at most.
    """

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("the queue needs room for at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: collections.deque[_Item] = collections.deque()
        self.bytes = 0
        #: Items dropped (the oldest, when full), and items refused (larger than the queue).
        self.dropped = 0
        self.queued = 0

    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Queue one message, dropping the oldest ones it does not leave room for."""
        item = _Item(topic, payload, qos, retain)
        if item.size > self.max_bytes:
            self.dropped += 1
            return
        self._items.append(item)
        self.bytes += item.size
        self.queued += 1
        while len(self._items) > self.max_messages or self.bytes > self.max_bytes:
            old = self._items.popleft()
            self.bytes -= old.size
            self.dropped += 1

    def pop(self) -> tuple[str, bytes, int, bool] | None:
        """The oldest message, or None when empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        self.bytes -= item.size
        return item.topic, item.payload, item.qos, item.retain

    def push_front(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Put back a message that could not be sent (it stays the oldest)."""
        item = _Item(topic, payload, qos, retain)
        self._items.appendleft(item)
        self.bytes += item.size

    def __len__(self) -> int:
        return len(self._items)
