"""An invite's budget: how long it lives, how often it may be tried, and when it is spent.

Theory of operation: an :class:`Invitation` is the inviter's bookkeeping across
connections; each connection runs one :class:`~ganglion.pairing.exchange.InviterSession`.
Time enters only as the ``now`` arguments (``loop.time()`` in the runtime).

* **Single use.** Once the sealed key file has gone out, the invite is USED and
  admits nobody else.
* **Burnt by wrong codes.** An exchange that got past the joiner's SPAKE2
  message and did not end with the key delivered is a failed attempt (a wrong
  code, or a joiner that vanished after its first message: we count the guess it
  could have been); after ``max_failures`` (3) the invite is BURNT.
* **Rate-limited.** One exchange at a time, and a new one at most every
  ``min_interval`` seconds (1 s), so even a burst of connections gets at most one
  guess a second, and three in all.
* **Expiry.** After ``ttl`` seconds the invite is EXPIRED; an exchange running at
  that moment may finish (it is bounded by :data:`SESSION_SECONDS`).

Connections refused for being too early or too many are counted, not failures:
they learn nothing about the code.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Final

from ganglion.errors import ConfigError
from ganglion.pairing.frames import Refusal

__all__ = [
    "MAX_FAILURES",
    "MIN_INTERVAL",
    "SESSION_SECONDS",
    "Invitation",
    "InvitationStats",
    "InviteStatus",
]

#: Failed exchanges after which an invite is burnt.
MAX_FAILURES: Final = 3

#: Seconds between the starts of two exchanges.
MIN_INTERVAL: Final = 1.0

#: Longest one exchange may take, from accept to the last frame (the runtime enforces it).
SESSION_SECONDS: Final = 10.0


class InviteStatus(enum.Enum):
    """What an invite can still do."""

    OPEN = "open"
    USED = "used"
    BURNT = "burnt"
    EXPIRED = "expired"


@dataclasses.dataclass(slots=True)
class InvitationStats:
    """Counters of one invite.

    Attributes:
        attempts: exchanges admitted.
        failures: admitted exchanges that counted as a wrong guess.
        malformed: admitted exchanges dropped before a SPAKE2 message (garbage,
            silence, another nameplate or version); not failures.
        refused: connections turned away (busy, too early, closed).
    """

    attempts: int = 0
    failures: int = 0
    malformed: int = 0
    refused: int = 0


class Invitation:
    """The state of one invite across connections.

    Args:
        created: the time the code was printed.
        ttl: seconds the code is valid.
        max_failures: failed exchanges that burn it.
        min_interval: least seconds between two exchanges' starts.

    Raises:
        ConfigError: a non-positive ``ttl``, ``max_failures`` or a negative interval.
    """

    __slots__ = ("_active", "_last_start", "_status", "expires_at", "max_failures",
                 "min_interval", "stats")

    def __init__(self, *, created: float, ttl: float, max_failures: int = MAX_FAILURES,
                 min_interval: float = MIN_INTERVAL) -> None:
        if not ttl > 0:
            raise ConfigError(f"an invite's ttl must be positive, not {ttl}")
        if max_failures < 1 or min_interval < 0:
            raise ConfigError("max_failures must be >= 1 and min_interval >= 0")
        self.expires_at = created + ttl
        self.max_failures = max_failures
        self.min_interval = min_interval
        self.stats = InvitationStats()
        self._status = InviteStatus.OPEN
        self._active = False
        self._last_start: float | None = None

    def status_at(self, now: float) -> InviteStatus:
        """The invite's status at ``now``.

        Args:
            now: the current time.

        Returns:
            USED or BURNT for good; EXPIRED once ``now`` passes the expiry; else OPEN.
        """
        if self._status is InviteStatus.OPEN and now >= self.expires_at:
            self._status = InviteStatus.EXPIRED
        return self._status

    @property
    def busy(self) -> bool:
        """True while an admitted exchange runs."""
        return self._active

    def admit(self, now: float) -> Refusal | None:
        """Decide about a new connection.

        Args:
            now: the time it arrived.

        Returns:
            None to run an exchange (then call :meth:`end` exactly once), or the
            reason to refuse it.
        """
        if self.status_at(now) is not InviteStatus.OPEN:
            self.stats.refused += 1
            return Refusal.CLOSED
        too_soon = self._last_start is not None and now - self._last_start < self.min_interval
        if self._active or too_soon:
            self.stats.refused += 1
            return Refusal.BUSY
        self._active = True
        self._last_start = now
        self.stats.attempts += 1
        return None

    def end(self, *, spent: bool, key_sent: bool) -> InviteStatus:
        """Record how an admitted exchange ended.

        Args:
            spent: the exchange answered a SPAKE2 message (it was a guess at the code).
            key_sent: the sealed key file went out.

        Returns:
            The invite's status after it.
        """
        self._active = False
        if key_sent:
            self._status = InviteStatus.USED
        elif spent:
            self.stats.failures += 1
            if self.stats.failures >= self.max_failures and self._status is InviteStatus.OPEN:
                self._status = InviteStatus.BURNT
        else:
            self.stats.malformed += 1
        return self._status
