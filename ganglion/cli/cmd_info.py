"""``ganglion info``: what a log holds: per type and node, count, span, rate, gaps, last value."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--db", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The log database.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(db: Path, as_json: bool) -> None:
    """Summarise a log made by `ganglion log`.

    One row per type and node, and per sensor for the sensor types (their key:
    a node with three probes has three rows).
    """
    from ganglion.errors import LogDatabaseError
    from ganglion.logger.info import format_summary, summarize, summary_json
    from ganglion.logger.schema import open_log
    from ganglion.plugins import load_installed_types

    load_installed_types()  # the sensor types, whose key fields give the per-sensor rows

    try:
        conn = open_log(db, write=False)
    except LogDatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        summary = summarize(conn, db)
    finally:
        conn.close()
    click.echo(summary_json(summary) if as_json else format_summary(summary))
