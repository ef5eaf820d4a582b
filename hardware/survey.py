"""What the hardware plugin looked at, said once at start, with hints for the usual Pi mistakes.

Theory of operation: the periodic scan (:mod:`hardware.detect`) is silent by
design, so a machine where nothing is found used to say nothing at all, and a
user could not tell "no sensor" from "1-Wire is not enabled" or "not allowed to
open /dev/i2c-1". :func:`survey` looks once at the places the scan reads (the
w1 sysfs root, the I2C buses, ``/dev/serial/by-id``, the configured GPIO and
serial ports) and returns a :class:`Survey`: one line per bus saying what is
there, plus hints. A hint names a likely cause and its fix:

* on a Raspberry Pi without a 1-Wire bus: ``dtoverlay=w1-gpio`` in
  ``/boot/firmware/config.txt`` (and a reboot, when the line is already there);
* on a Raspberry Pi without ``/dev/i2c-*``: ``dtparam=i2c_arm=on``;
* a device that exists but that this account cannot open: join the group that
  Raspberry Pi OS gives it (``i2c``, ``dialout``, ``gpio``), or log in again when
  the account is in the group but this session is not (the classic mistake after
  ``usermod -aG``);
* a USB-serial device that is not on the known-adapter list: name it in the config.

Everything the survey reads from the system comes in as a parameter (the paths,
the board model, the boot config text, an :class:`Account`), so tests fake a Pi,
its groups and its sysfs without touching the real ones. Nothing here raises:
an unreadable path is reported as what it is.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hardware.detect import known_adapter
from hardware.drivers.ds18b20 import list_probes
from hardware.settings import GpioSpec, SerialSpec

__all__ = ["BOOT_CONFIGS", "PI_MODEL", "Account", "Survey", "read_boot_config", "read_model",
           "survey"]

#: Where the board model is (a NUL-terminated string on device-tree machines).
PI_MODEL: Final = Path("/proc/device-tree/model")
#: The firmware config, newest location first (Bookworm moved it under firmware/).
BOOT_CONFIGS: Final = (Path("/boot/firmware/config.txt"), Path("/boot/config.txt"))


@dataclass(frozen=True, slots=True)
class Account:
    """Who the node runs as, for the permission hints.

    Attributes:
        name: the user name.
        root: True for uid 0 (every device opens).
        groups: the groups of this process (what decides access now).
        member_of: the groups the user database lists the user in (what decides
            access after the next login).
        can_use: whether this process may read and write a device path.
    """

    name: str
    root: bool = False
    groups: frozenset[str] = frozenset()
    member_of: frozenset[str] = frozenset()
    can_use: Callable[[Path], bool] = field(
        default=lambda path: os.access(path, os.R_OK | os.W_OK))

    @classmethod
    def current(cls) -> Account:
        """The account of this process, from ``os`` and the user and group databases."""
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        groups = frozenset(_group_name(gid) for gid in {os.getegid(), *os.getgroups()})
        member_of = frozenset(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
        return cls(name=name, root=uid == 0, groups=groups,
                   member_of=member_of | {_group_name(os.getegid())})


@dataclass(frozen=True, slots=True)
class Survey:
    """What one look at the machine found.

    Attributes:
        lines: one line per bus: what was scanned and what is there.
        hints: likely mistakes and their fixes (may be empty).
    """

    lines: tuple[str, ...]
    hints: tuple[str, ...]


def read_model(path: Path = PI_MODEL) -> str:
    """The board model (``Raspberry Pi 4 Model B Rev 1.4``), or "" when unknown."""
    try:
        return path.read_bytes().rstrip(b"\0\n").decode("utf-8", "replace")
    except OSError:
        return ""


def read_boot_config(paths: Sequence[Path] = BOOT_CONFIGS) -> tuple[Path, str]:
    """The first readable firmware config: (path, text); the first path and "" if none is."""
    for path in paths:
        try:
            return path, path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return paths[0], ""


def survey(*, w1_root: Path | None, dev: Path, i2c_buses: Sequence[int] | None,
           serial_auto: bool, serial: Iterable[SerialSpec] = (),
           gpio: Iterable[GpioSpec] = (), model: str = "", boot_config: Path = BOOT_CONFIGS[0],
           boot_text: str = "", account: Account | None = None) -> Survey:
    """Look at every place the scan reads, once, and say what is there.

    Args:
        w1_root: the w1 sysfs devices directory; None when 1-Wire is off.
        dev: the device directory (``i2c-N``, ``serial/by-id``, ``gpiochip*``).
        i2c_buses: the buses found or configured; None when the I2C scan is off.
        serial_auto: known USB-serial adapters are opened automatically.
        serial: configured serial ports.
        gpio: configured GPIO inputs.
        model: the board model (:func:`read_model`); Pi hints only on a Raspberry Pi.
        boot_config: the firmware config's path, named in the hints.
        boot_text: its text ("" when unreadable).
        account: who the node runs as; None skips the permission hints.

    Returns:
        The lines and hints, in a stable order.
    """
    pi = model.startswith("Raspberry Pi")
    lines: list[str] = []
    hints: list[str] = []
    _onewire(w1_root, pi, boot_config, boot_text, lines, hints)
    _i2c(i2c_buses, dev, pi, boot_config, boot_text, account, lines, hints)
    _serial(dev, serial_auto, list(serial), account, lines, hints)
    _gpio(list(gpio), dev, account, lines, hints)
    return Survey(tuple(lines), tuple(hints))


# -- one function per bus ------------------------------------------------------------------


def _onewire(root: Path | None, pi: bool, boot_config: Path, boot_text: str,
             lines: list[str], hints: list[str]) -> None:
    if root is None:
        lines.append("1-Wire: off (onewire = false)")
        return
    try:
        masters = sorted(p.name for p in root.iterdir() if p.name.startswith("w1_bus_master"))
    except OSError:
        lines.append(f"1-Wire: no bus ({root} does not exist)")
        if pi:
            hints.append(_overlay_hint("1-Wire", "dtoverlay=w1-gpio", boot_config, boot_text,
                                       "the DS18B20's data line goes to GPIO4 with a 4.7 kΩ "
                                       "pull-up to 3.3 V"))
        return
    probes = list_probes(root)
    lines.append(f"1-Wire: {len(masters) or 'no'} bus master(s) at {root}, "
                 f"{len(probes)} thermometer(s)")
    if masters and not probes and pi:
        hints.append("1-Wire is on but no thermometer answers: check the wiring (data on "
                     "GPIO4 unless dtoverlay=w1-gpio,gpiopin=N says otherwise, 4.7 kΩ "
                     "pull-up between data and 3.3 V)")


def _i2c(buses: Sequence[int] | None, dev: Path, pi: bool, boot_config: Path, boot_text: str,
         account: Account | None, lines: list[str], hints: list[str]) -> None:
    if buses is None:
        lines.append("I2C: off (i2c = false)")
        return
    if not buses:
        lines.append(f"I2C: no buses ({dev}/i2c-* absent)")
        if pi:
            hints.append(_overlay_hint("I2C", "dtparam=i2c_arm=on", boot_config, boot_text,
                                       "or run: sudo raspi-config nonint do_i2c 0"))
        return
    paths = [dev / f"i2c-{n}" for n in buses]
    lines.append(f"I2C: bus(es) {', '.join(map(str, buses))}; probing 0x76 and 0x77 "
                 "for BME280/BMP280")
    _access_hint(account, [p for p in paths if p.exists()], "i2c", hints)


def _serial(dev: Path, auto: bool, configured: list[SerialSpec], account: Account | None,
            lines: list[str], hints: list[str]) -> None:
    by_id = dev / "serial" / "by-id"
    try:
        names = sorted(p.name for p in by_id.iterdir())
    except OSError:
        names = []
    known = [n for n in names if known_adapter(n)]
    others = [n for n in names if not known_adapter(n)]
    mine = {Path(s.port).name for s in configured}
    if not auto:
        lines.append("serial: automatic opening off (serial_auto = false)")
    elif not names:
        lines.append(f"serial: no USB-serial devices ({by_id} is empty or absent)")
    else:
        lines.append(f"serial: {len(known)} known adapter(s) under {by_id}"
                     + (f"; not opened (unknown vendor): {', '.join(others)}" if others else ""))
        unnamed = [n for n in others if n not in mine]
        if unnamed:
            hints.append(f"to read {unnamed[0]}, name it in the config: [plugin.hardware] "
                         f"serial = [{{ port = \"{by_id / unnamed[0]}\", baud = 9600 }}]")
    for spec in configured:
        there = "present" if os.path.exists(spec.port) else "absent"
        lines.append(f"serial: configured {spec.port} ({spec.baud} baud, {spec.format}): {there}")
    present = [Path(s.port) for s in configured if os.path.exists(s.port)]
    if auto:
        present += [by_id / n for n in known]
    _access_hint(account, present, "dialout", hints)


def _gpio(specs: list[GpioSpec], dev: Path, account: Account | None, lines: list[str],
          hints: list[str]) -> None:
    if not specs:
        lines.append("GPIO: none configured (--gpio or gpio = [...] in the config)")
        return
    lines.append("GPIO: " + ", ".join(f"{s.kind} on pin {s.pin}" for s in specs))
    try:
        chips = sorted(p for p in dev.iterdir() if p.name.startswith("gpiochip"))
    except OSError:
        chips = []
    _access_hint(account, chips, "gpio", hints)


# -- hints ---------------------------------------------------------------------------------


def _overlay_hint(bus: str, line: str, boot_config: Path, boot_text: str, extra: str) -> str:
    if _has_line(boot_text, line):
        return (f"{bus} is enabled in {boot_config} ({line}) but the kernel shows no bus: "
                f"reboot after editing it; {extra}")
    return f"{bus} is not enabled: add '{line}' to {boot_config} and reboot; {extra}"


def _has_line(text: str, wanted: str) -> bool:
    """True if an uncommented line of the firmware config starts with ``wanted``."""
    return any(raw.split("#", 1)[0].strip().replace(" ", "").startswith(wanted)
               for raw in text.splitlines())


def _access_hint(account: Account | None, paths: list[Path], group: str,
                 hints: list[str]) -> None:
    if account is None or account.root:
        return
    blocked = [p for p in paths if not account.can_use(p)]
    if not blocked:
        return
    where = str(blocked[0]) + (f" and {len(blocked) - 1} more" if len(blocked) > 1 else "")
    if group in account.groups:
        hints.append(f"cannot open {where} although {account.name} is in group '{group}': "
                     f"check its owner and mode (ls -l {blocked[0]})")
    elif group in account.member_of:
        hints.append(f"cannot open {where}: {account.name} was added to group '{group}' but "
                     "this session started before; log out and in again (or restart the service)")
    else:
        hints.append(f"cannot open {where}: {account.name} is not in group '{group}'; run "
                     f"'sudo usermod -aG {group} {account.name}' and log in again")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
