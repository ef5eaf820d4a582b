"""Choosing the network interface ganglion's multicast sockets use.

Theory of operation
-------------------
A node sends and receives on exactly one IPv4 interface. The user names it with
``--iface`` or ``GANGLION_IFACE`` as either an interface name (``eth0``, ``wlan0``,
``lo``) or one of its IPv4 addresses; with neither, ganglion takes the interface
of the default IPv4 route. The choice is resolved **once, early** into an
:class:`Interface` and everything downstream (sockets, discovery) uses only its
``address``: the kernel's multicast options (``IP_MULTICAST_IF``,
``IP_ADD_MEMBERSHIP``) name interfaces by address.

The work is split the way python-zeroconf's ``_utils/net.py`` splits it: the
pure helpers (:func:`default_route_interface`, :func:`choose_interface`) take
the interface list and the gateway table as parameters, so tests pass fakes;
only :func:`list_interfaces` and :func:`resolve_interface` touch the real
``netifaces`` module (installed by the ``netifaces-plus`` distribution).

An interface with several IPv4 addresses appears once per address, in the
order netifaces reports them; choosing it by name picks its first (primary)
address. Every error is an :class:`~ganglion.errors.InterfaceError` whose
message lists the choices that would work.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ganglion.errors import InterfaceError

__all__ = [
    "API_CHOICE_HINT",
    "CLI_CHOICE_HINT",
    "ENV_VAR",
    "Interface",
    "choose_interface",
    "default_route_interface",
    "list_interfaces",
    "normalize_choice",
    "resolve_interface",
]

#: Environment variable that names the interface when no explicit choice is given.
ENV_VAR = "GANGLION_IFACE"

#: How an error tells a command-line user to choose an interface (the default).
CLI_CHOICE_HINT = "--iface (or GANGLION_IFACE), e.g. --iface lo"

#: The same for a program that makes a :class:`ganglion.node.Node`.
API_CHOICE_HINT = 'Node(interface=...) (or GANGLION_IFACE), e.g. interface="lo"'

# Linux interface flags (include/uapi/linux/if.h), read from /sys/class/net/*/flags.
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFF_MULTICAST = 0x1000

_LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")

#: Reads an interface's flag word; returns None when the platform cannot tell.
FlagsReader = Callable[[str], int | None]


@dataclass(frozen=True, slots=True)
class Interface:
    """One IPv4 address on one network interface.

    Attributes:
        name: the kernel's interface name, e.g. ``eth0``.
        address: the IPv4 address in dotted-quad form.
        netmask: the IPv4 netmask, or None when the platform does not report it.
        is_loopback: True for the loopback interface (127.0.0.0/8 or IFF_LOOPBACK).
        is_up: the IFF_UP flag, or None when unknown.
        multicast: the IFF_MULTICAST flag, or None when unknown. Linux's ``lo``
            does not set it, yet multicast over loopback works when sockets name
            127.0.0.1 as their multicast interface; see :attr:`can_multicast`.
    """

    name: str
    address: str
    netmask: str | None = None
    is_loopback: bool = False
    is_up: bool | None = None
    multicast: bool | None = None

    @property
    def can_multicast(self) -> bool:
        """True unless the interface is known to lack multicast (loopback always can)."""
        return self.is_loopback or self.multicast is not False

    def describe(self) -> str:
        """One line for error messages and logs, e.g. ``eth0 (192.0.2.2)``."""
        notes = []
        if self.is_loopback:
            notes.append("loopback, this host only")
        if self.is_up is False:
            notes.append("down")
        if self.multicast is False and not self.is_loopback:
            notes.append("no multicast")
        suffix = f", {', '.join(notes)}" if notes else ""
        return f"{self.name} ({self.address}{suffix})"


def list_interfaces(
    netifaces_module: ModuleType | Any | None = None,
    *,
    read_flags: FlagsReader | None = None,
) -> list[Interface]:
    """List every IPv4 address of every interface.

    Args:
        netifaces_module: the ``netifaces`` module or a fake with the same
            ``interfaces()`` / ``ifaddresses(name)`` functions; None imports the
            real one.
        read_flags: returns an interface's flag word (IFF_*), or None when
            unknown; None reads Linux's ``/sys/class/net/<name>/flags``.

    Returns:
        One :class:`Interface` per IPv4 address, in netifaces' order.
    """
    ni = netifaces_module if netifaces_module is not None else _import_netifaces()
    flags_of = read_flags if read_flags is not None else _read_sysfs_flags
    found: list[Interface] = []
    for name in ni.interfaces():
        entries = ni.ifaddresses(name).get(socket.AF_INET, [])
        if not entries:
            continue
        flags = flags_of(name)
        for entry in entries:
            addr = _parse_ipv4(entry.get("addr"))
            if addr is None:
                continue
            loop_flag = flags is not None and bool(flags & _IFF_LOOPBACK)
            found.append(
                Interface(
                    name=name,
                    address=str(addr),
                    netmask=entry.get("netmask"),
                    is_loopback=loop_flag or addr in _LOOPBACK_NET,
                    is_up=None if flags is None else bool(flags & _IFF_UP),
                    multicast=None if flags is None else bool(flags & _IFF_MULTICAST),
                )
            )
    return found


def default_route_interface(gateways: Mapping[Any, Any]) -> str | None:
    """Find the interface of the default IPv4 route.

    Args:
        gateways: a table shaped like ``netifaces.gateways()``:
            ``{"default": {AF_INET: (gateway, iface)}, AF_INET: [(gateway,
            iface, is_default), ...]}``.

    Returns:
        The interface name, or None when there is no default IPv4 route.
    """
    default = gateways.get("default") or {}
    entry = default.get(socket.AF_INET)
    if entry and len(entry) >= 2 and entry[1]:
        return str(entry[1])
    for route in gateways.get(socket.AF_INET) or ():
        if len(route) >= 3 and route[2] and route[1]:
            return str(route[1])
    return None


def normalize_choice(choice: str | None) -> str | ipaddress.IPv4Address | None:
    """Turn a user's interface choice into a name, an IPv4 address, or None.

    Args:
        choice: a name, a dotted-quad IPv4 address, or None / blank for "default".

    Returns:
        None for the default, an :class:`ipaddress.IPv4Address` when the choice
        parses as one, otherwise the stripped interface name.

    Raises:
        InterfaceError: the choice looks like an IP address but is not a valid
            IPv4 one (an IPv6 address, say).
    """
    if choice is None or not choice.strip():
        return None
    text = choice.strip()
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return text
    if not isinstance(parsed, ipaddress.IPv4Address):
        raise InterfaceError(
            f"interface address {text!r} is not IPv4; ganglion uses IPv4 multicast"
        )
    return parsed


def choose_interface(
    choice: str | None,
    *,
    interfaces: Sequence[Interface],
    default_iface: str | None,
    hint: str = CLI_CHOICE_HINT,
) -> Interface:
    """Resolve the user's choice against a list of interfaces.

    Args:
        choice: an interface name or IPv4 address; None (or blank) selects the
            interface of the default route.
        interfaces: the candidates, as :func:`list_interfaces` returns them.
        default_iface: the default-route interface name, as
            :func:`default_route_interface` returns it.
        hint: how the user chooses an interface, in the words of the caller's
            interface (:data:`CLI_CHOICE_HINT` or :data:`API_CHOICE_HINT`).

    Returns:
        The chosen interface (its first IPv4 address when chosen by name).

    Raises:
        InterfaceError: the name does not exist or has no IPv4 address, no
            interface has the address, or there is no choice and no default
            route. The message lists the interfaces that would work.
    """
    wanted = normalize_choice(choice)
    if wanted is None:
        if default_iface is None:
            raise InterfaceError(
                f"no default IPv4 route, so there is no default interface; choose one with "
                f"{hint} to stay on this host. " + _alternatives(interfaces)
            )
        return _by_name(default_iface, interfaces, what="the default-route interface")
    if isinstance(wanted, ipaddress.IPv4Address):
        for iface in interfaces:
            if iface.address == str(wanted):
                return iface
        raise InterfaceError(
            f"no interface has the IPv4 address {wanted}. " + _alternatives(interfaces)
        )
    return _by_name(wanted, interfaces, what="interface")


def resolve_interface(
    choice: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    netifaces_module: ModuleType | Any | None = None,
    hint: str = CLI_CHOICE_HINT,
) -> Interface:
    """Resolve a choice against this machine's real interfaces.

    The one way ganglion chooses its interface: the CLI's ``--iface`` and the
    Python API's ``Node(interface=...)`` both come here.

    Args:
        choice: an interface name or IPv4 address; None falls back to the
            ``GANGLION_IFACE`` environment variable, then to the default route.
        env: the environment to read ``GANGLION_IFACE`` from (default: os.environ).
        netifaces_module: a stand-in for ``netifaces`` (tests); None uses the real one.
        hint: as :func:`choose_interface`.

    Returns:
        The chosen interface.

    Raises:
        InterfaceError: as :func:`choose_interface`.
    """
    environ = os.environ if env is None else env
    if choice is None or not choice.strip():
        choice = environ.get(ENV_VAR) or None
    ni = netifaces_module if netifaces_module is not None else _import_netifaces()
    read_flags = None if netifaces_module is None else _no_flags
    return choose_interface(
        choice,
        interfaces=list_interfaces(ni, read_flags=read_flags),
        default_iface=default_route_interface(ni.gateways()),
        hint=hint,
    )


# -- private helpers ---------------------------------------------------------


def _by_name(name: str, interfaces: Sequence[Interface], *, what: str) -> Interface:
    """First address of the named interface, or an error listing the alternatives."""
    for iface in interfaces:
        if iface.name == name:
            return iface
    raise InterfaceError(
        f"{what} {name!r} does not exist or has no IPv4 address. " + _alternatives(interfaces)
    )


def _alternatives(interfaces: Sequence[Interface]) -> str:
    """The sentence that lists the choices that would work."""
    usable = [i for i in interfaces if i.can_multicast]
    if not usable:
        return "No interface has an IPv4 address."
    return "Interfaces that would work: " + ", ".join(i.describe() for i in usable) + "."


def _parse_ipv4(value: object) -> ipaddress.IPv4Address | None:
    """The address as IPv4Address, or None for anything netifaces gave that is not one."""
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def _read_sysfs_flags(name: str) -> int | None:
    """Read Linux's interface flags; None where sysfs is absent (macOS, BSD)."""
    try:
        text = (Path("/sys/class/net") / name / "flags").read_text(encoding="ascii")
        return int(text.strip(), 16)
    except (OSError, ValueError):
        return None


def _no_flags(name: str) -> int | None:
    """Flags reader for fake netifaces modules: nothing is known."""
    return None


def _import_netifaces() -> ModuleType:
    """Import netifaces lazily so importing ganglion never requires it to work."""
    import netifaces

    return netifaces
