"""The CURVE key pair that restricts a plugin bus, and its file (docs/plugin-frames.md §1.1).

Shared by both ends of the bus: the node (:mod:`ganglion.runtime._bus_auth`) and
a plugin (:mod:`ganglion.client`). It uses zmq only for CURVE key arithmetic and
to set a socket's key options; it opens no socket.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import zmq

from ganglion.errors import ConfigError

#: Environment variable naming the bus secret file when no ``secret`` argument is given.
BUS_SECRET_ENV = "GANGLION_BUS_SECRET_FILE"

#: Z85 text of a 32-byte CURVE key is 40 characters.
_Z85_KEY_CHARS = 40
_KEY_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"\s*$', re.MULTILINE)


@dataclasses.dataclass(frozen=True, slots=True)
class BusSecret:
    """The shared CURVE key pair that guards a restricted plugin bus.

    The node and every plugin hold the *same* pair: the node uses it as its
    CURVE server key, a plugin as both the server key it expects and its own
    client key, and the node accepts only clients that present it. Whoever can
    read the file can use the bus; nobody else can (docs/plugin-frames.md §1.1).

    Attributes:
        public: the public key, 40 characters of Z85 text.
        secret: the secret key, 40 characters of Z85 text.
    """

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> BusSecret:
        """Return a fresh random key pair.

        Raises:
            ConfigError: this libzmq was built without CURVE.
        """
        _require_curve()
        public, secret = zmq.curve_keypair()
        return cls(public=public, secret=secret)

    @classmethod
    def parse(cls, text: str, source: str = "bus secret") -> BusSecret:
        """Read the key pair from a secret file's text (the zcert format; see to_text).

        Args:
            text: the file's contents.
            source: what to call it in error messages.

        Returns:
            The pair, checked: the public key is the secret key's.

        Raises:
            ConfigError: a key line is missing or malformed, or the keys do not match.
        """
        keys = {kind: value for kind, value in _KEY_LINE.findall(text)}
        if set(keys) != {"public", "secret"}:
            raise ConfigError(f"{source}: expected the lines public-key = \"...\" and "
                              f"secret-key = \"...\" (a ZeroMQ CURVE secret certificate)")
        public, secret = keys["public"].encode("ascii", "replace"), keys["secret"].encode(
            "ascii", "replace")
        if len(public) != _Z85_KEY_CHARS or len(secret) != _Z85_KEY_CHARS:
            raise ConfigError(f"{source}: each key must be {_Z85_KEY_CHARS} characters of Z85")
        _require_curve()
        try:
            derived = zmq.curve_public(secret)
        except (zmq.ZMQError, ValueError) as exc:
            raise ConfigError(f"{source}: secret-key is not valid Z85 ({exc})") from None
        if derived != public:
            raise ConfigError(f"{source}: public-key does not belong to secret-key")
        return cls(public=public, secret=secret)

    def to_text(self) -> str:
        """Return the file contents: a ZeroMQ CURVE secret certificate (zcert format)."""
        return (
            "#   ganglion plugin bus secret: a ZeroMQ CURVE key pair shared by the node\n"
            "#   and its plugins. Whoever can read this file can use the bus. Keep it 0600.\n"
            "\n"
            "metadata\n"
            "curve\n"
            f'    public-key = "{self.public.decode()}"\n'
            f'    secret-key = "{self.secret.decode()}"\n'
        )

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make a plugin's socket authenticate to the node with this pair (before connect)."""
        sock.curve_serverkey = self.public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

    def __repr__(self) -> str:
        return f"BusSecret(public={self.public.decode()!r}, secret=<hidden>)"


def read_bus_secret(path: str | os.PathLike[str]) -> BusSecret:
    """Read a bus secret file, refusing one that every user can read.

    Args:
        path: the file (the node's ``[bus] secret_file``).

    Returns:
        The key pair.

    Raises:
        ConfigError: the file cannot be read, other users may read or write it,
            or its contents are not a key pair.
    """
    path = Path(path)
    try:
        with open(path, encoding="ascii") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            text = fh.read(4096)  # a certificate is ~300 bytes: never read a huge file whole
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ConfigError(f"cannot read the bus secret file {path}: {reason}") from None
    if mode & 0o007:
        raise ConfigError(f"the bus secret file {path} is open to every user (mode "
                          f"{stat.S_IMODE(mode):o}); it protects nothing: chmod 600 {path}")
    return BusSecret.parse(text, str(path))


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise ConfigError("this libzmq has no CURVE support, which the bus secret needs "
                          "(a libzmq built with libsodium, as pyzmq's wheels are)")
