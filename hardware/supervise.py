"""Per-sensor failure handling: report once, back off, report the recovery.

Theory of operation: every sensor runs its own loop, and every failure of its
device (an exception from a driver) goes through its :class:`FaultLog`. The
first failure of a streak is logged as a warning with the sensor's identity and
the reason; the rest of the streak only at debug level, so a probe that is
unplugged for a day writes one line, not forty thousand. Each failure returns
the delay before the next attempt, doubling from ``initial`` to ``maximum``; the
first success after a streak logs that the sensor works again and resets the
delay. Nothing here raises, and nothing is shared between sensors: one broken
device never slows or stops another.

:class:`Runtime` bundles what the loops need from the outside world (a way to
run blocking driver calls off the event loop, and ``sleep``), so tests swap in
fakes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["FaultLog", "Runtime"]

_log = logging.getLogger("hardware")
T = TypeVar("T")


async def _to_thread(func: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(func, *args)


@dataclass(frozen=True, slots=True)
class Runtime:
    """The outside world of the sensor loops.

    Attributes:
        run_blocking: awaits ``func(*args)`` without blocking the loop (a thread).
        sleep: awaited between readings and for backoff.
        initial_backoff: seconds before the first retry of a failing sensor.
        max_backoff: the longest wait between retries.
    """

    run_blocking: Callable[..., Awaitable[Any]] = field(default=_to_thread)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    initial_backoff: float = 1.0
    max_backoff: float = 60.0


class FaultLog:
    """One sensor's failure streak.

    Args:
        sensor_id: the sensor's identity, in every log line.
        initial: seconds to wait after the first failure.
        maximum: the cap on the wait.
        logger: where reports go.
    """

    def __init__(self, sensor_id: str, *, initial: float = 1.0, maximum: float = 60.0,
                 logger: logging.Logger = _log) -> None:
        self.sensor_id = sensor_id
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self.streak = 0
        self.last_reason: str | None = None
        self._logger = logger

    @property
    def failing(self) -> bool:
        """True between a failure and the next success."""
        return self.streak > 0

    def failed(self, exc: BaseException) -> float:
        """Record a failure.

        Args:
            exc: what the driver raised.

        Returns:
            Seconds to wait before trying again.
        """
        reason = str(exc) or type(exc).__name__
        reason = reason.removeprefix(f"{self.sensor_id}: ")  # drivers name the sensor too
        self.failures += 1
        self.last_reason = reason
        delay = min(self.maximum, self.initial * 2.0 ** min(self.streak, 32))
        if self.streak == 0:
            self._logger.warning("sensor %s failed: %s (retrying with backoff; further "
                                 "failures are logged at debug level)", self.sensor_id, reason)
        else:
            self._logger.debug("sensor %s failed again (%d in a row): %s; next try in %.1f s",
                               self.sensor_id, self.streak + 1, reason, delay)
        self.streak += 1
        return delay

    def succeeded(self) -> None:
        """Record a good reading; logs the recovery after a streak."""
        if self.streak:
            self._logger.warning("sensor %s works again after %d failed attempt(s)",
                                 self.sensor_id, self.streak)
        self.streak = 0
