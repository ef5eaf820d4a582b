"""A bus with a secret refuses plugins without it (issue 21, 7: any local user could publish).

Without a secret, anyone who can connect to ``tcp://127.0.0.1:PORT`` publishes
under the node's id and key. With one, the bus's sockets are CURVE servers and
accept only clients holding the same key pair. These tests connect a raw zmq
"intruder" without the secret, and one with a different key pair, and check
that nothing they send reaches ``on_publish``, another plugin, or (with a real
node) another node on the network, while a plugin with the secret works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import zmq
import zmq.asyncio
from bus_helpers import Plugin, run, short_dir, wait_until
from port_pairs import LOOPBACK, free_port_pair
from zmq.utils import z85

from ganglion.client import BUS_SECRET_ENV, BusAddress, BusSecret, PluginClient, read_bus_secret
from ganglion.config import load_config
from ganglion.errors import ConfigError, TransportError
from ganglion.node import Node
from ganglion.runtime._bus_auth import ZapHandler, load_or_create_secret
from ganglion.runtime.bus import PluginBus
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")

SPOOF = "bustest.Spoof"

__all__ = ["short_dir"]  # the fixture, imported for these tests


@pytest.fixture
def secret_file(short_dir: Path) -> Path:
    return _write_secret(short_dir / "bus.secret", BusSecret.generate())


def _write_secret(path: Path, secret: BusSecret, mode: int = 0o600) -> Path:
    path.write_text(secret.to_text(), encoding="ascii")
    os.chmod(path, mode)
    return path


class RawPlugin(Plugin):
    """Raw XPUB + SUB sockets, with or without CURVE keys, as any local process could open."""

    async def listening(self, seconds: float) -> bool:
        return await self.listening_within(seconds)


@contextlib.asynccontextmanager
async def restricted_bus(short_dir: Path, secret: BusSecret,
                         published: list[tuple[str, bytes]]) -> AsyncIterator[PluginBus]:
    bus = PluginBus(ipc_path=short_dir / "bus", tcp_port=0, secret=secret,
                    on_publish=lambda n, p: published.append((n, p)),
                    on_subscribe=lambda _n: None, on_unsubscribe=lambda _n: None)
    async with bus:
        yield bus


def tcp(bus: PluginBus) -> BusAddress:
    return next(a for a in bus.endpoints if a.publish.startswith("tcp://"))


# -- the secret file ---------------------------------------------------------------


def test_secret_file_round_trips_and_hides_the_secret_in_repr(secret_file: Path) -> None:
    secret = read_bus_secret(secret_file)
    assert len(secret.public) == len(secret.secret) == 40
    assert zmq.curve_public(secret.secret) == secret.public
    assert BusSecret.parse(secret.to_text()) == secret
    assert secret.secret.decode() not in repr(secret)


def test_a_world_readable_secret_file_is_refused(short_dir: Path) -> None:
    path = _write_secret(short_dir / "open.secret", BusSecret.generate(), mode=0o644)
    with pytest.raises(ConfigError, match="every user"):
        read_bus_secret(path)


@pytest.mark.parametrize("text, match", [
    ("", "public-key"),
    ('public-key = "abc"\nsecret-key = "def"\n', "40 characters"),
])
def test_malformed_secret_files_are_refused(short_dir: Path, text: str, match: str) -> None:
    path = short_dir / "bad.secret"
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match=match):
        read_bus_secret(path)


def test_a_public_key_from_another_pair_is_refused() -> None:
    one, two = BusSecret.generate(), BusSecret.generate()
    with pytest.raises(ConfigError, match="does not belong"):
        BusSecret.parse(BusSecret(public=two.public, secret=one.secret).to_text())


def test_the_node_creates_a_missing_secret_file_0600(short_dir: Path) -> None:
    path = short_dir / "new.secret"
    created = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_bus_secret(path) == created
    assert load_or_create_secret(path) == created  # not replaced the second time


def test_config_reads_bus_secret_file_relative_to_the_config(short_dir: Path) -> None:
    config = short_dir / "node.toml"
    config.write_text('[bus]\ntcp_port = 47900\nsecret_file = "bus.secret"\n')
    assert load_config(config).bus_secret_file == short_dir / "bus.secret"


def test_zap_accepts_only_the_secrets_public_key() -> None:
    secret, other = BusSecret.generate(), BusSecret.generate()
    ctx = zmq.asyncio.Context()
    zap = ZapHandler(ctx, secret)  # decide() is pure: no socket is bound

    def request(mechanism: bytes, *creds: bytes) -> list[bytes]:
        return zap.decide([b"1.0", b"7", b"ganglion.bus", b"127.0.0.1", b"", mechanism, *creds])

    assert request(b"CURVE", z85.decode(secret.public))[2:5] == [b"200", b"OK", b"plugin-1"]
    assert request(b"CURVE", z85.decode(other.public))[2] == b"400"
    assert request(b"NULL")[2] == b"400"
    assert request(b"PLAIN", b"user", b"pass")[2] == b"400"
    assert zap.decide([b"1.0"])[2] == b"500"
    assert (zap.accepted, zap.refused) == (1, 3)
    ctx.term()


# -- a restricted bus ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_plugins_without_the_secret_reach_nothing(short_dir: Path, secret_file: Path,
                                                  transport: str) -> None:
    secret = read_bus_secret(secret_file)
    published: list[tuple[str, bytes]] = []

    async def main() -> None:
        async with restricted_bus(short_dir, secret, published) as bus:
            address = next(a for a in bus.endpoints if a.publish.startswith(transport))
            friend = RawPlugin(address, secret)
            intruder = RawPlugin(address)
            impostor = RawPlugin(address, BusSecret.generate())
            try:
                friend.sub.subscribe(SPOOF.encode())
                intruder.sub.subscribe(b"")
                impostor.sub.subscribe(b"")
                assert await friend.listening(5.0)
                assert not await intruder.listening(0.5)  # the bus never subscribes to it
                assert not await impostor.listening(0.1)
                for plugin, value in ((intruder, 1), (impostor, 2)):
                    for _ in range(10):
                        await plugin.pub.send_multipart(
                            [SPOOF.encode(), cbor2.dumps({"value": value})])
                await wait_until(lambda: bus.stats().subscriptions == (SPOOF,))
                await friend.pub.send_multipart([SPOOF.encode(), cbor2.dumps({"value": 3})])
                got = await friend.received_within(0.5)
                assert [cbor2.loads(frames[1]) for frames in got] == [{"value": 3}]
                assert await intruder.received_within(0.2) == []
                assert await impostor.received_within(0.2) == []
                assert published == [(SPOOF, cbor2.dumps({"value": 3}))]
                await wait_until(lambda: bus.stats().refused_connections >= 4)
            finally:
                for plugin in (friend, intruder, impostor):
                    plugin.close()

    run(main())


def test_plugin_client_with_and_without_the_secret(short_dir: Path, secret_file: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUS_SECRET_ENV, raising=False)
    secret = read_bus_secret(secret_file)
    published: list[tuple[str, bytes]] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    box: dict[str, PluginBus] = {}

    async def serve() -> None:
        async with restricted_bus(short_dir, secret, published) as bus:
            box["bus"] = bus
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        address = tcp(box["bus"])
        with (PluginClient(address, ready_timeout=1.0) as outsider,
              pytest.raises(TransportError, match="requires a bus secret")):
            outsider.publish(Record(SPOOF, {"value": 1}))
        with (PluginClient(address, ready_timeout=1.0, secret=BusSecret.generate()) as wrong,
              pytest.raises(TransportError, match="refused")):
            wrong.publish(Record(SPOOF, {"value": 2}))
        monkeypatch.setenv(BUS_SECRET_ENV, str(secret_file))
        with PluginClient(address, ready_timeout=5.0) as insider:  # the secret via the env
            assert insider.secret == secret
            insider.subscribe(SPOOF)
            deadline = time.monotonic() + 5
            while SPOOF not in box["bus"].stats().subscriptions:
                assert time.monotonic() < deadline, "the subscription never reached the bus"
                time.sleep(0.01)
            assert insider.publish(Record(SPOOF, {"value": 3}))
            msg, meta = insider.recv(timeout=5.0)
            assert isinstance(msg, Record) and msg.fields == {"value": 3}
            assert meta.local
        assert [cbor2.loads(p) for _n, p in published] == [{"value": 3}]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


# -- a real node: an intruder's messages never leave it ------------------------------


@pytest.mark.usefixtures("multicast_loopback")
@pytest.mark.timeout(60)
def test_a_node_with_a_secret_sends_only_its_plugins_messages(short_dir: Path) -> None:
    port = free_port_pair()
    secret_path = short_dir / "bus.secret"  # absent: the node creates it
    seen: list[int] = []

    def on(msg: Any, _info: MessageInfo) -> None:
        seen.append(int(msg.fields["value"]))

    async def main() -> None:
        common: dict[str, Any] = {"interface": LOOPBACK, "port": port, "control_port": port + 1,
                                  "discovery": False, "heartbeat_seconds": 0.2}
        node = Node(name="a", state_dir=short_dir / "a", bus_ipc=False, bus_tcp_port=0,
                    bus_secret_file=secret_path, **common)
        other = Node(name="b", state_dir=short_dir / "b", **common)
        async with node, other:
            assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
            other.subscribe(SPOOF, callback=on)
            await other.wait_for_group(SPOOF, timeout=20)
            await node.wait_for_group(SPOOF, timeout=20)
            bus_port = node._bus.tcp_port
            address = BusAddress(f"tcp://127.0.0.1:{bus_port}", f"tcp://127.0.0.1:{bus_port + 1}")
            intruder = RawPlugin(address)
            friend = RawPlugin(address, read_bus_secret(secret_path))
            try:
                assert await friend.listening(5.0)
                await asyncio.sleep(1.0)  # heartbeats: the node knows b wants the type
                for _ in range(20):
                    await intruder.pub.send_multipart([SPOOF.encode(), cbor2.dumps({"value": 666})])
                await friend.pub.send_multipart([SPOOF.encode(), cbor2.dumps({"value": 7})])
                await wait_until(lambda: 7 in seen, 10.0)
                await asyncio.sleep(0.3)
            finally:
                intruder.close()
                friend.close()
            assert seen == [7]
            stats = node.stats().bus
            assert stats is not None
            assert stats.published == 1
            assert stats.refused_connections >= 1

    run(main(), timeout=50)
