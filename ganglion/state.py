"""The node's state directory: its identity, its boot counter, and durable files.

Theory of operation: everything a node must remember across restarts lives in one
directory, mode 0700. ``ganglion node`` uses ``platformdirs.user_state_dir("ganglion")``
(:func:`default_state_dir`) unless told otherwise; a program's ``Node`` uses a
directory of its own per name below it (:func:`program_state_dir`), so the two can
run side by side as one user. In it:

* ``lock`` - held with ``fcntl.flock`` for as long as the node runs, so two nodes
  can never share one directory (they would share an id and a boot counter, and
  peers would drop one node's messages as the other's duplicates). The holder
  writes its PID into the file so the loser can say who has it. The kernel drops
  the lock when the holder dies, however it dies, so a crash never leaves a
  stale lock behind.
* ``node_id`` - 8 random bytes as 16 hex digits, made on first start and then
  reused forever: it is how peers, the agreed map and the logger know this node.
* ``boot`` - a counter read, incremented and written back *durably before it is
  used*. Receivers tell a restart from a replay by a higher boot number
  (:mod:`ganglion.sequence`), so a boot number must never be handed out twice,
  not even across a power cut.
* any other name, through :meth:`NodeState.write_atomic` / :meth:`NodeState.read`
  (the consensus journal, for one).

Every write is atomic and durable: the bytes go to a temporary file, which is
fsynced, renamed over the target, and then the directory itself is fsynced so the
rename survives a power cut (the rename is only durable once the directory entry
is). A crash at any point leaves either the old file or the new one, never a mix;
a leftover temporary file is ignored by reads and removed at the next open.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import stat
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Final

from ganglion._atomic_file import fsync_dir
from ganglion.errors import StateCorruptError, StateError, StateLockedError

__all__ = [
    "BOOT_FILE",
    "LOCK_FILE",
    "NODE_ID_FILE",
    "PROGRAMS_DIR",
    "NodeState",
    "default_state_dir",
    "program_state_dir",
]

_log = logging.getLogger(__name__)

NODE_ID_FILE: Final = "node_id"
BOOT_FILE: Final = "boot"
LOCK_FILE: Final = "lock"
#: The folder of the state directory that holds one directory per program's node name.
PROGRAMS_DIR: Final = "nodes"

_NODE_ID_SIZE: Final = 8
_BOOT_LIMIT: Final = 1 << 32  # the envelope carries the boot counter as a u32
_TMP_SUFFIX: Final = ".tmp"
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def default_state_dir() -> Path:
    """The per-user state directory of ``ganglion node`` when no ``--state-dir`` is given.

    Returns:
        ``platformdirs.user_state_dir("ganglion")`` (``~/.local/state/ganglion`` on Linux).
    """
    import platformdirs

    return Path(platformdirs.user_state_dir("ganglion"))


def program_state_dir(name: str) -> Path:
    """The state directory of a program's :class:`~ganglion.node.Node` called ``name``.

    Each name gets its own directory under :func:`default_state_dir`, in a
    ``nodes`` folder (so no name can collide with the files of ``ganglion node``,
    which lives in the top directory). A program and the system's ``ganglion node``,
    run as the same user, then never fight over one lock, and a program keeps
    its node id across runs as long as it keeps its name.

    Args:
        name: the node's human name; any text. Characters that are not safe in a
            file name (and a leading dot) are percent-encoded, so two names never
            share a directory.

    Returns:
        ``<default_state_dir()>/nodes/<name>``, e.g. ``~/.local/state/ganglion/nodes/mash-tun``.

    Raises:
        StateError: the name is empty.
    """
    if not name:
        raise StateError("a node needs a non-empty name to have a state directory of its own")
    safe = urllib.parse.quote(name, safe="-_")  # letters, digits and "_.-~" stay as they are
    if safe.startswith("."):
        safe = "%2E" + safe[1:]  # no hidden directory, and not "." or ".."
    return default_state_dir() / PROGRAMS_DIR / safe


class NodeState:
    """An open, locked state directory. Make one with :meth:`open`; close it when the node stops.

    Attributes:
        path: the directory.
        node_id: this node's 8-byte id, the same on every start.
        boot: this start's boot counter, already durably written, so no later
            start will ever get the same number.
    """

    __slots__ = ("_lock_fd", "boot", "node_id", "path")

    def __init__(self, path: Path, lock_fd: int, node_id: bytes, boot: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd
        self.node_id = node_id
        self.boot = boot

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> NodeState:
        """Create (if needed) and lock a state directory, load the node id and count a boot.

        Args:
            path: the directory; :func:`default_state_dir` when None.

        Returns:
            The open state; call :meth:`close` (or use ``with``) to release the lock.

        Raises:
            StateLockedError: another process holds the directory (its PID is named
                when it could be read).
            StateCorruptError: ``node_id`` or ``boot`` does not hold what a node writes.
            StateError: the directory cannot be created, locked, read or written.
        """
        directory = Path(path).expanduser() if path is not None else default_state_dir()
        _make_private_dir(directory)
        lock_fd = _acquire_lock(directory)
        try:
            _remove_leftover_temps(directory)
            node_id, fresh = _load_or_create_node_id(directory)
            boot = _next_boot(directory, fresh)
        except BaseException:
            os.close(lock_fd)
            raise
        _log.debug("state %s: node %s, boot %d", directory, node_id.hex(), boot)
        return cls(directory, lock_fd, node_id, boot)

    # -- durable files -----------------------------------------------------------------

    def write_atomic(self, name: str, data: bytes) -> None:
        """Replace the file ``name`` with ``data``, atomically and durably.

        When this returns the new contents survive a crash or power cut; if it is
        interrupted, the file still holds its old contents (or is still absent).

        Args:
            name: a plain file name in the state directory (letters, digits, ``_.-``;
                not ``lock``, not ending in ``.tmp``).
            data: the complete new contents.

        Raises:
            StateError: the state is closed, the name is not allowed, or the write failed.
        """
        self._check_open()
        _check_name(name)
        if name == LOCK_FILE:
            raise StateError(f"{LOCK_FILE!r} is the state directory's lock; it cannot be written")
        _write_durably(self.path, name, data)

    def read(self, name: str) -> bytes | None:
        """Read the file ``name`` written by :meth:`write_atomic`.

        Args:
            name: a plain file name in the state directory.

        Returns:
            Its contents, or None when there is no such file.

        Raises:
            StateError: the state is closed, the name is not allowed, or the read failed.
        """
        self._check_open()
        _check_name(name)
        return _read_file(self.path / name)

    def file_path(self, name: str) -> Path:
        """The path of the file (or socket) ``name`` in the state directory, e.g. the bus's ipc socket.

        Raises:
            StateError: the name is not allowed.
        """
        _check_name(name)
        return self.path / name

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` released the lock."""
        return self._lock_fd is None

    def close(self) -> None:
        """Release the lock (idempotent). The files stay for the next start."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> NodeState:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"node {self.node_id.hex()}, boot {self.boot}"
        return f"<NodeState {str(self.path)!r} {state}>"

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise StateError(f"the state directory {self.path} is closed")


# -- helpers ---------------------------------------------------------------------------


def _check_name(name: str) -> None:
    """Refuse names that could escape the directory or collide with temporaries."""
    if not _NAME_RE.fullmatch(name) or name.endswith(_TMP_SUFFIX):
        raise StateError(f"{name!r} is not a valid state file name "
                         "(letters, digits and _.- only, not ending in .tmp)")


def _make_private_dir(directory: Path) -> None:
    """Create the directory as 0700, or tighten an existing one of ours to 0700.

    Only this user may read the node's state (its id, boot counter, acceptor
    journal): an existing directory made by hand or by an older version with a
    looser mode is tightened at start, and the change logged.
    """
    try:
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
            return
        st = directory.stat()
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(directory, 0o700)
            _log.info("tightened the state directory %s from mode %o to 0700",
                      directory, stat.S_IMODE(st.st_mode))
    except OSError as exc:
        raise StateError(f"cannot create the state directory {directory}: {exc.strerror}",
                         remedy="choose another state directory") from exc


def _acquire_lock(directory: Path) -> int:
    """Take the directory's flock without waiting, and record our PID in the lock file."""
    lock_path = directory / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open the lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StateError(f"cannot lock {lock_path}: {exc.strerror}") from exc
        who = f"process {holder}" if holder is not None else "another process"
        raise StateLockedError(
            f"the state directory {directory} is in use by {who}; two nodes cannot share "
            "one state directory", remedy="stop the other node or give this one another state "
            "directory") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:  # the lock is what matters; the PID is only a courtesy
        _log.warning("could not record our PID in %s: %s", lock_path, exc)
    return fd


