"""``ganglion keygen``: write a new network key file."""

from __future__ import annotations

from pathlib import Path

import click

from ganglion.errors import KeyFileError


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def keygen(path: Path, force: bool) -> None:
    """Write a new network key (32 random bytes, mode 0600) to PATH.

    Give every node the same file (--key-file or GANGLION_KEY_FILE): with a key,
    every datagram carries a MAC and unsigned or forged ones are dropped.
    """
    from ganglion.wire import generate_key_file

    try:
        generate_key_file(path, force=force)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote a new network key to {path} (mode 0600); copy it to every node")
