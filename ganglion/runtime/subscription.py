"""Local subscriptions: how received (and locally published) messages reach user code.

A :class:`Subscription` delivers either to a callback, called on the event loop
for each message, or to a bounded queue read with ``async for``. A slow async
reader never blocks the receive path: when its queue is full the *oldest*
message is dropped and counted, so the reader always catches up to the newest
readings (what a dashboard wants). Callback exceptions are logged with their
traceback and counted; they never reach the transport.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

_log = logging.getLogger(__name__)

#: Messages an ``async for`` subscription holds before dropping the oldest.
DEFAULT_QUEUE_SIZE = 1024


class MessageInfo(NamedTuple):
    """Where a delivered message came from.

    An immutable record built for every delivered message, so it is a
    NamedTuple: building one costs a third of a frozen dataclass's ten
    ``object.__setattr__`` calls, which showed on the receive path.

    Attributes:
        type_name: the message's dotted type name.
        sender: the sender's 8-byte node id.
        seq: the sender's sequence number for (sender, type).
        sent_ns: the sender's timestamp, ns since the epoch.
        received_ns: this node's timestamp at receipt, ns since the epoch.
        boot: the sender's boot counter.
        local: True when published by this endpoint (delivered without encoding).
        source: the (address, port) the datagram came from; None when local.
        clock_synced: False when the sender flagged its clock as not synchronised,
            so ``sent_ns`` may be far off.
        last_value: True for a publisher's latest message fetched by a late joiner
            (it was published before this subscriber asked).
        replayed: True when the sender replays it from a log (``ganglion replay``).
        fingerprint: the sender's 8-byte schema fingerprint of the type, when known.
        repaired: True when the message did not arrive as first sent but was resent
            by its publisher from its history: a repair of a lost datagram (NACK
            repair) or a history answer to ``subscribe(Type, history=seconds)``.
            ``seq`` and ``sent_ns`` are still the original ones.

    A replayed message (``replayed``) describes the *original* reading when the
    replayer sent its origin (every ganglion that has ``Origin``): ``sender``,
    ``boot``, ``seq``, ``sent_ns``, ``clock_synced`` and ``last_value`` are the
    original sender's, as the log recorded them, and ``fingerprint`` the version it
    was logged under; only ``source`` and ``received_ns`` are the replay's. From an
    older replayer they are the replaying node's own.
    """

    type_name: str
    sender: bytes
    seq: int
    sent_ns: int
    received_ns: int
    boot: int = 0
    local: bool = False
    source: tuple[str, int] | None = None
    clock_synced: bool = True
    last_value: bool = False
    replayed: bool = False
    fingerprint: bytes | None = None
    repaired: bool = False

    @property
    def sender_hex(self) -> str:
        """The sender's node id as 16 hex digits."""
        return self.sender.hex()


Callback = Callable[[Any, MessageInfo], object]


class Subscription:
    """One local subscriber of one type; iterate it, or give it a callback.

    Created by ``Endpoint.subscribe``; :meth:`close` (or leaving an ``async with``)
    unsubscribes, and the endpoint leaves the type's group with its last subscriber.
    """

    def __init__(
        self,
        type_name: str,
        *,
        callback: Callback | None,
        maxsize: int,
        on_close: Callable[[Subscription], None],
        raw: bool = False,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.type_name = type_name
        #: Takes payloads: for a type with no class registered here, received while
        #: every local subscriber of the type takes them, a message is handed over as
        #: its payload bytes, not decoded (the plugin bus's own subscription, which
        #: passes them to plugins as they are). Anything else still comes decoded.
        self.raw = raw
        self._callback = callback
        self._queue: collections.deque[tuple[Any, MessageInfo]] = collections.deque()
        self._maxsize = maxsize
        # Every reader blocked in get(); a set, so several readers (or one that was
        # cancelled while another waits) never strand each other.
        self._waiters: set[asyncio.Future[None]] = set()
        self._on_close = on_close
        self._closed = False
        self.delivered = 0
        self.dropped = 0
        self.callback_errors = 0

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def deliver(self, msg: Any, info: MessageInfo) -> None:
        """Hand one message to the subscriber (called by the endpoint, on the loop).

        The compiled receive path (``ganglion/_c/receive.c``, ``deliver_to``) does the
        callback case's steps itself: a change here must be made there too.
        """
        if self._closed:
            return
        self.delivered += 1
        if self._callback is not None:
            try:
                self._callback(msg, info)
            except Exception as exc:
                self._callback_failed(exc)
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((msg, info))
        self._wake()

    def _callback_failed(self, exc: Exception) -> None:
        """Count and log an exception the callback raised (and go on delivering)."""
        self.callback_errors += 1
        _log.error("subscriber callback for %s failed", self.type_name, exc_info=exc)

    async def get(self) -> tuple[Any, MessageInfo]:
        """Wait for the next message and its :class:`MessageInfo`.

        Raises:
            StopAsyncIteration: the subscription was closed and its queue is empty.
            RuntimeError: the subscription delivers to a callback instead.
        """
        if self._callback is not None:
            raise RuntimeError("this subscription delivers to a callback; it cannot be awaited")
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)
        return self._queue.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        msg, _info = await self.get()
        return msg

    def close(self) -> None:
        """Unsubscribe; a waiting ``async for`` ends after the queued messages."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._on_close(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _wake(self) -> None:
        # Wake them all: each re-checks the queue, and those that find it empty wait again.
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
