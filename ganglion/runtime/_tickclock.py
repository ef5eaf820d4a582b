"""When each logical tick of the control channel falls, in the event loop's time.

Theory of operation: the consensus state machine counts abstract ticks; the
control channel gives tick ``n`` a loop time and wakes only for ticks that act
(:meth:`consensus.PaxosNode.next_deadline`, heartbeats, timeouts). The grid has two
parts:

* **Start.** Tick 1 (the first ``Status``) comes one tick after the channel starts,
  as with a fixed-interval timer, so a new node's map reaches others at once.
* **Ramp, then grid.** Ticks ``1 + k * every`` (k >= 1: the heartbeat ticks, which
  the state machine's ``Status`` shares) fall on the wall clock's multiples of the
  heartbeat interval ``every * tick``. Ticks 2 .. ``1 + every`` are spread evenly
  from tick 1 to the first such multiple at least half an interval after it, so
  ticks in that first interval are between 0.5 and 1.5 ticks long and the logical
  clock never stalls; from there on a tick is ``tick`` seconds.

Nodes whose wall clocks agree (NTP) thus send heartbeats at the same moment, and an
idle node is woken by its peers' heartbeats about once per interval instead of
once per peer. Pure arithmetic: no clock is read here.
"""

from __future__ import annotations

import math

__all__ = ["TickClock"]


class TickClock:
    """Loop times of logical ticks (see the module docstring).

    Args:
        loop_now: the loop's time at start.
        wall_now: the wall clock (``time.time()``) at the same moment.
        tick: seconds per tick.
        every: ticks per heartbeat interval.
    """

    __slots__ = ("_every", "_first", "_grid", "_ramp", "_tick")

    def __init__(self, loop_now: float, wall_now: float, tick: float, every: int) -> None:
        self._tick = tick
        self._every = every
        self._first = loop_now + tick
        period = tick * every
        earliest = wall_now + tick + period / 2
        aligned = earliest + (-earliest) % period  # the first multiple at or after it
        # Loop time of tick 0 on the grid: tick 1 + every falls on ``aligned``.
        self._grid = loop_now + (aligned - wall_now) - (1 + every) * tick
        self._ramp = (self.time_of(1 + every) - self._first) / every

    def time_of(self, n: int) -> float:
        """The loop time at which tick ``n`` (>= 1) falls."""
        if n <= 1:
            return self._first
        if n < 1 + self._every:
            return self._first + (n - 1) * self._ramp
        return self._grid + n * self._tick

    def ticks_at(self, now: float) -> int:
        """The last tick whose time has come at loop time ``now`` (0 before tick 1)."""
        if now < self._first:
            return 0
        if now < self.time_of(1 + self._every):
            return min(self._every, 1 + math.floor((now - self._first) / self._ramp + 1e-9))
        return math.floor((now - self._grid) / self._tick + 1e-9)

    def first_tick_after(self, when: float) -> int:
        """The first tick whose time is after loop time ``when``."""
        return self.ticks_at(when) + 1

    def slip(self, intervals: int) -> None:
        """Delay every tick after the ramp by whole heartbeat intervals (a stalled loop);
        the grid stays on the wall clock's multiples."""
        self._grid += intervals * self._every * self._tick
