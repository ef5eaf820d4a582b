"""``ganglion demo``: a small sensor network on this machine, over loopback only.

Starts three ``ganglion node --sim ...`` processes (each its own node id and state
directory, like three Raspberry Pis) and runs a fourth node in this process that
prints the agreed type -> group map and every reading it receives. With the
``dashboard`` extra installed, that node also logs every reading to SQLite (in the
demo's temporary directory) and serves the web dashboard on 127.0.0.1 (live values,
plots, and history from that log); the URL is printed first. All traffic uses
127.0.0.1 as the multicast interface, and the page listens on loopback only, so
nothing leaves the machine. Child processes are ended by their PID when the demo
stops, however it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ganglion import defaults
from ganglion.cli._run import run_until_signalled

#: (node name, sensor kinds) of the demo's sensor nodes.
DEMO_NODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("brewery", ("temperature", "flow")),
    ("cellar", ("temperature", "humidity")),
    ("roof", ("pressure", "humidity")),
)
DEMO_TYPES = ("sensors.Temperature", "sensors.Humidity", "sensors.Pressure", "sensors.Flow")
_LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def _death_signal_setter() -> Callable[[], None] | None:
    """A pre-exec hook making a child get SIGTERM when the demo dies, even by SIGKILL.

    libc is loaded here, in the parent: the hook itself only makes one system call
    (``prctl(PR_SET_PDEATHSIG)``, Linux), which is safe between fork and exec.
    """
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl
    except (OSError, AttributeError):
        return None  # not Linux: the demo's own stop still ends its children

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def _spawn_sensors(port: int, interval: float, state: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    hook = _death_signal_setter()
    for name, kinds in DEMO_NODES:
        cmd = [sys.executable, "-m", "ganglion", "node", "--iface", _LOOPBACK,
               "--port", str(port), "--name", name, "--state-dir", str(state / name),
               "--interval", str(interval), "--no-mdns", "--no-hardware"]
        for kind in kinds:
            cmd += ["--sim", kind]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, preexec_fn=hook))
    return procs


class _DemoBoard:
    """The demo's logger (SQLite in its temporary directory) and dashboard."""

    def __init__(self, recorder: Any, stop: asyncio.Event, task: asyncio.Task[None],
                 dashboard: Any) -> None:
        self.recorder = recorder
        self.stop = stop
        self.task = task
        self.dashboard = dashboard

    async def close(self) -> None:
        await self.dashboard.close()
        self.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)
        await asyncio.to_thread(self.recorder.writer.close)


async def _start_dashboard(node: Any, state: Path, port: int) -> _DemoBoard | None:
    """Log every reading and serve the dashboard on 127.0.0.1:``port``; None when it cannot."""
    if port == 0:
        return None
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        click.echo("dashboard: not started (pip install 'ganglion-net[dashboard]' for it)")
        return None
    from ganglion.dashboard.server import Dashboard
    from ganglion.logger.recorder import Recorder
    from ganglion.logger.writer import Writer

    db = state / "demo-log.db"
    recorder = Recorder(Writer(db), interval=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(node, stop))
    dashboard = Dashboard(node, host=_LOOPBACK, port=port, db=db, cache=state / "rollup.db")
    try:
        await dashboard.start()
    except OSError as exc:
        click.echo(f"dashboard: not started: cannot listen on {_LOOPBACK}:{port} "
                   f"({exc.strerror or exc}); try --dashboard-port")
        stop.set()
        await asyncio.wait_for(task, 10)
        await asyncio.to_thread(recorder.writer.close)
        return None
    click.echo(f"dashboard: {dashboard.url} (this machine only; readings logged to {db})")
    return _DemoBoard(recorder, stop, task, dashboard)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@click.command()
@click.option("--duration", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Stop after this many seconds (0: until Ctrl-C).")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between readings of each simulated sensor.")
@click.option("--port", type=click.IntRange(1, 65534), default=defaults.DATA_PORT,
              show_default=True, help="UDP port of the data groups (control: the next one).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Serve the web dashboard on 127.0.0.1:PORT (0: no dashboard).")
def demo(duration: float, interval: float, port: int, dashboard_port: int) -> None:
    """Run a demo network of simulated sensor nodes over loopback and print what arrives."""
    from ganglion.cli._format import format_reading
    from ganglion.cli._observer import control_port_for
    from ganglion.node import Node
    from ganglion.plugins import load_installed_types
    from ganglion.runtime.subscription import MessageInfo

    load_installed_types()  # the sensor types, so readings print by their classes

    async def main(stop: asyncio.Event) -> int:
        with tempfile.TemporaryDirectory(prefix="ganglion-demo-") as tmp:
            state = Path(tmp)
            async with Node(name="printer", interface=_LOOPBACK, port=port,
                            control_port=control_port_for(port), state_dir=state / "printer",
                            discovery=False) as node:
                names: dict[bytes, str] = {}
                shown: set[str] = set()
                printed = 0

                def show(msg: Any, info: MessageInfo) -> None:
                    nonlocal printed
                    if stop.is_set():
                        return  # stopping: the summary below is the last line
                    if not names.get(info.sender):
                        names.update({p.id: p.name for p in node.heard()})
                    mapping = node.types()
                    if set(mapping) - shown:
                        shown.update(mapping)
                        click.echo("agreed map: " + ", ".join(f"{t} -> {g}"
                                                              for t, g in mapping.items()))
                    click.echo(format_reading(msg, sender=names.get(info.sender, info.sender.hex()[:8]),
                                              seq=info.seq, sent_ns=info.sent_ns))
                    sys.stdout.flush()
                    printed += 1

                for type_name in DEMO_TYPES:
                    node.subscribe(type_name, callback=show)
                click.echo(f"ganglion demo: nodes {', '.join(n for n, _ in DEMO_NODES)} and this "
                           f"printer on loopback (127.0.0.1:{port}); Ctrl-C stops")
                procs = _spawn_sensors(port, interval, state)
                board = None
                try:
                    # While the sensor nodes start (a second or two), so the page's
                    # address still comes before the first reading.
                    board = await _start_dashboard(node, state, dashboard_port)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=duration or None)
                finally:
                    stop.set()
                    _stop(procs)
                    if board is not None:
                        await board.close()
                stats = node.stats()
                lost = sum(t.lost for t in stats.types.values())
                click.echo(f"received {printed} readings from {len(names)} nodes, lost {lost}, "
                           f"decode errors {stats.decode_errors}")
        return 0

    sys.exit(run_until_signalled(main))
