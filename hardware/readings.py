"""Message types for sensor readings, shared by real and simulated sensors.

Every reading names its sensor (a stable identity such as a 1-Wire ROM id, a bus
and address, or ``sim:<name>`` for a simulated one) and carries its unit in the
field name, so a receiver without these classes still reads it unambiguously.
Each value field also declares its unit and kind (:func:`ganglion.quantity`), which
nodes without the classes learn from the control channel (``ganglion types --schema``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ganglion import message, quantity


@message("sensors.Temperature", key="sensor")
@dataclass
class Temperature:
    """Air or liquid temperature."""

    sensor: str
    celsius: float = quantity(unit="°C", kind="temperature", state="measurement")


@message("sensors.Humidity", key="sensor")
@dataclass
class Humidity:
    """Relative humidity."""

    sensor: str
    percent: float = quantity(unit="%", kind="humidity", state="measurement",
                              description="relative humidity")


@message("sensors.Pressure", key="sensor")
@dataclass
class Pressure:
    """Barometric pressure."""

    sensor: str
    hpa: float = quantity(unit="hPa", kind="pressure", state="measurement")


@message("sensors.Flow", key="sensor")
@dataclass
class Flow:
    """Flow rate and running total, from a pulse-counting flow meter."""

    sensor: str
    litres_per_minute: float = quantity(unit="L/min", kind="volume_flow_rate",
                                        state="measurement")
    total_litres: float = quantity(unit="L", kind="volume", state="total_increasing",
                                   description="litres since the plugin started")
