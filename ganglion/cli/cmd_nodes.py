"""``ganglion nodes``: the nodes on the network."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._run import run_until_signalled


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds to listen for nodes.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of objects: id, name, address, version, types, role, "
              "reachable.")
@click.option("--mdns/--no-mdns", default=True, show_default=True,
              help="Also browse for nodes over mDNS/DNS-SD.")
@network_options
def nodes(timeout: float, as_json: bool, mdns: bool, iface: str | None, port: int,
          key_file: Path | None, ttl: int) -> None:
    """List the nodes heard on the control channel (and seen over mDNS).

    A node seen over mDNS but not heard on the control channel is listed as not
    reachable: it uses another network key (or none where this one uses a key, or
    the other way round), or its control traffic does not get here.
    """
    from rich.console import Console
    from rich.table import Table

    from ganglion.cli._observer import observer

    settings = resolve_network(iface, port, key_file, ttl)

    async def main(stop: asyncio.Event) -> int:
        found: dict[str, dict[str, Any]] = {}
        async with observer(settings, name="ganglion-nodes") as node:
            browse = None
            if mdns:
                from ganglion.runtime.discovery import browse_once

                browse = asyncio.get_running_loop().create_task(
                    browse_once(settings.interface, timeout))
            await asyncio.sleep(timeout)
            for peer in node.peers():
                if peer.role == "observer":
                    continue
                found[peer.id.hex()] = {"id": peer.id.hex(), "name": peer.name,
                                        "address": peer.address, "version": peer.version,
                                        "types": list(peer.publishes), "role": peer.role,
                                        "clock_synced": peer.clock_synced, "reachable": True}
            if browse is not None:
                try:
                    for adv in await browse:
                        found.setdefault(adv.id.hex(), {
                            "id": adv.id.hex(), "name": adv.name, "address": adv.address,
                            "version": adv.version, "types": list(adv.types), "role": adv.role,
                            "clock_synced": None, "reachable": False})
                except Exception as exc:  # mDNS is optional; the control channel answered
                    click.echo(f"mDNS browse failed: {exc}", err=True)
        rows = sorted(found.values(), key=lambda r: (r["name"], r["id"]))
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            table = Table(title=f"nodes ({len(rows)})")
            for col in ("name", "id", "address", "version", "publishes", "reachable"):
                table.add_column(col)
            for r in rows:
                table.add_row(r["name"], r["id"], r["address"], r["version"], ", ".join(r["types"]),
                              "yes" if r["reachable"] else "no")
            Console().print(table)
            if any(not r["reachable"] for r in rows):
                click.echo("not reachable: seen over mDNS but not heard on the control channel "
                           "(another network key, or its traffic does not get here)", err=True)
        return 0

    sys.exit(run_until_signalled(main))
