"""Splitting the shell examples of the docs into command lines, and dry-parsing
``ganglion`` command lines with the real click CLI.

Pure: no process is started here (the doc tests decide what to run).
"""

from __future__ import annotations

import re
import shlex

import click

_SEPARATORS = {";", "&&", "||", "|", "&"}
_REDIRECTS = {">", ">>", "<"}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def command_lines(text: str, *, console: bool) -> list[list[str]]:
    """The commands of a ``sh`` block (every line) or a ``console`` block (``$`` lines).

    Continuation lines (a trailing backslash, or an open quote) are joined,
    comments dropped, and a line is split at ``;``, ``&&``, ``||`` and ``|``.
    Leading ``NAME=value`` assignments and ``sudo``/``env`` are dropped too: they
    change who runs a command, not what it is. Output redirections are dropped.

    Args:
        text: the block's text.
        console: True for a console block (commands start with ``$ ``).

    Returns:
        One argv list per command.

    Raises:
        ValueError: a line shlex cannot split (an unclosed quote at the end).
    """
    lines = text.splitlines()
    if console:
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands: list[list[str]] = []
    pending = ""
    for line in lines:
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        try:
            tokens = _split(pending)
        except ValueError:
            pending += "\n"  # an open quote: the command goes on on the next line
            continue
        pending = ""
        commands.extend(_commands(tokens))
    if pending.strip():
        raise ValueError(f"cannot split {pending!r}")
    return commands


def parse_ganglion(argv: list[str]) -> click.Context:
    """Parse ``ganglion ARGS`` as the real CLI would, without running the command.

    Every option and argument is converted and checked by its click type (a path
    that must exist must exist, relative to the working directory).

    Args:
        argv: the arguments after ``ganglion``.

    Returns:
        The sub-command's context, with ``params`` filled in.

    Raises:
        click.ClickException: what ``ganglion`` would say (unknown command or option,
            a bad value).
    """
    from ganglion.cli.main import cli

    group: click.Group = cli
    ctx = click.Context(cli, info_name="ganglion")
    args = list(argv)
    while True:  # down through sub-groups, if any, to the command
        if not args or args[0].startswith("-"):
            raise click.UsageError(f"no command in {shlex.join(argv)!r}", ctx)
        name, args = args[0], args[1:]
        sub = group.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no such command {name!r}", ctx)
        if not isinstance(sub, click.Group):
            return sub.make_context(name, args, parent=ctx)
        group, ctx = sub, click.Context(sub, info_name=name, parent=ctx)


def _split(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _commands(tokens: list[str]) -> list[list[str]]:
    commands: list[list[str]] = []
    current: list[str] = []
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in _SEPARATORS:
            commands.append(current)
            current = []
        elif token in _REDIRECTS:
            skip_next = True
        else:
            current.append(token)
    commands.append(current)
    return [_strip_prefix(c) for c in commands if c]


def _strip_prefix(argv: list[str]) -> list[str]:
    while argv and (argv[0] in ("sudo", "env") or _ENV_ASSIGNMENT.match(argv[0])):
        argv = argv[1:]
    return argv
