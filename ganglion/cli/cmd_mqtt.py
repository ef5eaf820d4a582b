"""``ganglion mqtt``: bridge the network's readings to an MQTT broker, with Home Assistant
discovery (docs/mqtt.md, docs/home-assistant.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled

if TYPE_CHECKING:
    from ganglion.runtime.mqtt import MqttBridge


@click.command()
@click.option("--broker", required=True, metavar="mqtt[s]://[user@]HOST[:PORT]",
              help="The MQTT broker (mqtts:// for TLS; port 1883 / 8883 by default).")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A file whose first line is the broker password.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CA certificate (PEM) that signed the broker's certificate (mqtts://); "
              "the system's CAs by default.")
@click.option("--prefix", default="ganglion", show_default=True,
              help="First topic level(s) of readings: PREFIX/NODE/TYPE/SENSOR.")
@click.option("--ha/--no-ha", default=True, show_default=True,
              help="Publish Home Assistant discovery configs.")
@click.option("--ha-prefix", default="homeassistant", show_default=True,
              help="Home Assistant's discovery prefix.")
@click.option("--ha-mode", type=click.Choice(["device", "component"]), default="device",
              show_default=True, help="One discovery config per node (Home Assistant "
              "2024.12 and later) or one per entity (every version).")
@click.option("--type", "patterns", multiple=True, metavar="PATTERN",
              help="Bridge only types matching this glob (repeatable; default: every type).")
@click.option("--qos", type=click.IntRange(0, 1), default=0, show_default=True,
              help="QoS of readings.")
@click.option("--retain/--no-retain", default=True, show_default=True,
              help="Retain the latest reading per topic, so a client that starts later sees it.")
@click.option("--subscribe", "routes", multiple=True, metavar="TOPIC=TYPE",
              help="Publish JSON objects arriving on TOPIC as ganglion messages of TYPE "
              "(repeatable; MQTT wildcards allowed).")
@click.option("--forget-after", type=click.FloatRange(min=1.0), default=3600.0,
              show_default=True, help="Seconds a node or sensor must be gone before its "
              "entities are removed; also the grace period for stale configs found at start.")
@click.option("--max-queue", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Readings kept while the broker is away (oldest dropped first).")
@click.option("--max-queue-bytes", type=click.IntRange(min=1), default=8 * 1024 * 1024,
              show_default=True, help="Bytes of readings kept while the broker is away.")
@click.option("--purge", is_flag=True,
              help="Clear every retained message of this bridge (discovery configs, readings, "
              "availability) from the broker, and exit.")
@click.option("--stats-every", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Print the bridge's counters as a JSON line on stdout every N seconds "
              "(0: only at exit).")
@network_options
def mqtt(broker: str, password_file: Path | None, ca: Path | None, prefix: str, ha: bool,
         ha_prefix: str, ha_mode: str, patterns: tuple[str, ...], qos: int, retain: bool,
         routes: tuple[str, ...], forget_after: float, max_queue: int, max_queue_bytes: int,
         purge: bool, stats_every: float, iface: str | None, port: int,
         key_file: Path | None, ttl: int) -> None:
    """Bridge readings to an MQTT broker, with Home Assistant discovery.

    Each reading goes to PREFIX/NODE/TYPE/SENSOR as JSON (every field, ts, seq),
    retained by default. With --ha, Home Assistant finds one device per node and
    one sensor per numeric field, with units and device classes from the types'
    self-description. The bridge joins the network as an observer: it never
    counts in a quorum. A broker that is down is retried with backoff while
    readings wait in a bounded queue; a refused password or a TLS certificate
    that does not verify ends it with one error line and exit code 1.
    """
    from ganglion import __version__
    from ganglion.errors import BrokerRefusedError, ConfigError
    from ganglion.mqtt import BridgeSettings, parse_broker, parse_route
    from ganglion.runtime.mqtt import MqttBridge, read_password
    from ganglion.runtime.mqtt import purge as purge_broker

    try:
        address = parse_broker(broker)
        settings = BridgeSettings(prefix=prefix, ha=ha, ha_prefix=ha_prefix, ha_mode=ha_mode,
                                  qos=qos, retain=retain, forget_after=forget_after,
                                  version=__version__)
        parsed = tuple(parse_route(r) for r in routes)
        password = read_password(password_file) if password_file else None
    except ValueError as exc:  # ConfigError is a ValueError too
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if purge:
        async def clear(stop: asyncio.Event) -> int:
            try:
                cleared = await purge_broker(broker=address, settings=settings,
                                             password=password, ca=ca)
            except (BrokerRefusedError, ConfigError) as exc:
                error(str(exc))
                return 1
            click.echo(f"cleared {cleared} retained messages of the bridge on {address}",
                       err=True)
            return 0

        sys.exit(run_until_signalled(clear))

    net = resolve_network(iface, port, key_file, ttl)

    async def main(stop: asyncio.Event) -> int:
        from ganglion.cli._observer import observer

        try:
            bridge = MqttBridge(broker=address, settings=settings, password=password, ca=ca,
                                patterns=patterns, routes=parsed, max_queue=max_queue,
                                max_queue_bytes=max_queue_bytes)
        except ConfigError as exc:
            error(str(exc))
            return 2
        async with observer(net, name="ganglion-mqtt") as node:
            click.echo(f"bridging to {address} as {node.node_id.hex()} (observer); topics "
                       f"{prefix}/NODE/TYPE/SENSOR" + (f", Home Assistant discovery under "
                                                      f"{ha_prefix}/" if ha else ""), err=True)
            printer = (asyncio.create_task(_print_stats(bridge, stats_every, stop))
                       if stats_every > 0 else None)
            try:
                await bridge.run(node, stop)
            except BrokerRefusedError as exc:
                error(str(exc))
                return 1
            finally:
                if printer is not None:
                    printer.cancel()
                click.echo(json.dumps(bridge.stats(), sort_keys=True))
        return 0

    sys.exit(run_until_signalled(main))


async def _print_stats(bridge: MqttBridge, every: float, stop: asyncio.Event) -> None:
    from ganglion.cli._run import wait_or_stop

    while not await wait_or_stop(stop, every):
        click.echo(json.dumps(bridge.stats(), sort_keys=True))
        sys.stdout.flush()
