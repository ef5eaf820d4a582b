"""The I/O of ``ganglion invite`` and ``ganglion join``: a TCP listener, a client, and mDNS.

Theory of operation
-------------------
The inviter listens on a TCP port of its chosen interface (an ephemeral port
unless told otherwise) and, unless asked not to, advertises it over mDNS/DNS-SD
as ``_ganglion-invite._tcp.local.`` with the code's nameplate in the instance
name and TXT record (the nameplate is public; the words are not). Each accepted
connection runs one :class:`~ganglion.pairing.exchange.InviterSession`, admitted
or refused by the :class:`~ganglion.pairing.invitation.Invitation`. Every read
is at most :data:`CHUNK` bytes into a frame reader that holds at most one frame,
and every exchange ends within
:data:`~ganglion.pairing.invitation.SESSION_SECONDS`, so a peer that sends
garbage, too much, or nothing is dropped within that time and cannot hold the
invite longer. The invite ends when it is used (after the joiner's
acknowledgement, or the session timeout), burnt, or expired.

The joiner browses for the nameplate (or is given the inviter's address), tries
each matching inviter as it resolves, retries one that is busy once a second,
and stops at the first that delivers, or at its deadline. Both sides bind to the
chosen interface's address only (mDNS as in :mod:`ganglion.runtime.discovery`),
and use ``loop.time()`` as their one clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Final

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ganglion.errors import (
    ConfigError,
    InterfaceError,
    InviteBusyError,
    LocalError,
    PairingError,
    PairingProtocolError,
)
from ganglion.pairing.codes import InviteCode
from ganglion.pairing.exchange import (
    MAX_KEY_FILE,
    PROTOCOL_VERSION,
    InviterSession,
    InviterState,
    JoinerSession,
    refusal,
)
from ganglion.pairing.invitation import (
    SESSION_SECONDS,
    Invitation,
    InvitationStats,
    InviteStatus,
)
from ganglion.runtime._lifecycle import StartsAndCloses

__all__ = ["CHUNK", "SERVICE_TYPE", "InviteResult", "InviteServer", "join"]

_log = logging.getLogger(__name__)

#: DNS-SD service type of a running invite.
SERVICE_TYPE: Final = "_ganglion-invite._tcp.local."

#: Most bytes read from a connection at once.
CHUNK: Final = 4096

#: Most matching adverts a joiner resolves and tries (a LAN may advertise junk).
MAX_CANDIDATES: Final = 8

_RECORD_TTL: Final = 120
_RESOLVE_MS: Final = 3000
_GOODBYE_SECONDS: Final = 2.0
_CLOSE_SECONDS: Final = 1.0

Entropy = Callable[[int], bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class InviteResult:
    """How an invite ended.

    Attributes:
        status: USED, BURNT or EXPIRED.
        acknowledged: the joiner confirmed it received the key file intact.
        stats: the invite's counters.
    """

    status: InviteStatus
    acknowledged: bool
    stats: InvitationStats


class InviteServer(StartsAndCloses):
    """Serve one invite until it is used, burnt or expired.

    Use ``async with InviteServer(...) as server: result = await server.wait()``.

    Args:
        code: the invite's code.
        key_file: the key file's bytes to deliver.
        interface: IPv4 address to listen (and advertise) on.
        ttl: seconds the code is valid.
        port: TCP port; 0 picks a free one.
        advertise: announce the invite over mDNS so ``join`` finds it.
        entropy: randomness for SPAKE2.

    Raises:
        InterfaceError: ``interface`` is not an IPv4 address.
        ConfigError: ``key_file`` is empty or over :data:`~ganglion.pairing.exchange.MAX_KEY_FILE`.
    """

    def __init__(self, *, code: InviteCode, key_file: bytes, interface: str, ttl: float,
                 port: int = 0, advertise: bool = True, entropy: Entropy = os.urandom) -> None:
        if not 0 < len(key_file) <= MAX_KEY_FILE:
            raise ConfigError(f"a key file to share is 1..{MAX_KEY_FILE} bytes, "
                              f"not {len(key_file)}")
        self._code = code
        self._file = key_file
        self._interface = _check_ipv4(interface)
        self._ttl = ttl
        self._port = port
        self._advertise = advertise
        self._entropy = entropy
        self._invitation: Invitation | None = None
        self._server: asyncio.Server | None = None
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._changed = asyncio.Event()
        self._acknowledged = False
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The (address, port) the invite listens on.

        Raises:
            LocalError: not started.
        """
        if self._server is None:
            raise LocalError("the invite server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def invitation(self) -> Invitation:
        """The invite's state (after :meth:`start`).

        Raises:
            LocalError: not started.
        """
        if self._invitation is None:
            raise LocalError("the invite server is not started")
        return self._invitation

    async def start(self) -> None:
        """Listen, then advertise; the code is valid from now for ``ttl`` seconds.

        Raises:
            OSError: the port or the mDNS sockets cannot be opened.
        """
        loop = asyncio.get_running_loop()
        self._invitation = Invitation(created=loop.time(), ttl=self._ttl)
        self._server = await asyncio.start_server(self._on_connection, self._interface,
                                                  self._port, limit=CHUNK)
        if self._advertise:
            self._zc = AsyncZeroconf(interfaces=[self._interface], ip_version=IPVersion.V4Only)
            self._info = self._service_info(self.address[1])
            # Probing for the name takes ~1.2 s; the repeats go on in the background.
            await self._zc.async_register_service(self._info, allow_name_change=True)

    async def wait(self) -> InviteResult:
        """Wait until the invite is used, burnt or expired (an exchange running then ends first).

        Returns:
            How it ended.
        """
        invitation = self.invitation
        loop = asyncio.get_running_loop()
        while True:
            status = invitation.status_at(loop.time())
            if status is not InviteStatus.OPEN and not invitation.busy:
                return InviteResult(status, self._acknowledged, dataclasses.replace(
                    invitation.stats))
            self._changed.clear()
            left = invitation.expires_at - loop.time()
            # Past expiry only a running exchange is left, and its end sets the event.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left + 0.01 if left > 0 else None)

    async def close(self) -> None:
        """Say goodbye over mDNS, stop listening and end running exchanges."""
        if self._zc is not None:
            zc, info, self._zc = self._zc, self._info, None
            if info is not None:
                with contextlib.suppress(TimeoutError, OSError):
                    goodbye = await zc.async_unregister_service(info)
                    await asyncio.wait_for(goodbye, _GOODBYE_SECONDS)
            await zc.async_close()
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), _CLOSE_SECONDS)

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        """One joiner's connection: admit or refuse it, run the exchange, record the outcome."""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        invitation = self.invitation
        peer = writer.get_extra_info("peername")
        try:
            reason = invitation.admit(asyncio.get_running_loop().time())
            if reason is not None:
                _log.info("invite: refused %s (%s)", peer, reason.name.lower())
                with contextlib.suppress(OSError):
                    writer.write(refusal(reason))
                return
            session = InviterSession(self._code, self._file, entropy=self._entropy)
            try:
                await asyncio.wait_for(_serve(session, reader, writer), SESSION_SECONDS)
            except (PairingProtocolError, TimeoutError, OSError) as exc:
                _log.warning("invite: dropped %s: %s", peer, _describe(exc))
            finally:
                status = invitation.end(spent=session.spent, key_sent=session.key_sent)
                self._acknowledged |= session.state is InviterState.DELIVERED
                _log.info("invite: %s ended in %s; invite %s", peer, session.state.value,
                          status.value)
                self._changed.set()
        finally:
            await _close(writer)
            if task is not None:
                self._handlers.discard(task)

    def _service_info(self, port: int) -> AsyncServiceInfo:
        """The DNS-SD record of this invite (nameplate in name and TXT; never the words)."""
        tag = secrets.token_hex(3)  # two invites with one nameplate must not clash in mDNS
        label = f"ganglion-invite-{self._code.nameplate}-{tag}"
        return AsyncServiceInfo(
            SERVICE_TYPE, f"{label}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(self._interface)], port=port,
            properties={"proto": str(PROTOCOL_VERSION), "nameplate": str(self._code.nameplate)},
            server=f"{label}.local.", host_ttl=_RECORD_TTL, other_ttl=_RECORD_TTL,
        )


