"""The ``ganglion`` command: a click group; each sub-command lives in its own module.

Commands are imported only when run (or listed by ``--help``), and import the
runtime lazily in turn, so ``ganglion --help`` and ``ganglion keygen`` start fast
and work on a machine where the network side cannot, and a long-running
``ganglion node`` does not carry the code (and the libraries: sqlite3, ctypes, ...)
of every other command in its memory.
"""

from __future__ import annotations

import importlib

from ganglion.cli._lazy_ssl import import_asyncio_without_ssl

import_asyncio_without_ssl()  # before any command imports asyncio (see the module)

import click  # noqa: E402

#: Command name -> the ``ganglion.cli`` module and the click command in it.
COMMANDS: dict[str, tuple[str, str]] = {
    "node": ("cmd_node", "node"),
    "keygen": ("cmd_keygen", "keygen"),
    "sim": ("cmd_sim", "sim"),
    "tail": ("cmd_tail", "tail"),
    "demo": ("cmd_demo", "demo"),
    "nodes": ("cmd_nodes", "nodes"),
    "types": ("cmd_types", "types"),
    "publish": ("cmd_publish", "publish"),
    "install-service": ("cmd_install_service", "install_service"),
    "log": ("cmd_log", "log"),
    "export": ("cmd_export", "export"),
    "forward": ("cmd_forward", "forward"),
    "replay": ("cmd_replay", "replay"),
    "info": ("cmd_info", "info"),
    "invite": ("cmd_invite", "invite"),
    "join": ("cmd_join", "join"),
    "status": ("cmd_status", "status"),
    "dashboard": ("cmd_dashboard", "dashboard"),
    "mqtt": ("cmd_mqtt", "mqtt"),
}


class _LazyGroup(click.Group):
    """A group that imports a command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        module, attribute = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"ganglion.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        self.add_command(command, cmd_name)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ganglion-net")
def cli() -> None:
    """ganglion: zero-config sensor networks over UDP multicast."""


def main() -> None:
    """Entry point of the ``ganglion`` console script."""
    cli()
