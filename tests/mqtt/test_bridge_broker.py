"""The bridge end to end: ganglion nodes on 127.0.0.1, a real Mosquitto, a real MQTT client.

Sensor nodes are in-process members on a port pair of their own; the bridge runs on
an observer node in the same event loop (``ganglion mqtt`` itself is run as a
process in test_bridge_cli.py). Every scenario runs under a deadline and every wait
is bounded; the broker fixture ends Mosquitto by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from broker_support import Broker, Watcher
from port_pairs import free_port_pair
from test_bridge_core import check_device_config

from ganglion import __version__
from ganglion.mqtt import BridgeSettings, CommandRoute, parse_broker
from ganglion.mqtt.discovery import unique_id
from ganglion.node import Node
from ganglion.runtime.mqtt import MqttBridge
from hardware.readings import Flow, Temperature

pytestmark = pytest.mark.usefixtures("multicast_loopback")

T = TypeVar("T")
DEVICE = "homeassistant/device/ganglion_{}/config"


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Net:
    """Nodes on one port pair, each member with its own state directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.port = free_port_pair()

    def node(self, name: str, *, observer: bool = False) -> Node:
        return Node(name=name, interface="127.0.0.1", port=self.port, control_port=self.port + 1,
                    discovery=False, heartbeat_seconds=0.2, peer_timeout=1.0, observer=observer,
                    state_dir=None if observer else self.tmp / name)


@contextlib.asynccontextmanager
async def bridged(net: Net, broker: Broker, **options: Any) -> AsyncIterator[MqttBridge]:
    """A bridge on an observer node, running until the block ends."""
    settings = BridgeSettings(version=__version__,
                              **{k: options.pop(k) for k in list(options)
                                 if k in ("forget_after", "qos", "ha_mode", "retain")})
    bridge = MqttBridge(broker=parse_broker(options.pop("url", broker.url)), settings=settings,
                        poll=0.05, backoff=options.pop("backoff", (0.2, 1.0)), **options)
    stop = asyncio.Event()
    async with net.node("bridge", observer=True) as obs:
        task = asyncio.create_task(bridge.run(obs, stop))
        try:
            yield bridge
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


def test_readings_and_discovery_reach_the_broker_and_a_late_client_sees_the_last_values(
        tmp_path: Path, broker: Broker) -> None:
    net = Net(tmp_path)
    watcher = Watcher(broker, "homeassistant/#", "ganglion/#")

    async def scenario() -> None:
        async with net.node("brewpi") as pub, bridged(net, broker) as bridge:
            for i in range(5):
                await pub.publish(Temperature("w1:28-aa", 20.0 + i))
                await pub.publish(Temperature("i2c:1/0x76", 30.0 + i))
                await pub.publish(Flow("gpio:17", 1.5, 10.0 + i))
                await asyncio.sleep(0.2)
            config_topic = DEVICE.format(pub.node_id.hex())
            temp = "ganglion/brewpi/sensors.Temperature/w1:28-aa"
            await until(lambda: bool(watcher.on(temp)) and bool(watcher.on(config_topic)),
                        "readings and the discovery config")
            await until(lambda: json.loads(watcher.on(temp)[-1])["celsius"] == 24.0,
                        "the last temperature")
            doc = json.loads(watcher.latest(config_topic) or b"")
            state_topics = {t for t, _p, _r in watcher.snapshot() if t.count("/") == 3
                            and t.startswith("ganglion/brewpi/")}
            entities = check_device_config(doc, state_topics)
            assert len(entities) == 4, "2 temperatures and the flow's 2 fields"
            assert len({c["unique_id"] for c in entities.values()}) == 4
            assert doc["device"]["name"] == "brewpi" and doc["device"]["sw_version"]
            uid = unique_id(pub.node_id, "sensors.Temperature", "i2c:1/0x76", "celsius")
            assert entities[uid]["state_topic"] == "ganglion/brewpi/sensors.Temperature/i2c:1_0x76"
            for comp in entities.values():  # the template reads a value from its topic
                field = comp["value_template"].split("'")[1]
                assert field in json.loads(watcher.on(comp["state_topic"])[-1])
            assert any("expire_after" in c for c in entities.values())
            body = json.loads(watcher.on(temp)[-1])
            assert set(body) == {"ts", "seq", "sensor", "celsius"} and body["seq"] == 8
            assert watcher.latest("ganglion/brewpi/availability") == b"online"
            assert watcher.latest("ganglion/bridge/state") == b"online"
            stats = bridge.stats()
            assert stats["connects"] == 1 and stats["readings"] >= 15 and stats["entities"] == 4
        late = Watcher(broker, "ganglion/#")
        try:
            await until(lambda: late.latest(temp) is not None, "the retained value")
            assert json.loads(late.latest(temp) or b"")["celsius"] == 24.0
            assert late.latest("ganglion/bridge/state") == b"offline", "a clean stop says so"
        finally:
            late.close()

    try:
        run(scenario())
    finally:
        watcher.close()


