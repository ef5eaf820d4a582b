"""``ganglion publish``: publish one message of a type from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled


@click.command()
@click.argument("type_name", metavar="TYPE")
@click.option("--json", "fields_json", required=True, metavar="OBJECT",
              help="The message's fields as a JSON object, e.g. '{\"celsius\": 21.5}'.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for the type's group to be agreed.")
@click.option("--new-type", is_flag=True,
              help="Create TYPE even though its name is close to a known one.")
@network_options
def publish(type_name: str, fields_json: str, timeout: float, new_type: bool, iface: str | None,
            port: int, key_file: Path | None, ttl: int) -> None:
    """Publish one message of TYPE with the fields given as JSON.

    A type this program has a class for is checked against it; any other type
    is sent as a self-describing record. A new type is proposed to the running
    nodes, which agree on its group first. Since a type stays in the map until
    it is retired (`ganglion types --retire`), a new name close to a known one
    (sensors.temprature) is refused as a likely typo, naming the known one,
    unless --new-type is given.
    """
    from ganglion.cli._observer import observer, settle
    from ganglion.cli._suggest import hint_for_name, known_names
    from ganglion.errors import GanglionError
    from ganglion.plugins import load_installed_types
    from ganglion.types import Record, lookup, validate_type_name

    load_installed_types()  # installed types (the sensors') are checked against their classes

    try:
        validate_type_name(type_name)
    except GanglionError as exc:
        raise click.BadParameter(str(exc), param_hint="TYPE") from exc
    try:
        fields: Any = json.loads(fields_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--json") from exc
    if not isinstance(fields, dict):
        raise click.BadParameter("must be a JSON object of field: value", param_hint="--json")
    settings = resolve_network(iface, port, key_file, ttl)

    async def main(stop: asyncio.Event) -> int:
        async with observer(settings, name="ganglion-publish") as node:
            if not new_type and lookup(type_name) is None:
                # Learn the map first (at once when the type is in it), then refuse a
                # likely typo before it becomes a type of its own.
                await settle(node, min(timeout, 3.0), until=lambda: type_name in node.types())
                hint = None
                if type_name not in node.types():
                    hint = hint_for_name(type_name, known_names(node.types()))
                if hint is not None:
                    error(f"{type_name} is not a known type; {hint} (to create "
                               f"{type_name} anyway, pass --new-type)")
                    return 2
            try:
                await node.publish(Record(type_name, fields))
            except GanglionError as exc:
                error(str(exc))
                return 2
            try:
                group = await node.wait_for_group(type_name, timeout)
            except TimeoutError:
                error(f"no group agreed for {type_name} within {timeout:g} s; is a "
                      f"node running on {settings.interface_name}?")
                return 1
            # A new type's first messages are held back briefly after the decision
            # (Node.NEW_TYPE_SETTLE_SECONDS) so subscribers can join; closing before
            # they are released would drop the message, so wait for the queue to drain.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while node.stats().endpoint.pending and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if node.stats().endpoint.pending:
                error(f"{type_name} was agreed but the message was not sent "
                      f"within {timeout:g} s")
                return 1
        click.echo(f"published {type_name} to {group}:{settings.port}", err=True)
        return 0

    sys.exit(run_until_signalled(main))
