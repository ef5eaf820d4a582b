"""The ``sim`` plugin: simulated sensors publishing drifting readings on a schedule.

Theory of operation: ``setup`` makes one :class:`~hardware.sim.SimulatedSensor` per
kind, named after the node (sensor ids ``sim:<node name>/<kind>``), and fixes
the plugin's time origin. ``run`` publishes one reading per sensor, then sleeps
until the next multiple of ``interval`` after the origin: the schedule does not
drift with the time publishing takes, and a run that fell behind (a busy loop, a
suspended laptop) skips the missed ticks instead of bursting to catch up. A sleep
that ends a little before its tick (uvloop's timers round to whole milliseconds)
still counts for that tick, so no tick is published twice. The
sensors and the origin live on the plugin, so a run restarted after a crash
carries on the same smooth series. Time and sleep are injectable for tests.

Enabled with ``ganglion node --sim KIND`` or ``[sim] kinds`` in the config; the
entry point is ``sim`` in the ``ganglion.plugins`` group.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ganglion import ConfigError
from hardware.readings import Flow, Humidity, Pressure, Temperature
from hardware.sim import KINDS, SimulatedSensor

__all__ = ["SimPlugin"]

_TYPES: dict[str, type] = {
    "temperature": Temperature,
    "humidity": Humidity,
    "pressure": Pressure,
    "flow": Flow,
}


class SimPlugin:
    """Publishes a reading from each simulated sensor every ``interval`` seconds.

    Args:
        kinds: the sensors to simulate, each one of ``temperature``, ``humidity``,
            ``pressure``, ``flow``; no repeats.
        interval: seconds between readings, > 0.
        name: the plugin's name (in logs and stats).
        seed: seed for reproducible readings; None for a random series.
        clock: monotonic seconds (for tests).
        sleep: awaited between readings (for tests).

    Raises:
        ConfigError: an unknown or repeated kind, no kinds, or a bad interval.
    """

    subscribes: tuple[type | str, ...] = ()

    def __init__(
        self,
        kinds: Sequence[str] = ("temperature",),
        interval: float = 1.0,
        name: str = "sim",
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if isinstance(kinds, str):  # a lone string would be taken letter by letter
            kinds = (kinds,)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ConfigError(f"unknown simulated sensor kind {unknown[0]!r}; "
                              f"choose from {', '.join(KINDS)}")
        if not kinds or len(set(kinds)) != len(kinds):
            raise ConfigError(f"sim kinds must be one or more of {', '.join(KINDS)} "
                              f"without repeats, got {list(kinds)}")
        if isinstance(interval, bool) or not isinstance(interval, int | float) \
                or not math.isfinite(interval) or interval <= 0:
            raise ConfigError(f"sim interval must be a number of seconds > 0, got {interval!r}")
        self.name = name
        self.kinds = tuple(kinds)
        self.interval = float(interval)
        # How early a sleep may end and still count for its tick.
        self._slack = min(0.001, self.interval / 4)
        self.publishes: tuple[type | str, ...] = tuple(_TYPES[k] for k in self.kinds)
        self.published = 0
        self._rng = random.Random(seed)
        self._clock = clock
        self._sleep = sleep
        self._sensors: list[SimulatedSensor] = []
        self._origin: float | None = None

    @property
    def sensors(self) -> tuple[SimulatedSensor, ...]:
        """The simulated sensors (empty until ``setup``)."""
        return tuple(self._sensors)

    async def setup(self, node: Any) -> None:
        """Create the sensors, named after the node.

        Args:
            node: the node; its ``name`` goes into the sensor ids.
        """
        self._sensors = [SimulatedSensor(kind, f"{node.name}/{kind}", rng=self._rng)
                         for kind in self.kinds]
        self._origin = self._clock()

    async def run(self, node: Any) -> None:
        """Publish readings until cancelled.

        Args:
            node: the node to publish on (``await node.publish(msg)``).
        """
        if self._origin is None:  # run without setup: the host always calls setup first
            await self.setup(node)
        origin = self._origin if self._origin is not None else self._clock()
        done = -1  # the last tick published for
        while True:
            elapsed = self._clock() - origin
            for sensor in self._sensors:
                await node.publish(sensor.read(elapsed))
                self.published += 1
            # The tick this round stood for: a sleep may end a little early (uvloop's
            # timers round to whole milliseconds), and that tick must not come twice.
            done = max(done + 1, math.floor((elapsed + self._slack) / self.interval))
            # Next tick strictly after now and after the last one: late wake-ups skip
            # ticks instead of bursting, early ones do not repeat one.
            tick = max(math.floor((self._clock() - origin) / self.interval) + 1, done + 1)
            await self._sleep(max(0.0, origin + tick * self.interval - self._clock()))
