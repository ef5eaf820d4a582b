"""The message types the harness subscribes to and forges.

Two shapes on purpose: :class:`Plain` has only the kinds the compiled receive path
reads itself (int, float, bool, str, bytes: ``ganglion.types._decodegen.PLAN_KINDS``),
so its datagrams go through ``ganglion._speedups`` where it is built; :class:`Rich`
has every other kind (lists, optionals, datetimes, enums, a nested dataclass), which
only the Python decoders read.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from ganglion.types import message

PLAIN = "fuzz.Plain"
RICH = "fuzz.Rich"


@message(PLAIN)
@dataclass
class Plain:
    """Plan kinds only: decoded in C where the extension is built."""

    value: int
    ratio: float = 0.0
    ok: bool = True
    label: str = ""
    blob: bytes = b""


class Level(enum.Enum):
    """An int enum: sent by value."""

    LOW = 1
    HIGH = 2


@dataclass
class Inner:
    """A nested dataclass: a map inside the payload."""

    depth: int
    tags: list[str] = field(default_factory=list)


@message(RICH)
@dataclass
class Rich:
    """Every kind the Python decoders read and the compiled one does not."""

    value: int
    samples: list[int] = field(default_factory=list)
    note: str | None = None
    when: dt.datetime | None = None
    level: Level = Level.LOW
    inner: Inner | None = None
