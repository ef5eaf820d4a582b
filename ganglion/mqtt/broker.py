"""The broker address: ``mqtt[s]://[user@]HOST[:PORT]``."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from ganglion.errors import ConfigError

__all__ = ["BrokerAddress", "parse_broker"]


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is.

    Attributes:
        host: its host name or address.
        port: its port (1883 for ``mqtt://``, 8883 for ``mqtts://`` unless given).
        tls: connect with TLS (``mqtts://``).
        username: the user name, or None.
    """

    host: str
    port: int
    tls: bool
    username: str | None = None

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker(url: str) -> BrokerAddress:
    """Read ``mqtt[s]://[user@]HOST[:PORT]`` (a bare ``HOST[:PORT]`` means ``mqtt://``).

    Raises:
        ConfigError: not such an address, or it holds a password (use a password file).
    """
    text = url if "://" in url else f"mqtt://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--broker {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"--broker {url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"--broker {url!r}: no host")
    if parts.password is not None:
        raise ConfigError(f"--broker {url!r}: put the password in a file (--password-file), "
                          f"not in the address, where `ps` shows it")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"--broker {url!r}: expected mqtt[s]://[user@]HOST[:PORT] only")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls,
                         username=parts.username or None)
