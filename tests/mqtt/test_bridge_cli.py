"""``ganglion mqtt`` as a process, and the ``mqtt`` plugin in a node.

The process is ``python -m ganglion mqtt ... --iface 127.0.0.1 --port P`` against
a Mosquitto the fixture started; each is ended by its PID when the test ends.
The plugin is created from its class (its entry point appears once the package is
re-installed) and run by a real PluginHost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broker_support import Broker, Tls, Watcher, wait_until
from port_pairs import free_port_pair
from test_bridge_broker import Net, run, until

from ganglion.mqtt.plugin import MqttPlugin
from ganglion.plugins import PluginHost
from hardware.readings import Temperature

pytestmark = pytest.mark.usefixtures("multicast_loopback")
REPO = Path(__file__).resolve().parents[2]


class Procs:
    """Started ``python -m ganglion`` processes, all killed by PID at the end."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        out, err = self.logdir / f"{n}.out", self.logdir / f"{n}.err"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen([sys.executable, "-m", "ganglion", *args], cwd=REPO, env=env,
                                    stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        self.procs.append((proc, out, err))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> tuple[str, str]:
        for p, out, err in self.procs:
            if p is proc:
                return out.read_text(errors="replace"), err.read_text(errors="replace")
        raise KeyError(proc)

    def close(self) -> None:
        for proc, _o, _e in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path / "logs")
    try:
        yield p
    finally:
        p.close()


def net_args() -> list[str]:
    return ["--iface", "127.0.0.1", "--port", str(free_port_pair())]


def test_the_last_will_says_offline_when_the_bridge_is_sigkilled(procs: Procs,
                                                                 broker: Broker) -> None:
    watcher = Watcher(broker, "ganglion/bridge/state")
    try:
        bridge = procs.start("mqtt", "--broker", broker.url, *net_args())
        wait_until(lambda: watcher.latest("ganglion/bridge/state") == b"online", "the birth",
                   timeout=20)
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(timeout=10)
        wait_until(lambda: watcher.latest("ganglion/bridge/state") == b"offline", "the will")
    finally:
        watcher.close()


def test_a_clean_stop_says_offline_and_prints_the_counters(procs: Procs, broker: Broker) -> None:
    watcher = Watcher(broker, "ganglion/bridge/state")
    try:
        bridge = procs.start("mqtt", "--broker", broker.url, "--qos", "1", "--stats-every",
                             "0.2", *net_args())
        wait_until(lambda: watcher.latest("ganglion/bridge/state") == b"online", "the birth",
                   timeout=20)
        wait_until(lambda: len(procs.output(bridge)[0].splitlines()) >= 2, "two stats lines")
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=15) == 0
        out, _err = procs.output(bridge)
        lines = [json.loads(line) for line in out.strip().splitlines()]
        assert all("queue_dropped" in line for line in lines)
        assert lines[-1]["connects"] == 1 and lines[-1]["queue_limit"] == 10_000
        wait_until(lambda: watcher.latest("ganglion/bridge/state") == b"offline", "offline")
    finally:
        watcher.close()


def one_error(procs: Procs, proc: subprocess.Popen[bytes]) -> str:
    assert proc.wait(timeout=30) == 1
    _out, err = procs.output(proc)
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_a_bad_password_is_one_clear_error_and_exit_1(procs: Procs, password_broker: Broker,
                                                      tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    proc = procs.start("mqtt", "--broker", f"mqtt://ha@127.0.0.1:{password_broker.port}",
                       "--password-file", str(wrong), *net_args())
    line = one_error(procs, proc)  # Mosquitto 2 answers "not authorised" to a bad password
    assert "refused the connection as ha" in line and "password" in line
    anonymous = procs.start("mqtt", "--broker", password_broker.url, *net_args())
    line = one_error(procs, anonymous)
    assert "without a user name" in line and "not authorised" in line


def test_a_certificate_from_another_ca_is_one_clear_error_and_exit_1(
        procs: Procs, tls_broker: Broker, tls: Tls) -> None:
    proc = procs.start("mqtt", "--broker", f"mqtts://127.0.0.1:{tls_broker.port}",
                       "--ca", str(tls.other_ca), *net_args())
    line = one_error(procs, proc)
    assert "TLS" in line and "CERTIFICATE_VERIFY_FAILED" in line


def test_purge_clears_the_bridge_s_retained_messages_and_nothing_else(
        procs: Procs, broker: Broker) -> None:
    def retain(topic: str, payload: str) -> None:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-r", "-q",
                        "1", "-t", topic, "-m", payload], check=True, timeout=10)
    ours = {"device": {"identifiers": ["ganglion_01"], "name": "x"},
            "origin": {"name": "ganglion"},
            "cmps": {"u": {"platform": "sensor", "state_topic": "ganglion/x/t/s"}}}
    retain("homeassistant/device/ganglion_0000000000000001/config", json.dumps(ours))
    retain("homeassistant/device/zigbee_1/config", '{"origin": {"name": "Zigbee2MQTT"}}')
    retain("ganglion/x/t/s", '{"celsius": 1}')
    retain("ganglion/x/availability", "online")
    proc = procs.start("mqtt", "--broker", broker.url, "--purge")
    assert proc.wait(timeout=30) == 0, procs.output(proc)
    assert "cleared 3 retained messages" in procs.output(proc)[1]
    watcher = Watcher(broker, "#")
    try:
        wait_until(lambda: bool(watcher.snapshot()), "the retained messages left")
        import time
        time.sleep(0.5)
        assert [t for t, _p, _r in watcher.snapshot()] == ["homeassistant/device/zigbee_1/config"]
    finally:
        watcher.close()


def test_the_mqtt_plugin_bridges_its_node_s_readings(tmp_path: Path,
                                                    password_broker: Broker) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    watcher = Watcher(password_broker, "ganglion/#", username="ha", password="s3cret")
    net = Net(tmp_path)

    async def scenario() -> None:
        plugin = MqttPlugin(broker=f"mqtt://ha@127.0.0.1:{password_broker.port}",
                            password_file=str(secret), types=["sensors.*"])
        async with net.node("pi") as node:
            host = PluginHost(node, [plugin])
            await host.start()
            try:
                topic = "ganglion/pi/sensors.Temperature/w1:1"
                for i in range(50):
                    await node.publish(Temperature("w1:1", float(i)))
                    await asyncio.sleep(0.05)
                    if watcher.on(topic):
                        break
                await until(lambda: bool(watcher.on(topic)), "the node's own reading")
                status: dict[str, Any] = host.details()["mqtt"]
                assert status["connected"] and status["readings"] >= 1
            finally:
                await host.stop()

    try:
        run(scenario())
    finally:
        watcher.close()


def test_the_plugin_refuses_bad_settings() -> None:
    from ganglion.errors import ConfigError

    with pytest.raises(ConfigError, match="mqtt:// or mqtts://"):
        MqttPlugin(broker="http://x")
    with pytest.raises(ConfigError, match="qos"):
        MqttPlugin(broker="mqtt://x", qos=2)
    with pytest.raises(ConfigError, match="must be lists"):
        MqttPlugin(broker="mqtt://x", types="sensors.*")  # type: ignore[arg-type]
