"""``ganglion status``: a running node's own view, read from its state directory's socket."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The node's state directory, as given to `ganglion node --state-dir` "
              "(default: the user's state directory, ~/.local/state/ganglion on Linux).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The node's TOML config file, for its state_dir.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the status document as JSON (its keys are in docs/guide.md).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=60), default=3.0,
              show_default=True, help="Seconds to wait for the node's answer.")
def status(state_dir: Path | None, config_file: Path | None, as_json: bool,
           timeout: float) -> None:
    """Show what a running node on this machine sees: peers, types, streams, plugins, sensors.

    Asks the node through a socket in its state directory, so only the user it runs
    as (or root) can ask. Exits with 1 and one line of error when no node runs there.
    """
    from ganglion.errors import GanglionError, NodeNotRunningError
    from ganglion.runtime.status import request_status, status_socket_path
    from ganglion.state import default_state_dir

    try:
        if state_dir is None and config_file is not None:
            from ganglion.config import load_config

            configured = load_config(config_file).state_dir
            state_dir = Path(configured) if configured else None
        directory = (state_dir or default_state_dir()).expanduser()
        doc = request_status(status_socket_path(directory), timeout=timeout)
    except NodeNotRunningError as exc:
        raise click.ClickException(f"{exc}; start one with `ganglion node`, or name its "
                                   "--state-dir") from None
    except GanglionError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    from ganglion.cli._status_view import print_status

    print_status(doc)
