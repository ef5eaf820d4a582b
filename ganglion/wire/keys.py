"""The network key: generating the key file, loading the keys, rotating them.

Theory of operation: every node of a network shares one 32-byte key (two while a
key is being rotated, see below). It comes, in this order, from

1. an explicit path (``--key-file``);
2. the file named by ``GANGLION_KEY_FILE``;
3. ``GANGLION_KEY``, 64 hexadecimal characters.

Setting both environment variables is refused as ambiguous. A key file holds
either the 32 raw bytes (what ``ganglion keygen`` wrote before rotation existed)
or keys as 64 hex characters, one per line (``openssl rand -hex 32 > key`` makes a
one-key file; ``ganglion keygen`` writes this form). Blank lines and lines starting
with ``#`` are ignored. The first key is the *sending* key; every key listed is
*accepted*. At most :data:`MAX_KEYS` (2) keys: a MAC-only datagram does not say
which key signed it, so a receiver tries each, and two bound that work.

Rotation without a gap in delivery (docs/security.md): ``keygen --rotate`` adds a
new key *after* the sending key (accepted, not yet used); once every node has that
file, ``keygen --switch`` puts the new key first (nodes send with it, the old one is
still accepted); once every node has that, ``keygen --retire`` keeps only the first.
At every step each node accepts what every other node sends.

:class:`KeyRing` is the loaded form: the keys, their key ids, and whether to
encrypt (``--no-encrypt`` turns that off: datagrams then carry only a MAC, in the
v1 format old nodes read).

Like ssh with a private key, a key file that anyone but its owner may read or
write (any of mode 0o077) is refused, with the ``chmod`` that fixes it: a
secret readable by others is no secret. The file is written with mode 0600 and
``O_EXCL`` (or atomically replaced with ``force=True``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ganglion._atomic_file import replace_atomically
from ganglion._blake2 import blake2b
from ganglion.errors import ConfigError, KeyFileError
from ganglion.wire._mac import KEY_SIZE, check_key

if TYPE_CHECKING:
    from ganglion.wire._aead import Opener, Sealer

ENV_KEY_FILE = "GANGLION_KEY_FILE"
ENV_KEY = "GANGLION_KEY"
#: Most keys a ring (and a key file) holds: the sending key and one more.
MAX_KEYS = 2
#: Key id size in an encrypted datagram.
KEY_ID_SIZE = 4
#: Session size in an encrypted datagram: random per sender start.
SESSION_SIZE = 8
#: BLAKE2b personalisation of key ids.
KEY_ID_PERSON = b"ganglion-keyid"
#: What to install for encryption.
SECURE_HINT = "pip install 'ganglion-net[secure]'"
#: Largest key file read: two hex keys with room for comments and blank lines.
_MAX_FILE = 4096


def key_id(key: bytes) -> bytes:
    """The 4-byte id of a network key, sent in encrypted datagrams.

    ``BLAKE2b(data = empty, key = network key, digest_size = 4, person =
    "ganglion-keyid")``: a keyed hash, so it names the key without revealing it.
    """
    return blake2b(b"", key=key, digest_size=KEY_ID_SIZE, person=KEY_ID_PERSON).digest()


def aead_available() -> bool:
    """Whether ``cryptography`` (the ``secure`` extra) can be imported."""
    try:
        import ganglion.wire._aead  # noqa: F401
    except ImportError:
        return False
    return True


class KeyRing:
    """The network keys a node holds: the first sends, every one is accepted.

    Args:
        keys: one or two 32-byte keys, the sending key first.
        encrypt: encrypt what this node sends (ChaCha20-Poly1305); False sends
            MAC-only datagrams (the v1 format every keyed node reads).

    Raises:
        ConfigError: no key, more than :data:`MAX_KEYS`, a key of the wrong size,
            or the same key twice.
    """

    __slots__ = ("_opener", "encrypt", "ids", "keys")

    def __init__(self, keys: Iterable[bytes], *, encrypt: bool = True) -> None:
        self.keys = tuple(check_key(k) for k in keys)
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise ConfigError(f"a key ring holds 1..{MAX_KEYS} keys, got {len(self.keys)}")
        if len(set(self.keys)) != len(self.keys):
            raise ConfigError("the same key is listed twice")
        self.ids = tuple(key_id(k) for k in self.keys)
        self.encrypt = bool(encrypt)
        self._opener: Opener | None = None

    @property
    def sending(self) -> bytes:
        """The key this node signs or encrypts with."""
        return self.keys[0]

    def with_encrypt(self, encrypt: bool) -> KeyRing:
        """The same keys with another encryption choice."""
        return self if encrypt == self.encrypt else KeyRing(self.keys, encrypt=encrypt)

    def require_aead(self) -> None:
        """Check that encryption can be used here.

        Raises:
            ConfigError: ``cryptography`` is missing; the message says what to install.
        """
        if not aead_available():
            raise ConfigError(
                f"encrypting with a network key needs the 'cryptography' package: "
                f"{SECURE_HINT} (or run with --no-encrypt for MAC-only datagrams)")

    def opener(self) -> Opener:
        """The receive side's decryptor for these keys (made once, then shared).

        Raises:
            AuthError: ``cryptography`` is missing, so encrypted datagrams cannot be read.
        """
        opener = self._opener
        if opener is None:
            try:
                from ganglion.wire._aead import Opener
            except ImportError:
                from ganglion.errors import AuthError

                raise AuthError(f"datagram is encrypted, and reading it needs the "
                                f"'cryptography' package: {SECURE_HINT}") from None
            opener = self._opener = Opener(self.keys, self.ids)
        return opener

    @property
    def evictions(self) -> int:
        """Per-sender ciphers the receive side's cache evicted so far (0 before any)."""
        return 0 if self._opener is None else self._opener.evictions

    def sealer(self, node_id: bytes, session: bytes, type_name: str) -> Sealer:
        """A sender's encryptor for one type under the sending key.

        Raises:
            ConfigError: ``cryptography`` is missing.
        """
        self.require_aead()
        from ganglion.wire._aead import Sealer

        return Sealer(self.keys[0], self.ids[0], node_id, session, type_name)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, KeyRing) and other.keys == self.keys
                and other.encrypt == self.encrypt)

    def __hash__(self) -> int:
        return hash((self.keys, self.encrypt))

    def __repr__(self) -> str:  # never the keys themselves
        ids = ", ".join(i.hex() for i in self.ids)
        return f"KeyRing(ids=[{ids}], encrypt={self.encrypt})"


