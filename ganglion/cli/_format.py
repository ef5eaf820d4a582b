"""One-line human formatting of readings for the CLI."""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from ganglion.types import as_dict, type_name_of


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 16 else f"<{len(value)} bytes>"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


class SenderNames:
    """How the CLI names senders: the node's name where it is known, its id otherwise.

    Names come from the peers a node has heard (``node.heard()``), looked up again for
    an unknown sender at most once a second. A name two nodes share gets the short id
    too (``cellar (3fa1c2d0)``), so a line always says which node it was.
    """

    def __init__(self, peers: Callable[[], Iterable[Any]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._peers = peers
        self._clock = clock
        self._names: dict[bytes, str] = {}
        self._shared: set[str] = set()
        self._looked_at = -1.0

    def name(self, sender: bytes) -> str | None:
        """The sender's name, or None while none is known."""
        if sender not in self._names and self._clock() - self._looked_at >= 1.0:
            self._looked_at = self._clock()
            self._names.update({p.id: p.name for p in self._peers() if p.name})
            uses = collections.Counter(self._names.values())
            self._shared = {n for n, times in uses.items() if times > 1}
        return self._names.get(sender)

    def label(self, sender: bytes) -> str:
        """``name``, ``name (id8)`` for a name two nodes share, or ``id8`` without one."""
        name = self.name(sender)
        if name is None:
            return sender.hex()[:8]
        return f"{name} ({sender.hex()[:8]})" if name in self._shared else name


def format_reading(msg: object, *, sender: str, seq: int | None = None,
                   sent_ns: int | None = None) -> str:
    """Format one message as ``time  sender  type #seq  field=value ...``.

    Args:
        msg: a registered message object or a generic Record.
        sender: how to name the sender (node name or short node id).
        seq: the message's sequence number, when known.
        sent_ns: the sender's timestamp in ns since the epoch; now when None.

    Returns:
        A single line without a newline.
    """
    when = dt.datetime.now() if sent_ns is None else dt.datetime.fromtimestamp(sent_ns / 1e9)
    fields = " ".join(f"{k}={_value(v)}" for k, v in as_dict(msg).items())
    seq_text = f" #{seq}" if seq is not None else ""
    return f"{when:%H:%M:%S.%f}"[:-3] + f"  {sender:<12} {type_name_of(msg)}{seq_text}  {fields}"