def _read_pid(fd: int) -> int | None:
    """The PID the lock holder wrote, if it has written one yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _remove_leftover_temps(directory: Path) -> None:
    """Delete temporaries a crashed writer left (we hold the lock, so nobody is writing)."""
    for leftover in directory.glob(f".*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            leftover.unlink()
            _log.info("removed %s, left by an interrupted write", leftover)


def _load_or_create_node_id(directory: Path) -> tuple[bytes, bool]:
    """The persisted node id, or a new one made and written durably; True when new."""
    path = directory / NODE_ID_FILE
    raw = _read_file(path)
    if raw is None:
        node_id = os.urandom(_NODE_ID_SIZE)
        _write_durably(directory, NODE_ID_FILE, node_id.hex().encode() + b"\n")
        _log.info("new node id %s, saved in %s", node_id.hex(), path)
        return node_id, True
    text = raw.decode("ascii", errors="replace").strip()
    if len(text) != 2 * _NODE_ID_SIZE or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise StateCorruptError(
            f"{path} is corrupt: expected {2 * _NODE_ID_SIZE} hex digits, found {text[:40]!r}; "
            f"restore it from a backup to keep this node's identity, or delete it to give "
            f"the node a new id (peers will then see it as a new node)"
        )
    return bytes.fromhex(text), False


def _next_boot(directory: Path, fresh_id: bool) -> int:
    """Count one boot: read, increment, and persist durably before returning it."""
    path = directory / BOOT_FILE
    raw = _read_file(path)
    if raw is None:
        if fresh_id:
            previous = 0
        else:
            # The id is old but its counter is gone: peers may remember any boot number
            # this id used, so jump to the clock's seconds, which no counter reaches.
            previous = int(time.time())
            _log.warning("%s is missing; continuing the boot counter from %d", path, previous + 1)
    else:
        text = raw.decode("ascii", errors="replace").strip()
        if not text.isdigit():
            raise StateCorruptError(
                f"{path} is corrupt: expected a decimal boot counter, found {text[:40]!r}; "
                f"delete it and the node continues from the current time in seconds"
            )
        previous = int(text)
    boot = previous + 1
    if boot >= _BOOT_LIMIT:
        raise StateCorruptError(f"{path}: the boot counter {previous} is at its limit; "
                                f"delete {directory / NODE_ID_FILE} and {path} to start a new identity")
    _write_durably(directory, BOOT_FILE, f"{boot}\n".encode())
    return boot


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc


def _write_durably(directory: Path, name: str, data: bytes) -> None:
    """Temp file, fsync, rename over the target, fsync the directory."""
    target = directory / name
    tmp = directory / f".{name}{_TMP_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(directory)
    except OSError as exc:
        raise StateError(f"cannot write {target}: {exc.strerror or exc}") from exc
