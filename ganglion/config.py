"""The node's optional TOML config file, checked key by key with line numbers.

Theory of operation: :func:`load_config` parses the file with the stdlib
``tomllib`` (a syntax error keeps tomllib's own message, which has the line and
column), then walks the parsed tree against a fixed schema: every key must be one
the schema names and every value must have the key's type and range. tomllib
reports no positions for keys, so a small scanner over the text
(:func:`_key_lines`) maps each dotted key path to the line it is written on; it
understands ``[table]`` headers, dotted and quoted keys, and skips the inside of
strings (multi-line ones included) so that text inside a value is never taken
for a key. Keys inside an inline table get the line of the inline table. An error
names the file, the line, the key and, for an unknown key, the closest valid key
(``difflib.get_close_matches`` over every dotted key, so a top-level
``tcp_port`` suggests ``bus.tcp_port``).

The result is a frozen :class:`NodeConfig`; :func:`merge` lays the command
line's flags over it (flags win). Relative paths in the file are taken relative
to the file's directory, so a config means the same thing from any working
directory. Every key is documented in ``docs/config.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from ganglion import defaults
from ganglion.errors import ConfigError, ConfigFileError, LocalError
from ganglion.repair import DEFAULT_LIMITS as _HISTORY
from ganglion.repair import DEFAULT_TOTAL_BYTES, HistoryLimits
from ganglion.types import is_valid_type_name

__all__ = ["NodeConfig", "load_config", "merge"]

_UDP_MAX: Final = 65_507  # largest UDP payload over IPv4


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything a node can be told by its config file or flags; defaults when absent.

    Attributes:
        name: the node's human name; None means the hostname.
        iface: interface name or IPv4 address; None means the default-route interface.
        port: UDP port of the data groups.
        key_file: the network key file; None means no key (or the environment's).
        encrypt: with a key, encrypt what the node sends; False sends MAC-only
            datagrams (``--no-encrypt``), which older nodes read.
        ttl: multicast TTL.
        state_dir: the state directory; None means the platform default.
        max_datagram: size budget of one datagram in bytes.
        plugins: entry-point names of the internal plugins to run, in order.
        bus_ipc: the local bus's ipc socket: True for the default path in the state
            directory, False for none, or a path.
        bus_tcp_port: also serve the local bus on ``tcp://127.0.0.1:PORT``; None for no TCP.
        bus_secret_file: accept only plugins that hold this CURVE key pair file (created
            0600 if absent); None lets any local process that can connect use the bus.
        sim_kinds: kinds of simulated sensors to run (enables the ``sim`` plugin).
        sim_interval: seconds between simulated readings; None for the plugin's default.
        plugin_settings: ``[plugin.<name>]`` tables, passed to each plugin as keyword arguments.
        hardware: run the ``hardware`` plugin (sensor detection) in ``ganglion node``.
        gpio: GPIO inputs for the hardware plugin (``KIND:PIN[:KEY=VALUE,...]``).
        sensors: ``[sensors."ID"]`` tables: a sensor's ``name`` and calibration
            (``offset``, ``scale``, per-quantity tables), for the hardware plugin.
        dashboard_listen: serve the web dashboard on this ``HOST:PORT``; None for none.
        dashboard_db: the log the dashboard reads history from; None for the ``log``
            plugin's, when the node runs it.
        dashboard_token_file: every dashboard request needs the token in this file.
        history_max_age: seconds of what it published the node keeps per type, to
            repair other nodes' gaps and answer history requests (0: none).
        history_max_bytes: bytes kept per type (0: none).
        history_total_bytes: bytes kept for all types together.
        history_types: ``[history.types."NAME"]`` tables: a type's own ``max_age``
            and ``max_bytes`` (each defaulting to the ``[history]`` value).
        repair: ask publishers again for the numbers this node missed.
        source: the file this config was read from, if any.
    """

    name: str | None = None
    iface: str | None = None
    port: int = defaults.DATA_PORT
    key_file: Path | None = None
    encrypt: bool = True
    ttl: int = defaults.DEFAULT_TTL
    state_dir: Path | None = None
    max_datagram: int = defaults.MAX_DATAGRAM
    plugins: tuple[str, ...] = ()
    bus_ipc: bool | Path = True
    bus_tcp_port: int | None = None
    bus_secret_file: Path | None = None
    sim_kinds: tuple[str, ...] = ()
    sim_interval: float | None = None
    plugin_settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    hardware: bool = True
    gpio: tuple[str, ...] = ()
    sensors: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    dashboard_listen: str | None = None
    dashboard_db: Path | None = None
    dashboard_token_file: Path | None = None
    history_max_age: float = _HISTORY.max_age
    history_max_bytes: int = _HISTORY.max_bytes
    history_total_bytes: int = DEFAULT_TOTAL_BYTES
    history_types: Mapping[str, Mapping[str, float]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    repair: bool = True
    source: Path | None = None

    def history(self) -> tuple[HistoryLimits, dict[str, HistoryLimits], int]:
        """The node's history options: the limits of every type, those of the types
        named in ``[history.types]``, and the total bound (``Node(history=...,
        history_per_type=..., history_total_bytes=...)``)."""
        base = HistoryLimits(max_bytes=self.history_max_bytes, max_age=self.history_max_age)
        per = {name: HistoryLimits(max_bytes=int(table.get("max_bytes", base.max_bytes)),
                                   max_age=float(table.get("max_age", base.max_age)))
               for name, table in self.history_types.items()}
        return base, per, self.history_total_bytes

    def plugin_specs(self, *, include_hardware: bool = False) -> dict[str, dict[str, Any]]:
        """The plugins to load and the keyword arguments for each, in order.

        ``sim`` is added when :attr:`sim_kinds` is set; ``[sim]`` values win over the
        same names in ``[plugin.sim]``.

        Args:
            include_hardware: add the ``hardware`` plugin unless :attr:`hardware` is
                False (``ganglion node`` passes True: detection is on by default);
                :attr:`gpio` entries are added to its ``gpio`` setting, and
                :attr:`sensors` becomes its ``sensors`` setting.

        Returns:
            Plugin name -> settings, ready for :func:`ganglion.plugins.load_plugins`.
        """
        names = list(self.plugins)
        if include_hardware and self.hardware and "hardware" not in names:
            names.append("hardware")
        if self.sim_kinds and "sim" not in names:
            names.append("sim")
        specs = {name: dict(self.plugin_settings.get(name, {})) for name in names}
        if "sim" in specs:
            if self.sim_kinds:
                specs["sim"]["kinds"] = list(self.sim_kinds)
            if self.sim_interval is not None:
                specs["sim"]["interval"] = self.sim_interval
        if "hardware" in specs and self.gpio:
            specs["hardware"]["gpio"] = [*specs["hardware"].get("gpio", ()), *self.gpio]
        if "hardware" in specs and self.sensors:
            specs["hardware"]["sensors"] = {k: dict(v) for k, v in self.sensors.items()}
        return specs


def load_config(path: str | Path) -> NodeConfig:
    """Read and check a node config file.

    Args:
        path: the TOML file.

    Returns:
        The config; keys the file does not set keep their defaults.

    Raises:
        ConfigFileError: the file cannot be read, is not valid TOML, has a key the
            schema does not know (the closest valid key is suggested) or a value of
            the wrong type or range; the message names the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigFileError(f"cannot read config file {path}: {reason}",
                              path=str(path), line=None, key=None) from exc
    import tomllib  # here: a node started without a config file never needs it

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        raise ConfigFileError(f"{path}: invalid TOML: {exc}", path=str(path),
                              line=int(found.group(1)) if found else None, key=None) from None
    return _Checker(path, _key_lines(text)).build(data)


def merge(config: NodeConfig, cli_overrides: Mapping[str, Any]) -> NodeConfig:
    """Lay command-line values over a config: every flag the user gave wins.

    Args:
        config: from :func:`load_config`, or ``NodeConfig()`` without a file.
        cli_overrides: :class:`NodeConfig` field name -> value. None (a flag not
            given) and empty sequences (a repeatable flag not given) are ignored; a
            non-empty sequence replaces the file's list rather than extending it.

    Returns:
        A new config.

    Raises:
        ConfigError: a value is of the wrong type or out of range (names the flag).
        LocalError: a key is not a :class:`NodeConfig` field (a programming error).
    """
    changes: dict[str, Any] = {}
    for field, value in cli_overrides.items():
        if field not in _FIELD_CHECKS:
            raise LocalError(f"{field!r} is not a NodeConfig field that flags can set")
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        if isinstance(value, Path):
            value = str(value)
        try:
            changes[field] = _FIELD_CHECKS[field].check(value, Path.cwd())
        except _Wrong as wrong:
            flag = "--" + field.replace("_", "-")
            raise ConfigError(f"{flag} must be {wrong.expected}, not {value!r}") from None
    return dataclasses.replace(config, **changes)


# -- schema ------------------------------------------------------------------------------


class _Wrong(Exception):
    """A value does not fit its key; ``expected`` says what would."""

    def __init__(self, expected: str) -> None:
        self.expected = expected


@dataclasses.dataclass(frozen=True, slots=True)
class _Key:
    field: str  # the NodeConfig field it sets
    check: Callable[[Any, Path], Any]  # (value, base dir) -> converted value, or raise _Wrong


def _text(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Wrong("a non-empty string")
    return value


def _int_in(low: int, high: int) -> Callable[[Any, Path], int]:
    def check(value: Any, base: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Wrong(f"an integer from {low} to {high}")
        return value
    return check


def _path(value: Any, base: Path) -> Path:
    text = _text(value, base)
    return base / Path(text).expanduser()  # an absolute path replaces base


def _names(value: Any, base: Path) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v.strip()
                                                       for v in value):
        raise _Wrong("a list of non-empty strings")
    if len(set(value)) != len(value):
        raise _Wrong("a list without repeats")
    return tuple(value)


def _positive_seconds(value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _Wrong("a number of seconds greater than 0")
    return float(value)


def _flag(value: Any, base: Path) -> bool:
    if not isinstance(value, bool):
        raise _Wrong("true or false")
    return value


def _history_age(value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not (math.isfinite(value) and value >= 0):
        raise _Wrong("a number of seconds, 0 or more (0 keeps no history), e.g. 60")
    return float(value)


def _history_bytes(value: Any, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1 << 40:
        raise _Wrong("a whole number of bytes, 0 or more (0 keeps no history), e.g. 262144")
    return value


def _ipc(value: Any, base: Path) -> bool | Path:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return _path(value, base)
    raise _Wrong("true, false or a socket path")


#: Dotted key -> what it sets. Tables are the keys' prefixes; ``plugin`` is free-form.
_SCHEMA: Final[dict[str, _Key]] = {
    "name": _Key("name", _text),
    "iface": _Key("iface", _text),
    "port": _Key("port", _int_in(1, 65534)),  # the control channel uses port + 1
    "key_file": _Key("key_file", _path),
    "encrypt": _Key("encrypt", _flag),
    "ttl": _Key("ttl", _int_in(0, 255)),
    "state_dir": _Key("state_dir", _path),
    "max_datagram": _Key("max_datagram", _int_in(256, _UDP_MAX)),
    "plugins": _Key("plugins", _names),
    "bus.ipc": _Key("bus_ipc", _ipc),
    "bus.tcp_port": _Key("bus_tcp_port", _int_in(1, 65535)),
    "bus.secret_file": _Key("bus_secret_file", _path),
    "sim.kinds": _Key("sim_kinds", _names),
    "sim.interval": _Key("sim_interval", _positive_seconds),
    "hardware": _Key("hardware", _flag),
    "gpio": _Key("gpio", _names),
    "dashboard.listen": _Key("dashboard_listen", _text),
    "dashboard.db": _Key("dashboard_db", _path),
    "dashboard.token_file": _Key("dashboard_token_file", _path),
    "history.max_age": _Key("history_max_age", _history_age),
    "history.max_bytes": _Key("history_max_bytes", _history_bytes),
    "history.total_bytes": _Key("history_total_bytes", _history_bytes),
    "repair": _Key("repair", _flag),
}
_TABLES: Final = frozenset(key.split(".")[0] for key in _SCHEMA if "." in key)
_PLUGIN_TABLE: Final = "plugin"
_SENSORS_TABLE: Final = "sensors"
_HISTORY_TYPES: Final = ("history", "types")
#: What a ``[history.types."NAME"]`` table may set, and how each is checked.
_HISTORY_TYPE_KEYS: Final = {"max_age": _history_age, "max_bytes": _history_bytes}
_FIELD_CHECKS: Final = {key.field: key for key in _SCHEMA.values()}


class _Checker:
    """Walks a parsed file against :data:`_SCHEMA`, blaming lines found by :func:`_key_lines`."""

    def __init__(self, path: Path, lines: dict[tuple[str, ...], int]) -> None:
        self._path = path
        self._lines = lines

    def build(self, data: dict[str, Any]) -> NodeConfig:
        values: dict[str, Any] = {}
        settings: dict[str, Mapping[str, Any]] = {}
        for key, value in data.items():
            if key == _PLUGIN_TABLE:
                settings = self._plugin_tables(value)
            elif key == _SENSORS_TABLE:
                values["sensors"] = MappingProxyType(self._sensor_tables(value))
            elif key in _TABLES:
                if not isinstance(value, dict):
                    raise self._error((key,), f"{key!r} must be a table ([{key}])")
                for sub, sub_value in value.items():
                    if (key, sub) == _HISTORY_TYPES:
                        values["history_types"] = MappingProxyType(
                            self._history_types(sub_value))
                        continue
                    self._take((key, sub), sub_value, values)
            else:
                self._take((key,), value, values)
        return NodeConfig(**values, plugin_settings=MappingProxyType(settings),
                          source=self._path)

    def _take(self, parts: tuple[str, ...], value: Any, values: dict[str, Any]) -> None:
        dotted = ".".join(parts)
        spec = _SCHEMA.get(dotted)
        if spec is None:
            raise self._error(parts, f"unknown key {dotted!r}{_suggest(dotted)}")
        try:
            values[spec.field] = spec.check(value, self._path.parent)
        except _Wrong as wrong:
            raise self._error(parts, f"{dotted!r} must be {wrong.expected}, not {value!r}") from None

    def _plugin_tables(self, value: Any) -> dict[str, Mapping[str, Any]]:
        if not isinstance(value, dict):
            raise self._error((_PLUGIN_TABLE,), "'plugin' must hold one table per plugin "
                              "([plugin.NAME])")
        for name, table in value.items():
            if not isinstance(table, dict):
                raise self._error((_PLUGIN_TABLE, name),
                                  f"'plugin.{name}' must be a table of that plugin's settings")
        return {name: MappingProxyType(dict(table)) for name, table in value.items()}

    def _history_types(self, value: Any) -> dict[str, Mapping[str, float]]:
        """``[history.types."NAME"]``: a type's own ``max_age`` and ``max_bytes``."""
        example = '[history.types."sensors.Temperature"] with max_age = 300'
        if not isinstance(value, dict):
            raise self._error(_HISTORY_TYPES, f"'history.types' must hold one table per "
                              f"type: {example}")
        out: dict[str, Mapping[str, float]] = {}
        for name, table in value.items():
            where = (*_HISTORY_TYPES, name)
            if not is_valid_type_name(name):
                raise self._error(where, f'[history.types."{name}"]: not a type name; type '
                                  "names are dotted, like sensors.Temperature")
            if not isinstance(table, dict):
                raise self._error(where, f'history.types."{name}" must be a table: {example}')
            for key, item in table.items():
                check = _HISTORY_TYPE_KEYS.get(key)
                dotted = f'history.types."{name}".{key}'
                if check is None:
                    close = _close_matches(key, list(_HISTORY_TYPE_KEYS), n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise self._error((*where, key), f"unknown key {dotted}; {hint}valid: "
                                      "max_age, max_bytes")
                try:
                    check(item, self._path.parent)
                except _Wrong as wrong:
                    raise self._error((*where, key),
                                      f"{dotted} must be {wrong.expected}, not {item!r}") from None
            out[name] = MappingProxyType(dict(table))
        return out

    def _sensor_tables(self, value: Any) -> dict[str, Mapping[str, Any]]:
        """``[sensors."ID"]``: name, offset, scale, and per-quantity {offset, scale} tables."""
        if not isinstance(value, dict):
            raise self._error((_SENSORS_TABLE,), "'sensors' must hold one table per sensor: "
                              '[sensors."w1:28-0316a2795cff"]')
        for sensor_id, table in value.items():
            where = (_SENSORS_TABLE, sensor_id)
            if not _SENSOR_ID.fullmatch(sensor_id):
                raise self._error(where, f'[sensors."{sensor_id}"]: {_bad_sensor_id(sensor_id)}')
            if not isinstance(table, dict):
                raise self._error(where, f'sensors."{sensor_id}" must be a table '
                                  '(name, offset, scale)')
            for key, item in table.items():
                self._sensor_entry((*where, key), item, sensor_id)
        return {sid: MappingProxyType(dict(table)) for sid, table in value.items()}

    def _sensor_entry(self, parts: tuple[str, ...], value: Any, sensor_id: str) -> None:
        key = parts[-1]
        dotted = f'sensors."{sensor_id}".{key}'
        if key == "name":
            if not isinstance(value, str) or not value.strip():
                raise self._error(parts, f'{dotted} must be a non-empty string, e.g. '
                                  f'name = "mash tun"; not {value!r}')
        elif key in ("offset", "scale"):
            if sensor_id.startswith("i2c:"):
                raise self._error(parts, f"{dotted}: a BME280 measures celsius, hpa and "
                                  f"percent; calibrate each, e.g. celsius = {{ {key} = ... }}")
            self._number(parts, dotted, value, nonzero=key == "scale")
        elif isinstance(value, dict):  # a quantity's own correction
            if not value:
                raise self._error(parts, f"{dotted} is empty; give offset and/or scale")
            for sub, item in value.items():
                if sub not in ("offset", "scale"):
                    close = _close_matches(sub, ["offset", "scale"], n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise self._error((*parts, sub), f"unknown key {dotted}.{sub}; "
                                      f"{hint}valid: offset, scale")
                self._number((*parts, sub), f"{dotted}.{sub}", item, nonzero=sub == "scale")
        else:
            close = _close_matches(key, ["name", "offset", "scale"], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise self._error(parts, f"unknown key {dotted}; {hint}valid: name, offset, "
                              "scale, or a table per quantity, e.g. celsius = { offset = -0.3 }")

    def _number(self, parts: tuple[str, ...], dotted: str, value: Any, *, nonzero: bool) -> None:
        ok = not isinstance(value, bool) and isinstance(value, int | float) \
            and math.isfinite(value) and not (nonzero and value == 0)
        if not ok:
            what = "a non-zero number, e.g. 1.02" if nonzero else "a number, e.g. -0.3"
            raise self._error(parts, f"{dotted} must be {what}; not {value!r}")

    def _error(self, parts: tuple[str, ...], message: str) -> ConfigFileError:
        line = _line_of(self._lines, parts)
        where = f"{self._path}:{line}" if line is not None else str(self._path)
        return ConfigFileError(f"{where}: {message}", path=str(self._path), line=line,
                               key=".".join(parts))


_SENSOR_ID: Final = re.compile(r"(w1|i2c|serial|gpio):.+")
_ROM_ID: Final = re.compile(r"[0-9a-fA-F]{2}-[0-9a-fA-F]{12}")


def _bad_sensor_id(text: str) -> str:
    if _ROM_ID.fullmatch(text):
        return f'not a sensor id; a 1-Wire probe is [sensors."w1:{text}"]'
    return ("not a sensor id; ids look like w1:28-0316a2795cff, i2c:1/0x76, "
            "serial:/dev/serial/by-id/..., gpio:17 (ganglion node -v logs each sensor it finds)")


def _suggest(dotted: str) -> str:
    tables = sorted(_TABLES | {_PLUGIN_TABLE, _SENSORS_TABLE})
    close = _close_matches(dotted, [*_SCHEMA, *tables], n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    table = dotted.rpartition(".")[0]
    here = sorted(k.rpartition(".")[2] for k in _SCHEMA if k.rpartition(".")[0] == table)
    if not table:
        here += [f"[{t}]" for t in tables]
    return f"; valid keys here: {', '.join(here)}"


def _line_of(lines: dict[tuple[str, ...], int], parts: tuple[str, ...]) -> int | None:
    """The line of a key, else of its nearest enclosing key (an inline table's line)."""
    for end in range(len(parts), 0, -1):
        if parts[:end] in lines:
            return lines[parts[:end]]
    return None


# -- finding keys' lines in the text ------------------------------------------------------

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_WS: Final = " \t"


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path written in ``text`` (assumed valid TOML) to its first line (1-based)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    open_string: str | None = None  # the delimiter of a multi-line string we are inside
    for number, line in enumerate(text.splitlines(), start=1):
        pos = 0
        if open_string is not None:
            pos = _find_close(line, 0, open_string)
            if pos < 0:
                continue  # the whole line is inside the string
            open_string = _scan_value(line, pos)
            continue
        stripped = line.lstrip(_WS)
        if stripped.startswith("["):
            double = stripped.startswith("[[")
            parts, _ = _parse_key(stripped, 2 if double else 1, "]")
            if parts is not None:
                table = tuple(parts)
                lines.setdefault(table, number)
                continue
            # Not a header: the continuation of a multi-line array that starts with "[".
        parts, after = _parse_key(stripped, 0, "=")
        if parts is not None:
            path = table + tuple(parts)
            for end in range(len(table) + 1, len(path) + 1):
                lines.setdefault(path[:end], number)
            pos = after
        open_string = _scan_value(stripped, pos)
    return lines


def _parse_key(s: str, pos: int, terminator: str) -> tuple[list[str] | None, int]:
    """Parse a dotted key at ``pos`` followed by ``terminator``; (None, pos) if there is none."""
    parts: list[str] = []
    while True:
        pos = _skip_ws(s, pos)
        if pos < len(s) and s[pos] in "\"'":
            quote = s[pos]
            end = _string_end(s, pos + 1, quote)
            if end < 0:
                return None, pos
            raw = s[pos + 1:end - 1]
            parts.append(_unescape(raw) if quote == '"' else raw)
            pos = end
        else:
            bare = _BARE_KEY.match(s, pos)
            if bare is None:
                return None, pos
            parts.append(bare.group())
            pos = bare.end()
        pos = _skip_ws(s, pos)
        if pos < len(s) and s[pos] == ".":
            pos += 1
            continue
        if s.startswith(terminator, pos):
            return parts, pos + len(terminator)
        return None, pos


def _scan_value(s: str, pos: int) -> str | None:
    """Skip the rest of a line's value; return a multi-line string's delimiter if one stays open."""
    while pos < len(s):
        c = s[pos]
        if c == "#":
            return None
        for triple in ('"""', "'''"):
            if s.startswith(triple, pos):
                end = _find_close(s, pos + 3, triple)
                if end < 0:
                    return triple
                pos = end
                break
        else:
            if c in "\"'":
                end = _string_end(s, pos + 1, c)
                pos = end if end > 0 else len(s)
            else:
                pos += 1
    return None


def _find_close(s: str, pos: int, triple: str) -> int:
    """Index just past the closing ``triple`` at or after ``pos``, or -1."""
    while True:
        found = s.find(triple, pos)
        if found < 0:
            return -1
        if triple == "'''" or not _escaped(s, found):
            end = found + 3
            while end < len(s) and s[end] == triple[0]:  # up to two quotes may end the content
                end += 1
            return end
        pos = found + 1


def _string_end(s: str, pos: int, quote: str) -> int:
    """Index just past the one-line string whose content starts at ``pos``, or -1."""
    while True:
        found = s.find(quote, pos)
        if found < 0:
            return -1
        if quote == "'" or not _escaped(s, found):
            return found + 1
        pos = found + 1


def _escaped(s: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and s[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _skip_ws(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in _WS:
        pos += 1
    return pos


def _unescape(raw: str) -> str:
    try:
        value = json.loads(f'"{raw}"')  # TOML's basic-string escapes are JSON's plus \U
    except ValueError:
        return raw
    return value if isinstance(value, str) else raw


def _close_matches(word: str, possibilities: list[str], n: int = 1,
                   cutoff: float = 0.6) -> list[str]:
    """``difflib.get_close_matches``, imported only when a key is wrong."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=n, cutoff=cutoff)
