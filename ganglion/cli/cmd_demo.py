"""``ganglion demo``: a small sensor network on this machine, over loopback only.

Starts three sensor processes (each its own node id, like three Raspberry Pis)
publishing simulated readings, and prints every reading this process receives.
All traffic uses 127.0.0.1 as the multicast interface, so nothing leaves the
machine. Child processes are ended by their PID when the demo stops, however it
stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from typing import Any

import click

from ganglion import defaults
from ganglion.cli._run import run_until_signalled

#: (node name, sensor kinds) of the demo's sensor processes.
DEMO_NODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("brewery", ("temperature", "flow")),
    ("cellar", ("temperature", "humidity")),
    ("roof", ("pressure", "humidity")),
)
DEMO_TYPES = ("sensors.Temperature", "sensors.Humidity", "sensors.Pressure", "sensors.Flow")
_LOOPBACK = "127.0.0.1"


def _spawn_sensors(port: int, interval: float) -> list[subprocess.Popen[bytes]]:
    procs = []
    for name, kinds in DEMO_NODES:
        cmd = [sys.executable, "-m", "ganglion", "sim", "--iface", _LOOPBACK, "--port", str(port),
               "--name", name, "--interval", str(interval), "--quiet"]
        for kind in kinds:
            cmd += ["--kind", kind]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@click.command()
@click.option("--duration", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Stop after this many seconds (0: until Ctrl-C).")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between readings of each simulated sensor.")
@click.option("--port", type=click.IntRange(1, 65535), default=defaults.DATA_PORT,
              show_default=True, help="UDP port of the data groups.")
def demo(duration: float, interval: float, port: int) -> None:
    """Run a demo network of simulated sensors over loopback and print what arrives."""
    import hardware.readings  # noqa: F401  (registers the sensor types)
    from consensus.allocator import preferred_group
    from ganglion.cli._format import format_reading
    from ganglion.runtime.endpoint import Endpoint
    from ganglion.runtime.subscription import MessageInfo

    names: dict[bytes, str] = {}

    async def main(stop: asyncio.Event) -> int:
        async with Endpoint(interface=_LOOPBACK, port=port) as ep:
            def show(msg: Any, info: MessageInfo) -> None:
                sensor = str(getattr(msg, "sensor", ""))
                # the sensor id is sim:<node>/<kind>: name the sender after its node
                names.setdefault(info.sender, sensor[4:].split("/")[0] or info.sender.hex()[:8])
                click.echo(format_reading(msg, sender=names[info.sender], seq=info.seq,
                                          sent_ns=info.sent_ns))
                sys.stdout.flush()

            for type_name in DEMO_TYPES:
                ep.subscribe(type_name, callback=show)
            click.echo("ganglion demo: three sensor nodes on loopback (127.0.0.1); Ctrl-C stops")
            click.echo("type -> multicast group (first choice by hash of the type name):")
            for type_name in DEMO_TYPES:
                click.echo(f"  {type_name:<22} {preferred_group(type_name)}:{port}")
            procs = _spawn_sensors(port, interval)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=duration or None)
            finally:
                _stop(procs)
            stats = ep.stats()
            click.echo(f"received {stats.received} readings from {len(names)} nodes, "
                       f"lost {stats.lost}, decode errors {stats.decode_errors}")
        return 0

    sys.exit(run_until_signalled(main))
