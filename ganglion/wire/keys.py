"""The network key: generating the key file and loading the key.

Theory of operation: every node of a network shares one 32-byte key. It comes,
in this order, from

1. an explicit path (``--key-file``);
2. the file named by ``GANGLION_KEY_FILE``;
3. ``GANGLION_KEY``, 64 hexadecimal characters.

Setting both environment variables is refused as ambiguous. A key file holds
either the 32 raw bytes (what ``ganglion keygen`` writes) or 64 hex characters
(``openssl rand -hex 32 > key``), optionally followed by whitespace.

Like ssh with a private key, a key file that anyone but its owner may read or
write (any of mode 0o077) is refused, with the ``chmod`` that fixes it: a
secret readable by others is no secret. The file is written with mode 0600 and
``O_EXCL`` (or atomically replaced with ``force=True``).
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ganglion.errors import KeyFileError
from ganglion.wire._mac import KEY_SIZE

ENV_KEY_FILE = "GANGLION_KEY_FILE"
ENV_KEY = "GANGLION_KEY"


def generate_key_file(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write a new random network key (32 bytes from :mod:`secrets`) with mode 0600.

    Args:
        path: where to write; missing parent directories are created (mode 0700).
        force: replace an existing file (atomically) instead of refusing.

    Returns:
        The path written.

    Raises:
        KeyFileError: the file exists and ``force`` is False, or it cannot be written.
    """
    target = Path(path)
    key = secrets.token_bytes(KEY_SIZE)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # FileExistsError too: a file where a directory should be
        raise KeyFileError(
            f"cannot write key file {target}: cannot create {target.parent} ({exc.strerror or exc})"
        ) from exc
    try:
        if force:
            _replace_atomically(target, key)
        else:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
    except FileExistsError:
        raise KeyFileError(
            f"key file {target} already exists; pass force=True (--force) to replace it, "
            f"and give the new key to every node"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {target}: {exc.strerror or exc}") from exc
    return target


def load_key(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> bytes | None:
    """Load the network key from a file or the environment.

    Args:
        path: an explicit key file; wins over the environment.
        env: the environment to read (``os.environ`` when None).

    Returns:
        The 32-byte key, or None when no key is configured (an open network).

    Raises:
        KeyFileError: the file is missing, unreadable, readable by others, or
            not 32 bytes / 64 hex characters; ``GANGLION_KEY`` is not 64 hex
            characters; or both environment variables are set.
    """
    env = os.environ if env is None else env
    if path is not None:
        return read_key_file(path)
    file_var, hex_var = env.get(ENV_KEY_FILE), env.get(ENV_KEY)
    if file_var and hex_var:
        raise KeyFileError(f"both {ENV_KEY_FILE} and {ENV_KEY} are set; set only one")
    if file_var:
        return read_key_file(file_var)
    if hex_var:
        key = _parse_hex(hex_var.strip())
        if key is None:
            raise KeyFileError(
                f"{ENV_KEY} must be {2 * KEY_SIZE} hexadecimal characters, "
                f"got {len(hex_var.strip())} characters"
            )
        return key
    return None


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a key file, checking its permissions and size.

    Args:
        path: the key file.

    Returns:
        The 32-byte key.

    Raises:
        KeyFileError: see :func:`load_key`.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {target} does not exist; create one with 'ganglion keygen {target}'"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {target}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)  # the file we read, not whatever the path names by now
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {target} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {target} has mode {mode:04o}: other users may read or change it; "
                f"run 'chmod 600 {target}'"
            )
        data = os.read(fd, 4 * KEY_SIZE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {target}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) == KEY_SIZE:
        return data
    key = _parse_hex(data.strip())
    if key is None:
        raise KeyFileError(
            f"key file {target} must hold {KEY_SIZE} bytes or {2 * KEY_SIZE} hex characters, "
            f"it holds {len(data)} bytes"
        )
    return key


def _parse_hex(text: str | bytes) -> bytes | None:
    """The key spelled as 64 hex characters, or None."""
    if len(text) != 2 * KEY_SIZE:
        return None
    try:
        return bytes.fromhex(text.decode("ascii") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError):
        return None


def _replace_atomically(target: Path, key: bytes) -> None:
    """Write ``key`` to a 0600 temp file beside ``target`` and rename it over."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