def test_a_node_that_stops_goes_unavailable_and_comes_back_online(
        tmp_path: Path, broker: Broker) -> None:
    net = Net(tmp_path)
    watcher = Watcher(broker, "ganglion/+/availability")

    async def scenario() -> None:
        async with bridged(net, broker):
            topic = "ganglion/cellar/availability"
            async with net.node("cellar") as pub:
                for _ in range(10):
                    await pub.publish(Temperature("t", 12.0))
                    await asyncio.sleep(0.05)
                await until(lambda: watcher.latest(topic) == b"online", "online")
            loop = asyncio.get_running_loop()
            gone = loop.time()
            await until(lambda: watcher.latest(topic) == b"offline", "offline", timeout=5)
            # the heartbeat timeout is 1 s; the goodbye of a clean stop is faster still
            assert loop.time() - gone < 3.0
            async with net.node("cellar") as pub:
                await pub.publish(Temperature("t", 12.5))
                await until(lambda: watcher.latest(topic) == b"online", "online again")
            assert {t for t, _p, _r in watcher.snapshot()} == {topic}, "one name, one topic"

    try:
        run(scenario())
    finally:
        watcher.close()


def test_configs_of_a_vanished_node_are_cleared_after_forget_after(
        tmp_path: Path, broker: Broker) -> None:
    net = Net(tmp_path)
    watcher = Watcher(broker, "homeassistant/#", "ganglion/#")

    async def scenario() -> None:
        async with bridged(net, broker, forget_after=1.5):
            async with net.node("shed") as pub:
                await pub.publish(Temperature("t", 1.0))
                config = DEVICE.format(pub.node_id.hex())
                await until(lambda: bool(watcher.on(config)), "the config")
            await until(lambda: watcher.latest(config) == b"", "the config cleared", timeout=8)
            await until(lambda: watcher.latest("ganglion/shed/sensors.Temperature/t") == b"",
                        "the retained reading cleared")
        fresh = Watcher(broker, "homeassistant/#", "ganglion/shed/#")
        try:
            await asyncio.sleep(0.5)
            assert [t for t, p, _r in fresh.snapshot() if p] == [], "nothing of it is retained"
        finally:
            fresh.close()

    try:
        run(scenario())
    finally:
        watcher.close()


def test_stale_configs_found_at_start_are_cleared_after_the_grace_period(
        tmp_path: Path, broker: Broker) -> None:
    net = Net(tmp_path)
    ghost = "homeassistant/device/ganglion_00000000000000aa/config"
    foreign = "homeassistant/device/zigbee_1/config"
    stale = {"device": {"identifiers": ["ganglion_00000000000000aa"], "name": "ghost"},
             "origin": {"name": "ganglion"},
             "cmps": {"x": {"platform": "sensor", "state_topic": "ganglion/ghost/a/b"}}}
    for topic, doc in ((ghost, stale), (foreign, {"origin": {"name": "Zigbee2MQTT"}})):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-r", "-q",
                        "1", "-t", topic, "-m", json.dumps(doc)], check=True, timeout=10)
    watcher = Watcher(broker, "homeassistant/#")

    async def scenario() -> None:
        async with bridged(net, broker, forget_after=1.0):
            await until(lambda: watcher.latest(ghost) == b"", "the ghost cleared", timeout=6)
            assert watcher.latest(foreign) != b"", "another program's config stays"

    try:
        run(scenario())
    finally:
        watcher.close()


