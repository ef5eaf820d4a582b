"""``ganglion tail``: print every reading of the given types as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._run import run_until_signalled


@click.command()
@click.argument("types", nargs=-1, required=True)
@click.option("--count", type=click.IntRange(min=0), default=0, show_default=True,
              help="Exit after this many readings (0: until Ctrl-C).")
@click.option("--timeout", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Exit after this many seconds (0: no limit).")
@network_options
def tail(types: tuple[str, ...], count: int, timeout: float, iface: str | None, port: int,
         key_file: Path | None, ttl: int) -> None:
    """Print readings of TYPES (dotted type names) as they arrive.

    Types this program has no class for are printed from their self-describing
    payload, field by field.
    """
    import hardware.readings  # noqa: F401  (registers the sensor types so they decode to classes)
    from ganglion.cli._format import format_reading
    from ganglion.errors import TypeNameError
    from ganglion.runtime.endpoint import Endpoint
    from ganglion.runtime.subscription import MessageInfo
    from ganglion.types import validate_type_name

    for name in types:
        try:
            validate_type_name(name)
        except TypeNameError as exc:
            raise click.BadParameter(str(exc), param_hint="TYPES") from exc
    settings = resolve_network(iface, port, key_file, ttl)

    async def main(stop: asyncio.Event) -> int:
        seen = 0

        def show(msg: Any, info: MessageInfo) -> None:
            nonlocal seen
            click.echo(format_reading(msg, sender=info.sender.hex()[:8], seq=info.seq,
                                      sent_ns=info.sent_ns))
            sys.stdout.flush()
            seen += 1
            if count and seen >= count:
                stop.set()

        async with Endpoint(interface=settings.interface, port=settings.port, key=settings.key,
                            ttl=settings.ttl) as ep:
            for name in types:
                ep.subscribe(name, callback=show)
            click.echo(f"listening for {', '.join(types)} on {settings.interface_name}", err=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=timeout or None)
        return 0 if (count == 0 or seen >= count) else 1

    sys.exit(run_until_signalled(main))
