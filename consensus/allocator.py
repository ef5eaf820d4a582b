"""Which multicast groups may carry a message type, and which one a type gets.

Theory of operation: data groups live in the administratively scoped block
``239.255.0.0/16`` (RFC 2365 section 6.1). The first ``/24`` is reserved for ganglion's
own control traffic. Addresses other software joins by default are never handed out,
so a ganglion type never shares a group with SSDP, SLP or LCM traffic. Every ``x.y.z.0``
and ``x.y.z.255`` address is also excluded: nothing requires it for multicast, but some
switches and home routers treat addresses that *look* like network or broadcast
addresses specially (and some firewall rule sets drop them), so avoiding them costs
about 0.8 % of the space and removes a class of "works on my LAN only" bugs.

The first choice for a type is a hash of its name (BLAKE2b, not ``hash()``, so it is the
same on every node and every Python run) into the assignable range; on collision the
allocator probes forward (wrapping around) to the next free assignable address. Two
halves of a partitioned network therefore usually pick the *same* group for the same
type, and moving a type after the halves join is rare.

Pure functions of their arguments: no I/O, no randomness.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from ipaddress import IPv4Address

from consensus._blake2 import blake2b
from consensus.errors import AddressSpaceExhausted

__all__ = [
    "CONTROL_BLOCK",
    "DATA_RANGE",
    "RESERVED",
    "allocate",
    "assignable_count",
    "is_assignable",
    "preferred_group",
]

CONTROL_BLOCK = ipaddress.IPv4Network("239.255.0.0/24")
DATA_RANGE = ipaddress.IPv4Network("239.255.0.0/16")
RESERVED: frozenset[IPv4Address] = frozenset(
    {
        IPv4Address("239.255.255.250"),  # SSDP / UPnP discovery
        IPv4Address("239.255.255.253"),  # SLP (RFC 2608)
        IPv4Address("239.255.76.67"),  # LCM default group
    }
)

_BASE = int(DATA_RANGE.network_address)
_SIZE = DATA_RANGE.num_addresses


def is_assignable(addr: IPv4Address) -> bool:
    """Tell whether a message type may be given this group.

    Args:
        addr: any IPv4 address.

    Returns:
        True when ``addr`` is in :data:`DATA_RANGE`, outside :data:`CONTROL_BLOCK`,
        not in :data:`RESERVED`, and its last octet is neither 0 nor 255.
    """
    if addr not in DATA_RANGE or addr in CONTROL_BLOCK or addr in RESERVED:
        return False
    last = int(addr) & 0xFF
    return last not in (0, 255)


def assignable_count() -> int:
    """Return how many groups can be handed out (the size of the type space)."""
    return sum(1 for off in range(_SIZE) if is_assignable(IPv4Address(_BASE + off)))


def preferred_group(type_name: str) -> IPv4Address:
    """Return the first-choice group of a type: a stable hash of its name.

    Args:
        type_name: the message type name.

    Returns:
        An assignable address, identical on every node and every run.
    """
    digest = blake2b(type_name.encode("utf-8"), digest_size=8).digest()
    start = int.from_bytes(digest, "big") % _SIZE
    for step in range(_SIZE):
        addr = IPv4Address(_BASE + (start + step) % _SIZE)
        if is_assignable(addr):
            return addr
    raise AssertionError("the data range has no assignable address")  # pragma: no cover


def allocate(type_name: str, taken: Collection[IPv4Address]) -> IPv4Address:
    """Pick a group for a type: its preferred group, or the next free one after it.

    Args:
        type_name: the message type name.
        taken: groups already held by other types.

    Returns:
        The first address at or after :func:`preferred_group` (wrapping around the data
        range) that is assignable and not in ``taken``.

    Raises:
        AddressSpaceExhausted: every assignable group is in ``taken``.
    """
    start = int(preferred_group(type_name)) - _BASE
    for step in range(_SIZE):
        addr = IPv4Address(_BASE + (start + step) % _SIZE)
        if addr not in taken and is_assignable(addr):
            return addr
    raise AddressSpaceExhausted(f"no free multicast group left for type {type_name!r}")
