"""Loop times of the wall clock's multiples, with one mapping per event loop.

Theory of operation: a node's heartbeats fall on the wall clock's multiples of the
heartbeat interval (:mod:`ganglion.runtime._tickclock`), so nodes whose clocks are
synchronised send together and an idle node wakes once per interval for all of
them. Other periodic work in the same process (a plugin that polls) costs no
wake-up of its own when it falls on the same instants: the event loop runs every
timer that is due when it wakes. For that the instants must be the same *loop*
times, not merely close ones. The loop's clock is monotonic and the wall clock is
slewed by NTP (up to half a millisecond a second), so two parts that each map
"now" afresh would drift apart. The mapping (wall clock minus loop clock) is
therefore read once per event loop, here, and whatever keeps to the grid uses it.
A step of the wall clock after that moves nobody's grid (the control channel's
tick clock has always mapped once, at start).

Pure: no clock but the ones passed in is read, except :func:`time.time` once per loop.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Protocol

__all__ = ["LoopClock", "next_multiple", "wall_offset"]


class LoopClock(Protocol):
    """What is read of an event loop: its clock."""

    def time(self) -> float: ...


#: Event loop -> wall clock minus loop clock, read when first asked for.
_offsets: weakref.WeakKeyDictionary[LoopClock, float] = weakref.WeakKeyDictionary()


def wall_offset(loop: LoopClock) -> float:
    """Wall clock (``time.time()``) minus ``loop.time()``, read at the first call for ``loop``."""
    offset = _offsets.get(loop)
    if offset is None:
        offset = _offsets[loop] = time.time() - loop.time()
    return offset


def next_multiple(loop: LoopClock, period: float, after: float) -> float:
    """The loop time of the first multiple of ``period`` on the wall clock that is later
    than loop time ``after``.

    Args:
        loop: the event loop whose clock the answer is in.
        period: seconds (> 0).
        after: a loop time.
    """
    offset = wall_offset(loop)
    wall = after + offset
    return (math.floor(wall / period) + 1) * period - offset
