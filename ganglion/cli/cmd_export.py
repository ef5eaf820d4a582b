"""``ganglion export``: a log's readings as CSV (for spreadsheets) or JSON lines."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ganglion.cli._report import exit_on_broken_pipe


@click.command()
@click.option("--db", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The log database.")
@click.option("--type", "patterns", multiple=True, metavar="PATTERN",
              help="Only types matching this glob; repeat for several. Default: all.")
@click.option("--since", default=None, metavar="TIME",
              help="Only readings received at or after TIME (ISO 8601, epoch seconds, or 2h ago).")
@click.option("--until", default=None, metavar="TIME", help="Only readings received before TIME.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True, help="csv: a column per field (nested ones flattened); "
              "jsonl: one JSON object per reading.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
def export(db: Path, patterns: tuple[str, ...], since: str | None, until: str | None, fmt: str,
           out: Path | None) -> None:
    """Export readings from a log made by `ganglion log`."""
    from ganglion.errors import LogDatabaseError
    from ganglion.logger.export import export_csv, export_jsonl
    from ganglion.logger.query import parse_time
    from ganglion.logger.schema import open_log

    try:
        since_ns = parse_time(since) if since is not None else None
        until_ns = parse_time(until) if until is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        conn = open_log(db, write=False)
    except LogDatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    write = export_csv if fmt == "csv" else export_jsonl
    try:
        if out is None:
            count = write(conn, sys.stdout, patterns=patterns, since_ns=since_ns, until_ns=until_ns)
        else:
            with out.open("w", newline="", encoding="utf-8") as stream:
                count = write(conn, stream, patterns=patterns, since_ns=since_ns,
                              until_ns=until_ns)
    except BrokenPipeError:
        exit_on_broken_pipe()  # `ganglion export | head`: the reader has all it wanted
    except OSError as exc:
        raise click.ClickException(f"cannot write {out or 'standard output'}: {exc}") from None
    finally:
        conn.close()
    click.echo(f"exported {count} readings", err=True)
