"""Type-name rules: dotted identifiers with at least two parts, bounded length.

Theory of operation: a type name travels in every datagram (one length byte plus
the name) and is the key of the type -> multicast-group map, so it must be short,
unambiguous and the same in every language. The rules are therefore ASCII only:

* two or more parts separated by ``.`` (``brewery.Temperature``), so every type
  lives in a namespace and ``Temperature`` alone cannot clash across projects;
* each part matches ``[A-Za-z_][A-Za-z0-9_]*``;
* at most :data:`MAX_TYPE_NAME` bytes in total.

:func:`validate_type_name` names the first rule a bad name breaks.
"""

from __future__ import annotations

import re

from ganglion.errors import TypeNameError

#: Longest type name in bytes (the wire format stores the length in one byte).
MAX_TYPE_NAME = 200

_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def validate_type_name(name: object) -> str:
    """Check that ``name`` is a valid message type name.

    Args:
        name: the candidate name.

    Returns:
        The name, unchanged, so the call can be used inline.

    Raises:
        TypeNameError: the name breaks a rule; the message says which one.
    """
    if isinstance(name, str) and len(name) <= MAX_TYPE_NAME and _NAME.fullmatch(name):
        return name
    raise TypeNameError(_explain(name))


def is_valid_type_name(name: str) -> bool:
    """Return True if ``name`` is a valid type name (no exception, for the hot path)."""
    return len(name) <= MAX_TYPE_NAME and _NAME.fullmatch(name) is not None


def _explain(name: object) -> str:
    """Say which rule ``name`` breaks."""
    if not isinstance(name, str):
        return f"a type name must be a str, not {type(name).__name__}"
    if not name:
        return "a type name must not be empty"
    if not name.isascii():
        return f"type name {name!r} must be ASCII"
    if len(name) > MAX_TYPE_NAME:
        return f"type name {name[:40]!r}... is {len(name)} bytes long; the limit is {MAX_TYPE_NAME}"
    parts = name.split(".")
    if len(parts) < 2:
        return (
            f"type name {name!r} needs a namespace: at least two dotted parts, "
            f"like 'brewery.Temperature'"
        )
    for part in parts:
        if not part:
            return f"type name {name!r} has an empty part (leading, trailing or doubled '.')"
        if not _PART.fullmatch(part):
            return (
                f"type name {name!r}: part {part!r} is not an identifier "
                f"(letters, digits and '_', not starting with a digit)"
            )
    return f"type name {name!r} is not a dotted identifier"  # pragma: no cover - unreachable
