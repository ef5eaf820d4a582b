"""Edge logic for GPIO inputs: debounced state changes and pulse counting.

Theory of operation: pins report raw edges ``(seconds, level)``; mechanical
contacts bounce for a few milliseconds, so each raw edge is a candidate, not an
event. Both classes here are pure: time only enters as the ``seconds`` of an
edge or the ``now`` of a sample, so tests drive them with exact fake times.

* :class:`InputState` accepts a change of level only once the previous accepted
  change is at least ``debounce`` seconds old, and ignores edges that do not
  change the accepted level (the second half of a bounce); :meth:`InputState.settle`
  takes the level read once a lock-out is over, in case the bounce ended on the
  other level.
* :class:`PulseCounter` counts the chosen edge (a pulse is one rising, or one
  falling, edge) under the same lock-out, and on :meth:`PulseCounter.sample`
  gives the rate over the time since the previous sample and the running total,
  both scaled by ``per_unit`` pulses per unit (a YF-S201 flow sensor gives about
  450 pulses per litre; a tipping-bucket rain gauge one pulse per 0.2794 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["CounterSample", "InputState", "PulseCounter"]


class InputState:
    """The debounced level of a digital input.

    Args:
        level: the level when the pin was opened.
        debounce: seconds after an accepted change during which edges are ignored.
        active_low: True when the input is active at a low level (pull-up wiring).
    """

    def __init__(self, level: bool, *, debounce: float = 0.02, active_low: bool = True) -> None:
        if not debounce >= 0:
            raise ValueError(f"debounce must be >= 0 seconds, not {debounce!r}")
        self.level = level
        self.debounce = debounce
        self.active_low = active_low
        self.changes = 0
        self._last_change = -math.inf

    @property
    def active(self) -> bool:
        """The logical state."""
        return self.level != self.active_low

    def edge(self, seconds: float, level: bool) -> bool:
        """Offer one raw edge.

        Args:
            seconds: when it happened (the port factory's clock).
            level: the new level.

        Returns:
            True if it is an accepted change of state.
        """
        if level == self.level or seconds - self._last_change < self.debounce:
            return False
        self.level = level
        self._last_change = seconds
        self.changes += 1
        return True


    def settle(self, seconds: float, level: bool) -> bool:
        """Take the level the pin settled on after a lock-out, whatever the timing.

        A bounce can end on the other level inside the lock-out, where its edge
        was ignored; reading the pin once the lock-out is over catches that.

        Args:
            seconds: when the pin was read.
            level: the level read.

        Returns:
            True if that is a change of state.
        """
        if level == self.level:
            return False
        self.level = level
        self._last_change = seconds
        self.changes += 1
        return True


@dataclass(frozen=True, slots=True)
class CounterSample:
    """Rate over the last sampling period and the running totals."""

    per_minute: float
    total: float
    pulses: int


class PulseCounter:
    """Counts debounced pulses on one edge and turns them into units.

    Args:
        per_unit: pulses per unit (> 0).
        debounce: seconds after a counted pulse during which edges are ignored.
        edge: which edge is a pulse.
        start: the time counting starts (for the first rate).

    Raises:
        ValueError: a non-positive ``per_unit`` or a negative ``debounce``.
    """

    def __init__(self, *, per_unit: float, debounce: float = 0.005,
                 edge: Literal["rising", "falling"] = "falling", start: float = 0.0) -> None:
        if not (per_unit > 0 and math.isfinite(per_unit)):
            raise ValueError(f"pulses per unit must be > 0, not {per_unit!r}")
        if not debounce >= 0:
            raise ValueError(f"debounce must be >= 0 seconds, not {debounce!r}")
        if edge not in ("rising", "falling"):
            raise ValueError(f"edge must be 'rising' or 'falling', not {edge!r}")
        self.per_unit = float(per_unit)
        self.debounce = debounce
        self.edge_level = edge == "rising"
        self.pulses = 0
        self.rejected = 0
        self._last_pulse = -math.inf
        self._sampled_at = start
        self._sampled_pulses = 0

    def edge(self, seconds: float, level: bool) -> bool:
        """Offer one raw edge.

        Args:
            seconds: when it happened.
            level: the level after the edge.

        Returns:
            True if it was counted as a pulse.
        """
        if level != self.edge_level:
            return False
        if seconds - self._last_pulse < self.debounce:
            self.rejected += 1
            return False
        self._last_pulse = seconds
        self.pulses += 1
        return True

    def sample(self, now: float) -> CounterSample:
        """The rate since the previous sample (or the start), and the totals.

        Args:
            now: the current time on the same clock as the edges.

        Returns:
            The sample; the rate is 0 when no time has passed.
        """
        elapsed = now - self._sampled_at
        new = self.pulses - self._sampled_pulses
        rate = new / self.per_unit / elapsed * 60.0 if elapsed > 0 else 0.0
        self._sampled_at, self._sampled_pulses = now, self.pulses
        return CounterSample(rate, self.pulses / self.per_unit, self.pulses)
