"""One-line human formatting of readings for the CLI."""

from __future__ import annotations

import datetime as dt
import json
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
