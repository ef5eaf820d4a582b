"""The DNS-SD advert of a ganglion node: TXT record in, TXT record out, no I/O.

Theory of operation
-------------------
A node's DNS-SD instance (service type :data:`SERVICE_TYPE`) describes the node
in its TXT record (RFC 6763 §6), one ``key=value`` string per field:

    id=<16 hex>  name=<node name>  version=<ganglion version>  proto=1
    role=member|observer  types=<type,type,...>

Each string is at most 255 bytes (RFC 6763 §6.1). A ``types`` list too long for
one string is split over ``types0``, ``types1``, ... (whole names per string; a
type name is at most 200 bytes, so one always fits). The type strings together
are capped at :data:`TYPES_BUDGET` bytes so the record stays near RFC 6763
§6.2's 1,300-byte advice and inside one mDNS packet; names past the cap are left
out (the list is sorted, so the same ones every time) and ``types_more=1`` says
the list is incomplete. The agreed map on the control channel, not this list,
is the authority on which types exist.

:func:`parse_txt` is the only reader and it trusts nothing: a record that is too
large, lacks a key, has a bad id, name, version, role or type name raises
:class:`AdvertError`; another wire version raises :class:`IncompatibleAdvert`.
Unknown keys are ignored, so later versions may add fields.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from ganglion import __version__
from ganglion.errors import DecodeError
from ganglion.types import is_valid_type_name
from ganglion.wire import NODE_ID_SIZE

#: The DNS-SD service type every ganglion node registers (RFC 6763 §7).
SERVICE_TYPE = "_ganglion._udp.local."

#: The wire-format version advertised in the ``proto`` TXT key.
PROTO_VERSION = "1"

#: The roles a node may advertise: members count in quorums, observers do not.
ROLES = ("member", "observer")

#: Most bytes of TXT data the ``types``/``typesN`` strings may take together.
TYPES_BUDGET = 1024

#: A TXT record larger than this is refused outright (we send under 1,400).
MAX_TXT_BYTES = 2048

#: Longest node name and version advertised or accepted, in UTF-8 bytes.
MAX_NAME_BYTES = 200
MAX_VERSION_BYTES = 64

_MAX_LABEL_BYTES = 63  # one DNS label (RFC 1035 §2.3.4)
_MAX_TXT_STRING = 255  # one TXT character-string (RFC 6763 §6.1)
_TYPES_KEY = len("types99=")  # the longest key a types string may get, with its "="
_REQUIRED = ("id", "name", "version", "proto", "role")
_HEX = frozenset("0123456789abcdefABCDEF")
_UNSAFE_LABEL = re.compile(r"[\x00-\x20.\\\x7f]+")


class AdvertError(DecodeError):
    """A peer's TXT record is not a valid ganglion advert."""


class IncompatibleAdvert(AdvertError):
    """A peer's TXT record advertises a wire version this node does not speak."""


@dataclasses.dataclass(frozen=True, slots=True)
class Advert:
    """The validated TXT fields of one node's advert."""

    id: bytes
    name: str
    version: str
    role: str
    types: tuple[str, ...]
    types_complete: bool = True


def build_txt(
    *, node_id: bytes, name: str, types: Iterable[str], role: str, version: str = __version__
) -> dict[str, str]:
    """The TXT key/value pairs that advertise a node.

    Args:
        node_id: the 8-byte node id.
        name: the node name (cut at :data:`MAX_NAME_BYTES` on a character boundary).
        types: valid type names it publishes (deduplicated and sorted here).
        role: ``"member"`` or ``"observer"``.
        version: the ganglion version to advertise.

    Returns:
        An ordered dict; every ``key=value`` string is at most 255 bytes.
    """
    txt = {
        "id": node_id.hex(),
        "name": cut_utf8(name, MAX_NAME_BYTES),
        "version": cut_utf8(version, MAX_VERSION_BYTES),
        "proto": PROTO_VERSION,
        "role": role,
    }
    chunks, complete = _pack_types(sorted(set(types)))
    if len(chunks) == 1:
        txt["types"] = chunks[0]
    else:
        txt.update((f"types{i}", chunk) for i, chunk in enumerate(chunks))
    if not complete:
        txt["types_more"] = "1"
    return txt