async def join(code: InviteCode, *, interface: str, timeout: float,
               inviter: tuple[str, int] | None = None,
               entropy: Entropy = os.urandom) -> bytes:
    """Receive the key file from the inviter holding ``code``.

    Args:
        code: the code the user typed.
        interface: IPv4 address to connect (and browse) from.
        timeout: seconds for everything: finding the inviter and the exchange.
        inviter: the inviter's (address, port); None browses mDNS for the nameplate.
        entropy: randomness for SPAKE2.

    Returns:
        The key file's bytes, checked by the key confirmation and the seal.

    Raises:
        WrongCodeError: the code is wrong or expired.
        InviteClosedError: the invite is used, burnt or expired, or stayed busy.
        PairingProtocolError: the inviter broke the protocol.
        PairingError: no inviter was found or reachable in time.
        InterfaceError: ``interface`` is not an IPv4 address.
    """
    local = _check_ipv4(interface)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if inviter is not None:
        return await _join_one(code, local, inviter, deadline, entropy)
    found: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    async with _Browser(local, code.nameplate, found):
        tried = 0
        while True:
            left = deadline - loop.time()
            try:
                candidate = await asyncio.wait_for(found.get(), timeout=max(left, 0.0))
            except TimeoutError:
                raise PairingError(
                    f"no invite with number {code.nameplate} found from {local} within "
                    f"{timeout:g} s: is 'ganglion invite' running on this network, and the "
                    f"code still valid? (or pass --inviter ADDRESS:PORT)") from None
            tried += 1
            try:
                return await _join_one(code, local, candidate, deadline, entropy)
            except (PairingError, OSError):
                if found.empty() or tried >= MAX_CANDIDATES:
                    raise


