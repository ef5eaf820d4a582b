"""Message types for sensor readings, shared by real and simulated sensors.

Every reading names its sensor (a stable identity such as a 1-Wire ROM id, a bus
and address, or ``sim:<name>`` for a simulated one) and carries its unit in the
field name, so a receiver without these classes still reads it unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganglion import message


@message("sensors.Temperature", key="sensor")
@dataclass
class Temperature:
    """Air or liquid temperature."""

    sensor: str
    celsius: float


@message("sensors.Humidity", key="sensor")
@dataclass
class Humidity:
    """Relative humidity."""

    sensor: str
    percent: float


@message("sensors.Pressure", key="sensor")
@dataclass
class Pressure:
    """Barometric pressure."""

    sensor: str
    hpa: float


@message("sensors.Flow", key="sensor")
@dataclass
class Flow:
    """Flow rate and running total, from a pulse-counting flow meter."""

    sensor: str
    litres_per_minute: float
    total_litres: float
