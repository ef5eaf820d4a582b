"""Where the plugin bus listens: its ipc socket files and its pair of TCP ports.

Theory of operation. ipc sockets are created 0600 inside a private 0700 directory and
only then moved to their final path (:func:`bind_ipc`), so no other user can connect
even in the instant between ``bind()`` and ``chmod()``, whatever the umask. A socket
file already at the path is taken over only when no process answers on it (a node
that died left it, :func:`claim_ipc_path`); a live one means another node runs on the
same state directory. TCP binds 127.0.0.1 only, on a publish port and the next one
(:func:`bind_tcp`); port 0 lets the kernel pick the first and retries until the next
is free too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import zmq

from ganglion.errors import ConfigError, TransportError
from ganglion.plugin_frames import BusAddress, ipc_address

_log = logging.getLogger("ganglion.runtime.bus")

#: Longest ipc socket path Linux accepts (sun_path is 108 bytes with the NUL).
MAX_IPC_PATH = 107

#: Tries at a free pair of consecutive TCP ports before giving up.
TCP_PAIR_TRIES = 50


def check_ipc_path(base: Path) -> None:
    """Refuse an ipc base whose socket paths would be too long for a Unix socket.

    Raises:
        ConfigError: ``<base>.pub`` is longer than :data:`MAX_IPC_PATH` bytes.
    """
    longest = len(os.fsencode(base)) + len(".pub")
    if longest > MAX_IPC_PATH:
        raise ConfigError(
            f"ipc path {str(base)!r} gives socket paths of {longest} bytes; "
            f"Unix sockets allow {MAX_IPC_PATH}: use a shorter state directory"
        )


def bind_ipc(xsub: zmq.Socket[Any], xpub: zmq.Socket[Any], base: Path,
             mode: int) -> tuple[BusAddress, list[Path]]:
    """Bind the bus's two ipc sockets at ``<base>.pub`` and ``<base>.sub``.

    Args:
        xsub: the publish socket.
        xpub: the subscribe socket.
        base: the base path.
        mode: permission bits of the socket files.

    Returns:
        The address pair and the socket files made (to remove at close).

    Raises:
        TransportError: a socket cannot be bound, or a live process owns its path.
        ConfigError: a path exists and is not a socket.
    """
    pair = ipc_address(base)
    for address in pair:
        claim_ipc_path(Path(address[len("ipc://"):]))
    warn_if_shared_dir(base.parent)
    made: list[Path] = []
    # (tempfile.mkdtemp does the same, but imports shutil, bz2 and lzma: ~1 MB.)
    private = base.parent / f".bus-{os.urandom(8).hex()}"
    private.mkdir(mode=0o700)
    try:
        for sock, address in ((xsub, pair.publish), (xpub, pair.subscribe)):
            path = Path(address[len("ipc://"):])
            staged = private / path.name
            try:
                sock.bind(f"ipc://{staged}")
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot bind the plugin bus on {address}: {exc}") from exc
            os.chmod(staged, mode)
            os.replace(staged, path)
            made.append(path)
    except BaseException:
        for path in made:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    finally:
        for leftover in private.iterdir():
            leftover.unlink()
        private.rmdir()
    return pair, made


def bind_tcp(xsub: zmq.Socket[Any], xpub: zmq.Socket[Any], port: int) -> BusAddress:
    """Bind the two sockets on 127.0.0.1 at ``port`` and ``port + 1`` (0: any free pair).

    Raises:
        TransportError: a port cannot be bound, or no free pair was found.
    """
    if port:
        pair = BusAddress(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}")
        for sock, address in ((xsub, pair.publish), (xpub, pair.subscribe)):
            try:
                sock.bind(address)
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot bind the plugin bus on {address}: {exc}") from exc
        return pair
    for _ in range(TCP_PAIR_TRIES):
        try:
            xsub.bind("tcp://127.0.0.1:*")
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot bind the plugin bus on 127.0.0.1: {exc}") from exc
        endpoint = xsub.getsockopt_string(zmq.LAST_ENDPOINT)
        picked = int(endpoint.rpartition(":")[2])
        if picked < 65535:
            try:
                xpub.bind(f"tcp://127.0.0.1:{picked + 1}")
            except zmq.ZMQError:
                pass
            else:
                return BusAddress(endpoint, f"tcp://127.0.0.1:{picked + 1}")
        xsub.unbind(endpoint)
    raise TransportError(f"no free pair of consecutive TCP ports on 127.0.0.1 after "
                         f"{TCP_PAIR_TRIES} tries")


def warn_if_shared_dir(directory: Path) -> None:
    """Warn when other users may replace the bus sockets in ``directory``."""
    with contextlib.suppress(OSError):
        mode = directory.stat().st_mode
        if mode & 0o022 and not mode & stat.S_ISVTX:
            _log.warning("plugin bus: %s is writable by other users, who could replace the "
                         "bus sockets; use a private directory (the state directory is 0700)",
                         directory)


def claim_ipc_path(path: Path) -> None:
    """Remove a stale ipc socket file; refuse a live one or a file that is not a socket.

    Raises:
        ConfigError: ``path`` exists and is not a socket.
        TransportError: a running process answers on it.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        path.unlink(missing_ok=True)  # left behind by a node that died: take it over
        return
    finally:
        probe.close()
    raise TransportError(f"{path} is in use by another running process (another node?)")
