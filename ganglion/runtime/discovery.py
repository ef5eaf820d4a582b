"""Node discovery over mDNS/DNS-SD (RFC 6762, RFC 6763) with python-zeroconf.

Theory of operation
-------------------
Every node registers one DNS-SD service instance of type ``_ganglion._udp.local.``
and browses for the others. The instance is named ``<node name>-<id hex[:8]>``
(readable, and unique as long as ids are); its SRV record gives the data port and
the host ``ganglion-<id hex>.local.`` (never the machine's hostname, which Avahi
already owns on a Pi), whose A record is the chosen interface's IPv4 address; its
TXT record describes the node (id, name, version, proto, role, types: see
:mod:`ganglion.runtime._advert` and docs/discovery.md). Every record has a
120-second TTL (RFC 6762 §10), so a node that dies without a goodbye leaves an
Avahi browser's list within about two minutes; python-zeroconf receivers floor
a PTR's TTL at 1,125 s, so in other ganglion nodes it lingers up to ~19 minutes.
Heartbeats on the control channel, not this table, decide liveness.

Browsing: each Added/Updated event from zeroconf's browser starts one resolve
task for that instance (a newer event cancels an older task, so results never
land out of order); the resolved TXT record goes through
:func:`~ganglion.runtime._advert.parse_txt`. A bad advert (bad id hex, missing
keys, oversized, an invalid type name, no IPv4 address) is dropped and counted
in :class:`DiscoveryStats`, never raised. A Removed event (a goodbye packet or
an expired record) deletes the peer. The node's own advert is recognised by its
id and never appears in :meth:`Discovery.peers`.

mDNS is bound to the one chosen interface, IPv4 only
(``AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)``), so a
node on ``lo`` never speaks mDNS on ``eth0``. It may still *hear* it: zeroconf's
listening socket is bound to port 5353 with ``SO_REUSEPORT`` and
``IP_MULTICAST_ALL`` left on, so the kernel hands it mDNS that arrived on another
interface whenever another program on the host listens there (see
:mod:`ganglion.runtime._sockets`). So an advert must be reachable over the chosen
interface: a node on a loopback address takes only adverts of loopback
addresses, and a node on any other interface none of them (counted as
``other_interface``). Subnets are not compared: multicast reaches a peer on the
same link whatever its subnet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ganglion.errors import ConfigError, InterfaceError, LocalError
from ganglion.runtime._advert import (
    MAX_NAME_BYTES,
    PROTO_VERSION,
    ROLES,
    SERVICE_TYPE,
    AdvertError,
    IncompatibleAdvert,
    build_txt,
    instance_label,
    parse_txt,
)
from ganglion.runtime._lifecycle import StartsAndCloses
from ganglion.types import is_valid_type_name
from ganglion.wire import NODE_ID_SIZE

__all__ = [
    "MAX_PEERS",
    "PROTO_VERSION",
    "RECORD_TTL",
    "SERVICE_TYPE",
    "AdvertisedPeer",
    "Discovery",
    "DiscoveryStats",
    "PeerCallback",
    "browse_once",
]

_log = logging.getLogger(__name__)

#: TTL of every record we advertise, in seconds (RFC 6762 §10's host-record value).
RECORD_TTL = 120

#: Most peers (and pending resolves) one table holds; more instances are ignored.
MAX_PEERS = 4096

#: How long one resolve (SRV, TXT and A records of one instance) may take, in ms.
RESOLVE_TIMEOUT_MS = 3000

#: How long close() waits for the goodbye packets to go out, in seconds.
_GOODBYE_TIMEOUT = 2.0

#: Called with a peer when it appears, changes or goes away.
PeerCallback = Callable[["AdvertisedPeer"], None]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AdvertisedPeer:
    """One other node, as its DNS-SD advert describes it.

    Attributes:
        id: the node id (8 bytes).
        name: the node's human name.
        address: the IPv4 address it advertises (its chosen interface).
        port: its data port.
        version: the ganglion version it runs.
        types: the type names it publishes, sorted.
        role: ``"member"`` or ``"observer"``.
        last_seen: loop time (``loop.time()``) when its advert was last resolved.
        types_complete: False when the advert had more types than fit (``types_more=1``).
    """

    id: bytes
    name: str
    address: str
    port: int
    version: str
    types: tuple[str, ...]
    role: str
    last_seen: float
    types_complete: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class DiscoveryStats:
    """Counters of a browser since it started.

    Attributes:
        peers: peers in the table now.
        added: peers that appeared.
        updated: peer adverts that changed.
        removed: peers that went away (goodbye or expiry).
        malformed: adverts dropped as garbage (bad id, missing keys, oversized, ...).
        incompatible: adverts dropped for a ``proto`` other than :data:`PROTO_VERSION`.
        unresolved: instances whose records did not arrive within the resolve timeout.
        overflow: instances ignored because :data:`MAX_PEERS` were already known.
        callback_errors: exceptions raised by user callbacks (logged, swallowed).
        other_interface: adverts dropped because their address is not reachable
            over the chosen interface (a LAN node heard by a node on ``lo``).
    """

    peers: int
    added: int
    updated: int
    removed: int
    malformed: int
    incompatible: int
    unresolved: int
    overflow: int
    callback_errors: int
    other_interface: int = 0


class Discovery(StartsAndCloses):
    """Advertise this node over mDNS/DNS-SD and keep a table of the others.

    Use as ``async with Discovery(...) as d:`` or call :meth:`start` and
    :meth:`close`. All methods run on the event loop that called :meth:`start`.

    Args:
        interface: IPv4 address of the chosen interface (mDNS is bound to it only).
        node_id: this node's 8-byte id.
        name: this node's human name (non-empty).
        port: the data port to advertise.
        publishes: type names this node publishes.
        role: ``"member"`` or ``"observer"``.
        zeroconf: an AsyncZeroconf to share; when given, it is not closed here.
        on_peer_added, on_peer_updated, on_peer_removed: called with the
            :class:`AdvertisedPeer` (the old one for removals) on the event loop.

    Raises:
        InterfaceError: ``interface`` is not an IPv4 address.
        ConfigError: a bad node id, name, port, role or type name.
    """

    def __init__(
        self,
        *,
        interface: str,
        node_id: bytes,
        name: str,
        port: int,
        publishes: Iterable[str] = (),
        role: str = "member",
        zeroconf: AsyncZeroconf | None = None,
        on_peer_added: PeerCallback | None = None,
        on_peer_updated: PeerCallback | None = None,
        on_peer_removed: PeerCallback | None = None,
    ) -> None:
        self._interface = _check_interface(interface)
        if len(node_id) != NODE_ID_SIZE:
            raise ConfigError(f"node_id must be {NODE_ID_SIZE} bytes, not {len(node_id)}")
        if not name or not name.isprintable() or len(name.encode()) > MAX_NAME_BYTES:
            raise ConfigError(
                f"node name must be 1 to {MAX_NAME_BYTES} bytes of printable UTF-8, "
                f"not {name[:40]!r}"
            )
        if not 0 < port < 65536:
            raise ConfigError(f"port must be 1..65535, not {port}")
        if role not in ROLES:
            raise ConfigError(f"role must be one of {ROLES}, not {role!r}")
        self.node_id = bytes(node_id)
        self.name = name
        self.port = port
        self.role = role
        self._types = _check_types(publishes)
        self._zc = zeroconf
        self._owns_zc = zeroconf is None
        self._browser = _PeerBrowser(
            own_id=self.node_id,
            loopback=_is_loopback(self._interface),
            on_added=on_peer_added,
            on_updated=on_peer_updated,
            on_removed=on_peer_removed,
        )
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Future[Any] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def instance_name(self) -> str:
        """The full DNS-SD instance name registered (zeroconf may add ``-2`` on a clash)."""
        if self._info is not None:
            return self._info.name
        return f"{instance_label(self.name, self.node_id)}.{SERVICE_TYPE}"

    @property
    def types(self) -> tuple[str, ...]:
        """The type names currently advertised, sorted."""
        return self._types

    async def start(self) -> None:
        """Start browsing, then register this node's service.

        Returns once the service is registered: probing for a unique name
        (RFC 6762 §8.1) takes about 1.2 s. Peers already running are found
        meanwhile; the repeated announcements go on in the background.

        Raises:
            LocalError: already started or closed.
            OSError: the mDNS sockets could not be opened on the interface.
        """
        async with self._lock:
            if self._closed or self._info is not None:
                raise LocalError("a Discovery can be started only once")
            if self._zc is None:
                self._zc = _open_zeroconf(self._interface)
            await self._browser.start(self._zc.zeroconf)
            info = self._service_info(instance_label(self.name, self.node_id))
            # The name may change on a clash (allow_name_change), so keep the object.
            announce = await self._zc.async_register_service(info, allow_name_change=True)
            self._info = info
            self._keep_announcing(announce)

    async def update_types(self, types: Iterable[str]) -> None:
        """Advertise a new set of published type names (re-announces the TXT record).

        Args:
            types: every type name this node now publishes (replaces the old set).

        Raises:
            ConfigError: a name is not a valid type name.
        """
        new = _check_types(types)
        async with self._lock:
            if new == self._types:
                return
            self._types = new
            if self._info is None or self._zc is None or self._closed:
                return
            label = self._info.name[: -len(SERVICE_TYPE) - 1]
            self._info = self._service_info(label)
            self._keep_announcing(await self._zc.async_update_service(self._info))

    def peers(self) -> list[AdvertisedPeer]:
        """The other nodes seen now, sorted by name then id."""
        return self._browser.peers()

    def stats(self) -> DiscoveryStats:
        """A snapshot of the browser's counters (see :class:`DiscoveryStats`)."""
        return self._browser.stats()

    async def close(self) -> None:
        """Say goodbye (unregister), stop browsing, and close zeroconf if we opened it."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._announcing is not None:
                self._announcing.cancel()
                await asyncio.gather(self._announcing, return_exceptions=True)
            await self._browser.close()
            if self._zc is not None and self._info is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    goodbye = await self._zc.async_unregister_service(self._info)
                    await asyncio.wait_for(goodbye, _GOODBYE_TIMEOUT)
            if self._zc is not None and self._owns_zc:
                await self._zc.async_close()

    def _keep_announcing(self, announce: Awaitable[Any]) -> None:
        """Let zeroconf repeat an announcement in the background, replacing a stale one."""
        # The first packet is already out; the repeats (RFC 6762 §8.3) need not
        # hold up start() or update_types(), and an older TXT record's repeats
        # are stale.
        if self._announcing is not None:
            self._announcing.cancel()
        self._announcing = asyncio.ensure_future(announce)

    def _service_info(self, label: str) -> AsyncServiceInfo:
        """The ServiceInfo for this node under instance ``label``."""
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(self._interface)],
            port=self.port,
            properties=build_txt(
                node_id=self.node_id, name=self.name, types=self._types, role=self.role
            ),
            server=f"ganglion-{self.node_id.hex()}.local.",
            # 120 s for the PTR too (zeroconf's default is 75 min): a node that
            # died without a goodbye leaves Avahi's list in ~2 min (zeroconf
            # receivers floor a PTR at 1,125 s, which still beats 75 min).
            host_ttl=RECORD_TTL,
            other_ttl=RECORD_TTL,
        )


async def browse_once(
    interface: str, timeout: float, *, zeroconf: AsyncZeroconf | None = None
) -> list[AdvertisedPeer]:
    """Browse for ganglion nodes for ``timeout`` seconds without advertising.

    For short-lived tools (``ganglion nodes``): nothing is registered.

    Args:
        interface: IPv4 address of the interface to query on.
        timeout: seconds to listen; nodes answer within a fraction of a second.
        zeroconf: an AsyncZeroconf to use instead of opening one.

    Returns:
        The nodes whose adverts resolved in time, sorted by name then id.

    Raises:
        InterfaceError: ``interface`` is not an IPv4 address.
        OSError: the mDNS sockets could not be opened on the interface.
    """
    address = _check_interface(interface)
    zc = zeroconf or _open_zeroconf(address)
    browser = _PeerBrowser(own_id=None, loopback=_is_loopback(address))
    try:
        await browser.start(zc.zeroconf)
        await asyncio.sleep(max(0.0, timeout))
        return browser.peers()
    finally:
        await browser.close()
        if zeroconf is None:
            await zc.async_close()


class _PeerBrowser:
    """Browse ``_ganglion._udp``, resolve each instance, keep the peer table."""

    def __init__(
        self,
        *,
        own_id: bytes | None,
        loopback: bool = False,
        on_added: PeerCallback | None = None,
        on_updated: PeerCallback | None = None,
        on_removed: PeerCallback | None = None,
    ) -> None:
        self._own_id = own_id
        self._loopback = loopback  # the chosen interface is loopback: only loopback peers
        self._callbacks = {"added": on_added, "updated": on_updated, "removed": on_removed}
        self._zc: Zeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._peers: dict[str, AdvertisedPeer] = {}  # by instance name
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._counts = dict.fromkeys(
            ("added", "updated", "removed", "malformed", "incompatible", "unresolved",
             "overflow", "callback_errors", "other_interface"), 0)

    async def start(self, zc: Zeroconf) -> None:
        """Start the browser on ``zc``."""
        self._zc = zc
        self._browser = AsyncServiceBrowser(zc, [SERVICE_TYPE], handlers=[self._on_change])

    async def close(self) -> None:
        """Stop browsing and cancel pending resolves."""
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        tasks = list(self._resolving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._resolving.clear()

    def peers(self) -> list[AdvertisedPeer]:
        """The table, sorted by name then id."""
        return sorted(self._peers.values(), key=lambda p: (p.name, p.id))

    def stats(self) -> DiscoveryStats:
        """A snapshot of the counters."""
        return DiscoveryStats(peers=len(self._peers), **self._counts)

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        """Browser handler (runs on the loop): resolve on add/update, drop on remove."""
        old = self._resolving.pop(name, None)
        if old is not None:
            old.cancel()
        if state_change is ServiceStateChange.Removed:
            self._forget(name)
            return
        if name not in self._peers and len(self._peers) + len(self._resolving) >= MAX_PEERS:
            # A flood of instances (buggy or hostile) must not grow memory without bound.
            self._counts["overflow"] += 1
            return
        task = asyncio.get_running_loop().create_task(self._resolve(name))
        self._resolving[name] = task
        task.add_done_callback(lambda done: self._resolved(name, done))

    def _resolved(self, name: str, task: asyncio.Task[None]) -> None:
        """Drop a finished resolve task unless a newer one has replaced it."""
        if self._resolving.get(name) is task:
            del self._resolving[name]

    async def _resolve(self, name: str) -> None:
        """Fetch an instance's records, validate them and update the table."""
        assert self._zc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zc, RESOLVE_TIMEOUT_MS):
            self._counts["unresolved"] += 1
            _log.debug("discovery: %s did not resolve in %d ms", name, RESOLVE_TIMEOUT_MS)
            return
        try:
            advert = parse_txt(info.properties, len(info.text or b""))
            addresses = info.parsed_addresses(IPVersion.V4Only)
            if not addresses or info.port is None or not 0 < info.port < 65536:
                raise AdvertError("no IPv4 address or port")
        except IncompatibleAdvert as exc:
            self._reject(name, "incompatible", exc)
            return
        except AdvertError as exc:
            self._reject(name, "malformed", exc)
            return
        if advert.id == self._own_id:
            return
        reachable = [a for a in addresses if _is_loopback(a) == self._loopback]
        if not reachable:
            self._reject(name, "other_interface", AdvertError(f"{addresses[0]} is not reachable "
                                                              f"over this interface"))
            return
        peer = AdvertisedPeer(
            id=advert.id, name=advert.name, address=reachable[0], port=info.port,
            version=advert.version, types=advert.types, role=advert.role,
            last_seen=asyncio.get_running_loop().time(), types_complete=advert.types_complete,
        )
        old = self._peers.get(name)
        self._peers[name] = peer
        if old is None:
            self._notify("added", peer)
        elif dataclasses.replace(old, last_seen=peer.last_seen) != peer:
            self._notify("updated", peer)

    def _reject(self, name: str, kind: str, exc: Exception) -> None:
        """Count a bad advert, and drop the peer if an earlier advert was good."""
        self._counts[kind] += 1
        _log.debug("discovery: ignoring %s (%s: %s)", name, kind, exc)
        self._forget(name)

    def _forget(self, name: str) -> None:
        """Remove an instance from the table, telling the callback."""
        peer = self._peers.pop(name, None)
        if peer is not None:
            self._notify("removed", peer)

    def _notify(self, event: str, peer: AdvertisedPeer) -> None:
        """Count an event and run its callback; a failing callback is logged, not raised."""
        self._counts[event] += 1
        callback = self._callbacks[event]
        if callback is None:
            return
        try:
            callback(peer)
        except Exception:
            self._counts["callback_errors"] += 1
            _log.exception("discovery: on_peer_%s callback failed", event)


def _open_zeroconf(address: str) -> AsyncZeroconf:
    """An AsyncZeroconf bound to one IPv4 interface address only."""
    return AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)


def _is_loopback(address: str) -> bool:
    """Whether ``address`` (IPv4) is a loopback address (127.0.0.0/8)."""
    return ipaddress.IPv4Address(address).is_loopback


def _check_interface(interface: str) -> str:
    """Normalise the interface address, refusing anything but IPv4."""
    try:
        return str(ipaddress.IPv4Address(interface))
    except ValueError:
        raise InterfaceError(
            f"discovery needs the interface's IPv4 address, not {interface!r}"
        ) from None


def _check_types(types: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate and sort type names, refusing invalid ones."""
    if isinstance(types, str):
        raise ConfigError("publishes must be an iterable of type names, not one str")
    names = set(types)
    bad = [n for n in names if not isinstance(n, str) or not is_valid_type_name(n)]
    if bad:
        raise ConfigError(f"not valid type names: {bad[:5]!r}")
    return tuple(sorted(names))


