"""Options every networked command shares, and turning them into an Endpoint's settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ganglion import defaults
from ganglion.errors import ConfigError

if TYPE_CHECKING:
    from ganglion.wire import KeyRing

#: Where ``--no-encrypt`` leaves its choice (click's per-invocation ``meta``), so the
#: commands that take the network options need no parameter of their own for it.
NO_ENCRYPT_META = "ganglion.no_encrypt"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """The normalised network choices of one command invocation."""

    interface: str  # IPv4 address of the chosen interface
    interface_name: str
    port: int
    key: KeyRing | None  # the keys, and whether to encrypt (``--no-encrypt``)
    ttl: int


def _remember_no_encrypt(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[NO_ENCRYPT_META] = True


def no_encrypt_option(func: F) -> F:
    """Add --no-encrypt (read by :func:`resolve_network`, not passed to the command)."""
    return click.option(
        "--no-encrypt", is_flag=True, expose_value=False, callback=_remember_no_encrypt,
        envvar="GANGLION_NO_ENCRYPT",
        help="With a key, send MAC-only datagrams (readable by older nodes and by tools "
        "that decode payloads) instead of encrypted ones; both are accepted either way.",
    )(func)


def network_options(func: F) -> F:
    """Add --iface, --port, --key-file, --no-encrypt and --ttl to a click command."""
    func = no_encrypt_option(func)
    func = click.option(
        "--ttl", type=click.IntRange(0, 255), default=defaults.DEFAULT_TTL, show_default=True,
        help="Multicast TTL (1 keeps traffic on the local link).",
    )(func)
    func = click.option(
        "--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Network key file (also GANGLION_KEY_FILE, or GANGLION_KEY as 64 hex characters; "
        "default: network.key in the state directory, as 'ganglion join' writes it, if present).",
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


def resolve_network(iface: str | None, port: int, key_file: Path | None, ttl: int,
                    *, encrypt: bool = True) -> NetworkSettings:
    """Normalise the network options once, early, turning bad values into a click error.

    Args:
        iface: ``--iface``.
        port: ``--port``.
        key_file: ``--key-file``.
        ttl: ``--ttl``.
        encrypt: the config file's choice; ``--no-encrypt`` turns it off in any case.

    Raises:
        click.ClickException: the interface or the key is unusable (or encryption
            needs a package that is missing); the message says why.
    """
    from ganglion.netif import resolve_interface
    from ganglion.pairing.keyfile import implicit_key_file
    from ganglion.wire import load_keyring

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get(NO_ENCRYPT_META):
        encrypt = False
    try:
        chosen = resolve_interface(iface, env=os.environ)
        # No key named anywhere: the key file 'ganglion join' writes, if there is one.
        key = load_keyring(key_file if key_file is not None else implicit_key_file(os.environ),
                           env=os.environ, encrypt=encrypt)
        if key is not None and key.encrypt:
            key.require_aead()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return NetworkSettings(
        interface=chosen.address, interface_name=chosen.name, port=port, key=key, ttl=ttl
    )
