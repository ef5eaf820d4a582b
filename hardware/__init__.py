"""Sensor plugins for ganglion: real devices (later) and simulated sensors.

Built on ganglion's public API only; device libraries are imported lazily by the
plugins that need them, so importing this package works on any machine.
"""
