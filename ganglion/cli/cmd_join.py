"""``ganglion join CODE``: receive the network key from a node running ``ganglion invite``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled


@click.command()
@click.argument("code")
@click.option("--iface", default=None, metavar="NAME|ADDRESS",
              help="Interface to find the inviter on (default: GANGLION_IFACE, else the "
              "default-route interface).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the key (default: GANGLION_KEY_FILE, else network.key in "
              "the state directory, which every command reads when no key is given).")
@click.option("--timeout", type=click.FloatRange(min=1, max=3600), default=60.0,
              show_default=True, help="Seconds to find the inviter and receive the key.")
@click.option("--inviter", default=None, metavar="ADDRESS:PORT",
              help="The inviter's address as 'ganglion invite' prints it (skips mDNS).")
@click.option("--force", is_flag=True, help="Replace a key file that holds another key.")
def join(code: str, iface: str | None, key_file: Path | None, timeout: float,
         inviter: str | None, force: bool) -> None:
    """Receive the network key with CODE (printed by 'ganglion invite') and write it, mode 0600.

    A wrong or expired code fails and receives nothing.
    """
    from ganglion.errors import ConfigError, GanglionError
    from ganglion.netif import resolve_interface
    from ganglion.pairing import require_secure
    from ganglion.pairing.codes import parse_code
    from ganglion.pairing.keyfile import join_target

    try:
        require_secure()
        parsed = parse_code(code)  # a typo is reported before any traffic
        address = _parse_address(inviter) if inviter else None
        chosen = resolve_interface(iface, env=os.environ)
    except (ConfigError, GanglionError) as exc:
        raise click.ClickException(str(exc)) from exc
    target = join_target(key_file, os.environ)
    from ganglion.runtime.pairing import join as join_network

    async def main(stop: asyncio.Event) -> int:
        joining = asyncio.ensure_future(join_network(parsed, interface=chosen.address,
                                                     timeout=timeout, inviter=address))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({joining, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not joining.done():
            joining.cancel()
            await asyncio.gather(joining, return_exceptions=True)
            click.echo("join cancelled; nothing was written", err=True)
            return 130
        try:
            content = joining.result()
        except GanglionError as exc:
            error(_explain(exc))
            return 1
        return _install(target, content, force)

    sys.exit(run_until_signalled(main))


def _install(target: Path, content: bytes, force: bool) -> int:
    """Write the key file and print the next command."""
    from ganglion.errors import KeyFileError
    from ganglion.pairing.keyfile import Installed, default_key_file, install_key_file

    try:
        done = install_key_file(target, content, force=force)
    except KeyFileError as exc:
        error(f"{exc}; the key received was not written")
        return 1
    if done is Installed.UNCHANGED:
        click.echo(f"{target} already holds this network key")
    else:
        click.echo(f"wrote the network key to {target} (mode 0600)")
    if target == default_key_file():
        if os.environ.get("GANGLION_KEY"):
            click.echo("note: GANGLION_KEY is set and wins over this file; unset it", err=True)
        click.echo("start the node with: ganglion node   (it reads this key file by default)")
    else:
        click.echo(f"start the node with: ganglion node --key-file {target}")
    return 0


def _explain(exc: Exception) -> str:
    """The user's view of a failed join."""
    from ganglion.errors import WrongCodeError

    if isinstance(exc, WrongCodeError):
        return f"{exc}; nothing was received. Check the code, or ask for a new one"
    return str(exc)


def _parse_address(text: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` as a pair.

    Raises:
        ConfigError: not an IPv4 address and a port.
    """
    import ipaddress

    from ganglion.errors import ConfigError

    host, _, port = text.rpartition(":")
    address = ""
    try:
        address, number = str(ipaddress.IPv4Address(host)), int(port)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise ConfigError(f"--inviter takes ADDRESS:PORT, like 192.168.1.20:40123, not {text!r}")
    return address, number
