"""``ganglion tail``: print every reading of the given types as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._run import run_until_signalled


def reading_json(msg: Any, info: Any, name: str | None = None) -> str:
    """One reading as a JSON line: type, node (+ node_name when known), seq, sent_ns, data
    (+ flags when set)."""
    from ganglion.types import as_dict

    obj: dict[str, Any] = {"type": info.type_name, "node": info.sender.hex(), "seq": info.seq,
                           "sent_ns": info.sent_ns, "data": as_dict(msg)}
    if name is not None:
        obj["node_name"] = name
    if info.last_value:
        obj["last_value"] = True
    if not info.clock_synced:
        obj["clock_synced"] = False
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


@click.command()
@click.argument("types", nargs=-1, required=True)
@click.option("--count", type=click.IntRange(min=0), default=0, show_default=True,
              help="Exit after this many readings (0: until Ctrl-C).")
@click.option("--timeout", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Exit after this many seconds (0: no limit).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per reading.")
@click.option("--last/--no-last", default=True, show_default=True,
              help="Start with each publisher's latest reading, one per sensor of a keyed "
                   "type (marked as such).")
@network_options
def tail(types: tuple[str, ...], count: int, timeout: float, as_json: bool, last: bool,
         iface: str | None, port: int, key_file: Path | None, ttl: int) -> None:
    """Print readings of TYPES (dotted type names) as they arrive.

    Types this program has no class for are printed from their self-describing
    payload, field by field. A name no node has agreed on yet gets a one-line note
    on stderr, with the known names close to it ("did you mean ..."); tail keeps
    waiting for it. Exits non-zero when --count readings did not arrive within
    --timeout.
    """
    from ganglion.cli._format import SenderNames, format_reading
    from ganglion.cli._observer import hint_unknown, observer
    from ganglion.cli._report import exit_on_broken_pipe
    from ganglion.errors import TypeNameError
    from ganglion.plugins import load_installed_types
    from ganglion.runtime.subscription import MessageInfo
    from ganglion.types import validate_type_name

    load_installed_types()  # installed types (the sensors') decode to their classes

    for name in types:
        try:
            validate_type_name(name)
        except TypeNameError as exc:
            raise click.BadParameter(str(exc), param_hint="TYPES") from exc
    settings = resolve_network(iface, port, key_file, ttl)

    pipe_closed = False

    async def main(stop: asyncio.Event) -> int:
        seen = 0
        senders: SenderNames | None = None

        def show(msg: Any, info: MessageInfo) -> None:
            nonlocal seen, pipe_closed
            if (count and seen >= count) or pipe_closed or senders is None:
                return  # more readings of the same drain, or datagram, after the last one
            try:
                if as_json:
                    click.echo(reading_json(msg, info, senders.name(info.sender)))
                else:
                    line = format_reading(msg, sender=senders.label(info.sender), seq=info.seq,
                                          sent_ns=info.sent_ns)
                    click.echo(line + ("  (last value)" if info.last_value else ""))
                sys.stdout.flush()
            except BrokenPipeError:  # `ganglion tail ... | head`: the reader has enough
                pipe_closed = True
                stop.set()
                return
            seen += 1
            if count and seen >= count:
                stop.set()

        async with observer(settings, name="ganglion-tail") as node:
            senders = SenderNames(node.heard)
            for name in types:
                node.subscribe(name, callback=show)
            click.echo(f"listening for {', '.join(types)} on {settings.interface_name}", err=True)
            loop = asyncio.get_running_loop()
            helpers = [loop.create_task(hint_unknown(node, types, command="ganglion tail"))]
            if last:
                helpers.append(loop.create_task(_ask_last(node, types, stop)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=timeout or None)
            # Both use the node: they end here, before it closes, or one could wake
            # during close() and ask a node that is half shut (a race seen under load).
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        return 0 if (count == 0 or seen >= count) else 1

    code = run_until_signalled(main)
    if pipe_closed:
        exit_on_broken_pipe()
    sys.exit(code)


async def _ask_last(node: Any, types: tuple[str, ...], stop: asyncio.Event) -> None:
    """Ask for last values once each type's group is known (learned by catch-up)."""
    pending = set(types)
    for _ in range(100):  # bounded: 10 s
        for name in sorted(pending):
            if name in node.types():
                node.request_last_values(name)
                pending.discard(name)
        if not pending or stop.is_set():
            return
        await asyncio.sleep(0.1)
