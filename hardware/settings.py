"""Settings of the ``hardware`` plugin: serial ports and GPIO pins, checked up front.

Theory of operation: the plugin's keyword arguments come from ``[plugin.hardware]``
in the node's TOML config, from ``--gpio`` flags, or from Python. Each serial
port and GPIO pin is turned into a frozen spec here, and anything wrong raises
:class:`~ganglion.errors.ConfigError` naming the entry, so a typo stops the node
at start instead of silently reading nothing. A ``--gpio`` flag is a string::

    KIND:PIN[:KEY=VALUE[,KEY=VALUE...]]
    input:17                      # door contact to ground, internal pull-up
    input:GPIO4:pull=down,active_low=false
    counter:27:per_unit=450,unit=litre

and a TOML entry is the same as a table: ``{kind = "counter", pin = 27, per_unit = 450}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ganglion.errors import ConfigError
from hardware.drivers.lines import FORMATS

__all__ = ["GpioSpec", "SerialSpec", "parse_gpio", "parse_serial"]

_BAUDS: Final = frozenset({1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400,
                           460800, 921600})


@dataclass(frozen=True, slots=True)
class SerialSpec:
    """One serial device to read.

    Attributes:
        port: its device path.
        baud: bits per second.
        format: a line format of :data:`hardware.drivers.lines.FORMATS`.
        units: quantity -> unit, for the readings.
        configured: False for a port opened by the automatic rule.
    """

    port: str
    baud: int = 9600
    format: str = "auto"
    units: tuple[tuple[str, str], ...] = ()
    configured: bool = True

    @property
    def sensor_id(self) -> str:
        """``serial:<path>``."""
        return f"serial:{self.port}"


@dataclass(frozen=True, slots=True)
class GpioSpec:
    """One GPIO input.

    Attributes:
        pin: the pin's name (``17``, ``GPIO17``, ``BOARD11``).
        kind: ``input`` (state changes) or ``counter`` (pulses).
        pull: bias resistor.
        active_low: the input is active when low (the default for pull-up wiring).
        debounce: seconds of lock-out after an accepted edge.
        per_unit: counter: pulses per unit.
        unit: counter: the unit counted (``litre``, ``mm``, ``Wh``, ``pulse``).
        edge: counter: which edge is a pulse.
        interval: seconds between publications (counter), or between repeats of
            an unchanged state (input).
    """

    pin: str
    kind: Literal["input", "counter"] = "input"
    pull: Literal["up", "down", "none"] = "up"
    active_low: bool = True
    debounce: float = 0.02
    per_unit: float = 1.0
    unit: str = "pulse"
    edge: Literal["rising", "falling"] = "falling"
    interval: float = field(default=5.0)

    @property
    def sensor_id(self) -> str:
        """``gpio:<pin>``."""
        return f"gpio:{self.pin}"


def parse_serial(entries: Iterable[Any]) -> list[SerialSpec]:
    """Check the configured serial ports.

    Args:
        entries: tables with ``port`` and optional ``baud``, ``format``, ``units``;
            a bare string is a port with the defaults.

    Returns:
        The specs, in order.

    Raises:
        ConfigError: a bad entry (named), or the same port twice.
    """
    specs: list[SerialSpec] = []
    for index, entry in enumerate(_list(entries, "serial")):
        where = f"serial[{index}]"
        table = {"port": entry} if isinstance(entry, str) else entry
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a port path or a table with 'port'")
        _only(table, {"port", "baud", "format", "units"}, where)
        port = table.get("port")
        if not isinstance(port, str) or not port.strip():
            raise ConfigError(f"{where}.port must be a device path")
        baud = table.get("baud", 9600)
        if isinstance(baud, bool) or baud not in _BAUDS:
            raise ConfigError(f"{where}.baud must be one of {sorted(_BAUDS)}, not {baud!r}")
        fmt = table.get("format", "auto")
        if fmt not in FORMATS:
            raise ConfigError(f"{where}.format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        units = table.get("units", {})
        if not isinstance(units, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in units.items()):
            raise ConfigError(f"{where}.units must map quantity names to unit strings")
        specs.append(SerialSpec(port, baud, fmt, tuple(sorted(units.items()))))
    ports = [s.port for s in specs]
    if len(set(ports)) != len(ports):
        raise ConfigError(f"a serial port is listed twice: {ports}")
    return specs


def parse_gpio(entries: Iterable[Any]) -> list[GpioSpec]:
    """Check the configured GPIO inputs.

    Args:
        entries: ``--gpio`` strings or tables (see the module docstring).

    Returns:
        The specs, in order.

    Raises:
        ConfigError: a bad entry (named, with what was expected), or a pin used twice.
    """
    specs = [_gpio_entry(entry, f"gpio[{i}]") for i, entry in enumerate(_list(entries, "gpio"))]
    pins = [s.pin for s in specs]
    if len(set(pins)) != len(pins):
        raise ConfigError(f"a GPIO pin is listed twice: {pins}")
    return specs


# -- private -------------------------------------------------------------------------------


def _list(entries: Iterable[Any], what: str) -> list[Any]:
    if isinstance(entries, str | bytes | Mapping):
        entries = [entries]
    try:
        return list(entries)
    except TypeError:
        raise ConfigError(f"{what} must be a list") from None


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: "
                          f"{', '.join(sorted(allowed))}")


def _gpio_entry(entry: Any, where: str) -> GpioSpec:
    table = _gpio_string(entry, where) if isinstance(entry, str) else entry
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be 'KIND:PIN[:KEY=VALUE,...]' or a table")
    _only(table, {"pin", "kind", "pull", "active_low", "debounce", "per_unit", "unit", "edge",
                  "interval"}, where)
    pin = table.get("pin")
    if isinstance(pin, bool) or not isinstance(pin, str | int) or not str(pin).strip():
        raise ConfigError(f"{where}.pin must be a pin number or name (17, GPIO17, BOARD11)")
    kind = table.get("kind", "input")
    if kind not in ("input", "counter"):
        raise ConfigError(f"{where}.kind must be 'input' or 'counter', not {kind!r}")
    pull = table.get("pull", "up")
    if pull not in ("up", "down", "none"):
        raise ConfigError(f"{where}.pull must be 'up', 'down' or 'none', not {pull!r}")
    edge = table.get("edge", "falling")
    if edge not in ("rising", "falling"):
        raise ConfigError(f"{where}.edge must be 'rising' or 'falling', not {edge!r}")
    unit = table.get("unit", "pulse")
    if not isinstance(unit, str) or not unit:
        raise ConfigError(f"{where}.unit must be a non-empty string")
    active_low = _bool(table.get("active_low", pull == "up"), f"{where}.active_low")
    default_debounce = 0.005 if kind == "counter" else 0.02
    return GpioSpec(
        pin=str(pin), kind=kind, pull=pull, active_low=active_low,
        debounce=_number(table.get("debounce", default_debounce), f"{where}.debounce", zero=True),
        per_unit=_number(table.get("per_unit", 1.0), f"{where}.per_unit"),
        unit=unit, edge=edge,
        interval=_number(table.get("interval", 5.0 if kind == "counter" else 60.0),
                         f"{where}.interval"))


def _gpio_string(text: str, where: str) -> dict[str, Any]:
    kind, _, rest = text.partition(":")
    pin, _, options = rest.partition(":")
    if not kind or not pin:
        raise ConfigError(f"{where}: {text!r} is not KIND:PIN[:KEY=VALUE,...] "
                          "(e.g. input:17, counter:27:per_unit=450,unit=litre)")
    table: dict[str, Any] = {"kind": kind, "pin": pin}
    for option in filter(None, options.split(",")):
        key, eq, value = option.partition("=")
        if not eq:
            raise ConfigError(f"{where}: option {option!r} is not KEY=VALUE")
        table[key.strip()] = _scalar(value.strip())
    return table


def _scalar(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return float(value)
    except ValueError:
        return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    return value


def _number(value: Any, where: str, *, zero: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) \
        and (value >= 0 if zero else value > 0)
    if not ok:
        raise ConfigError(f"{where} must be a number {'>= 0' if zero else '> 0'}, not {value!r}")
    return float(value)
