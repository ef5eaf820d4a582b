"""``ganglion forward``: ship a log's readings into PostgreSQL (docs/forwarding.md)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from ganglion.cli._report import error


@click.command()
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The log database written by `ganglion log`.")
@click.option("--to", "url", required=True, metavar="URL",
              help="postgresql://USER@HOST[:PORT]/DB")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the password from the first line of this file (else the URL, "
              "PGPASSWORD or ~/.pgpass).")
@click.option("--type", "patterns", multiple=True, metavar="PATTERN",
              help="Only types matching this glob; repeat for several. Default: all.")
@click.option("--batch", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Readings per transaction at most.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between looks at the log once caught up.")
@click.option("--max-backoff", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Longest wait between attempts to reach the database.")
@click.option("--once", is_flag=True, help="Exit when caught up (default: follow the log).")
@click.option("-v", "--verbose", is_flag=True, help="Log each reconnection and schema step.")
def forward(db: Path, url: str, password_file: Path | None, patterns: tuple[str, ...], batch: int,
            interval: float, max_backoff: float, once: bool, verbose: bool) -> None:
    """Forward the readings of a log into PostgreSQL, exactly once.

    Follows the log (Ctrl-C / SIGTERM to stop) or, with --once, exits when caught
    up. The position is kept in the log, so a restart goes on where it stopped.
    A database that cannot be reached is retried with a capped backoff; a wrong
    password, a missing database or a newer schema exit with status 1.
    """
    from ganglion.errors import LogDatabaseError
    from ganglion.forward import Forwarder, ForwardError, Target

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="ganglion forward: %(message)s")
    try:
        target = Target.parse(url, password_file)
        forwarder = Forwarder(db, target, patterns=patterns, batch=batch, interval=interval,
                              max_backoff=max_backoff)
    except (ForwardError, LogDatabaseError) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:  # a first connection: a fatal error is one line, before anything else is said
        reachable = forwarder.check(report=not once)
    except ForwardError as exc:
        forwarder.close()
        raise click.ClickException(str(exc)) from None
    if once and not reachable:
        forwarder.close()
        raise click.ClickException(f"cannot reach {target.name}; nothing forwarded")
    click.echo(f"forwarding {db} to {target.name}" + (" (until caught up)" if once else "")
               + ("" if reachable else " (unreachable now: retrying)"), err=True)
    status = 0
    try:
        forwarder.run(stop, once=once)
    except ForwardError as exc:
        error(str(exc))
        status = 1
    finally:
        stats = forwarder.stats()
        forwarder.close()
    extra = "".join(f", {count} {what}" for count, what in (
        (stats.rejected, "refused by the database"), (stats.skipped, "not matching --type"),
        (stats.outages, "outages"), (stats.attempts, "failed attempts")) if count)
    click.echo(f"forwarded {stats.forwarded} readings ({stats.inserted} new) to {target.name}; "
               f"{stats.pending} waiting in the log{extra}", err=True)
    sys.exit(status)
