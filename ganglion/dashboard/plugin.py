"""The ``dashboard`` internal plugin: a node serves the web dashboard of what it receives.

Theory of operation: ``setup`` checks the settings (listen address, token file,
log) so a mistake fails at start with the node's other plugins unaffected;
``run`` starts a :class:`~ganglion.dashboard.server.Dashboard` on the node and
serves until the node stops. aiohttp is imported only here, when the plugin
runs, so a node without the ``dashboard`` extra never loads it.

``ganglion node --dashboard HOST:PORT`` and a ``[dashboard]`` table in the node's
config (docs/config.md) enable it; ``ganglion dashboard`` runs it on an observer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

from ganglion.dashboard.params import listen_address
from ganglion.errors import ConfigError

__all__ = ["DEFAULT_LISTEN", "TOKEN_ENV", "DashboardPlugin", "exposure_notice", "read_token"]

_log = logging.getLogger(__name__)

#: Where the dashboard listens unless told otherwise: this machine only.
DEFAULT_LISTEN = "127.0.0.1:8080"
#: The environment variable holding the token (``--token-file`` wins over it).
TOKEN_ENV = "GANGLION_DASHBOARD_TOKEN"


def read_token(token_file: str | Path | None, env: dict[str, str] | None = None) -> str | None:
    """The token from ``token_file`` (first line), else ``GANGLION_DASHBOARD_TOKEN``, else None.

    Raises:
        ConfigError: the file cannot be read or is empty.
    """
    if token_file is not None:
        try:
            text = Path(token_file).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"dashboard token file {token_file}: {exc}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise ConfigError(f"dashboard token file {token_file} is empty")
        return token
    value = (os.environ if env is None else env).get(TOKEN_ENV, "").strip()
    return value or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_notice(host: str, port: int, *, token: bool) -> str | None:
    """The line to print for a non-loopback listen address (None on loopback)."""
    if is_loopback(host):
        return None
    who = ("every machine that can reach this one" if host in ("0.0.0.0", "::", "")
           else f"every machine that can reach {host}")
    line = f"dashboard: listening on {host}:{port}: {who} can see the page"
    if token:
        return line + " (with the token)"
    return (line + "; WARNING: no token is set, so anyone there can read every reading "
            "(use --token-file or GANGLION_DASHBOARD_TOKEN)")


class DashboardPlugin:
    """Serves the web dashboard of the node it runs on.

    Args:
        listen: ``HOST:PORT`` (default :data:`DEFAULT_LISTEN`).
        db: the SQLite log for history; None for live values only.
        token_file: a file whose first line is the token every request needs;
            None for ``GANGLION_DASHBOARD_TOKEN`` or no token.
        cache: the history rollup cache file; None for the user's cache directory.
        name: the plugin's name.

    Raises:
        ConfigError: a setting is not valid.
    """

    publishes: tuple[type | str, ...] = ()
    subscribes: tuple[type | str, ...] = ()

    def __init__(self, listen: str = DEFAULT_LISTEN, db: str | Path | None = None,
                 token_file: str | Path | None = None, cache: str | Path | None = None,
                 name: str = "dashboard") -> None:
        try:
            self.host, self.port = listen_address(listen)
        except ValueError as exc:
            raise ConfigError(f"dashboard: listen {exc}") from None
        self.name = name
        self.db = Path(db).expanduser() if db is not None else None
        self.cache = Path(cache).expanduser() if cache is not None else None
        self.token = read_token(token_file)
        self.dashboard: Any = None
        self.started = asyncio.Event()

    async def run(self, node: Any) -> None:
        """Serve until cancelled (the node stops)."""
        from ganglion.dashboard.server import Dashboard

        dashboard = Dashboard(node, host=self.host, port=self.port, db=self.db,
                              cache=self.cache, token=self.token)
        try:
            await dashboard.start()
        except OSError as exc:
            raise ConfigError(f"dashboard cannot listen on {self.host}:{self.port}: "
                              f"{exc.strerror or exc}") from None
        self.dashboard = dashboard
        self.started.set()
        notice = exposure_notice(self.host, dashboard.port, token=self.token is not None)
        if notice:
            _log.warning("%s", notice)
        _log.info("dashboard at %s", dashboard.url)
        try:
            await asyncio.Event().wait()
        finally:
            self.started.clear()
            await dashboard.close()

