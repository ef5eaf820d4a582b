"""A running node's status on a Unix socket in its state directory, and the client that asks.

Theory of operation. ``ganglion status`` must see a node's own view (peers,
types, streams, plugins, sensors) without a network round trip and without
showing it to anyone else. The node serves it on ``<state dir>/status.sock``:

* **Who may ask.** The state directory is 0700 and the socket 0600, so only the
  node's user (and root) can connect; the server also checks the connecting
  process's credentials (``SO_PEERCRED``) and refuses any other uid, so a socket
  moved to a looser directory still answers nobody else. Nothing is served on
  TCP, so the plugin bus's secret (which guards TCP) has nothing to add here.
* **The exchange.** The client connects and sends the line ``status\\n``; the
  node answers one JSON document (UTF-8, one line, at most
  :data:`MAX_RESPONSE` bytes) and closes. Anything else gets
  ``{"error": "..."}`` and is closed.
* **Bounds.** One request is answered at a time (the document is built on the
  event loop, so this also bounds the node's work); at most
  :data:`MAX_WAITING` more connections wait their turn and later ones are closed
  at once. A client that does not send its request within ``timeout`` seconds
  is dropped, and a request line longer than :data:`MAX_REQUEST` bytes is
  refused, so a stuck or hostile client costs nothing lasting.

The client (:func:`request_status`) is plain blocking sockets with one deadline
for the whole exchange: the CLI needs no event loop for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganglion.errors import NodeNotRunningError, StatusError
from ganglion.runtime._bus_bind import MAX_IPC_PATH, claim_ipc_path

__all__ = [
    "MAX_RESPONSE",
    "REQUEST",
    "STATUS_SOCKET_NAME",
    "StatusServer",
    "request_status",
    "status_socket_path",
]

_log = logging.getLogger(__name__)

#: The socket's file name in the state directory.
STATUS_SOCKET_NAME = "status.sock"

#: The one request there is.
REQUEST = b"status\n"

#: Longest request line accepted, in bytes.
MAX_REQUEST = 64

#: Largest answer, in bytes; a larger document is replaced by an error.
MAX_RESPONSE = 1 << 20

#: Connections that may wait while one is answered; more are closed at once.
MAX_WAITING = 4

#: Seconds a client has to send its request (server) or for the whole exchange (client).
DEFAULT_TIMEOUT = 3.0

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def status_socket_path(state_dir: Path) -> Path:
    """Where the node whose state directory is ``state_dir`` serves its status.

    Args:
        state_dir: the node's state directory.

    Returns:
        ``<state_dir>/status.sock``.
    """
    return state_dir / STATUS_SOCKET_NAME


class StatusServer:
    """Answers status requests on a Unix socket with the document ``document()`` builds.

    Args:
        path: the socket path (:func:`status_socket_path`); its directory should be
            private (the node's 0700 state directory).
        document: builds the JSON-able status document; called on the event loop.
        timeout: seconds a client has to send its request.
        max_waiting: connections that may wait while one is answered.
    """

    def __init__(self, path: Path, document: Callable[[], dict[str, Any]], *,
                 timeout: float = DEFAULT_TIMEOUT, max_waiting: int = MAX_WAITING) -> None:
        self.path = path
        self._document = document
        self._timeout = timeout
        self._max_waiting = max_waiting
        self._server: asyncio.Server | None = None
        self._turn = asyncio.Lock()
        self._connections = 0
        self.answered = 0
        self.refused = 0

    async def start(self) -> None:
        """Bind the socket (0600) and start answering.

        Raises:
            ConfigError: the path is too long for a Unix socket, or exists and is not one.
            TransportError: another live process owns the socket.
            OSError: the socket cannot be bound.
        """
        from ganglion.errors import ConfigError

        if len(os.fsencode(self.path)) > MAX_IPC_PATH:
            raise ConfigError(f"status socket path {str(self.path)!r} is longer than the "
                              f"{MAX_IPC_PATH} bytes Unix sockets allow: use a shorter "
                              "state directory")
        claim_ipc_path(self.path)
        old_umask = os.umask(0o177)  # created 0600, never wider even for an instant
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=os.fspath(self.path))
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        """Stop answering and remove the socket file. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._connections >= 1 + self._max_waiting:
                self.refused += 1
                return
            self._connections += 1
            try:
                await self._answer(reader, writer)
            finally:
                self._connections -= 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled: nothing to tell anyone
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _same_user(writer.get_extra_info("socket")):
            self.refused += 1
            await _send(writer, {"error": "only the node's own user may ask for its status"})
            return
        async with asyncio.timeout(self._timeout):
            line = await _read_request(reader)
        if len(line) > MAX_REQUEST or line != REQUEST:
            self.refused += 1
            await _send(writer, {"error": "unknown request; send 'status' and a newline"})
            return
        async with self._turn:
            try:
                doc = self._document()
            except Exception:  # a bug in the document must not end the server
                _log.exception("status: building the status document failed")
                doc = {"error": "the node could not build its status; see its log"}
            self.answered += 1
            await _send(writer, doc)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """Read up to a newline, but never more than ``MAX_REQUEST + 1`` bytes."""
    line = b""
    while not line.endswith(b"\n") and len(line) <= MAX_REQUEST:
        chunk = await reader.read(MAX_REQUEST + 1 - len(line))
        if not chunk:
            break
        line += chunk
    return line


async def _send(writer: asyncio.StreamWriter, doc: dict[str, Any]) -> None:
    data = _encode(doc)
    if len(data) > MAX_RESPONSE:
        data = _encode({"error": f"the status document is larger than {MAX_RESPONSE} bytes"})
    writer.write(data)
    await asyncio.wait_for(writer.drain(), DEFAULT_TIMEOUT)


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"),
                      default=str).encode() + b"\n"


def _same_user(sock: socket.socket | None) -> bool:
    """True when the peer runs as this process's user or as root (Linux SO_PEERCRED)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True  # no credentials to check: the 0700 directory and 0600 socket decide
    try:
        _pid, uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return False
    return uid in (os.geteuid(), 0)


def request_status(path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Ask the node serving ``path`` for its status document.

    Args:
        path: the status socket (:func:`status_socket_path` of the node's state directory).
        timeout: seconds for the whole exchange.

    Returns:
        The node's status document.

    Raises:
        NodeNotRunningError: no node listens there (no socket, or nobody accepts).
        StatusError: the node refused, did not answer in time, or answered
            something that is not a status document; the message says which.
    """
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NodeNotRunningError(f"no node is running with state directory {path.parent} "
                                      f"(nothing answers on {path})") from exc
        except PermissionError as exc:
            raise StatusError(f"cannot connect to {path}: permission denied (a node of "
                              "another user? run as that user)") from exc
        sock.sendall(REQUEST)
        data = bytearray()
        while not data.endswith(b"\n"):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_RESPONSE + 1:
                raise StatusError(f"the answer on {path} is larger than {MAX_RESPONSE} bytes")
    except TimeoutError as exc:
        raise StatusError(f"the node on {path} did not answer within {timeout:g} s") from exc
    except OSError as exc:
        if isinstance(exc, StatusError):
            raise
        raise StatusError(f"cannot read the status on {path}: {exc}") from exc
    finally:
        sock.close()
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise StatusError(f"the answer on {path} is not a status document") from exc
    if not isinstance(doc, dict):
        raise StatusError(f"the answer on {path} is not a status document")
    if "error" in doc and len(doc) == 1:
        raise StatusError(f"the node refused: {doc['error']}")
    return doc
