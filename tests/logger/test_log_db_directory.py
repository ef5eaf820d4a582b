"""The log's database directory: ``ganglion log`` and the ``log`` plugin both create it
(their Writer does), and a path that cannot be a directory is a LogDatabaseError with
one clear line, from either, before any node is involved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from log_support import node_kwargs, run
from port_pairs import free_port_pair

from ganglion.cli.main import cli
from ganglion.errors import LogDatabaseError
from ganglion.logger.plugin import LogPlugin
from ganglion.logger.writer import Writer
from ganglion.node import Node


@pytest.mark.usefixtures("multicast_loopback")
def test_ganglion_log_creates_the_database_directory(tmp_path: Path) -> None:
    db = tmp_path / "new" / "deeper" / "log.db"
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GANGLION_")}
    result = CliRunner().invoke(cli, ["log", "--db", str(db), "--iface", "127.0.0.1",
                                      "--port", str(free_port_pair()), "--duration", "0.2",
                                      "--no-last"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert db.is_file()


def test_ganglion_log_names_a_directory_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    db = tmp_path / "afile" / "log.db"
    result = CliRunner().invoke(cli, ["log", "--db", str(db), "--iface", "127.0.0.1"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    assert f"cannot create {tmp_path / 'afile'}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("multicast_loopback")
def test_the_log_plugin_creates_its_database_directory(tmp_path: Path) -> None:
    db = tmp_path / "var" / "lib" / "ganglion" / "log.db"
    plugin = LogPlugin(db=db)

    async def scenario() -> None:
        async with Node(**node_kwargs(free_port_pair())) as node:
            await plugin.setup(node)
            assert plugin.writer is not None
            plugin.writer.close()

    run(scenario())
    assert db.is_file()


def test_the_log_plugin_fails_at_setup_with_a_log_error_when_the_directory_cannot_be_made(
        tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    plugin = LogPlugin(db=tmp_path / "afile" / "log.db")
    with pytest.raises(LogDatabaseError, match="cannot create"):
        run(plugin.setup(None))  # fails before it looks at the node


def test_the_writer_creates_missing_directories(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "log.db"
    Writer(db).close()
    assert db.is_file()
