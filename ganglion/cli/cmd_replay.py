"""``ganglion replay``: publish a log's readings again, with their original timing."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled


@click.command()
@click.option("--db", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The log database.")
@click.option("--speed", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Replay speed: 1 is the original timing, 10 ten times faster, 0 no waiting.")
@click.option("--type", "patterns", multiple=True, metavar="PATTERN",
              help="Only types matching this glob; repeat for several. Default: all.")
@click.option("--since", default=None, metavar="TIME",
              help="Start at readings received at TIME (ISO 8601, epoch seconds, or 2h ago).")
@click.option("--until", default=None, metavar="TIME", help="Stop before readings received at TIME.")
@click.option("--loop", "loop_", is_flag=True, help="Start over after the last reading, until Ctrl-C.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when standard error is a terminal).")
@network_options
def replay(db: Path, speed: float, patterns: tuple[str, ...], since: str | None,
           until: str | None, loop_: bool, progress: bool | None, iface: str | None, port: int,
           key_file: Path | None, ttl: int) -> None:
    """Publish the readings of a log made by `ganglion log` again.

    The replaying node marks what it sends as replayed, and sends each reading
    with its origin (original sender, boot, sequence number and sent time) under
    the fingerprint it was logged with, so a logger stores it as the original,
    flagged replayed: a replay into a fresh log is a faithful copy, and replaying
    the same log twice into one log stores each reading once.
    """
    from ganglion.errors import GanglionError, LogDatabaseError
    from ganglion.logger.query import count_readings, parse_time
    from ganglion.logger.schema import open_log

    try:
        since_ns = parse_time(since) if since is not None else None
        until_ns = parse_time(until) if until is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    settings = resolve_network(iface, port, key_file, ttl)
    try:
        conn = open_log(db, write=False)
    except LogDatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    total = count_readings(conn, patterns=patterns, since_ns=since_ns, until_ns=until_ns)
    show = sys.stderr.isatty() if progress is None else progress

    async def main(stop: asyncio.Event) -> int:
        from ganglion.cli._observer import control_port_for
        from ganglion.logger.replay import replay as run_replay
        from ganglion.node import Node

        click.echo(f"replaying {total} readings from {db} at speed {speed:g}"
                   f"{' in a loop' if loop_ else ''} on {settings.interface_name}", err=True)
        # A throw-away member identity, like `ganglion sim`: it can get groups agreed
        # for the types it replays even where no other member runs.
        with tempfile.TemporaryDirectory(prefix="ganglion-replay-") as state_dir:
            try:
                async with Node(name="ganglion-replay", interface=settings.interface,
                                port=settings.port, control_port=control_port_for(settings.port),
                                state_dir=state_dir, key=settings.key, ttl=settings.ttl,
                                discovery=False, replay=True) as node:
                    with _progress_bar(show, total) as advance:
                        result = await run_replay(node, conn, patterns=patterns,
                                                  since_ns=since_ns, until_ns=until_ns,
                                                  speed=speed, loop=loop_, progress=advance,
                                                  stop=stop)
                    await asyncio.sleep(0.1)  # let the last datagrams leave before closing
            except (GanglionError, TimeoutError) as exc:
                error(str(exc) or "timed out waiting for a group")
                return 1
        click.echo(f"replayed {result.published} readings"
                   + (f", skipped {result.skipped}" if result.skipped else "")
                   + (f", {result.without_origin} without their origin (too large with it)"
                      if result.without_origin else ""), err=True)
        return 0

    try:
        code = run_until_signalled(main)
    finally:
        conn.close()
    sys.exit(code)


@contextlib.contextmanager
def _progress_bar(show: bool, total: int) -> Iterator[Any]:
    """A rich progress bar on standard error; yields ``advance(done)`` (None when hidden)."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("replay", total=total)

        def advance(done: int) -> None:
            if done % 50 == 0 or done == total:
                bar.update(task, completed=done)

        yield advance
