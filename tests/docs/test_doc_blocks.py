"""The extraction the doc tests rely on: fences, directives, command lines, CLI parsing."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from doc_blocks import parse_blocks
from doc_shell import command_lines, parse_ganglion

PAGE = """# A page

<!-- not-run: needs a Pi -->
```sh
ls /sys/bus/w1
```

text between

<!-- continues -->
<!-- env: A=1 -->
<!-- env: B=2 -->
```python
print(1)
```

```
output
```
"""


def test_blocks_come_with_their_language_line_and_directives() -> None:
    blocks = parse_blocks(Path("page.md"), PAGE)
    assert [(b.line, b.lang) for b in blocks] == [(4, "sh"), (13, "python"), (17, "")]
    assert blocks[0].directive("not-run") == "needs a Pi"
    assert blocks[0].text == "ls /sys/bus/w1\n"
    assert blocks[1].directive("continues") == ""
    assert blocks[1].directives["env"] == ["A=1", "B=2"]
    assert blocks[2].directives == {}


def test_an_unknown_directive_or_an_open_fence_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown directive 'not-ran'"):
        parse_blocks(Path("p.md"), "<!-- not-ran: x -->\n```sh\nls\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks(Path("p.md"), "```sh\nls\n")


def test_shell_lines_split_into_commands() -> None:
    text = ("make demo    # a comment\nganglion types; ganglion nodes\n"
            "sudo FOO=1 ganglion log \\\n  --db x.db\n"
            "sqlite3 -csv b.db \"SELECT 1,\n  2\" > out.csv\n")
    assert command_lines(text, console=False) == [
        ["make", "demo"], ["ganglion", "types"], ["ganglion", "nodes"],
        ["ganglion", "log", "--db", "x.db"], ["sqlite3", "-csv", "b.db", "SELECT 1,\n  2"]]
    assert command_lines("$ ganglion nodes\nsome output\n", console=True) == [
        ["ganglion", "nodes"]]


def test_ganglion_lines_are_checked_by_the_real_cli() -> None:
    ctx = parse_ganglion(["node", "--name", "x", "--sim", "temperature"])
    assert ctx.params["name"] == "x" and ctx.params["sim_kinds"] == ("temperature",)
    with pytest.raises(click.UsageError, match="no such command 'nodez'"):
        parse_ganglion(["nodez"])
    with pytest.raises(click.BadParameter):
        parse_ganglion(["node", "--sim", "temprature"])
    with pytest.raises(click.NoSuchOption):
        parse_ganglion(["tail", "sensors.Temperature", "--bogus"])
