"""``ganglion node``: run a node (with its plugins and simulated sensors) until stopped."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ganglion.cli._options import no_encrypt_option
from ganglion.cli._report import error
from ganglion.cli._run import run_until_signalled

_log = logging.getLogger("ganglion.node")
#: Seconds after the plugins started at which the C heap's free pages go back to the
#: system (ganglion._heap).
TRIM_AFTER_SECONDS = 2.0


@click.command()
@click.option("--name", default=None, help="Human name of this node (default: the hostname).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the node id, boot counter and agreement journal live "
              "(default: the user's state directory, ~/.local/state/ganglion on Linux).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="TOML config file (see docs/config.md); flags win over it.")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="Enable an installed internal plugin (entry point group ganglion.plugins).")
@click.option("--sim", "sim_kinds", multiple=True,
              type=click.Choice(["temperature", "humidity", "pressure", "flow"]),
              help="Run a simulated sensor of this kind; repeat for several.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=None,
              help="Seconds between simulated readings (default 1).")
@click.option("--hardware/--no-hardware", default=None,
              help="Detect and read sensors (1-Wire, I2C BME280, known USB-serial adapters, "
              "--gpio pins); on unless the config says hardware = false. See docs/sensors.md.")
@click.option("--gpio", "gpio", multiple=True, metavar="KIND:PIN[:K=V,...]",
              help="A GPIO input for the hardware plugin, e.g. input:17 or "
              "counter:27:per_unit=450,unit=litre; repeat for several.")
@click.option("--fake-hardware", "fake_hardware", default=None, metavar="NAME[,NAME...]",
              help="Try the hardware plugin without devices: read fake ones instead "
              "(ds18b20, bme280, bmp280, nmea; repeat ds18b20 for more probes), e.g. "
              "--fake-hardware ds18b20,bme280,nmea. See docs/sensors.md.")
@click.option("--bus-tcp-port", type=click.IntRange(1, 65535), default=None,
              help="Also serve the external plugin bus on tcp://127.0.0.1:PORT (every local "
              "user can connect unless --bus-secret-file is given).")
@click.option("--bus-secret-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Accept on the plugin bus only plugins holding this CURVE key pair file "
              "(created 0600 if absent; plugins read it via GANGLION_BUS_SECRET_FILE).")
@click.option("--dashboard", "dashboard_listen", default=None, metavar="HOST:PORT",
              help="Serve the web dashboard here (e.g. 127.0.0.1:8080; see docs/dashboard.md); "
              "history comes from the log plugin's database when the node runs it.")
@click.option("--mdns/--no-mdns", default=True, show_default=True,
              help="Advertise and browse over mDNS/DNS-SD.")
@click.option("--iface", default=None, metavar="NAME|ADDRESS",
              help="Interface name or IPv4 address (default: GANGLION_IFACE, else the "
              "default-route interface).")
@click.option("--port", type=click.IntRange(1, 65534), default=None,
              help="UDP port of the data groups (default 47800); control uses the next one.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Network key file (also GANGLION_KEY_FILE / GANGLION_KEY).")
@click.option("--ttl", type=click.IntRange(0, 255), default=None, help="Multicast TTL (default 1).")
@no_encrypt_option
@click.option("--history-age", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Seconds of what this node publishes it keeps per type, to repair other "
              "nodes' lost readings and answer late subscribers (default 60; 0 keeps none). "
              "See docs/config.md [history].")
@click.option("--history-bytes", type=click.IntRange(min=0), default=None, metavar="BYTES",
              help="Bytes kept per type (default 262144, 256 KiB; 0 keeps none).")
@click.option("--no-repair", "no_repair", is_flag=True, default=False,
              help="Do not ask publishers again for lost readings (they are only counted).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def node(name: str | None, state_dir: Path | None, config_file: Path | None,
         plugins: tuple[str, ...], sim_kinds: tuple[str, ...], interval: float | None,
         hardware: bool | None, gpio: tuple[str, ...], fake_hardware: str | None,
         bus_tcp_port: int | None,
         bus_secret_file: Path | None, dashboard_listen: str | None, mdns: bool,
         iface: str | None, port: int | None, key_file: Path | None, ttl: int | None,
         history_age: float | None, history_bytes: int | None, no_repair: bool,
         verbose: int) -> None:
    """Run a ganglion node until Ctrl-C or SIGTERM."""
    from ganglion._heap import trim_heap
    from ganglion.cli._observer import control_port_for
    from ganglion.cli._options import resolve_network
    from ganglion.config import NodeConfig, load_config, merge
    from ganglion.errors import GanglionError
    from ganglion.node import Node
    from ganglion.plugins import PluginHost, load_plugins
    from ganglion.state import default_state_dir

    logging.basicConfig(level=logging.WARNING - 10 * min(verbose + 1, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_file) if config_file is not None else NodeConfig()
        config = merge(config, {
            "name": name, "state_dir": state_dir, "plugins": plugins, "sim_kinds": sim_kinds,
            "sim_interval": interval, "bus_tcp_port": bus_tcp_port,
            "bus_secret_file": bus_secret_file, "iface": iface,
            "port": port, "key_file": key_file, "ttl": ttl, "hardware": hardware, "gpio": gpio,
            "dashboard_listen": dashboard_listen, "history_max_age": history_age,
            "history_max_bytes": history_bytes, "repair": False if no_repair else None,
        })
        specs = config.plugin_specs(include_hardware=True)
        if fake_hardware is not None:
            if hardware is False:
                raise click.UsageError("--fake-hardware runs the hardware plugin; "
                                       "drop --no-hardware")
            # The plugin checks the names (and lists the valid ones).
            specs.setdefault("hardware", {})["fake"] = fake_hardware
        loaded = load_plugins(specs)
        board = _dashboard_plugin(config, loaded)
        if board is not None:
            loaded.append(board)
    except GanglionError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = resolve_network(config.iface, config.port,
                               Path(config.key_file) if config.key_file else None, config.ttl,
                               encrypt=config.encrypt)

    history, history_per_type, history_total_bytes = config.history()

    async def main(stop: asyncio.Event) -> int:
        the_node = Node(name=config.name, interface=settings.interface, port=settings.port,
                        control_port=control_port_for(settings.port),
                        # the system's node keeps the top directory; programs' nodes use nodes/<name>
                        state_dir=config.state_dir or default_state_dir(),
                        key=settings.key, ttl=settings.ttl, max_datagram=config.max_datagram,
                        discovery=mdns, bus_ipc=config.bus_ipc,
                        bus_tcp_port=config.bus_tcp_port,
                        bus_secret_file=config.bus_secret_file, history=history,
                        history_per_type=history_per_type,
                        history_total_bytes=history_total_bytes, repair=config.repair)
        try:
            await the_node.start()
        except GanglionError as exc:
            error(str(_in_cli_words(exc)))
            return 1
        host = PluginHost(the_node, loaded)
        status = await _serve_status(the_node, host)
        try:
            click.echo(f"node {the_node.name} ({the_node.node_id.hex()}) on "
                       f"{settings.interface_name} {settings.interface}:{settings.port}"
                       + (f", plugins: {', '.join(p.name for p in loaded)}" if loaded else ""),
                       err=True)
            for address in the_node.bus_endpoints():
                click.echo(f"plugin bus: {address}", err=True)
            await host.start()
            if board is not None:
                await _say_dashboard_url(board)
            # Start-up's temporaries are freed by now, and the plugins' first steps done.
            asyncio.get_running_loop().call_later(TRIM_AFTER_SECONDS, trim_heap)
            await stop.wait()
        finally:
            if status is not None:
                await status.close()
            await host.stop()
            await the_node.close()
        return 0

    sys.exit(run_until_signalled(main))


def _dashboard_plugin(config: Any, loaded: list[Any]) -> Any:
    """The dashboard plugin the config (``[dashboard]``, ``--dashboard``) asks for, or None.

    Its history comes from ``[dashboard] db``, else from the ``log`` plugin's database.
    """
    if config.dashboard_listen is None:
        return None
    from ganglion.cli.cmd_dashboard import require_aiohttp
    from ganglion.dashboard.plugin import DashboardPlugin

    require_aiohttp()
    db = config.dashboard_db
    if db is None:
        db = next((p.db for p in loaded if p.name == "log" and hasattr(p, "db")), None)
    return DashboardPlugin(listen=config.dashboard_listen, db=db,
                           token_file=config.dashboard_token_file)


async def _say_dashboard_url(board: Any) -> None:
    """Print the dashboard's address once it listens (its errors are the plugin host's)."""
    from ganglion.cli.cmd_dashboard import page_link

    try:
        await asyncio.wait_for(board.started.wait(), timeout=10.0)
    except TimeoutError:
        return
    click.echo(f"dashboard: {page_link(board.dashboard.url, board.token)}", err=True)


async def _serve_status(the_node: Any, host: Any) -> Any:
    """Answer `ganglion status` on the state directory's socket; a node runs on without it."""
    import time

    from ganglion.errors import GanglionError
    from ganglion.runtime.status import StatusServer, status_socket_path
    from ganglion.status import build_status

    started = time.monotonic()
    server = StatusServer(status_socket_path(the_node.state_dir),
                          lambda: build_status(the_node, host, started=started))
    try:
        await server.start()
    except (GanglionError, OSError) as exc:
        _log.warning("`ganglion status` will not reach this node: %s", exc)
        return None
    return server


def _in_cli_words(exc: Exception) -> Exception:
    """A state directory error whose remedy names ``--state-dir`` (the Node names ``state_dir=``)."""
    from ganglion.errors import StateError, StateLockedError

    if not isinstance(exc, StateError) or not exc.remedy:
        return exc
    if isinstance(exc, StateLockedError):
        return exc.with_remedy("stop the other node or give this one another --state-dir")
    return exc.with_remedy("choose another with --state-dir")
