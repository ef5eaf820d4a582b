"""``ganglion sim``: publish drifting readings from simulated sensors.

A quick way to put readings on the network from a terminal: a short-lived member
node with its own throw-away identity (``ganglion node --sim KIND`` is the
long-running form, with a persistent identity and plugins).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._run import run_until_signalled, wait_or_stop


@click.command()
@click.option(
    "--kind", "kinds", multiple=True, required=True,
    type=click.Choice(["temperature", "humidity", "pressure", "flow"]),
    help="Kind of simulated sensor; repeat for several sensors.",
)
@click.option("--name", default="sim", show_default=True, help="Name used in the sensors' ids.")
@click.option("--interval", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Seconds between readings.")
@click.option("--count", type=click.IntRange(min=0), default=0, show_default=True,
              help="Readings per sensor before exiting (0: until Ctrl-C).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible readings.")
@click.option("--quiet", is_flag=True, help="Do not print each published reading.")
@network_options
def sim(kinds: tuple[str, ...], name: str, interval: float, count: int, seed: int | None,
        quiet: bool, iface: str | None, port: int, key_file: Path | None, ttl: int) -> None:
    """Publish readings of simulated sensors every --interval seconds."""
    from ganglion.cli._format import format_reading
    from ganglion.cli._observer import control_port_for
    from ganglion.errors import GanglionError
    from ganglion.node import Node
    from ganglion.plugins import load_plugin
    from ganglion.types import type_name_of

    settings = resolve_network(iface, port, key_file, ttl)
    # The simulated sensors are the installed ``sim`` plugin's (ganglion.plugins entry
    # point); this command reads them on its own schedule instead of running the plugin.
    try:
        plugin: Any = load_plugin("sim", {"kinds": kinds, "interval": interval, "seed": seed})
    except GanglionError as exc:
        raise click.ClickException(str(exc)) from None

    async def main(stop: asyncio.Event) -> int:
        # A throw-away member node: its own identity and journal in a temporary
        # directory, so it can assign groups alone and never clashes with a real node.
        with tempfile.TemporaryDirectory(prefix="ganglion-sim-") as state_dir:
            async with Node(name=name, interface=settings.interface, port=settings.port,
                            control_port=control_port_for(settings.port), state_dir=state_dir,
                            key=settings.key, ttl=settings.ttl, discovery=False) as ep:
                await plugin.setup(ep)  # one sensor per kind, named <node name>/<kind>
                return await _publish_readings(ep, plugin.sensors, stop)

    async def _publish_readings(ep: Node, sensors: Sequence[Any], stop: asyncio.Event) -> int:
        click.echo(f"ready: {name} publishing {', '.join(kinds)} via {settings.interface_name} "
                   f"({settings.interface}) as node {ep.node_id.hex()}", err=True)
        sent = 0
        published_types: set[str] = set()
        while not stop.is_set():
            # Simulated time runs on the nominal schedule, not the loop clock: the
            # readings then depend on --seed only, not on how late each wake-up was.
            now = sent * interval
            for sensor in sensors:
                reading = sensor.read(now)
                published_types.add(type_name_of(reading))
                ep.publish_nowait(reading)
                if not quiet:
                    click.echo(format_reading(reading, sender=name))
            sent += 1
            sys.stdout.flush()
            if (count and sent >= count) or await wait_or_stop(stop, interval):
                break
        for type_name in sorted(published_types):
            # readings published before their group was agreed are still queued
            with contextlib.suppress(TimeoutError):
                await ep.wait_for_group(type_name, 5.0)
        await asyncio.sleep(0.05)
        return 0

    sys.exit(run_until_signalled(main))
