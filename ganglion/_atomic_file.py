"""Writing a small private file so that a crash leaves the old one or the new one.

The key files (``wire/keys.py``: generating and rotating; ``pairing/keyfile.py``: a key
received by ``ganglion join``) are written the same way: the bytes go to a temporary
file beside the target, created 0600 (never readable by others, not even for a
moment), fsynced, then renamed over the target, and the directory is fsynced so the
new name survives a power cut. Pure: the standard library only, no event loop.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_temp_beside(target: Path, data: bytes) -> Path:
    """Write ``data`` to a new 0600 file in ``target``'s directory, fsynced, and return
    its path (a hidden name starting ``.<target name>.``); the caller renames or removes it.

    Raises:
        OSError: the file cannot be created or written (nothing is left behind).
    """
    import tempfile  # here: it imports shutil, bz2 and lzma, which a node never needs

    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace_atomically(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` in one rename (see the module's docstring).

    Raises:
        OSError: it cannot be written; ``target`` is unchanged and no temporary is left.
    """
    tmp = write_temp_beside(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed directory entry survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
