"""``ganglion dashboard``: an observer node serving the web dashboard (docs/dashboard.md)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import click

from ganglion.cli._options import network_options, resolve_network
from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled


def require_aiohttp() -> None:
    """Fail with the install line when the ``dashboard`` extra is missing.

    Raises:
        click.ClickException: aiohttp cannot be imported.
    """
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "the dashboard needs aiohttp: pip install 'ganglion-net[dashboard]'") from None


def page_link(url: str, token: str | None) -> str:
    """The address to open: with ``?token=`` when a token is set (it then sets a cookie)."""
    if token is None:
        return url
    from urllib.parse import quote

    return f"{url}?token={quote(token, safe='')}"


@click.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where the web server listens; anything but loopback lets other machines "
              "see the page (set a token).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A log database (ganglion log, or a node's log plugin) for the history views.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Every request needs the token on this file's first line "
              "(also GANGLION_DASHBOARD_TOKEN).")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The history rollup cache for --db (default: in the user's cache directory).")
@click.option("--duration", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Stop after this many seconds (0: until Ctrl-C).")
@network_options
def dashboard(listen: str, db: Path | None, token_file: Path | None, cache: Path | None,
              duration: float, iface: str | None, port: int, key_file: Path | None,
              ttl: int) -> None:
    """Serve a web page of every reading on the network: latest values, live plots, history.

    Runs an observer node (never counted in a quorum) and a web server; open the
    address it prints. With --db, the page also shows 1 h / 24 h / 7 d / custom
    history from that log. See docs/dashboard.md.
    """
    from ganglion.cli._observer import observer
    from ganglion.dashboard.plugin import DashboardPlugin, exposure_notice
    from ganglion.errors import GanglionError

    require_aiohttp()
    try:
        plugin = DashboardPlugin(listen=listen, db=db, token_file=token_file, cache=cache)
    except GanglionError as exc:
        raise click.ClickException(str(exc)) from None
    settings = resolve_network(iface, port, key_file, ttl)

    async def main(stop: asyncio.Event) -> int:
        from ganglion.dashboard.server import Dashboard

        async with observer(settings, name="ganglion-dashboard") as node:
            board = Dashboard(node, host=plugin.host, port=plugin.port, db=plugin.db,
                              cache=plugin.cache, token=plugin.token)
            try:
                await board.start()
            except OSError as exc:
                error(f"dashboard cannot listen on {listen}: {exc.strerror or exc}")
                return 1
            except GanglionError as exc:
                error(str(exc))
                return 1
            try:
                notice = exposure_notice(plugin.host, board.port, token=plugin.token is not None)
                if notice:
                    click.echo(notice, err=True)
                click.echo(f"dashboard: {page_link(board.url, plugin.token)} "
                           f"(network on {settings.interface_name} {settings.interface}:"
                           f"{settings.port}; Ctrl-C stops)")
                sys.stdout.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=duration or None)
            finally:
                await board.close()
        return 0

    sys.exit(run_until_signalled(main))
