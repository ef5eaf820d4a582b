"""Which bad plugin-bus input gets a log line: the first per (peer, reason), then summaries.

Theory of operation. A plugin that sends malformed messages in a loop must not
be able to fill the node's log: issue 21 found a 1 MB frame logged whole, so a
hundred of them made 100 MB of log in a second. :class:`ReportLimiter` decides,
for each bad message, whether it is worth a line of its own: only the *first*
one of a given (peer, reason) pair is, and the line carries an
:func:`excerpt` of at most :data:`EXCERPT_BYTES` bytes, never the frame. Every
later one is only counted; the bus asks :meth:`ReportLimiter.take_summary`
periodically and logs one line saying how many more were dropped, by reason.

Memory is bounded too: the set of pairs already logged holds at most
``max_keys`` entries (peers are chosen by whoever connects, e.g. one per
process id on ipc). When it is full a new pair is no longer logged on its own
but still counted in the summary, so the log stays bounded whatever the peers.

Pure logic: no clock, no I/O. The same calls in the same order give the same
answers; the caller decides when a summary is due.
"""

from __future__ import annotations

import collections

#: Bytes of a bad frame shown in a log line (as hex), whatever the frame's size.
EXCERPT_BYTES = 64

#: Distinct (peer, reason) pairs remembered as already logged.
DEFAULT_MAX_KEYS = 256

#: Longest text (an error message) copied into a log line.
MAX_TEXT = 200


def excerpt(data: bytes, limit: int = EXCERPT_BYTES) -> str:
    """Describe a frame by its size and its first ``limit`` bytes in hex.

    Args:
        data: the frame.
        limit: bytes shown at most.

    Returns:
        For example ``"1000000 bytes: a1617859000f4240..."``; the text is at most
        ``2 * limit`` characters plus a short prefix, whatever ``len(data)``.
    """
    shown = data[:limit].hex()
    more = "..." if len(data) > limit else ""
    return f"{len(data)} bytes: {shown}{more}"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Return ``text`` cut to ``limit`` characters (an error message may quote input)."""
    return text if len(text) <= limit else text[:limit] + "..."


class ReportLimiter:
    """Decide which bad-input events are logged; count the rest for a summary."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        """Start with nothing logged.

        Args:
            max_keys: (peer, reason) pairs remembered; beyond it no new pair is
                logged on its own (it is still counted).

        Raises:
            ValueError: ``max_keys`` is negative.
        """
        if max_keys < 0:
            raise ValueError(f"max_keys must be >= 0, got {max_keys}")
        self._max_keys = max_keys
        self._logged: set[tuple[str, str]] = set()
        self._suppressed: collections.Counter[str] = collections.Counter()
        #: Events counted but not logged on their own, since the start.
        self.suppressed_total = 0

    def first(self, peer: str, reason: str) -> bool:
        """Record one bad event; say whether to log it on its own line.

        Args:
            peer: who sent it (a plugin's connection, process, or address).
            reason: why it was dropped (a counter name).

        Returns:
            True for the first event of this (peer, reason) while the table has
            room; False otherwise (the event is counted for the next summary).
        """
        key = (peer, reason)
        if key in self._logged or len(self._logged) >= self._max_keys:
            self._suppressed[reason] += 1
            self.suppressed_total += 1
            return False
        self._logged.add(key)
        return True

    def take_summary(self) -> dict[str, int]:
        """Return the events not logged since the last call, by reason, and reset them.

        Returns:
            Reason -> count, sorted by reason; empty when nothing was suppressed.
        """
        counts = dict(sorted(self._suppressed.items()))
        self._suppressed.clear()
        return counts

    @property
    def remembered(self) -> int:
        """How many (peer, reason) pairs are remembered as logged (at most ``max_keys``)."""
        return len(self._logged)


def peer_name(value: str | None) -> str:
    """Name the plugin a message came from, from what zmq knows of its connection.

    A restricted bus names each accepted connection (``plugin-N``, from ZAP);
    otherwise ipc frames carry the peer's credentials (``localhost:UID:GID:PID``
    on Linux) and tcp frames its address.
    """
    if not value:
        return "plugin"
    host, _, creds = value.partition(":")
    parts = creds.split(":")
    if host == "localhost" and len(parts) == 3:
        return f"pid {parts[2]} (uid {parts[0]})"
    return clip(value, 64)
