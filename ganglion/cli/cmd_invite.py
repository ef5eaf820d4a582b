"""``ganglion invite``: print a one-time code that hands this network's key to a new node."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled

if TYPE_CHECKING:
    from ganglion.runtime.pairing import InviteResult


@click.command()
@click.option("--iface", default=None, metavar="NAME|ADDRESS",
              help="Interface to listen and advertise on (default: GANGLION_IFACE, else the "
              "default-route interface).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Network key file to share (also GANGLION_KEY_FILE / GANGLION_KEY; "
              "default: the key file 'ganglion join' writes, if present).")
@click.option("--ttl", type=click.FloatRange(min=1, max=3600), default=300.0,
              show_default=True, help="Seconds the code stays valid.")
@click.option("--listen-port", type=click.IntRange(0, 65535), default=0,
              help="TCP port to listen on (default: any free port).")
@click.option("--mdns/--no-mdns", default=True, show_default=True,
              help="Advertise the invite over mDNS so 'ganglion join CODE' finds it.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def invite(iface: str | None, key_file: Path | None, ttl: float, listen_port: int,
           mdns: bool, verbose: int) -> None:
    """Print a one-time code; 'ganglion join CODE' on a new node then receives the network key.

    The key travels over the LAN through a password-authenticated key exchange
    (SPAKE2) keyed by the code: a wrong code gets nothing. The code works once,
    for --ttl seconds, and three wrong attempts burn it.
    """
    from ganglion.errors import ConfigError, GanglionError
    from ganglion.netif import resolve_interface
    from ganglion.pairing import require_secure

    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        require_secure()
        content = _key_file_bytes(key_file, os.environ)
        chosen = resolve_interface(iface, env=os.environ)
    except (ConfigError, GanglionError) as exc:
        raise click.ClickException(str(exc)) from exc
    from ganglion.pairing.codes import make_code
    from ganglion.runtime.pairing import InviteServer

    code = make_code()

    async def main(stop: asyncio.Event) -> int:
        server = InviteServer(code=code, key_file=content, interface=chosen.address, ttl=ttl,
                              port=listen_port, advertise=mdns)
        try:
            await server.start()
        except OSError as exc:
            await server.close()
            error(f"cannot listen on {chosen.address}: {exc.strerror or exc}")
            return 1
        try:
            _announce(str(code), server.address, ttl, mdns, chosen.name)
            waiting = asyncio.ensure_future(server.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not waiting.done():
                waiting.cancel()
                click.echo("invite cancelled; the code no longer works", err=True)
                return 130
            return _report(waiting.result())
        finally:
            await server.close()

    sys.exit(run_until_signalled(main))


def _key_file_bytes(key_file: Path | None, env: Mapping[str, str]) -> bytes:
    """The key file to hand over, found as every command finds its key, checked first.

    Raises:
        KeyFileError: the key cannot be loaded, or there is none.
    """
    from ganglion.errors import KeyFileError
    from ganglion.pairing.exchange import MAX_KEY_FILE
    from ganglion.pairing.keyfile import implicit_key_file
    from ganglion.wire.keys import ENV_KEY_FILE, load_keyring

    path = key_file if key_file is not None else implicit_key_file(env)
    ring = load_keyring(path, env=env)  # refuses a missing, loose-mode or malformed key file
    if ring is None:
        raise KeyFileError(
            "there is no network key to share: make one with 'ganglion keygen PATH' and "
            "pass --key-file PATH (or set GANGLION_KEY_FILE)")
    path = path if path is not None else Path(env[ENV_KEY_FILE]) if env.get(ENV_KEY_FILE) else None
    if path is None:  # GANGLION_KEY: the keys as a key file would hold them
        if len(ring.keys) == 1:
            return ring.keys[0]  # raw, as 'ganglion keygen' first wrote keys
        return "".join(k.hex() + "\n" for k in ring.keys).encode("ascii")
    try:
        with path.open("rb") as f:
            content = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    if len(content) > MAX_KEY_FILE:
        raise KeyFileError(f"key file {path} is over {MAX_KEY_FILE} bytes; an invite cannot "
                           f"send it")
    return content


def _announce(code: str, address: tuple[str, int], ttl: float, mdns: bool, iface: str) -> None:
    """Print the code (stdout, alone on its line) and how to use it (stderr)."""
    host, port = address
    direct = f"ganglion join --inviter {host}:{port} {code}"
    click.echo(f"invite code: {code}")
    minutes = f"{ttl / 60:g} minutes" if ttl >= 60 else f"{ttl:g} seconds"
    click.echo(f"valid for {minutes}, once; on the new node run:\n\n"
               f"    {f'ganglion join {code}' if mdns else direct}\n", err=True)
    where = "advertised over mDNS; where mDNS does not reach: " + direct if mdns else "no mDNS"
    click.echo(f"listening on {iface} {host}:{port}, {where}", err=True)


def _report(result: InviteResult) -> int:
    """Say how the invite ended; 0 only when the key was delivered."""
    from ganglion.pairing.invitation import InviteStatus

    failures = result.stats.failures
    if result.status is InviteStatus.USED:
        receipt = "" if result.acknowledged else " (the joiner did not confirm receipt)"
        click.echo(f"the network key was sent{receipt}; the code is used up", err=True)
        return 0
    if result.status is InviteStatus.BURNT:
        error(f"{failures} wrong codes; the invite is burnt. Run "
              f"'ganglion invite' again for a new code")
        return 1
    error(f"the code expired unused ({failures} wrong attempts); run "
          f"'ganglion invite' again for a new code")
    return 1
