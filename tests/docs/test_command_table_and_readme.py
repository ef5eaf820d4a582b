"""The guide's command table names every command, and the README's first screen keeps its promise.

A new user reads the first screen of README.md and the guide's "Command line"
table; both drifted from the CLI before (issue 20). These read them as text and
compare with the real click CLI.
"""

from __future__ import annotations

import re

import click
from doc_blocks import REPO

from ganglion.cli.main import cli

#: Lines of README.md a terminal or a repository page shows before scrolling.
FIRST_SCREEN = 45


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_the_guide_command_table_lists_every_command() -> None:
    guide = (REPO / "docs" / "guide.md").read_text(encoding="utf-8")
    table = _section(guide, "## Command line")
    listed = set(re.findall(r"^\| `ganglion ([a-z-]+)", table, flags=re.MULTILINE))
    # list_commands, not cli.commands: commands are imported only when asked for.
    commands = set(cli.list_commands(click.Context(cli)))
    assert listed == commands, (
        f"missing from the table: {sorted(commands - listed)}; "
        f"not commands: {sorted(listed - commands)}")


def test_the_readme_first_screen_says_sensors_logging_and_links_the_guides() -> None:
    first = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN])
    for page in ("docs/sensors.md", "docs/logging.md", "docs/raspberry-pi.md",
                 "docs/security.md"):
        assert f"]({page})" in first, page
    for promise in ("ganglion log", "ganglion export --wide", "--fake-hardware",
                    "ganglion status", "ganglion install-service"):
        assert promise in first, promise
    assert "ganglion dashboard" in first and "](docs/dashboard.md)" in first
    assert "](docs/dashboard.png)" in first  # the screenshot
