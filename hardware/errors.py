"""Errors of the hardware package, under ganglion's one hierarchy.

A :class:`SensorError` is what a driver raises when a device misbehaves: it has
stopped answering, answered garbage, or gone away. The plugins catch it per
sensor, report it once with the sensor's identity, and retry with backoff; it
never reaches the node. Each leaf also inherits the matching builtin so callers
can catch either (``SensorGone`` is an ``OSError``, ``BadReading`` a ``ValueError``).
"""

from __future__ import annotations

from ganglion.errors import GanglionError

__all__ = ["BadReading", "SensorError", "SensorGone"]


class SensorError(GanglionError):
    """A sensor could not be read."""


class SensorGone(SensorError, OSError):
    """The device does not answer or no longer exists (unplugged, I/O error)."""


class BadReading(SensorError, ValueError):
    """The device answered, but with data that fails its checks (CRC, range, id)."""
