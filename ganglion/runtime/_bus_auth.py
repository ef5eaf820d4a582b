"""Access control for the plugin bus: ZeroMQ CURVE with one shared key pair.

Theory of operation. Without it, anyone who can connect to the bus can publish,
and the node sends what they publish to the network under its own id and key.
On ipc the socket files are 0600, so that is only the node's own user; on
``tcp://127.0.0.1`` it is every local user. With a *bus secret* (a CURVE key pair
in a file, :class:`~ganglion.bus_secret.BusSecret`) the node's two bus sockets
become CURVE servers and run a ZAP handler (RFC 27, ZeroMQ's authentication
protocol) that accepts a connection only if the client's long-term public key
is the secret's own public key. A plugin proves it read the file by using the
pair as its client key and as the server key it expects; so the check is mutual
(a process that squats on the port while the node is down cannot complete the
handshake either, and learns nothing), and the traffic is encrypted.

Why CURVE and not PLAIN: PLAIN sends the password to whoever listens on the
port, which on loopback can be another local user who bound it first.

A refused connection never reaches the bus's sockets, so its messages are not
received, forwarded or sent to the network. :class:`HandshakeWatch` counts the
refusals from zmq's socket monitor (both "wrong key" and "no key at all", which
fails before ZAP is asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils import z85

from ganglion._blake2 import compare_digest
from ganglion.bus_secret import BusSecret, read_bus_secret
from ganglion.errors import ConfigError, TransportError

_log = logging.getLogger("ganglion.runtime.bus")

#: The in-process address libzmq asks for ZAP decisions (RFC 27).
ZAP_ENDPOINT = "inproc://zeromq.zap.01"

#: ZAP domain the bus sockets announce.
ZAP_DOMAIN = b"ganglion.bus"

#: Monitor events that mean a client's handshake was refused, and how to name them.
HANDSHAKE_FAILURES: dict[int, str] = {
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "handshake failed",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "no or other security mechanism",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "key refused",
}


def load_or_create_secret(path: Path) -> BusSecret:
    """Read the node's bus secret file, creating it (mode 0600) with a fresh pair if absent.

    Args:
        path: the ``[bus] secret_file``.

    Returns:
        The key pair.

    Raises:
        ConfigError: the file is open to every user or malformed, its directory
            does not exist, or libzmq lacks CURVE.
    """
    if not path.exists():
        secret = BusSecret.generate()
        try:
            # O_EXCL: never overwrite a file another process created meanwhile.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return read_bus_secret(path)
        except OSError as exc:
            raise ConfigError(f"cannot create the bus secret file {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret.to_text())
        _log.warning("created the plugin bus secret %s: plugins need it to connect", path)
        return secret
    return read_bus_secret(path)


def secure_server(sock: zmq.Socket[Any], secret: BusSecret) -> None:
    """Make a bus socket a CURVE server that asks the ZAP handler (before bind)."""
    sock.curve_server = True
    sock.curve_publickey = secret.public
    sock.curve_secretkey = secret.secret
    sock.zap_domain = ZAP_DOMAIN


class ZapHandler:
    """Answer libzmq's ZAP requests: accept exactly the clients that hold the secret."""

    def __init__(self, context: zmq.asyncio.Context, secret: BusSecret) -> None:
        """Describe the handler; :meth:`start` binds it.

        Args:
            context: the bus's context (ZAP is per context).
            secret: the pair whose public key clients must present.
        """
        self._ctx = context
        self._allowed = z85.decode(secret.public)
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._serial = 0
        #: Connections accepted and refused so far.
        self.accepted = 0
        self.refused = 0

    def start(self) -> None:
        """Bind the ZAP endpoint and serve it on the running loop.

        Raises:
            TransportError: another ZAP handler is bound in this context.
        """
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.linger = 0
        try:
            self._sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            self._sock = None
            raise TransportError(f"cannot serve ZAP for the plugin bus: {exc}") from exc
        self._task = asyncio.create_task(self._serve(self._sock), name="bus-zap")

    async def close(self) -> None:
        """Stop answering; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def decide(self, request: list[bytes]) -> list[bytes]:
        """Return the ZAP reply for one request (RFC 27 frames).

        Args:
            request: version, request id, domain, address, identity, mechanism,
                credentials (for CURVE: the client's 32-byte public key).

        Returns:
            The reply frames: status 200 with a user id naming the connection
            (``plugin-N``), or 400.
        """
        if len(request) < 6:
            # Not from libzmq (nothing else can reach an inproc endpoint); answer anyway.
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"bad request",
                    b"", b""]
        request_id, mechanism, credentials = request[1], request[5], request[6:]
        if mechanism == b"CURVE" and len(credentials) == 1 and compare_digest(
                credentials[0], self._allowed):
            self.accepted += 1
            self._serial += 1
            return [b"1.0", request_id, b"200", b"OK", b"plugin-%d" % self._serial, b""]
        self.refused += 1
        return [b"1.0", request_id, b"400", b"key refused", b"", b""]

    async def _serve(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            request = await sock.recv_multipart()
            # REP must answer every request, or it can never receive the next one.
            await sock.send_multipart(self.decide(request))


class HandshakeWatch:
    """Report refused handshakes on a bus socket, from zmq's socket monitor."""

    def __init__(self, sock: zmq.asyncio.Socket, name: str,
                 on_refused: Callable[[str, str], object]) -> None:
        """Start monitoring ``sock`` (call before it binds); :meth:`close` stops.

        Args:
            sock: a bus socket.
            name: which socket, for the report (``publish`` or ``subscribe``).
            on_refused: called with ``(name, reason)`` for each refused handshake.
        """
        self._sock = sock
        self._name = name
        self._on_refused = on_refused
        self._monitor: zmq.asyncio.Socket = sock.get_monitor_socket(sum(HANDSHAKE_FAILURES))
        self._task = asyncio.create_task(self._run(), name=f"bus-handshakes-{name}")

    async def close(self) -> None:
        """Stop monitoring; idempotent."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if not self._sock.closed:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
        self._monitor.close(0)

    async def _run(self) -> None:
        while True:
            frames = await self._monitor.recv_multipart()
            event = int.from_bytes(frames[0][:2], "little")
            self._on_refused(self._name, HANDSHAKE_FAILURES.get(event, "handshake failed"))
