"""DS18B20 (and the other w1_therm family) 1-Wire thermometers through Linux sysfs.

Theory of operation: with the ``w1-gpio`` overlay loaded, the kernel enumerates
1-Wire slaves as directories named ``<family>-<serial>`` under
``/sys/bus/w1/devices``; the thermometer families are 0x28 (DS18B20), 0x10
(DS18S20), 0x22 (DS1822), 0x3b (DS1825) and 0x42 (DS28EA00). Reading a slave's
``w1_slave`` file makes the kernel start a conversion (up to 750 ms) and gives
two lines::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

the nine scratchpad bytes, the kernel's CRC verdict, and the temperature in
millidegrees. A ``NO`` means the bus garbled the transfer; the CRC is also
re-checked here (Dallas/Maxim CRC-8, polynomial x^8 + x^5 + x^4 + 1) so a
truncated file is never taken for a reading. Newer kernels also offer a
``temperature`` file holding just the millidegrees (the kernel checks the CRC
and fails the read on a mismatch); it is preferred where it exists.

A DS18B20 powers up with 85.000 °C in its scratchpad, and a probe that browns
out mid-conversion returns it too: 85.000 exactly is treated as an error, not a
reading (a real 85 °C would have to be exactly on the 1/16 °C step). The sysfs
root is a parameter so tests point it at a fake tree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from hardware.errors import BadReading, SensorGone

__all__ = ["DEFAULT_ROOT", "FAMILIES", "POWER_ON_MILLIC", "crc8", "list_probes",
           "parse_w1_slave", "read_probe"]

DEFAULT_ROOT: Final = Path("/sys/bus/w1/devices")
FAMILIES: Final = frozenset({"10", "22", "28", "3b", "42"})
POWER_ON_MILLIC: Final = 85_000
_RANGE_MILLIC: Final = (-55_000, 125_000)  # the DS18B20's specified range
_PROBE_NAME: Final = re.compile(r"([0-9a-f]{2})-[0-9a-f]{12}")
_T_VALUE: Final = re.compile(r"t=(-?\d+)\s*$")


def list_probes(root: Path = DEFAULT_ROOT) -> list[str]:
    """The thermometers the kernel lists, by directory name (their ROM id).

    Args:
        root: the w1 devices directory.

    Returns:
        Sorted names like ``28-0316a2795cff``; empty when 1-Wire is not enabled.
    """
    try:
        names = [entry.name for entry in root.iterdir()]
    except OSError:
        return []
    return sorted(n for n in names
                  if (m := _PROBE_NAME.fullmatch(n)) is not None and m.group(1) in FAMILIES)


def read_probe(root: Path, rom_id: str) -> float:
    """Read one thermometer.

    Args:
        root: the w1 devices directory.
        rom_id: the probe's directory name.

    Returns:
        Degrees Celsius.

    Raises:
        SensorGone: the probe's directory or files are gone or unreadable.
        BadReading: CRC failure, the power-on value, or a value out of range.
    """
    where = root / rom_id
    try:
        simple = where / "temperature"
        if simple.exists():
            millic = _parse_millic(simple.read_text(encoding="ascii"), rom_id)
        else:
            millic = parse_w1_slave((where / "w1_slave").read_text(encoding="ascii"), rom_id)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SensorGone(f"w1:{rom_id}: {reason}") from exc
    return _checked(millic, rom_id) / 1000.0


def parse_w1_slave(text: str, rom_id: str = "?") -> int:
    """Parse the two lines of a ``w1_slave`` file.

    Args:
        text: the file's contents.
        rom_id: for error messages.

    Returns:
        The temperature in millidegrees Celsius (not yet range-checked).

    Raises:
        BadReading: a missing line, a ``NO`` verdict, or a CRC mismatch.
    """
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise BadReading(f"w1:{rom_id}: w1_slave has {len(lines)} lines, expected 2")
    status, data = lines
    if not status.rstrip().endswith("YES"):
        raise BadReading(f"w1:{rom_id}: CRC check failed (kernel said NO)")
    try:
        scratchpad = bytes(int(b, 16) for b in status.split(":")[0].split())
    except ValueError:
        raise BadReading(f"w1:{rom_id}: unreadable scratchpad {status!r}") from None
    if len(scratchpad) != 9 or crc8(scratchpad[:8]) != scratchpad[8]:
        raise BadReading(f"w1:{rom_id}: scratchpad CRC mismatch")
    found = _T_VALUE.search(data)
    if found is None:
        raise BadReading(f"w1:{rom_id}: no t= value in {data!r}")
    return int(found.group(1))


def crc8(data: bytes) -> int:
    """Dallas/Maxim 1-Wire CRC-8 (reflected polynomial 0x8C).

    Args:
        data: the bytes to check.

    Returns:
        The CRC, 0..255; over a scratchpad including its CRC byte it is 0.
    """
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def _parse_millic(text: str, rom_id: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadReading(f"w1:{rom_id}: temperature file holds {text.strip()!r}") from None


def _checked(millic: int, rom_id: str) -> int:
    if millic == POWER_ON_MILLIC:
        raise BadReading(f"w1:{rom_id}: 85.000 °C is the power-on value, not a reading "
                         "(probe reset or under-powered)")
    low, high = _RANGE_MILLIC
    if not low <= millic <= high:
        raise BadReading(f"w1:{rom_id}: {millic / 1000:.3f} °C is outside the probe's range")
    return millic
