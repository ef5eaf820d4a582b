"""Where readings are forwarded: a PostgreSQL URL, its password, and its errors.

Theory of operation: a target is ``postgresql://USER@HOST[:PORT]/DB`` (``postgres://``
too; query parameters such as ``sslmode=require`` pass through to libpq). The
password comes from ``--password-file`` (its first line), else from the URL,
else from libpq's own sources (``PGPASSWORD``, ``~/.pgpass``). The target's
*name*, ``user@host:port/db``, never holds the password: it is what messages,
logs and the log's ``forward_positions`` row show.

Errors are sorted into two kinds, because they need opposite handling:
*fatal* ones (a wrong password, a database or role that does not exist, a URL
libpq cannot read) will not go away by waiting, so they end the forwarder with
one line; *transient* ones (connection refused, the server starting up or
shutting down, a connection lost mid-batch) are retried with a capped backoff
while readings wait in the log.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ganglion.errors import GanglionError

__all__ = ["ForwardError", "Target", "is_fatal_connect_error"]

DEFAULT_PORT = 5432

#: libpq connection failures that waiting does not fix.
_FATAL = ("password authentication failed", "does not exist", "no password supplied",
          "invalid port number", "pg_hba.conf", "authentication failed",
          "invalid connection option", "invalid sslmode", "invalid integer value",
          "missing \"=\"", "invalid uri", "invalid percent-encoded")


class ForwardError(GanglionError):
    """Forwarding cannot go on: a bad target, a refused login, a newer server schema."""


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A PostgreSQL database readings are forwarded to.

    Attributes:
        url: the URL as given (may hold a password: never print it).
        password: from the password file, or None.
        name: ``user@host:port/db``, for messages and the position row.
    """

    url: str
    password: str | None
    name: str

    @classmethod
    def parse(cls, url: str, password_file: Path | None = None) -> Target:
        """Check a URL and read the password file.

        Raises:
            ForwardError: not a postgresql:// URL, no database name, a bad port, or
                an unreadable password file.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ForwardError(f"{mask(url)}: not a PostgreSQL URL "
                               "(expected postgresql://USER@HOST[:PORT]/DB)")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ForwardError(f"{mask(url)}: the port is not a number from 1 to 65535") from None
        db = unquote(parts.path.lstrip("/"))
        if not db or "/" in db:
            raise ForwardError(f"{mask(url)}: name the database (postgresql://USER@HOST/DB)")
        password = None
        if password_file is not None:
            try:
                lines = password_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ForwardError(f"cannot read the password file {password_file}: "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None
            if not lines or not lines[0]:
                raise ForwardError(f"the password file {password_file} is empty")
            password = lines[0]
        user = unquote(parts.username or "") or "(default user)"
        host = parts.hostname or "localhost"
        return cls(url, password, f"{user}@{host}:{port}/{db}")

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``psycopg.connect`` besides the URL."""
        kwargs: dict[str, object] = {"connect_timeout": 10, "application_name": "ganglion-forward"}
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs


def mask(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def is_fatal_connect_error(message: str) -> bool:
    """Whether a failed connection's message means waiting will not help."""
    lowered = message.lower()
    return any(word in lowered for word in _FATAL)