async def _join_one(code: InviteCode, local: str, inviter: tuple[str, int], deadline: float,
                    entropy: Entropy) -> bytes:
    """Run exchanges with one inviter, again each second while it is busy."""
    loop = asyncio.get_running_loop()
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise PairingError(f"no answer from the inviter at {inviter[0]}:{inviter[1]} in time")
        try:
            return await asyncio.wait_for(_exchange(code, local, inviter, entropy), left)
        except InviteBusyError:
            if deadline - loop.time() < 1.0:
                raise
            await asyncio.sleep(1.0)
        except TimeoutError:
            raise PairingError(f"the inviter at {inviter[0]}:{inviter[1]} did not finish the "
                               f"exchange in time") from None
        except OSError as exc:
            raise PairingError(f"cannot reach the inviter at {inviter[0]}:{inviter[1]}: "
                               f"{exc.strerror or exc} (has the invite ended?)") from exc


async def _exchange(code: InviteCode, local: str, inviter: tuple[str, int],
                    entropy: Entropy) -> bytes:
    """One connection, one exchange: the key file, or an error."""
    reader, writer = await asyncio.open_connection(inviter[0], inviter[1], limit=CHUNK,
                                                   local_addr=(local, 0))
    try:
        session = JoinerSession(code, entropy=entropy)
        writer.write(session.start())
        await writer.drain()
        while not session.done:
            data = await reader.read(CHUNK)
            if not data:
                raise PairingProtocolError("the inviter closed the connection mid-exchange")
            reply = session.receive(data)
            if reply:
                writer.write(reply)
                await writer.drain()
        assert session.key_file is not None  # done means the key file checked out
        return session.key_file
    finally:
        await _close(writer)


async def _serve(session: InviterSession, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """Feed a joiner's bytes to the session and write its replies until it finishes."""
    while not session.finished:
        data = await reader.read(CHUNK)
        if not data:
            raise PairingProtocolError(f"the joiner left in state {session.state.value}")
        reply = session.receive(data)
        if reply:
            writer.write(reply)
            await writer.drain()


class _Browser:
    """Browse for one nameplate's invites and put each resolved (address, port) on a queue."""

    def __init__(self, interface: str, nameplate: int,
                 found: asyncio.Queue[tuple[str, int]]) -> None:
        self._interface = interface
        self._nameplate = str(nameplate)
        self._prefix = f"ganglion-invite-{nameplate}-"
        self._found = found
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def __aenter__(self) -> _Browser:
        self._zc = AsyncZeroconf(interfaces=[self._interface], ip_version=IPVersion.V4Only)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [SERVICE_TYPE],
                                            handlers=[self._on_change])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._browser is not None:
            await self._browser.async_cancel()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._zc is not None:
            await self._zc.async_close()

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        """Resolve each new instance of our nameplate, up to :data:`MAX_CANDIDATES`."""
        if state_change is ServiceStateChange.Removed or name in self._tasks:
            return
        if not name.startswith(self._prefix) or len(self._tasks) >= MAX_CANDIDATES:
            return
        self._tasks[name] = asyncio.get_running_loop().create_task(self._resolve(name))

    async def _resolve(self, name: str) -> None:
        """Queue the instance's address if its records resolve and name our nameplate."""
        assert self._zc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zc.zeroconf, _RESOLVE_MS):
            return
        props = info.properties or {}
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if (props.get(b"nameplate") != self._nameplate.encode() or not addresses
                or props.get(b"proto") != str(PROTOCOL_VERSION).encode()
                or info.port is None or not 0 < info.port < 65536):
            _log.debug("join: ignoring advert %s", name)
            return
        self._found.put_nowait((addresses[0], info.port))


def _check_ipv4(address: str) -> str:
    """Normalise an interface address, refusing anything but IPv4."""
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        raise InterfaceError(f"invite and join need an IPv4 address, not {address!r}") from None


def _describe(exc: BaseException) -> str:
    """A one-line reason for a dropped connection."""
    if isinstance(exc, TimeoutError):
        return f"no complete exchange within {SESSION_SECONDS:g} s"
    return str(exc) or type(exc).__name__


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a connection without waiting long for a peer that does not read."""
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_SECONDS)
