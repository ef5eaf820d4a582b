"""Simulated sensors that produce realistic drifting readings.

Theory of operation: each quantity follows an Ornstein-Uhlenbeck process (a random
walk pulled back towards a mean) around a slow daily cycle, so values wander the
way a real room's temperature does instead of jumping. All randomness comes from
a ``random.Random`` the caller passes in and time is an explicit argument, so a
simulated sensor is deterministic for a seed and testable without a clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from hardware.readings import Flow, Humidity, Pressure, Temperature

_DAY_SECONDS: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class _Profile:
    mean: float  # long-run mean of the quantity
    daily_swing: float  # amplitude of the daily cycle
    reversion: float  # per-second pull back towards the mean (OU theta)
    noise: float  # per-sqrt(second) noise (OU sigma)
    low: float  # physical lower bound
    high: float  # physical upper bound


_PROFILES: Final[dict[str, _Profile]] = {
    "temperature": _Profile(20.0, 3.0, 0.01, 0.05, -40.0, 85.0),
    "humidity": _Profile(45.0, 10.0, 0.01, 0.2, 0.0, 100.0),
    "pressure": _Profile(1013.25, 1.5, 0.002, 0.05, 870.0, 1085.0),
    "flow": _Profile(6.0, 4.0, 0.05, 0.6, 0.0, 60.0),
}

#: The kinds ``ganglion sim --kind`` accepts.
KINDS: Final = tuple(_PROFILES)

Reading = Temperature | Humidity | Pressure | Flow


class SimulatedSensor:
    """One simulated sensor of a given kind.

    Args:
        kind: one of :data:`KINDS`.
        name: the sensor's name; readings carry ``sim:<name>`` as their sensor id.
        rng: the source of all randomness (seed it for reproducible readings).
    """

    def __init__(self, kind: str, name: str, *, rng: random.Random) -> None:
        if kind not in _PROFILES:
            raise ValueError(f"unknown simulated sensor kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.sensor_id = f"sim:{name}"
        self._profile = _PROFILES[kind]
        self._rng = rng
        self._phase = rng.uniform(0.0, _DAY_SECONDS)  # sensors do not all peak together
        self._deviation = 0.0
        self._total = 0.0
        self._last_now: float | None = None

    def read(self, now: float) -> Reading:
        """Advance the simulation to time ``now`` (seconds) and return a reading.

        Args:
            now: a monotonically non-decreasing time in seconds.

        Returns:
            A message object of the sensor's kind.
        """
        dt = 0.0 if self._last_now is None else max(0.0, now - self._last_now)
        self._last_now = now
        p = self._profile
        # Exact OU step: stable for any dt, so an irregular interval does not blow up.
        decay = math.exp(-p.reversion * dt)
        spread = p.noise * math.sqrt((1.0 - decay * decay) / (2.0 * p.reversion)) if dt else 0.0
        self._deviation = self._deviation * decay + spread * self._rng.gauss(0.0, 1.0)
        cycle = p.daily_swing * math.sin(2.0 * math.pi * (now + self._phase) / _DAY_SECONDS)
        value = min(p.high, max(p.low, p.mean + cycle + self._deviation))
        return self._message(round(value, 3), dt)

    def _message(self, value: float, dt: float) -> Reading:
        if self.kind == "temperature":
            return Temperature(sensor=self.sensor_id, celsius=value)
        if self.kind == "humidity":
            return Humidity(sensor=self.sensor_id, percent=value)
        if self.kind == "pressure":
            return Pressure(sensor=self.sensor_id, hpa=value)
        self._total += value * dt / 60.0
        return Flow(sensor=self.sensor_id, litres_per_minute=value, total_litres=round(self._total, 3))
