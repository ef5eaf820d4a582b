"""Options every networked command shares, and turning them into an Endpoint's settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ganglion import defaults
from ganglion.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """The normalised network choices of one command invocation."""

    interface: str  # IPv4 address of the chosen interface
    interface_name: str
    port: int
    key: bytes | None
    ttl: int


def network_options(func: F) -> F:
    """Add --iface, --port, --key-file and --ttl to a click command."""
    func = click.option(
        "--ttl", type=click.IntRange(0, 255), default=defaults.DEFAULT_TTL, show_default=True,
        help="Multicast TTL (1 keeps traffic on the local link).",
    )(func)
    func = click.option(
        "--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Network key file (also GANGLION_KEY_FILE, or GANGLION_KEY as 64 hex characters).",
    )(func)
    func = click.option(
        "--port", type=click.IntRange(1, 65535), default=defaults.DATA_PORT, show_default=True,
        help="UDP port of the data groups.",
    )(func)
    func = click.option(
        "--iface", default=None, metavar="NAME|ADDRESS",
        help="Interface name (eth0, wlan0, lo) or IPv4 address; default: GANGLION_IFACE, "
        "else the default-route interface.",
    )(func)
    return func


def resolve_network(iface: str | None, port: int, key_file: Path | None, ttl: int) -> NetworkSettings:
    """Normalise the network options once, early, turning bad values into a click error.

    Raises:
        click.ClickException: the interface or the key is unusable; the message says why.
    """
    from ganglion.netif import resolve_interface
    from ganglion.wire import load_key

    try:
        chosen = resolve_interface(iface, env=os.environ)
        key = load_key(key_file, env=os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return NetworkSettings(
        interface=chosen.address, interface_name=chosen.name, port=port, key=key, ttl=ttl
    )
