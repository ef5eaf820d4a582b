"""What a publisher keeps of its latest messages: one per (type, key), bounded.

Theory of operation: a late joiner asks every publisher of a type for its latest
message (docs/protocol.md, section 7). For a type without a key that is one
message; for a keyed type (:attr:`MessageType.key_fields
<ganglion.types.MessageType.key_fields>`, e.g. the ``sensor`` of
``sensors.Temperature``) it is the latest message *of each key*, so a node with
three probes answers with three readings, not whichever probe was read last.

:class:`LastValues` holds, per type name, a table from key to :class:`Entry`
(the message object, its payload once encoded, fingerprint, sequence number,
send time, and how many messages of that key were kept). A type without a key
has one entry under the key None. A keyed table holds at most ``max_keys``
keys; a new key beyond that evicts the least recently published one, counted in
:attr:`LastValues.evicted`, so a sender that puts a counter or a timestamp in a
key field costs bounded memory. A message whose key cannot be read (a payload
that does not decode, a key value that does not hash) is kept under the key
None, as an unkeyed type's would be.

Pure: no clock, no I/O; the endpoint passes in what it published.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from ganglion.types import MessageType, lookup

__all__ = ["DEFAULT_MAX_KEYS", "Entry", "Key", "LastValues"]

_log = logging.getLogger(__name__)

#: Keys kept per type, at most (least recently published evicted first).
DEFAULT_MAX_KEYS = 256

#: A key: the key fields' values in order, or None for a type without a key.
Key = tuple[Any, ...] | None


@dataclasses.dataclass(slots=True)
class Entry:
    """The latest message of one (type, key).

    Attributes:
        msg: the object published (None when only its payload was kept).
        payload: its encoded payload, or None until something needs it.
        fingerprint: the schema fingerprint it was (or will be) sent under.
        seq: its sequence number in the type's stream.
        sent_ns: its send timestamp.
        count: messages of this (type, key) kept since the endpoint started.
    """

    msg: object
    payload: bytes | None
    fingerprint: bytes
    seq: int
    sent_ns: int
    count: int = 1


class LastValues:
    """The latest message per (type, key) of one publisher.

    Args:
        max_keys: keys kept per keyed type (>= 1).
        types: resolves a type name to its registered type (for its key fields);
            the default registry by default.

    Raises:
        ValueError: ``max_keys`` is below 1.
    """

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS,
                 types: Callable[[str], MessageType | None] = lookup) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.max_keys = max_keys
        #: Entries evicted from a full keyed table, in all.
        self.evicted = 0
        self._types = types
        # type name -> (its MessageType if keyed else None, key -> entry in publishing order)
        self._slots: dict[str, tuple[MessageType | None, dict[Key, Entry]]] = {}

    def keep(self, type_name: str, msg: object, payload: bytes | None, fingerprint: bytes,
             seq: int, sent_ns: int, *, newer_only: bool = False) -> None:
        """Record ``msg`` as the latest of its (type, key).

        Args:
            type_name: its type name.
            msg: the object published, or None when only ``payload`` is at hand
                (the key is then read from the payload).
            payload: its payload if encoded already, else None.
            fingerprint: the fingerprint it is sent under.
            seq: its sequence number.
            sent_ns: its send timestamp.
            newer_only: keep it only if no newer message of its key is kept (for
                messages released late, after waiting for their type's group).
        """
        slot = self._slots.get(type_name)
        if slot is None:
            slot = self._slot(type_name)
        mtype, table = slot
        if mtype is None:
            old = table.get(None)
            # The common, unkeyed case: one entry, updated in place.
            if old is not None and newer_only and old.seq >= seq:
                return
            if old is None:
                table[None] = Entry(msg, payload, fingerprint, seq, sent_ns)
            else:
                old.msg, old.payload, old.fingerprint, old.seq, old.sent_ns = (
                    msg, payload, fingerprint, seq, sent_ns)
                old.count += 1
            return
        key = self._key(mtype, msg, payload)
        if newer_only and key in table and table[key].seq >= seq:
            return
        old = table.pop(key, None)  # re-inserted last: the dict's order is recency
        table[key] = Entry(msg, payload, fingerprint, seq, sent_ns,
                           1 if old is None else old.count + 1)
        if len(table) > self.max_keys:
            del table[next(iter(table))]
            self.evicted += 1

    def entries(self, type_name: str) -> list[tuple[Key, Entry]]:
        """Every kept (key, entry) of a type, oldest sequence number first.

        Args:
            type_name: the type.

        Returns:
            The pairs sorted by sequence number (the order to answer in, so that a
            receiver that drops an answer older than one it has seen keeps them all).
        """
        slot = self._slots.get(type_name)
        if slot is None:
            return []
        return sorted(((k, e) for k, e in slot[1].items()),
                      key=lambda pair: pair[1].seq)

    def latest(self, type_name: str) -> Entry | None:
        """The newest entry of a type whatever its key, or None."""
        slot = self._slots.get(type_name)
        if slot is None or not slot[1]:
            return None
        return max(slot[1].values(), key=lambda e: e.seq)

    def counts(self) -> dict[tuple[str, Key], int]:
        """Messages kept per (type, key) still in the tables (keyed types only)."""
        return {(name, key): entry.count
                for name, (mtype, table) in self._slots.items() if mtype is not None
                for key, entry in table.items()}

    def keys(self) -> dict[str, int]:
        """Keys held per type name (1 for a type without a key)."""
        return {name: len(table) for name, (_mtype, table) in self._slots.items()}

    def _slot(self, type_name: str) -> tuple[MessageType | None, dict[Key, Entry]]:
        mtype = self._types(type_name)
        slot = (mtype if mtype is not None and mtype.key_fields else None,
                dict[Key, Entry]())
        self._slots[type_name] = slot
        return slot

    @staticmethod
    def _key(mtype: MessageType, msg: object, payload: bytes | None) -> Key:
        """``msg``'s key, read from the object or else the payload; None if unreadable."""
        try:
            if msg is not None:
                key = mtype.key_of(msg)
            elif payload is not None:
                key = mtype.key_of(_payload_map(payload))
            else:
                return None
            hash(key)
        except Exception:  # a foreign payload, an unhashable value: one shared entry
            _log.debug("no key for a %s message", mtype.name, exc_info=True)
            return None
        return key


def _payload_map(payload: bytes) -> dict[str, Any]:
    """A payload's top-level field map (raw CBOR items; key fields are scalars)."""
    import cbor2

    fields = cbor2.loads(payload)
    if not isinstance(fields, dict):
        raise ValueError("a payload is a CBOR map")
    return fields
