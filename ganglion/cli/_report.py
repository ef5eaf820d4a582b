"""One style for the CLI's error lines: click's own ("Error: ..."), on standard error.

click prints usage errors and :class:`click.ClickException` as ``Error: message``;
a command that reports a failure itself and then exits with a code of its own
uses :func:`error`, so every error line a user sees looks the same.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

import click

PREFIX = "Error: "


def error(message: str) -> None:
    """Print ``Error: message`` on standard error, as click prints its own errors."""
    click.echo(PREFIX + message, err=True)


def exit_on_broken_pipe() -> NoReturn:
    """End quietly after standard output's reader went away (``ganglion export | head``).

    Standard tools die of SIGPIPE there, silently; Python ignores SIGPIPE and raises
    ``BrokenPipeError`` instead. Standard output is pointed at /dev/null first, so
    the interpreter's last flush at exit cannot raise (and print) the same error
    again (the recipe of the Python docs, "Note on SIGPIPE", in the signal module).

    Raises:
        SystemExit: always, with 141, what a shell reports for a tool ended by SIGPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(128 + signal.SIGPIPE)
