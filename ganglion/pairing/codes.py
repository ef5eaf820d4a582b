"""Invite codes: ``7-guitarist-reindeer-molecule`` made, printed, typed back and checked.

Theory of operation (after magic-wormhole's codes): a code is a *nameplate* (a
small number that tells concurrent invites on one LAN apart and is advertised in
the clear over mDNS) followed by words from the PGP word list, alternating
between its three-syllable and two-syllable halves. The whole code, nameplate
included, is the SPAKE2 password; only the words are secret. Three words carry
24 bits: with SPAKE2 an attacker gets one guess per exchange and an invite
allows three failed exchanges (:mod:`ganglion.pairing.invitation`), so a guess
wins with probability 3 / 2^24, about one in 5.6 million, and never offline.

Parsing forgives what people do when they type a code: upper case, spaces
instead of hyphens, stray whitespace. A misspelt word is reported with the
nearest words at that position before any traffic is sent, so a typo never
costs one of the invite's three attempts.

Randomness comes from the caller (an ``entropy`` function, :func:`os.urandom`
by default) so tests can make a known code.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable
from typing import Final

from ganglion.errors import InviteCodeError
from ganglion.pairing._words import EVEN, ODD

__all__ = ["MAX_NAMEPLATE", "WORDS", "InviteCode", "make_code", "parse_code"]

#: Words in a code ``ganglion invite`` makes (8 bits each).
WORDS: Final = 3

#: Nameplates are 1..MAX_NAMEPLATE: short to type, rarely equal on one LAN.
MAX_NAMEPLATE: Final = 99

#: The fewest and most words a typed code may have (codes from other versions).
_MIN_WORDS: Final = 2
_MAX_WORDS: Final = 8

_ODD_INDEX: Final = {w: i for i, w in enumerate(ODD)}
_EVEN_INDEX: Final = {w: i for i, w in enumerate(EVEN)}
_SEPARATORS: Final = re.compile(r"[\s\-_]+")


@dataclasses.dataclass(frozen=True, slots=True)
class InviteCode:
    """One invite code.

    Attributes:
        nameplate: the public number (1..65535 on the wire; we make 1..99).
        words: the secret words, lower case, odd-list word first.
    """

    nameplate: int
    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 0 < self.nameplate < 1 << 16:
            raise InviteCodeError(f"a nameplate is 1..65535, not {self.nameplate}")
        if not _MIN_WORDS <= len(self.words) <= _MAX_WORDS:
            raise InviteCodeError(
                f"a code has {_MIN_WORDS} to {_MAX_WORDS} words, not {len(self.words)}")
        for position, word in enumerate(self.words):
            if word not in _list_at(position)[1]:
                raise InviteCodeError(f"{word!r} is not a code word at position {position + 1}")

    def __str__(self) -> str:
        return "-".join((str(self.nameplate), *self.words))

    @property
    def password(self) -> bytes:
        """The SPAKE2 password: the canonical spelling of the whole code."""
        return str(self).encode("ascii")


def make_code(entropy: Callable[[int], bytes] = os.urandom, *, words: int = WORDS) -> InviteCode:
    """Make a fresh random code.

    Args:
        entropy: returns n random bytes (:func:`os.urandom`; a fixed source in tests).
        words: how many words (8 bits each).

    Returns:
        The code.

    Raises:
        InviteCodeError: ``words`` is outside 2..8.
    """
    if not _MIN_WORDS <= words <= _MAX_WORDS:
        raise InviteCodeError(f"a code has {_MIN_WORDS} to {_MAX_WORDS} words, not {words}")
    raw = entropy(words + 1)
    nameplate = 1 + raw[0] % MAX_NAMEPLATE  # a slight bias is harmless: it is public
    chosen = tuple(_list_at(i)[0][raw[i + 1]] for i in range(words))
    return InviteCode(nameplate, chosen)


def parse_code(text: str) -> InviteCode:
    """Read a code as a person typed it.

    Args:
        text: e.g. ``"7-guitarist-reindeer-molecule"``, ``" 7 Guitarist reindeer MOLECULE "``.

    Returns:
        The code, in canonical form.

    Raises:
        InviteCodeError: no nameplate, too few or many words, or a word that is
            not in the list at its position; the message suggests the nearest words.
    """
    parts = [p for p in _SEPARATORS.split(text.strip().lower()) if p]
    if not parts or not parts[0].isdigit() or len(parts[0]) > 5:
        raise InviteCodeError(
            "an invite code starts with its number, like 7-guitarist-reindeer-molecule; "
            f"got {text!r}")
    nameplate, words = int(parts[0]), tuple(parts[1:])
    if not _MIN_WORDS <= len(words) <= _MAX_WORDS:
        raise InviteCodeError(
            f"an invite code has a number and {WORDS} words, like 7-guitarist-reindeer-molecule; "
            f"got {len(words)} words")
    for position, word in enumerate(words):
        names, index = _list_at(position)
        if word not in index:
            raise InviteCodeError(_misspelt(word, position, names))
    return InviteCode(nameplate, words)


def _list_at(position: int) -> tuple[tuple[str, ...], dict[str, int]]:
    """The word list (and its index) used at ``position``: odd list first, as in PGP."""
    return (ODD, _ODD_INDEX) if position % 2 == 0 else (EVEN, _EVEN_INDEX)


def _misspelt(word: str, position: int, names: tuple[str, ...]) -> str:
    """The message for an unknown word, naming the closest words at that position."""
    if word in _list_at(position + 1)[1]:
        hint = "; is a word missing or two words swapped?"
    else:
        close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{word!r} is not a word of an invite code at position {position + 1}{hint}"
