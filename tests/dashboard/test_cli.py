"""``ganglion dashboard``, ``ganglion node --dashboard`` and ``[dashboard]``, as real processes."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dash_support import LOOPBACK

from ganglion.config import load_config
from ganglion.errors import ConfigFileError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_support import Spawner, clean_env, wait_sync


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path / "logs")
    try:
        yield spawner
    finally:
        spawner.close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_lan_address_is_announced_and_warned_about_without_token(
        port: int, spawn: Spawner) -> None:
    web = free_tcp_port()
    proc = spawn("dashboard", "--iface", LOOPBACK, "--port", str(port), "--listen",
                 f"0.0.0.0:{web}", "--duration", "2", label="lan")
    assert proc.finish(timeout=30) == 0, proc.describe()
    assert f"listening on 0.0.0.0:{web}: every machine that can reach this one can see " \
           "the page" in proc.err
    assert "WARNING: no token is set" in proc.err
    assert f"dashboard: http://0.0.0.0:{web}/" in proc.out


def test_the_loopback_default_says_nothing_more_and_a_bad_listen_is_one_line(
        port: int, spawn: Spawner) -> None:
    web = free_tcp_port()
    proc = spawn("dashboard", "--iface", LOOPBACK, "--port", str(port), "--listen",
                 f"127.0.0.1:{web}", "--duration", "1", label="loop")
    assert proc.finish(timeout=30) == 0, proc.describe()
    assert "can see the page" not in proc.err and "WARNING" not in proc.err
    bad = spawn("dashboard", "--iface", LOOPBACK, "--listen", "nowhere", label="bad")
    assert bad.finish(timeout=30) != 0
    assert bad.err.strip().splitlines()[-1] == (
        "Error: dashboard: listen 'nowhere' is not HOST:PORT (e.g. 127.0.0.1:8080)")


def test_node_serves_the_dashboard_with_its_log_as_history(
        port: int, tmp_path: Path, spawn: Spawner) -> None:
    web = free_tcp_port()
    config = tmp_path / "node.toml"
    config.write_text(f'plugins = ["log"]\n[plugin.log]\ndb = "{tmp_path / "log.db"}"\n'
                      f'[dashboard]\nlisten = "127.0.0.1:1"\n', encoding="utf-8")
    env = clean_env()
    env["GANGLION_DASHBOARD_TOKEN"] = "node-token"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the rollup's default place
    proc = spawn("node", "--config", str(config), "--iface", LOOPBACK, "--port", str(port),
                 "--state-dir", str(tmp_path / "state"), "--no-mdns", "--no-hardware",
                 "--sim", "temperature", "--interval", "0.1",
                 "--dashboard", f"127.0.0.1:{web}",  # the flag wins over the file
                 label="node", env=env)
    proc.wait_for_err(f"dashboard: http://127.0.0.1:{web}/?token=node-token", timeout=30)
    assert fetch(f"http://127.0.0.1:{web}/api/map")[0] == 401

    def history_of_the_log() -> bool:
        status, body = fetch(f"http://127.0.0.1:{web}/api/history?type=sensors.Temperature"
                             "&field=celsius&token=node-token")
        return status == 200 and bool(body["series"])  # type: ignore[index]

    wait_sync(history_of_the_log, "history from the node's log plugin", timeout=30)
    assert list((tmp_path / "cache" / "ganglion" / "dashboard").glob("*.db"))


def test_the_dashboard_table_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[dashboard]\nlisten = "0.0.0.0:8080"\ntoken_file = "t"\ndb = "/x.db"\n',
                    encoding="utf-8")
    config = load_config(path)
    assert config.dashboard_listen == "0.0.0.0:8080"
    assert config.dashboard_token_file == tmp_path / "t"
    assert config.dashboard_db == Path("/x.db")
    path.write_text('[dashboard]\nlisen = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigFileError, match=r"dashboard\.listen"):
        load_config(path)


def test_the_demo_serves_the_dashboard_with_history_and_keeps_printing(
        port: int, spawn: Spawner) -> None:
    web = free_tcp_port()
    demo = spawn("demo", "--duration", "12", "--interval", "0.2", "--port", str(port),
                 "--dashboard-port", str(web), label="demo")
    wait_sync(lambda: f"dashboard: http://127.0.0.1:{web}/" in demo.out
              or demo.popen.poll() is not None, "the dashboard's address", timeout=30)

    def three_nodes() -> bool:
        status, body = fetch(f"http://127.0.0.1:{web}/api/latest")
        return status == 200 and len({r["node"] for r in body}) == 3  # type: ignore[union-attr]

    wait_sync(three_nodes, "readings of the three sensor nodes on the page", timeout=30)

    def logged() -> bool:
        status, body = fetch(f"http://127.0.0.1:{web}/api/history?type=sensors.Temperature"
                             "&field=celsius")
        return status == 200 and len(body["series"]) == 2  # type: ignore[index]

    wait_sync(logged, "history from the demo's log", timeout=30)
    assert demo.finish(timeout=40) == 0, demo.describe()
    assert "sensors.Temperature" in demo.out and "received " in demo.out  # the printer still prints
