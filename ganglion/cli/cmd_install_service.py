"""``ganglion install-service``: write a systemd unit that runs ``ganglion node`` at boot.

Theory of operation: the unit is rendered from :data:`UNIT_TEMPLATE` with the
absolute path of *this* Python (so a virtualenv install runs from its venv), the
user the node runs as, and the node's flags. It waits for
``network-online.target`` (a node must pick its interface once the network is
up) and restarts on failure. The command only writes the file: it prints the
``systemctl`` commands to run rather than running them, so it never changes the
state of the machine's services behind the user's back (and tests can call it
with a tmp path). The group memberships the sensors need (gpio, i2c, dialout)
are printed too; docs/raspberry-pi.md explains them. Before writing, everything
that would make the node exit at start (and so crash-loop) is checked
(:mod:`ganglion.cli._service_checks`); the unit is written only when nothing is.
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys
from pathlib import Path

import click

__all__ = ["UNIT_TEMPLATE", "install_service", "render_unit"]

DEFAULT_PATH = Path("/etc/systemd/system/ganglion.service")

UNIT_TEMPLATE = """\
[Unit]
Description=ganglion sensor network node
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""


def render_unit(*, user: str, python: str, node_args: list[str]) -> str:
    """The unit file's text.

    Args:
        user: the account the node runs as.
        python: absolute path of the Python that has ganglion installed.
        node_args: extra arguments for ``ganglion node``.

    Returns:
        The unit, ready to write.

    Raises:
        ValueError: ``python`` is not absolute, or ``user`` is empty or has blanks.
    """
    if not os.path.isabs(python):
        raise ValueError(f"systemd needs an absolute ExecStart path, not {python!r}")
    if not user or any(c.isspace() for c in user):
        raise ValueError(f"not a user name: {user!r}")
    command = [python, "-m", "ganglion", "node", *node_args]
    return UNIT_TEMPLATE.format(user=user, exec_start=shlex.join(command))


@click.command("install-service")
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH,
              show_default=True, help="Where to write the unit.")
@click.option("--user", default=None,
              help="Account the node runs as (default: the user who ran sudo, else you).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Pass --config FILE to the node (made absolute).")
@click.option("--force", is_flag=True, help="Overwrite an existing unit file.")
@click.option("--allow-root", is_flag=True,
              help="Let the node run as root (refused otherwise; see docs/raspberry-pi.md).")
@click.argument("node_args", nargs=-1, type=click.UNPROCESSED)
def install_service(path: Path, user: str | None, config_file: Path | None, force: bool,
                    allow_root: bool, node_args: tuple[str, ...]) -> None:
    """Write a systemd unit running `ganglion node [NODE_ARGS]` at boot.

    The node arguments, the config file and the account are checked first (the
    node would otherwise fail at every start); nothing is started: the systemctl
    commands to enable it are printed.
    Example: sudo ganglion install-service -- --name greenhouse --gpio input:17
    """
    from ganglion.cli._service_checks import check_service

    user = user or os.environ.get("SUDO_USER") or getpass.getuser()
    args = list(node_args)
    if config_file is not None:
        args = ["--config", str(config_file.resolve()), *args]
    problems = check_service(account_name=user, allow_root=allow_root, python=sys.executable,
                             node_args=args)
    if problems:
        raise click.ClickException("the unit would not start, so it was not written:\n"
                                   + "\n".join(f"  - {p}" for p in problems))
    try:
        text = render_unit(user=user, python=sys.executable, node_args=args)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        hint = " (try with sudo)" if isinstance(exc, PermissionError) else ""
        raise click.ClickException(f"cannot write {path}: {exc.strerror}{hint}") from exc
    name = path.name
    click.echo(f"wrote {path} (runs as {user}: {shlex.join(['ganglion', 'node', *args])})")
    click.echo("Now run:")
    click.echo("  sudo systemctl daemon-reload")
    click.echo(f"  sudo systemctl enable --now {name}")
    click.echo(f"  journalctl -u {name} -f        # follow its log")
    click.echo(f"For sensors, {user} needs the device groups: "
               f"sudo usermod -aG gpio,i2c,dialout {user}")
