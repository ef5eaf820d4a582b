"""``ganglion sim``: publish drifting readings from simulated sensors."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

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
    from ganglion.runtime.endpoint import Endpoint
    from hardware.sim import SimulatedSensor

    settings = resolve_network(iface, port, key_file, ttl)
    rng = random.Random(seed)
    sensors = [SimulatedSensor(kind, f"{name}/{kind}", rng=rng) for kind in kinds]

    async def main(stop: asyncio.Event) -> int:
        async with Endpoint(interface=settings.interface, port=settings.port, key=settings.key,
                            ttl=settings.ttl) as ep:
            click.echo(f"ready: {name} publishing {', '.join(kinds)} via {settings.interface_name} "
                       f"({settings.interface}) as node {ep.node_id.hex()}", err=True)
            sent = 0
            while not stop.is_set():
                # Simulated time runs on the nominal schedule, not the loop clock: the
                # readings then depend on --seed only, not on how late each wake-up was.
                now = sent * interval
                for sensor in sensors:
                    reading = sensor.read(now)
                    ep.publish(reading)
                    if not quiet:
                        click.echo(format_reading(reading, sender=name))
                sent += 1
                sys.stdout.flush()
                if (count and sent >= count) or await wait_or_stop(stop, interval):
                    break
            await ep.flush()
        return 0

    sys.exit(run_until_signalled(main))
