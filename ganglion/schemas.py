"""Schemas learned from the network: a bounded cache and a throttle for asking.

Theory of operation: a node without a type's class (the logger, the MQTT bridge, a
CLI tool) asks the network with ``SchemaRequest``; every publisher of that version
answers with ``Schema`` (docs/protocol.md 7.6). What arrives is checked before it
is kept: every bound of :meth:`TypeSchema.from_plain`, and that the fingerprint is
the hash of the announced field names and wire kinds, so a schema cannot be filed
under another version's fingerprint. :class:`SchemaCache` keeps at most
``max_entries`` (type, fingerprint) pairs, least recently used evicted first, and
decides when to ask again (at most once per ``ask_seconds`` per pair), so a stream
of readings of an unknown version never becomes a stream of requests.

Pure: time is an argument; nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import collections

from ganglion import defaults
from ganglion.types import FINGERPRINT_SIZE, TypeSchema, is_valid_type_name, schema_fingerprint

__all__ = ["SchemaCache", "check_announced"]


def check_announced(schema: TypeSchema) -> None:
    """Refuse an announced schema whose name, fingerprint or fields do not add up.

    Raises:
        ValueError: saying what is wrong.
    """
    if not is_valid_type_name(schema.name):
        raise ValueError(f"invalid type name {schema.name[:80]!r}")
    if len(schema.fingerprint) != FINGERPRINT_SIZE:
        raise ValueError("the fingerprint is not 8 bytes")
    names = [f.name for f in schema.fields]
    if len(set(names)) != len(names):
        raise ValueError("a field is named twice")
    if not set(schema.key) <= set(names):
        raise ValueError("a key field is not a field")
    if schema_fingerprint(schema.canonical) != schema.fingerprint:
        raise ValueError("the fingerprint is not the hash of the announced fields")


class SchemaCache:
    """Announced schemas by (type name, fingerprint), bounded.

    Args:
        max_entries: pairs kept at most.
        ask_seconds: shortest time between two requests for one pair.
    """

    def __init__(self, *, max_entries: int = defaults.SCHEMA_CACHE_ENTRIES,
                 ask_seconds: float = defaults.SCHEMA_ASK_SECONDS) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._ask_seconds = ask_seconds
        self._entries: collections.OrderedDict[tuple[str, bytes], TypeSchema] = (
            collections.OrderedDict())
        self._newest: dict[str, bytes] = {}
        self._asked: collections.OrderedDict[tuple[str, bytes | None], float] = (
            collections.OrderedDict())
        #: ``schema_learned``, ``schema_evicted``.
        self.counts: collections.Counter[str] = collections.Counter()

    def get(self, type_name: str, fingerprint: bytes | None = None) -> TypeSchema | None:
        """The schema of this version (of the newest version learned when ``fingerprint``
        is None), or None. Only reads: safe to call from another thread."""
        fp = fingerprint if fingerprint is not None else self._newest.get(type_name)
        return None if fp is None else self._entries.get((type_name, fp))

    def put(self, schema: TypeSchema) -> bool:
        """Keep a checked schema (:func:`check_announced` first).

        Returns:
            True when it was not known before.
        """
        pair = (schema.name, schema.fingerprint)
        new = pair not in self._entries
        self._entries[pair] = schema
        self._entries.move_to_end(pair)
        self._newest[schema.name] = schema.fingerprint
        self._asked.pop(pair, None)
        self._asked.pop((schema.name, None), None)
        while len(self._entries) > self._max:
            (name, fp), _old = self._entries.popitem(last=False)
            if self._newest.get(name) == fp:
                del self._newest[name]
            self.counts["schema_evicted"] += 1
        if new:
            self.counts["schema_learned"] += 1
        return new

    def should_ask(self, type_name: str, fingerprint: bytes | None, now: float) -> bool:
        """Whether to send a request for this version now (and note that it was sent)."""
        pair = (type_name, fingerprint)
        last = self._asked.get(pair)
        if last is not None and now - last < self._ask_seconds:
            return False
        self._asked[pair] = now
        self._asked.move_to_end(pair)
        while len(self._asked) > self._max:
            self._asked.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._entries)
