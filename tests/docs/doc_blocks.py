"""The fenced code blocks of README.md and docs/*.md, with the directives before them.

Theory of operation: every fenced block of the user-facing markdown is an example a
reader may copy, so the doc tests run each one by its language (see
``test_doc_examples.py``). What a block needs beyond its own text is said in the
markdown itself, in HTML comments on the lines just before the block (invisible
when rendered):

- ``<!-- not-run: REASON -->``: the block is not run (real hardware, ``sudo``,
  systemd, traffic off this machine); the tests list it as skipped with REASON.
- ``<!-- continues -->``: a python block that uses names the previous python
  block of the same page defines; that block runs first, in the same program.
- ``<!-- with-node: ARGS -->``: a ``ganglion node --iface lo ARGS`` runs, with the
  default state directory, while the block runs (bus clients need one).
- ``<!-- env: NAME=VALUE -->``: an environment variable for the block.
- ``<!-- file: PATH -->``: the block is the content of PATH in a user's own
  package (a plugin module, its ``pyproject.toml``); the tests install it, as
  ``pip install`` would, for the blocks that use it.

A block without a language is refused, so nothing new slips through unchecked:
sample output and diagrams say ``text``. Pure parsing, no I/O beyond reading the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<lang>[^`\s]*)\s*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*(?P<key>[a-z-]+)\s*(?::\s*(?P<value>.*?))?\s*-->\s*$")
DIRECTIVES = frozenset({"not-run", "continues", "with-node", "env", "file"})


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its directives."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directives: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """``docs/config.md:12``: the block's place, relative to the repository."""
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def directive(self, key: str) -> str | None:
        """The value of the last ``key`` directive, or None without one."""
        values = self.directives.get(key)
        return values[-1] if values else None


def doc_files() -> list[Path]:
    """README.md and every page of docs/, in a stable order."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def parse_blocks(path: Path, text: str | None = None) -> list[Block]:
    """Every fenced block of one markdown file.

    Args:
        path: the file (read unless ``text`` is given).
        text: the file's content, for tests of this parser.

    Returns:
        The blocks in file order.

    Raises:
        ValueError: an unclosed fence, or an unknown directive (named with its line).
    """
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, fence, indent = i, match["fence"], len(match["indent"])
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: the fence is never closed")
        blocks.append(Block(path, start + 1, match["lang"], "\n".join(body) + "\n",
                            _directives_before(path, lines, start)))
        i += 1
    return blocks


def all_blocks() -> list[Block]:
    """The blocks of every documentation file."""
    return [block for path in doc_files() for block in parse_blocks(path)]


def _directives_before(path: Path, lines: list[str], start: int) -> dict[str, list[str]]:
    """The directive comments on the lines right above a fence (blank lines end them)."""
    found: dict[str, list[str]] = {}
    j = start - 1
    while j >= 0:
        match = _DIRECTIVE.match(lines[j])
        if match is None:
            break
        if match["key"] not in DIRECTIVES:
            raise ValueError(f"{path}:{j + 1}: unknown directive {match['key']!r}; "
                             f"known: {', '.join(sorted(DIRECTIVES))}")
        found.setdefault(match["key"], []).insert(0, match["value"] or "")
        j -= 1
    return found