def test_broker_killed_mid_stream_reconnects_republishes_and_delivers_the_queue(
        tmp_path: Path, broker: Broker) -> None:
    net = Net(tmp_path)

    async def scenario() -> None:
        async with net.node("vat") as pub, bridged(net, broker, qos=1, max_queue=5,
                                                     backoff=(1.0, 1.0)) as bridge:
            await pub.publish(Temperature("t", 1.0))
            await until(lambda: bridge.stats()["readings"] >= 1 and bridge.connected.is_set(),
                        "the first reading bridged")
            broker.stop(signal.SIGKILL)  # nothing retained survives: only re-publishing helps
            await until(lambda: not bridge.connected.is_set(), "the bridge to see it")
            for i in range(20):
                await pub.publish(Temperature("t", 100.0 + i))
            await until(lambda: bridge.stats()["queued"] == 5, "the outage's readings queued")
            # the first reading, when the broker had not acknowledged it yet, was put back
            # in the queue (requeued) and then dropped with the oldest of the outage
            stats = bridge.stats()
            assert stats["queue_dropped"] == 15 + stats["requeued"] and stats["requeued"] <= 1
            broker.start()
            watcher = Watcher(broker, "homeassistant/#", "ganglion/#")  # before the bridge is back
            try:
                topic = "ganglion/vat/sensors.Temperature/t"
                await until(lambda: len(watcher.on(topic)) >= 5, "the queued readings", timeout=15)
                values = [json.loads(p)["celsius"] for p in watcher.on(topic)]
                assert values[:5] == [115.0, 116.0, 117.0, 118.0, 119.0]
                assert watcher.latest(DEVICE.format(pub.node_id.hex())), "discovery re-published"
                assert watcher.latest("ganglion/bridge/state") == b"online"
                stats = bridge.stats()
                assert stats["connects"] == 2 and stats["disconnects"] == 1
                assert stats["queued"] == 0
            finally:
                watcher.close()

    run(scenario())


def test_broker_down_at_start_is_retried_with_backoff_and_counted(
        tmp_path: Path, broker: Broker) -> None:
    net = Net(tmp_path)
    broker.stop()

    async def scenario() -> None:
        async with net.node("early") as pub, bridged(net, broker, backoff=(0.1, 0.4)) as bridge:
            await pub.publish(Temperature("t", 5.0))
            await until(lambda: bridge.stats()["connect_failures"] >= 3, "retries")
            assert bridge.stats()["queued"] >= 1
            broker.start()
            watcher = Watcher(broker, "ganglion/#")
            try:
                await until(lambda: watcher.latest("ganglion/early/sensors.Temperature/t")
                            is not None, "the queued reading after the broker came up")
            finally:
                watcher.close()

    run(scenario())


def test_subscribe_turns_mqtt_messages_into_typed_publishes(tmp_path: Path,
                                                            broker: Broker) -> None:
    net = Net(tmp_path)

    async def scenario() -> None:
        got: list[Any] = []
        async with net.node("boiler") as member, bridged(
                net, broker, routes=(CommandRoute("ganglion/set/+", "sensors.Temperature"),)) \
                as bridge:
            member.subscribe("sensors.Temperature", lambda msg, info: got.append(msg))
            await until(bridge.connected.is_set, "the bridge connected")
            await asyncio.sleep(0.3)

            def pub(payload: str) -> None:
                subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port),
                                "-q", "1", "-t", "ganglion/set/boiler", "-m", payload],
                               check=True, timeout=10)
            pub('{"sensor": "setpoint", "celsius": "hot"}')
            pub("not json")
            pub('{"sensor": "setpoint", "celsius": 65}')
            await until(lambda: Temperature("setpoint", 65.0) in got, "the set-point", timeout=10)
            stats = bridge.stats()
            assert stats["commands"] == 3 and stats["commands_rejected"] == 2

    run(scenario())


def test_password_and_tls_brokers_are_reached_with_the_right_credentials(
        tmp_path: Path, password_broker: Broker, tls_broker: Broker, tls: Any) -> None:
    net = Net(tmp_path)

    async def scenario() -> None:
        async with bridged(net, password_broker, url=f"mqtt://ha@127.0.0.1:{password_broker.port}",
                           password="s3cret") as bridge:
            await until(bridge.connected.is_set, "the password broker")
        async with bridged(net, tls_broker, url=f"mqtts://127.0.0.1:{tls_broker.port}",
                           ca=tls.ca) as bridge:
            await until(bridge.connected.is_set, "the TLS broker")

    run(scenario())


def test_home_assistant_coming_online_gets_every_config_again(tmp_path: Path,
                                                              broker: Broker) -> None:
    net = Net(tmp_path)
    watcher = Watcher(broker, "homeassistant/device/#")

    async def scenario() -> None:
        async with net.node("still") as pub, bridged(net, broker) as bridge:
            await pub.publish(Temperature("t", 1.0))
            config = DEVICE.format(pub.node_id.hex())
            await until(lambda: len(watcher.on(config)) >= 1, "the first config")
            before = len(watcher.on(config))
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t",
                            "homeassistant/status", "-m", "online"], check=True, timeout=10)
            await until(lambda: len(watcher.on(config)) > before, "the config again")
            assert bridge.stats()["ha_online"] == 1

    try:
        run(scenario())
    finally:
        watcher.close()
