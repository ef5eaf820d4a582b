"""``ganglion types``: the agreed type -> multicast group map."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._run import run_until_signalled


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds to wait for the map from the running nodes.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object: type -> group.")
@network_options
def types(timeout: float, as_json: bool, iface: str | None, port: int, key_file: Path | None,
          ttl: int) -> None:
    """Print the type -> multicast group map the nodes agreed on."""
    from rich.console import Console
    from rich.table import Table

    from ganglion.cli._observer import observer, settle

    settings = resolve_network(iface, port, key_file, ttl)

    async def main(stop: asyncio.Event) -> int:
        async with observer(settings, name="ganglion-types") as node:
            await settle(node, timeout)
            mapping = node.types()
            publishers: dict[str, list[str]] = {}
            for peer in node.peers():
                for name in peer.publishes:
                    publishers.setdefault(name, []).append(peer.name)
            heard = bool(node.peers())
        if as_json:
            click.echo(json.dumps(mapping, indent=2, sort_keys=True))
        else:
            table = Table(title=f"agreed types ({len(mapping)})")
            table.add_column("type")
            table.add_column("group")
            table.add_column("published by")
            for name, group in mapping.items():
                table.add_row(name, f"{group}:{settings.port}", ", ".join(sorted(publishers.get(name, []))))
            Console().print(table)
        if not heard:
            click.echo(f"no node answered on {settings.interface_name} within {timeout:g} s",
                       err=True)
            return 1
        return 0

    sys.exit(run_until_signalled(main))
