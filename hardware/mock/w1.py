"""A fake ``/sys/bus/w1/devices`` tree: thermometers appear, read, fail and vanish.

Theory of operation: the real w1 sysfs files are plain text, so the fake is a
real directory tree under a tmp path with the same names and contents:
``28-<serial>/w1_slave`` holding the two scratchpad lines (with a correct or a
deliberately wrong CRC-8, and the kernel's ``YES``/``NO`` verdict), optionally
``28-<serial>/temperature`` as newer kernels offer, and the bus master
``w1_bus_master1`` the kernel always lists (which is not a probe). The driver
reads it exactly as it reads the kernel's files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hardware.drivers.ds18b20 import crc8

__all__ = ["FakeW1Tree", "scratchpad_lines"]


def scratchpad_lines(millic: int, *, crc_ok: bool = True, verdict: str | None = None) -> str:
    """The ``w1_slave`` text a DS18B20 at ``millic`` millidegrees gives.

    Args:
        millic: the temperature in millidegrees (rounded to the 1/16 °C step).
        crc_ok: False corrupts the CRC byte (and the kernel then says NO).
        verdict: force the kernel's verdict (``YES``/``NO``) regardless of the CRC.

    Returns:
        Two lines as the kernel prints them.
    """
    raw = round(millic * 16 / 1000) & 0xFFFF
    pad = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10])
    crc = crc8(pad) if crc_ok else crc8(pad) ^ 0x5A
    hexes = " ".join(f"{b:02x}" for b in (*pad, crc))
    said = verdict if verdict is not None else ("YES" if crc_ok else "NO")
    return f"{hexes} : crc={crc:02x} {said}\n{hexes} t={millic}\n"


class FakeW1Tree:
    """A w1 devices directory under ``root`` (created if missing).

    Args:
        root: where the tree lives (a tmp path); pass it as the driver's root.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "w1_bus_master1").mkdir(exist_ok=True)

    def add_probe(self, rom_id: str, celsius: float = 21.5, *,
                  temperature_file: bool = False) -> Path:
        """Plug a probe in.

        Args:
            rom_id: its directory name (``28-0316a2795cff``).
            celsius: its temperature.
            temperature_file: also provide the newer kernels' ``temperature`` file.

        Returns:
            The probe's directory.
        """
        where = self.root / rom_id
        where.mkdir(exist_ok=True)
        (where / "name").write_text(rom_id + "\n")
        self.set_temperature(rom_id, celsius)
        if temperature_file:
            (where / "temperature").write_text(f"{round(celsius * 1000)}\n")
        return where

    def set_temperature(self, rom_id: str, celsius: float) -> None:
        """What the probe reads now (keeps the ``temperature`` file in step if present)."""
        millic = round(celsius * 1000)
        self._write(rom_id, scratchpad_lines(millic))
        simple = self.root / rom_id / "temperature"
        if simple.exists():
            simple.write_text(f"{millic}\n")

    def set_w1_slave(self, rom_id: str, text: str) -> None:
        """Put arbitrary text in ``w1_slave`` (bad CRC, truncated, garbage)."""
        self._write(rom_id, text)

    def power_on_value(self, rom_id: str) -> None:
        """Make the probe report 85.000 °C with a good CRC, as after a brown-out."""
        self._write(rom_id, scratchpad_lines(85_000))

    def remove_probe(self, rom_id: str) -> None:
        """Unplug the probe: its directory goes away."""
        shutil.rmtree(self.root / rom_id, ignore_errors=True)

    def _write(self, rom_id: str, text: str) -> None:
        # Replace atomically so a reader in another thread never sees half a file.
        target = self.root / rom_id / "w1_slave"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(target)
