"""Record: a message of a type this program has no class for.

Theory of operation: payloads are self-describing CBOR maps, so a receiver that
does not know a type (the logger, ``ganglion tail``) still reads every field.
It gets a :class:`Record`: the type name plus the fields as plain data (None,
bool, int, float, str, bytes, aware datetimes, lists and str-keyed dicts).
A Record compares by value, so tests and tools can match on it, and it can be
encoded again (a CLI can publish a type it has no class for).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Record:
    """A decoded message without a local class: a type name and a field dict.

    Args:
        type_name: the dotted type name the message was sent under.
        fields: the message's fields as plain data, keyed by field name.
    """

    __slots__ = ("fields", "type_name")

    def __init__(self, type_name: str, fields: Mapping[str, Any]) -> None:
        self.type_name = type_name
        self.fields: dict[str, Any] = dict(fields)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self.type_name == other.type_name and self.fields == other.fields

    __hash__ = None  # type: ignore[assignment]  # mutable field dict

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"Record({self.type_name!r}, {inner})" if inner else f"Record({self.type_name!r})"
