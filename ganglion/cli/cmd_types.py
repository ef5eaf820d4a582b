"""``ganglion types``: the agreed type -> multicast group map, and retiring a type."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from ganglion.cli._options import NetworkSettings, network_options, resolve_network
from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds to wait for the map from the running nodes (and, with "
              "--retire, for the retire to be agreed).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object: type -> group.")
@click.option("--retire", "retire_name", metavar="TYPE", default=None,
              help="Take TYPE off the map (a typo, a sensor gone for good). Refused while "
              "a live node publishes it.")
@click.option("--schema", "schema_name", metavar="TYPE", default=None,
              help="Print TYPE's self-description instead: per field its wire kind, unit, "
              "kind (Home Assistant device class), state class and description, from the "
              "class if this program has it, else asked of TYPE's publishers.")
@network_options
def types(timeout: float, as_json: bool, retire_name: str | None, schema_name: str | None,
          iface: str | None, port: int, key_file: Path | None, ttl: int) -> None:
    """Print the type -> multicast group map the nodes agreed on.

    A type stays in the map until it is retired with --retire TYPE: the running
    nodes agree to take it off, and its group is kept free for it a while
    (docs/consensus.md, "Retiring a type"), so it comes back there if it is
    published again. A type that some live node still publishes is not retired.
    """
    from rich.console import Console
    from rich.table import Table

    from ganglion.cli._observer import observer, settle

    settings = resolve_network(iface, port, key_file, ttl)
    if schema_name is not None:
        _check_name(schema_name, "--schema")
        sys.exit(run_until_signalled(lambda stop: _schema(settings, schema_name, timeout,
                                                          as_json)))
    if retire_name is not None:
        _check_name(retire_name, "--retire")
        sys.exit(run_until_signalled(lambda stop: _retire(settings, retire_name, timeout)))

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


def _check_name(name: str, option: str) -> None:
    from ganglion.errors import TypeNameError
    from ganglion.types import validate_type_name

    try:
        validate_type_name(name)
    except TypeNameError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


async def _schema(settings: NetworkSettings, name: str, timeout: float, as_json: bool) -> int:
    """Print ``name``'s schema, asking its publishers when there is no class here."""
    from ganglion.cli._observer import observer

    async with observer(settings, name="ganglion-types") as node:
        schema = await node.fetch_type_schema(name, timeout=timeout)
    if schema is None:
        error(f"no publisher of {name} announced its schema within {timeout:g} s (none "
              f"runs on {settings.interface_name}, or they are of a version from before "
              f"schemas)")
        return 1
    if as_json:
        click.echo(json.dumps(schema.to_plain() | {"source": schema.source}, indent=2,
                              ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = f"{schema.name} {schema.fingerprint.hex()} ({schema.source})"
    table = Table(title=title, caption=schema.description or None)
    for column in ("field", "wire", "unit", "kind", "state class", "description"):
        table.add_column(column)
    for f in schema.fields:
        name_cell = f.name + (" (key)" if f.name in schema.key else "")
        table.add_row(name_cell, f.wire, f.unit or "", f.device_class or "",
                      f.state_class or "", f.description)
    Console().print(table)
    return 0


async def _retire(settings: NetworkSettings, name: str, timeout: float) -> int:
    """Ask the members to retire ``name``; wait until it leaves the map. Returns the exit code."""
    from consensus.groupmap import GRACE_ENTRIES
    from ganglion.cli._observer import observer, settle
    from ganglion.cli._suggest import hint_for_name, known_names
    from ganglion.errors import TypeInUseError

    async with observer(settings, name="ganglion-types") as node:
        await settle(node, timeout)
        mapping = node.types()
        if name not in mapping:
            if not node.peers():
                error(f"no node answered on {settings.interface_name} within "
                           f"{timeout:g} s")
                return 1
            hint = hint_for_name(name, known_names(mapping))
            error(f"{name} is not an agreed type" + (f"; {hint}" if hint else ""))
            return 1
        group = mapping[name]
        try:
            node.retire(name)
        except TypeInUseError as exc:
            error(str(exc))
            return 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while name in node.types() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if name in node.types():
            error(f"the retire of {name} was not agreed within {timeout:g} s; is a "
                       f"member running (members of older versions ignore retires), or did a "
                       f"node start publishing it?")
            return 1
    click.echo(f"retired {name}; its group {group} stays reserved for it for the next "
               f"{GRACE_ENTRIES} map decisions", err=True)
    return 0
