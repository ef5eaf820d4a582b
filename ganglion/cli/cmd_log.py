"""``ganglion log``: log every reading on the network (or matching types) to SQLite."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled


@click.command()
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The SQLite database file (created, with its directory, if missing).")
@click.option("--type", "patterns", multiple=True, metavar="PATTERN",
              help="Only types matching this glob (sensors.*); repeat for several. Default: all.")
@click.option("--max-age", default="30d", show_default=True,
              help="Remove readings older than this (30d, 12h, 90m; 0 keeps all).")
@click.option("--max-size", default="1GB", show_default=True,
              help="Keep the database's used size under this (1GB, 500MB; 0: no limit).")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between commits.")
@click.option("--batch", "batch_rows", type=click.IntRange(min=1), default=5000,
              show_default=True, help="Readings that trigger a commit before --interval is over.")
@click.option("--last/--no-last", default=True, show_default=True,
              help="Fetch each publisher's latest reading at start (logged as a last value).")
@click.option("--history", "history", type=click.FloatRange(min=0.0), default=None,
              metavar="SECONDS", help="At start, ask the publishers for what they published "
              "in the last SECONDS (logged as repaired readings). Default: their history "
              "age (60 s).")
@click.option("--no-history", "no_history", is_flag=True,
              help="Do not ask for history at start (only new readings and last values).")
@click.option("--repair/--no-repair", default=True, show_default=True,
              help="Ask publishers to resend readings lost on the network (NACK repair).")
@click.option("--duration", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Stop after this many seconds (0: until Ctrl-C).")
@click.option("--forward", "forward_url", default=None, metavar="URL",
              help="Also forward the log into PostgreSQL (postgresql://USER@HOST[:PORT]/DB), "
              "from a thread of its own; see docs/forwarding.md.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --forward: the database password's file.")
@network_options
def log(db: Path, patterns: tuple[str, ...], max_age: str, max_size: str, interval: float,
        batch_rows: int, last: bool, history: float | None, no_history: bool, repair: bool,
        duration: float, forward_url: str | None,
        password_file: Path | None, iface: str | None, port: int,
        key_file: Path | None, ttl: int) -> None:
    """Log readings to an SQLite database (see docs/logging.md for its schema).

    Subscribes to every type the network has agreed on, including types agreed
    later, and commits in batches. A --type pattern that matches no agreed type
    once the map is learned gets a one-line note on stderr, with the close known
    names ("did you mean sensors.*?"); the logger keeps waiting for it. Exits non-zero, with one error line, when the
    database cannot be written (read-only file, full disk) or the writer fails
    for any other reason (logged with its cause).

    With --forward, a thread forwards what is committed into PostgreSQL as
    `ganglion forward` does; a wrong password or missing database is an error
    at start (status 1); an unreachable database is retried while logging goes on.

    Readings lost on the network are asked for again (repair; --no-repair turns it
    off) and logged with their `repaired` flag; a gap is recorded only once repair
    has given up on it. At start the logger asks the publishers for their recent
    history (--history, --no-history), so a logger started late still gets what
    they hold.
    """
    from ganglion.errors import LogDatabaseError
    from ganglion.logger.recorder import Recorder
    from ganglion.logger.retention import Retention, parse_duration, parse_size
    from ganglion.logger.writer import Writer
    from ganglion.repair import DEFAULT_LIMITS

    if no_history:
        history = 0.0
    elif history is None:
        history = DEFAULT_LIMITS.max_age
    try:
        retention = Retention(max_age=parse_duration(max_age), max_size=parse_size(max_size))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    settings = resolve_network(iface, port, key_file, ttl)
    try:
        writer = Writer(db, patterns=patterns, batch_rows=batch_rows, retention=retention)
    except LogDatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    forwarding = None
    if forward_url is not None:
        forwarding = _start_forwarding(db, forward_url, password_file, patterns, writer)
    what = ", ".join(patterns) if patterns else "every type"
    click.echo(f"logging {what} to {db} on {settings.interface_name} ({settings.interface}:"
               f"{settings.port}); commits every {interval:g} s or {batch_rows} readings; "
               f"{retention.describe()}", err=True)

    repair_line = "repair: no node"

    async def main(stop: asyncio.Event) -> int:
        nonlocal repair_line
        from ganglion.cli._observer import hint_unknown, observer

        recorder = Recorder(writer, patterns, interval=interval, last_values=last,
                            history=history)
        if duration:
            asyncio.get_running_loop().call_later(duration, stop.set)
        try:
            async with observer(settings, name="ganglion-log", repair=repair) as node:
                hints = None
                if patterns:
                    hints = asyncio.get_running_loop().create_task(hint_unknown(
                        node, patterns, command="ganglion log", patterns=True))
                try:
                    await recorder.run(node, stop)
                finally:
                    if hints is not None:
                        hints.cancel()
                    repair_line = _repair_summary(recorder.stats_at_stop or node.stats())
        except LogDatabaseError as exc:
            error(str(exc))
            return 1
        finally:
            await asyncio.to_thread(writer.close)
            if forwarding is not None:
                await asyncio.to_thread(forwarding.stop)
        if writer.error is not None:
            error(str(writer.error))
            return 1
        stats = writer.stats()
        extra = "".join(f", {count} {what}" for count, what in (
            (stats.rejected, "rejected"), (stats.refused, "refused over budget"),
            (stats.evicted, "cache evictions")) if count)
        click.echo(f"logged {stats.written} readings to {db} ({stats.dropped} dropped, "
                   f"{stats.gaps} gaps seen, {stats.missing} readings in them, "
                   f"{stats.repaired} repaired{extra})", err=True)
        click.echo(repair_line, err=True)
        if forwarding is not None:
            sent = forwarding.forwarder.stats()
            click.echo(f"forwarded {sent.forwarded} readings to {forwarding.forwarder.target.name}"
                       f" ({sent.pending} waiting in the log)", err=True)
            if forwarding.error is not None:
                error(str(forwarding.error))
                return 1
        return 0

    sys.exit(run_until_signalled(main))


def _repair_summary(stats: Any) -> str:
    """One line of a node's repair counters (``node.stats()``), summed over its streams."""
    totals = dict.fromkeys(("repaired", "repair_requests_sent", "repair_requests_suppressed",
                            "permanently_lost"), 0)
    for stream in stats.endpoint.streams.values():
        for name in totals:
            totals[name] += getattr(stream, name, 0)
    return (f"repair: {totals['repaired']} repaired, {totals['repair_requests_sent']} requests "
            f"sent, {totals['repair_requests_suppressed']} suppressed, "
            f"{totals['permanently_lost']} permanently lost")


def _start_forwarding(db: Path, url: str, password_file: Path | None,
                      patterns: tuple[str, ...], writer: Any) -> Any:
    """Check the target (a fatal error ends the command now) and start the forwarder thread.

    An unreachable database is not an error: readings wait in the log.
    """
    from ganglion.errors import LogDatabaseError
    from ganglion.forward import Forwarder, ForwardError, ForwarderThread, Target

    try:
        target = Target.parse(url, password_file)
        forwarder = Forwarder(db, target, patterns=patterns)
    except (ForwardError, LogDatabaseError) as exc:
        writer.close()
        raise click.ClickException(str(exc)) from None
    try:
        reachable = forwarder.check()
    except ForwardError as exc:
        forwarder.close()
        writer.close()
        raise click.ClickException(str(exc)) from None
    click.echo(f"forwarding to {target.name}"
               + ("" if reachable else " (unreachable now: readings wait in the log)"), err=True)
    thread = ForwarderThread(forwarder)
    thread.start()
    return thread
