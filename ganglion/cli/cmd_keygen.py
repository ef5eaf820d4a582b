"""``ganglion keygen``: write a new network key file, or rotate the key in one."""

from __future__ import annotations

from pathlib import Path

import click

from ganglion.errors import KeyFileError


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@click.option("--rotate", "step", flag_value="rotate",
              help="Rotation step 1: add a new key to PATH, accepted but not yet sent with.")
@click.option("--switch", "step", flag_value="switch",
              help="Rotation step 2: send with the new key; the old one is still accepted.")
@click.option("--retire", "step", flag_value="retire",
              help="Rotation step 3: drop the old key; only the new one is accepted.")
def keygen(path: Path, force: bool, step: str | None) -> None:
    """Write a new network key (32 random bytes, mode 0600) to PATH, or rotate it.

    Give every node the same file (--key-file or GANGLION_KEY_FILE): with a key,
    every datagram is encrypted (or, with --no-encrypt, carries a MAC) and forged
    ones are dropped.

    Rotating without a gap in delivery: run --rotate, copy the file to every node
    and restart each; then --switch, copy and restart again; then --retire, copy
    and restart. At every step each node accepts what every other node sends.
    """
    from ganglion.wire import (
        generate_key_file,
        retire_key_file,
        rotate_key_file,
        switch_key_file,
    )

    try:
        if step is None:
            generate_key_file(path, force=force)
        elif force:
            raise click.UsageError("--force only applies when writing a new key file")
        elif step == "rotate":
            kid = rotate_key_file(path)
        elif step == "switch":
            kid = switch_key_file(path)
        else:
            kid = retire_key_file(path)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    if step is None:
        click.echo(f"wrote a new network key to {path} (mode 0600); copy it to every node")
    elif step == "rotate":
        click.echo(f"added key {kid.hex()} to {path}, accepted but not sent with yet. Copy the "
                   f"file to every node and restart them; then run 'ganglion keygen --switch "
                   f"{path}'.")
    elif step == "switch":
        click.echo(f"{path} now sends with key {kid.hex()} and still accepts the old one. Copy "
                   f"it to every node and restart them; then run 'ganglion keygen --retire "
                   f"{path}'.")
    else:
        click.echo(f"{path} now holds only key {kid.hex()}. Copy it to every node and restart "
                   f"them; the old key is no longer accepted.")
