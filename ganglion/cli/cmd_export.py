"""``ganglion export``: a log's readings as CSV (for spreadsheets), JSON lines, or InfluxDB
line protocol."""

from __future__ import annotations

import fnmatch
import functools
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "influx"]), default="csv",
              show_default=True, help="csv: a column per field (nested ones flattened); "
              "jsonl: one JSON object per reading; influx: InfluxDB line protocol "
              "(InfluxDB, QuestDB, VictoriaMetrics).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
@click.option("--wide", is_flag=True,
              help="CSV for a spreadsheet: one row per time bucket, one column per "
              "(node, sensor, field), units in the headers. See docs/logging.md.")
@click.option("--bucket", default=None, metavar="DURATION",
              help="With --wide: the time per row (45s, 5m, 1h; default 60s).")
@click.option("--agg", type=click.Choice(["mean", "min", "max", "last"]), default=None,
              help="With --wide: how a bucket's numbers make one cell (default mean; "
              "text and true/false are the bucket's last).")
def export(db: Path, patterns: tuple[str, ...], since: str | None, until: str | None, fmt: str,
           out: Path | None, wide: bool, bucket: str | None, agg: str | None) -> None:
    """Export readings from a log made by `ganglion log`.

    A --type pattern that matches no type in the log gets a one-line note on
    stderr naming the close ones ("did you mean sensors.Temperature?").
    """
    from ganglion.errors import LogDatabaseError
    from ganglion.logger.export import export_csv, export_jsonl
    from ganglion.logger.influx import export_influx
    from ganglion.logger.query import parse_time
    from ganglion.logger.schema import open_log

    try:
        since_ns = parse_time(since) if since is not None else None
        until_ns = parse_time(until) if until is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    write: Callable[..., Any] = {"csv": export_csv, "jsonl": export_jsonl,
                                 "influx": export_influx}[fmt]
    if wide:
        write = _wide_writer(fmt, bucket, agg)
    elif bucket is not None or agg is not None:
        raise click.UsageError("--bucket and --agg shape the --wide table; add --wide")
    try:
        conn = open_log(db, write=False)
    except LogDatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    _hint_patterns(conn, patterns)
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
    if fmt == "influx" and isinstance(count, tuple):
        selected, lines = count
        skipped = f" ({selected - lines} skipped: no field line protocol carries)" if (
            selected - lines) else ""
        click.echo(f"exported {lines} readings as line protocol{skipped}", err=True)
    elif isinstance(count, tuple):
        rows, count = count
        click.echo(f"exported {count} readings in {rows} rows", err=True)
    else:
        click.echo(f"exported {count} readings", err=True)


def _wide_writer(fmt: str, bucket: str | None, agg: str | None) -> Callable[..., Any]:
    """The writer of ``--wide`` with its options checked and bound."""
    from ganglion.logger.retention import parse_duration
    from ganglion.logger.wide import DEFAULT_BUCKET, export_wide

    if fmt != "csv":
        raise click.UsageError(f"--wide writes CSV; drop --format {fmt}")
    try:
        seconds = parse_duration(bucket) if bucket is not None else DEFAULT_BUCKET
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--bucket") from None
    if seconds <= 0:
        raise click.BadParameter("the bucket must be longer than 0 s", param_hint="--bucket")
    return functools.partial(export_wide, bucket=seconds, agg=agg or "mean")


def _hint_patterns(conn: sqlite3.Connection, patterns: tuple[str, ...]) -> None:
    """Say on stderr which --type patterns match no type in the log, and what is close."""
    from ganglion.cli._suggest import hint_for_pattern

    if not patterns:
        return
    try:
        logged = {name for (name,) in conn.execute("SELECT DISTINCT name FROM types")}
    except sqlite3.Error:
        return  # the export itself reports an unreadable log
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(name, pattern) for name in logged):
            continue
        hint = hint_for_pattern(pattern, logged)
        click.echo(f"ganglion export: --type {pattern} matches no type in the log"
                   + (f"; {hint}" if hint else ""), err=True)