def as_keyring(key: bytes | KeyRing | None, *, encrypt: bool | None = None) -> KeyRing | None:
    """Normalise a key argument: bytes become a one-key ring (encrypting by default).

    Args:
        key: a 32-byte key, a ring, or None (no key).
        encrypt: override the ring's choice; None keeps it (True for bytes).

    Raises:
        ConfigError: the key is not 32 bytes.
    """
    if key is None:
        return None
    ring = key if isinstance(key, KeyRing) else KeyRing((key,))
    return ring if encrypt is None else ring.with_encrypt(encrypt)


def generate_key_file(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write a new random network key (32 bytes from ``os.urandom``, as :mod:`secrets` gives them) with mode 0600.

    Args:
        path: where to write; missing parent directories are created (mode 0700).
        force: replace an existing file (atomically) instead of refusing.

    Returns:
        The path written.

    Raises:
        KeyFileError: the file exists and ``force`` is False, or it cannot be written.
    """
    target = Path(path)
    key = os.urandom(KEY_SIZE)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # FileExistsError too: a file where a directory should be
        raise KeyFileError(
            f"cannot write key file {target}: cannot create {target.parent} ({exc.strerror or exc})"
        ) from exc
    try:
        if force:
            replace_atomically(target, key)
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
    """Load the network's sending key from a file or the environment.

    Args:
        path: an explicit key file; wins over the environment.
        env: the environment to read (``os.environ`` when None).

    Returns:
        The 32-byte sending key (the first of the file), or None when no key is
        configured (an open network). :func:`load_keyring` returns every key.

    Raises:
        KeyFileError: see :func:`load_keyring`.
    """
    ring = load_keyring(path, env)
    return None if ring is None else ring.sending


def load_keyring(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
    *, encrypt: bool = True,
) -> KeyRing | None:
    """Load the network keys from a file or the environment.

    Args:
        path: an explicit key file; wins over the environment.
        env: the environment to read (``os.environ`` when None).
        encrypt: the ring's choice to encrypt (False: MAC-only, ``--no-encrypt``).

    Returns:
        The :class:`KeyRing`, or None when no key is configured (an open network).

    Raises:
        KeyFileError: the file is missing, unreadable, readable by others, or not
            32 bytes / one or two keys of 64 hex characters; ``GANGLION_KEY`` is not
            one or two (comma-separated) keys of 64 hex characters; or both
            environment variables are set.
    """
    env = os.environ if env is None else env
    if path is not None:
        keys = read_keys(path)
    else:
        file_var, hex_var = env.get(ENV_KEY_FILE), env.get(ENV_KEY)
        if file_var and hex_var:
            raise KeyFileError(f"both {ENV_KEY_FILE} and {ENV_KEY} are set; set only one")
        if file_var:
            keys = read_keys(file_var)
        elif hex_var:
            parsed = [_parse_hex(part.strip()) for part in hex_var.split(",")]
            if not 1 <= len(parsed) <= MAX_KEYS or any(k is None for k in parsed):
                raise KeyFileError(
                    f"{ENV_KEY} must be {2 * KEY_SIZE} hexadecimal characters (or two such "
                    f"keys, comma-separated), got {len(hex_var.strip())} characters"
                )
            keys = tuple(k for k in parsed if k is not None)
        else:
            return None
    try:
        return KeyRing(keys, encrypt=encrypt)
    except ConfigError as exc:
        raise KeyFileError(str(exc)) from None


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a key file, checking its permissions and format.

    Args:
        path: the key file.

    Returns:
        The 32-byte sending key (the file's first).

    Raises:
        KeyFileError: see :func:`load_keyring`.
    """
    return read_keys(path)[0]


def read_keys(path: str | os.PathLike[str]) -> tuple[bytes, ...]:
    """Read every key of a key file, checking its permissions and format.

    Args:
        path: the key file: 32 raw bytes, or one or two keys of 64 hex characters
            on lines of their own (blank lines and ``#`` comments ignored).

    Returns:
        The keys, the sending key first.

    Raises:
        KeyFileError: see :func:`load_keyring`.
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
        data = os.read(fd, _MAX_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {target}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) == KEY_SIZE:
        return (data,)
    keys = _parse_lines(data)
    if keys is None:
        raise KeyFileError(
            f"key file {target} must hold {KEY_SIZE} bytes or {2 * KEY_SIZE} hex characters "
            f"(one or two keys, one per line); it holds {len(data)} bytes"
        )
    if len(set(keys)) != len(keys):
        raise KeyFileError(f"key file {target} lists the same key twice")
    return keys


def rotate_key_file(path: str | os.PathLike[str]) -> bytes:
    """Rotation step 1: add a new random key after the sending key (accepted, not sent).

    Args:
        path: an existing key file with one key.

    Returns:
        The new key's id (:func:`key_id`).

    Raises:
        KeyFileError: the file cannot be read or written, or already holds two keys
            (finish that rotation with :func:`switch_key_file` and :func:`retire_key_file`).
    """
    keys = read_keys(path)
    if len(keys) >= MAX_KEYS:
        raise KeyFileError(
            f"key file {path} already holds {len(keys)} keys: a rotation is under way; "
            f"finish it ('ganglion keygen --switch', then '--retire') before starting another"
        )
    new = os.urandom(KEY_SIZE)
    _write_keys(Path(path), (*keys, new))
    return key_id(new)


def switch_key_file(path: str | os.PathLike[str]) -> bytes:
    """Rotation step 2: send with the newer key (the old one stays accepted).

    Args:
        path: a key file with two keys.

    Returns:
        The id of the key now sending.

    Raises:
        KeyFileError: the file cannot be read or written, or holds one key.
    """
    keys = read_keys(path)
    if len(keys) != MAX_KEYS:
        raise KeyFileError(f"key file {path} holds one key: nothing to switch to "
                           f"(add one with 'ganglion keygen --rotate {path}')")
    _write_keys(Path(path), (keys[1], keys[0]))
    return key_id(keys[1])


def retire_key_file(path: str | os.PathLike[str]) -> bytes:
    """Rotation step 3: keep only the sending key; the other is no longer accepted.

    Args:
        path: a key file with two keys.

    Returns:
        The id of the key kept.

    Raises:
        KeyFileError: the file cannot be read or written, or holds one key.
    """
    keys = read_keys(path)
    if len(keys) != MAX_KEYS:
        raise KeyFileError(f"key file {path} holds one key: nothing to retire")
    _write_keys(Path(path), keys[:1])
    return key_id(keys[0])


def _write_keys(target: Path, keys: tuple[bytes, ...]) -> None:
    """Replace the key file with ``keys`` as hex lines (readable by old nodes when one)."""
    try:
        replace_atomically(target, "".join(k.hex() + "\n" for k in keys).encode("ascii"))
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {target}: {exc.strerror or exc}") from exc


def _parse_lines(data: bytes) -> tuple[bytes, ...] | None:
    """The keys of a text key file, or None if it is not one."""
    keys: list[bytes] = []
    for raw in data.splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        key = _parse_hex(line)
        if key is None:
            return None
        keys.append(key)
    return tuple(keys) if 1 <= len(keys) <= MAX_KEYS else None


def _parse_hex(text: str | bytes) -> bytes | None:
    """The key spelled as 64 hex characters, or None."""
    if len(text) != 2 * KEY_SIZE:
        return None
    try:
        return bytes.fromhex(text.decode("ascii") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError):
        return None
