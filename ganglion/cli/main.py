"""The ``ganglion`` command: a click group; each sub-command lives in its own module.

Commands import the runtime lazily, so ``ganglion --help`` and ``ganglion keygen``
start fast and work on a machine where the network side cannot.
"""

from __future__ import annotations

import click

from ganglion.cli import (
    cmd_dashboard,
    cmd_demo,
    cmd_export,
    cmd_forward,
    cmd_info,
    cmd_install_service,
    cmd_invite,
    cmd_join,
    cmd_keygen,
    cmd_log,
    cmd_node,
    cmd_nodes,
    cmd_publish,
    cmd_replay,
    cmd_sim,
    cmd_status,
    cmd_tail,
    cmd_types,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ganglion-net")
def cli() -> None:
    """ganglion: zero-config sensor networks over UDP multicast."""


cli.add_command(cmd_node.node)
cli.add_command(cmd_keygen.keygen)
cli.add_command(cmd_sim.sim)
cli.add_command(cmd_tail.tail)
cli.add_command(cmd_demo.demo)
cli.add_command(cmd_nodes.nodes)
cli.add_command(cmd_types.types)
cli.add_command(cmd_publish.publish)
cli.add_command(cmd_install_service.install_service)
cli.add_command(cmd_log.log)
cli.add_command(cmd_export.export)
cli.add_command(cmd_forward.forward)
cli.add_command(cmd_replay.replay)
cli.add_command(cmd_info.info)
cli.add_command(cmd_invite.invite)
cli.add_command(cmd_join.join)
cli.add_command(cmd_status.status)
cli.add_command(cmd_dashboard.dashboard)


def main() -> None:
    """Entry point of the ``ganglion`` console script."""
    cli()