def parse_txt(properties: Mapping[bytes, bytes | None], size: int) -> Advert:
    """Validate a peer's TXT record.

    Args:
        properties: the record's key/value pairs (zeroconf's ``ServiceInfo.properties``).
        size: the raw record's size in bytes.

    Returns:
        The validated fields.

    Raises:
        IncompatibleAdvert: ``proto`` is not :data:`PROTO_VERSION`.
        AdvertError: anything else is wrong; the message says what.
    """
    if size > MAX_TXT_BYTES:
        raise AdvertError(f"TXT record of {size} bytes (limit {MAX_TXT_BYTES})")
    txt: dict[str, str] = {}
    for raw_key, raw_value in properties.items():
        try:
            key = raw_key.decode("ascii").lower()  # keys are case-insensitive (RFC 6763 §6.4)
            value = "" if raw_value is None else raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise AdvertError(f"TXT entry {raw_key[:20]!r} is not text") from None
        txt.setdefault(key, value)
    missing = [k for k in _REQUIRED if k not in txt]
    if missing:
        raise AdvertError(f"TXT record lacks {', '.join(missing)}")
    if txt["proto"] != PROTO_VERSION:
        raise IncompatibleAdvert(f"proto={txt['proto'][:20]!r}, this node speaks {PROTO_VERSION}")
    ident, name, version, role = txt["id"], txt["name"], txt["version"], txt["role"]
    if len(ident) != 2 * NODE_ID_SIZE or not _HEX.issuperset(ident):
        raise AdvertError(f"id {ident[:40]!r} is not {2 * NODE_ID_SIZE} hex digits")
    if not _is_text(name, MAX_NAME_BYTES):
        raise AdvertError(f"bad name {name[:40]!r}")
    if not _is_text(version, MAX_VERSION_BYTES):
        raise AdvertError(f"bad version {version[:40]!r}")
    if role not in ROLES:
        raise AdvertError(f"unknown role {role[:20]!r}")
    return Advert(
        id=bytes.fromhex(ident),
        name=name,
        version=version,
        role=role,
        types=_unpack_types(txt),
        types_complete=txt.get("types_more", "0") != "1",
    )


def instance_label(name: str, node_id: bytes) -> str:
    """The DNS-SD instance label ``<name>-<id hex[:8]>``, safe as one DNS label.

    Dots, backslashes, blanks and control characters become ``-`` (a dot would
    split the label) and the name is cut so the label fits in 63 bytes.

    Args:
        name: the node name.
        node_id: the node id.

    Returns:
        The label, at most 63 UTF-8 bytes.
    """
    suffix = f"-{node_id.hex()[:8]}"
    clean = _UNSAFE_LABEL.sub("-", name).strip("-") or "ganglion"
    return cut_utf8(clean, _MAX_LABEL_BYTES - len(suffix)).rstrip("-") + suffix


def cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes without splitting a character."""
    return text.encode()[:limit].decode("utf-8", errors="ignore")


def _is_text(value: str, limit: int) -> bool:
    """A non-empty printable string of at most ``limit`` UTF-8 bytes."""
    return bool(value) and value.isprintable() and len(value.encode()) <= limit


def _pack_types(types: list[str]) -> tuple[list[str], bool]:
    """Comma-joined TXT values within the budget, and False if some names were left out."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0  # len(",".join(current))
    used = 0  # TXT bytes the finished chunks take (length byte, key, value)
    for name in types:
        extra = len(name) + (1 if current else 0)
        if current and _TYPES_KEY + size + extra > _MAX_TXT_STRING:
            chunks.append(",".join(current))
            used += 1 + _TYPES_KEY + size
            current, size, extra = [], 0, len(name)
        if used + 1 + _TYPES_KEY + size + extra > TYPES_BUDGET:
            if current:
                chunks.append(",".join(current))
            return chunks or [""], False
        current.append(name)
        size += extra
    if current or not chunks:
        chunks.append(",".join(current))
    return chunks, True


def _unpack_types(txt: Mapping[str, str]) -> tuple[str, ...]:
    """Read ``types``, or ``types0``, ``types1``, ...; refuse invalid names."""
    if "types" in txt:
        values = [txt["types"]]
    else:
        values = []
        while f"types{len(values)}" in txt:
            values.append(txt[f"types{len(values)}"])
    names = {n for value in values for n in value.split(",") if n}
    for n in names:
        if not is_valid_type_name(n):
            raise AdvertError(f"bad type name {n[:40]!r}")
    return tuple(sorted(names))
