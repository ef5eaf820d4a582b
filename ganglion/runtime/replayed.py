"""A reading to send again as replayed, with where it first came from.

``ganglion replay`` publishes a :class:`ReplayedRecord` for each logged reading.
The endpoint sends it like any :class:`~ganglion.types.Record`, but under the
reading's original schema fingerprint (its fields are that version's, whatever
class this node has), with the :class:`~ganglion.wire.Origin` after its fields
(docs/protocol.md, section 4.4). Only an endpoint made with ``replay=True``
sends one: the origin means something only under the replayed flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ganglion.types import Record
from ganglion.wire import Origin

__all__ = ["ReplayedRecord"]


class ReplayedRecord(Record):
    """A Record replayed from a log: its fields, original fingerprint and origin.

    Args:
        type_name: the dotted type name.
        fields: the reading's fields as plain data.
        origin: who sent it first, under which number, and when.
        fingerprint: the 8-byte schema fingerprint it was logged under, or None
            when the log does not know it (then it is sent as a Record is).
    """

    __slots__ = ("fingerprint", "origin")

    def __init__(self, type_name: str, fields: Mapping[str, Any], *, origin: Origin,
                 fingerprint: bytes | None = None) -> None:
        super().__init__(type_name, fields)
        self.origin = origin
        self.fingerprint = fingerprint
