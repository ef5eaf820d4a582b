""""Did you mean": type names close to the ones a user typed.

Theory of operation: a type name that nobody knows is usually a typo of one that
somebody does (``sensors.temprature``, ``sensors.Temperatur``). The known names are
whatever the command can see: the agreed map plus the classes registered in this
program (``tail``, ``publish``, ``log``), or the types in a log (``export``).
Closeness is :class:`difflib.SequenceMatcher`'s ratio on the lower-cased names, so a
wrong case scores like a right one; :data:`CUTOFF` is high because dotted names share
their namespace: ``sensors.Temperature`` and ``sensors.Pressure`` score 0.69, one
typo in a 15-character name about 0.93. A glob pattern that matches nothing is
compared with the known names and with each known namespace as ``namespace.*``.

Pure functions: the commands pass the names in.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable

__all__ = ["CUTOFF", "close_names", "hint_for_name", "hint_for_pattern", "known_names"]

#: Lowest :class:`difflib.SequenceMatcher` ratio that counts as "close".
CUTOFF = 0.85
_GLOB = frozenset("*?[")


def known_names(agreed: Iterable[str] = ()) -> set[str]:
    """Return the agreed names plus every message class registered in this program.

    Args:
        agreed: type names from the agreed map (or a log).

    Returns:
        The union, for :func:`close_names`.
    """
    from ganglion.types import registered

    return set(agreed) | {mtype.name for mtype in registered()}


def close_names(name: str, known: Iterable[str], *, limit: int = 3) -> list[str]:
    """Return up to ``limit`` known names close to ``name``, closest first.

    Args:
        name: what the user typed.
        known: the names it may be a typo of (``name`` itself is never returned).

    Returns:
        The close names; empty when none is close or ``name`` is known.
    """
    pool = {k.lower(): k for k in known if k != name}
    if name in set(known):
        return []
    found = difflib.get_close_matches(name.lower(), pool, n=limit, cutoff=CUTOFF)
    return [pool[k] for k in found]


def hint_for_name(name: str, known: Iterable[str]) -> str | None:
    """Return "did you mean X?" for an unknown ``name``, or None when known or nothing is close.

    Args:
        name: a type name the user typed.
        known: the names known here.

    Returns:
        The phrase, naming up to three candidates.
    """
    close = close_names(name, known)
    if not close:
        return None
    return "did you mean " + " or ".join(close) + "?"


def hint_for_pattern(pattern: str, known: Iterable[str]) -> str | None:
    """Return "did you mean X?" for a glob (or plain name) that matches no known name.

    Args:
        pattern: an ``fnmatch`` pattern such as ``sensors.*`` (or a plain name).
        known: the names known here.

    Returns:
        The phrase, or None when the pattern matches a known name or nothing is close.
    """
    names = set(known)
    if any(fnmatch.fnmatchcase(name, pattern) for name in names):
        return None
    if not _GLOB & set(pattern):
        return hint_for_name(pattern, names)
    spaces = {name.rpartition(".")[0] + ".*" for name in names if "." in name}
    return hint_for_name(pattern, names | spaces)
