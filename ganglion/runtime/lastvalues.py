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
        # keyed type name -> (its MessageType, key -> entry in publishing order)
        self._slots: dict[str, tuple[MessageType, dict[Key, Entry]]] = {}
        #: Unkeyed type name -> (msg, payload, fingerprint, seq, sent_ns): one tuple, the
        #: cost of the publish path's common case (the endpoint stores into it directly).
        self.plain: dict[str, tuple[object, bytes | None, bytes, int, int]] = {}
        #: Type name -> whether it is keyed, for the names seen so far.
        self.keyed: dict[str, bool] = {}

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
        keyed = self.keyed.get(type_name)
        if keyed is None:
            keyed = self._resolve(type_name)
        if not keyed:
            old = self.plain.get(type_name)
            if old is None or not newer_only or old[3] < seq:
                self.plain[type_name] = (msg, payload, fingerprint, seq, sent_ns)
            return
        mtype, table = self._slots[type_name]
        key = self._key(mtype, msg, payload)
        if newer_only and key in table and table[key].seq >= seq:
            return
        previous = table.pop(key, None)  # re-inserted last: the dict's order is recency
        table[key] = Entry(msg, payload, fingerprint, seq, sent_ns,
                           1 if previous is None else previous.count + 1)
        if len(table) > self.max_keys:
            del table[next(iter(table))]
            self.evicted += 1

    def store_payload(self, type_name: str, key: Key, seq: int, payload: bytes) -> None:
        """Keep the payload encoded later for the entry of (type, key) numbered ``seq``."""
        plain = self.plain.get(type_name)
        if key is None and plain is not None and plain[3] == seq:
            self.plain[type_name] = (plain[0], payload, plain[2], seq, plain[4])
        slot = self._slots.get(type_name)
        entry = None if slot is None else slot[1].get(key)
        if entry is not None and entry.seq == seq:
            entry.payload = payload

    def entries(self, type_name: str) -> list[tuple[Key, Entry]]:
        """Every kept (key, entry) of a type, oldest sequence number first.

        Args:
            type_name: the type.

        Returns:
            The pairs sorted by sequence number (the order to answer in, so that a
            receiver that drops an answer older than one it has seen keeps them all).
            An unkeyed type's one entry has the key None and a ``count`` of 0 (not
            counted: the endpoint's sequence numbers count its messages).
        """
        plain = self.plain.get(type_name)
        if plain is not None:
            return [(None, Entry(*plain, count=0))]
        slot = self._slots.get(type_name)
        if slot is None:
            return []
        return sorted(slot[1].items(), key=lambda pair: pair[1].seq)

    def latest(self, type_name: str) -> Entry | None:
        """The newest entry of a type whatever its key, or None."""
        entries = self.entries(type_name)
        return entries[-1][1] if entries else None

    def counts(self) -> dict[tuple[str, Key], int]:
        """Messages kept per (type, key) still in the tables (keyed types only)."""
        return {(name, key): entry.count for name, (_mtype, table) in self._slots.items()
                for key, entry in table.items()}

    def keys(self) -> dict[str, int]:
        """Keys held per type name (1 for a type without a key)."""
        return {**{name: 1 for name in self.plain},
                **{name: len(table) for name, (_mtype, table) in self._slots.items()}}

    def _resolve(self, type_name: str) -> bool:
        """Whether ``type_name`` is keyed (from its registered type), remembered."""
        mtype = self._types(type_name)
        keyed = self.keyed[type_name] = mtype is not None and bool(mtype.key_fields)
        if keyed:
            assert mtype is not None
            self._slots[type_name] = (mtype, {})
        return keyed

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
