"""The recorder: subscribes a node to every type (or every matching type) for a Writer.

Theory of operation: the types to log are the agreed map, which grows while the
logger runs. Until the node offers a hook for new types, :meth:`Recorder.run`
polls ``node.types()`` every ``poll`` seconds and subscribes to each new name
that matches the ``--type`` glob patterns (:func:`fnmatch.fnmatchcase`; none
means every type), with ``propose=False`` (logging a type must not create it)
and ``last_value=True``: every publisher's latest reading is fetched at once and
logged with its ``last_value`` flag, so a logger that joins late still has each
stream's current state. With ``history`` (seconds; ``ganglion log`` asks for the
publishers' history age by default), each subscription also asks the publishers
for what they published in that many seconds before (``subscribe(...,
history=...)``): a logger started after its publishers gets what they still hold,
each reading logged with its ``repaired`` flag. A publisher answers with what it
holds when the request arrives, and sends live readings only once the logger's
interest has reached it, a moment later: a reading published in between was in
neither. So :data:`HISTORY_FOLLOW_UP` seconds after subscribing the recorder asks
once more, for the seconds since it subscribed; what it already has is not
delivered twice (the node delivers each (sender, boot, seq) once). For a type without a class in this program it asks the
publishers for the type's schema, so the ``types`` table has its units. Every ``interval`` seconds the recorder hands the
writer what it took (one commit) and tells it the peers' names. When the
writer fails (its database, or anything unexpected), :meth:`run` raises its
:class:`LogDatabaseError`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Iterable
from typing import Any

from ganglion.logger.writer import DEFAULT_INTERVAL, Writer
from ganglion.types import lookup

__all__ = ["Recorder", "matches"]

_log = logging.getLogger(__name__)

#: Seconds between looks at the agreed map for new types.
DEFAULT_POLL = 0.1
#: Seconds after subscribing with history until the follow-up history request: by
#: then the logger's interest has reached the publishers and live readings flow.
HISTORY_FOLLOW_UP = 2.0


def _loop_time() -> float:
    """The running loop's clock (``subscribe_new`` may also be called off a loop: 0)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return 0.0


def matches(type_name: str, patterns: Iterable[str]) -> bool:
    """Whether ``type_name`` matches one of the glob ``patterns`` (all match when none)."""
    pats = tuple(patterns)
    return not pats or any(fnmatch.fnmatchcase(type_name, p) for p in pats)


class Recorder:
    """Feeds every (matching) type a node receives into a :class:`Writer`.

    Args:
        writer: where readings go; the recorder starts it.
        patterns: glob patterns of type names to log; empty for every type.
        interval: seconds between hand-offs to the writer (commits).
        poll: seconds between looks at the agreed map.
        last_values: fetch each publisher's latest reading on subscribing.
        history: on subscribing, ask the publishers for their readings of the last
            this many seconds (0: none).
    """

    def __init__(self, writer: Writer, patterns: Iterable[str] = (), *,
                 interval: float = DEFAULT_INTERVAL, poll: float = DEFAULT_POLL,
                 last_values: bool = True, history: float = 0.0) -> None:
        if interval <= 0 or poll <= 0 or history < 0:
            raise ValueError("interval and poll must be > 0 and history >= 0")
        self._history = history
        self.writer = writer
        self.patterns = tuple(patterns)
        self._interval = interval
        self._poll = poll
        self._last_values = last_values
        self._subs: dict[str, Any] = {}
        self._failed: asyncio.Event | None = None
        # type name -> loop time it was subscribed with history (follow-up not yet asked)
        self._follow_up: dict[str, float] = {}
        #: ``node.stats()`` taken just before the subscriptions closed at the end of
        #: :meth:`run` (closing them makes the node forget the streams' repair counters).
        self.stats_at_stop: Any = None

    @property
    def subscribed(self) -> frozenset[str]:
        """The type names being logged now."""
        return frozenset(self._subs)

    def subscribe_new(self, node: Any) -> list[str]:
        """Subscribe to every matching type of the agreed map not yet logged.

        Returns:
            The type names newly subscribed to.
        """
        new = [name for name in node.types() if name not in self._subs
               and matches(name, self.patterns)]
        # only when asked: a node without history (or a test double) needs no such argument
        extra = {"history": self._history} if self._history else {}
        for name in new:
            self._subs[name] = node.subscribe(name, callback=self.writer.add, propose=False,
                                              last_value=self._last_values, **extra)
            if self._history and hasattr(node, "request_history"):
                self._follow_up[name] = _loop_time()
            if lookup(name) is None and hasattr(node, "request_type_schema"):
                # units and kinds of a type without a class here, for the types table
                node.request_type_schema(name)
            _log.info("logging %s", name)
        return new

    async def run(self, node: Any, stop: asyncio.Event | None = None) -> None:
        """Log until cancelled or ``stop`` is set; then write what is left.

        Args:
            node: a started :class:`ganglion.Node`.
            stop: ends the run when set (None: run until cancelled).

        Raises:
            LogDatabaseError: the database failed (disk full, read-only, I/O error).
        """
        loop = asyncio.get_running_loop()
        failed = asyncio.Event()

        def wake(exc: object) -> None:  # called from the writer thread
            loop.call_soon_threadsafe(failed.set)

        self.writer.on_error = wake
        self.writer.schemas = getattr(node, "type_schema", None)
        self.writer.start()
        self.writer.set_logger_node(node.node_id)
        stop = stop or asyncio.Event()
        next_hand_off = loop.time() + self._interval
        try:
            while not stop.is_set() and not failed.is_set() and self.writer.error is None:
                self.subscribe_new(node)
                self._ask_follow_ups(node, loop.time())
                if loop.time() >= next_hand_off:
                    next_hand_off = loop.time() + self._interval
                    self.writer.hand_off()
                    self.writer.set_node_names({p.id: p.name for p in node.peers()})
                waiters = [asyncio.ensure_future(e.wait()) for e in (stop, failed)]
                try:
                    await asyncio.wait(waiters, timeout=self._poll,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            try:
                self.stats_at_stop = node.stats()
            except Exception:  # a node already closed: no counters to report
                self.stats_at_stop = None
            self.close_subscriptions()
        if self.writer.error is not None:
            raise self.writer.error

    def _ask_follow_ups(self, node: Any, now: float) -> None:
        """Ask again for the history since subscribing, once, where it is due."""
        for name, since in list(self._follow_up.items()):
            if now - since >= HISTORY_FOLLOW_UP:
                del self._follow_up[name]
                if name in self._subs:
                    node.request_history(name, now - since + 1.0)

    def close_subscriptions(self) -> None:
        """Unsubscribe from every type (the writer keeps what it already took)."""
        for sub in self._subs.values():
            sub.close()
        self._subs.clear()
        self._follow_up.clear()

