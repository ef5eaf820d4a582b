"""A node's plugin bus and the node: what reaches the node, and what reaches the network.

The bus passes plugins' messages between plugins by itself and hands them to the
node only while the node needs them (another node or an in-process subscriber
wants the type, or it is the type's first message). These tests run real nodes on
loopback with their bus on ipc, and raw pyzmq plugins.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import cbor2
from bus_helpers import Plugin, run, short_dir, wait_until
from port_pairs import LOOPBACK, free_port_pair

from ganglion.client import PluginMeta, ipc_address
from ganglion.node import Node
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record

TYPE = "ex.BusFlow"

__all__ = ["short_dir"]  # the fixture, imported for these tests


class RawPlugin(Plugin):
    """A plugin as raw zmq sockets on a node's ipc bus, sending and reading :data:`TYPE`."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(ipc_address(state_dir / "bus"))

    async def listening(self) -> None:
        await self.wait_listening(10.0)

    async def send_i(self, i: int) -> None:
        await self.send(TYPE.encode(), cbor2.dumps({"i": i, "note": "x"}))

    async def recv_many(self, count: int) -> list[tuple[int, PluginMeta]]:
        out = []
        for _ in range(count):
            name, payload, meta = await asyncio.wait_for(self.sub.recv_multipart(), 10.0)
            assert name == TYPE.encode()
            out.append((cbor2.loads(payload)["i"], PluginMeta.decode(meta)))
        return out


def _node(short_dir: Path, name: str, port: int, **kwargs: Any) -> Node:
    return Node(name=name, state_dir=short_dir / name, interface=LOOPBACK, port=port,
                control_port=port + 1, discovery=False, heartbeat_seconds=0.2,
                peer_timeout=2.0, **kwargs)


def test_the_node_sees_a_plugins_type_only_while_an_in_process_subscriber_wants_it(
        short_dir: Path) -> None:
    port = free_port_pair()

    async def main() -> None:
        async with _node(short_dir, "a", port, bus_ipc=True) as node:
            publisher, subscriber = RawPlugin(short_dir / "a"), RawPlugin(short_dir / "a")
            try:
                subscriber.sub.subscribe(TYPE.encode())
                await publisher.listening()
                await asyncio.sleep(0.6)  # past the matching warm-up (1.5 heartbeats)
                await wait_until(lambda: node.stats().bus.subscriptions == (TYPE,))
                await publisher.send_i(-1)  # the type's first message: the node advertises it
                assert [i for i, _ in await subscriber.recv_many(1)] == [-1]
                before = node.stats().bus.to_node
                for i in range(50):
                    await publisher.send_i(i)
                got = await subscriber.recv_many(50)
                assert [i for i, _ in got] == list(range(50))
                assert node.stats().bus.to_node == before  # nobody else wanted them

                seen: list[tuple[Any, MessageInfo]] = []
                node.subscribe(TYPE, callback=lambda msg, info: seen.append((msg, info)))
                for i in range(50, 100):
                    await publisher.send_i(i)
                got += await subscriber.recv_many(50)
                await wait_until(lambda: len(seen) == 50)
            finally:
                publisher.close()
                subscriber.close()
            stats = node.stats().bus
            assert stats.to_node == before + 50
            assert [m.fields for m, _ in seen] == [{"i": i, "note": "x"} for i in range(50, 100)]
            assert all(isinstance(m, Record) and info.local for m, info in seen)
            # The plugin subscriber got each message once: from the bus, not again from
            # the node's delivery of the same message.
            assert [i for i, _ in got] == list(range(100))
            assert [meta.seq for _, meta in got] == list(range(2, 102))
            assert stats.forwarded == 101 and stats.delivered == 0

    run(main())


def test_another_node_subscribed_gets_every_message_as_the_plugin_encoded_it(
        short_dir: Path) -> None:
    port = free_port_pair()

    async def main() -> None:
        seen: list[tuple[Any, MessageInfo]] = []
        async with _node(short_dir, "a", port, bus_ipc=True) as node, \
                _node(short_dir, "b", port) as other:
            other.subscribe(TYPE, callback=lambda msg, info: seen.append((msg, info)))
            await wait_until(lambda: any(p.id == node.node_id for p in other.peers()))
            plugin = RawPlugin(short_dir / "a")
            try:
                await plugin.listening()
                await asyncio.sleep(0.6)  # matching: node a knows b wants the type
                for i in range(200):
                    await plugin.send_i(i)
                    if i % 50 == 0:
                        await asyncio.sleep(0.05)
                await wait_until(lambda: len(seen) == 200, 20.0)
            finally:
                plugin.close()
            assert node.stats().types[TYPE].sent >= 200
        assert [m.fields["i"] for m, _ in seen] == list(range(200))
        assert all(info.sender == node.node_id and not info.local for _, info in seen)
        seqs = [info.seq for _, info in seen]
        assert seqs == list(range(seqs[0], seqs[0] + 200))
        assert all(info.fingerprint == bytes(8) for _, info in seen)  # an unregistered type

    run(main())


#: {"i": 7, "v": 1.5} with 1.5 as a half float: re-encoding it would give a double.
HALF = b"\xa2\x61i\x07\x61v\xf9\x3e\x00"


def test_a_plugin_on_another_node_gets_the_publishers_bytes_undecoded(short_dir: Path) -> None:
    port = free_port_pair()

    async def main() -> None:
        seen: list[tuple[Any, MessageInfo]] = []
        async with _node(short_dir, "a", port, bus_ipc=True) as node_a, \
                _node(short_dir, "b", port, bus_ipc=True) as node_b:
            await wait_until(lambda: any(p.id == node_a.node_id for p in node_b.peers()))
            publisher, subscriber = RawPlugin(short_dir / "a"), RawPlugin(short_dir / "b")
            try:
                subscriber.sub.subscribe(TYPE.encode())
                await wait_until(lambda: node_b.stats().bus.subscriptions == (TYPE,))
                await publisher.listening()
                await asyncio.sleep(0.6)  # matching: node a knows b wants the type
                for _ in range(20):
                    await publisher.pub.send_multipart([TYPE.encode(), HALF])
                frames = [await asyncio.wait_for(subscriber.sub.recv_multipart(), 10.0)
                          for _ in range(20)]
                assert {f[1] for f in frames} == {HALF}  # as sent: never decoded on the way
                metas = [PluginMeta.decode(f[2]) for f in frames]
                assert all(m.sender == node_a.node_id and not m.local for m in metas)
                # An in-process subscriber on b needs objects: b decodes, and its plugin
                # still gets every message (encoded again from the object).
                node_b.subscribe(TYPE, callback=lambda msg, info: seen.append((msg, info)))
                for _ in range(20):
                    await publisher.pub.send_multipart([TYPE.encode(), HALF])
                again = [await asyncio.wait_for(subscriber.sub.recv_multipart(), 10.0)
                         for _ in range(20)]
                await wait_until(lambda: len(seen) == 20)
            finally:
                publisher.close()
                subscriber.close()
            assert {cbor2.loads(f[1])["v"] for f in again} == {1.5}
            assert [m.fields for m, _ in seen] == [{"i": 7, "v": 1.5}] * 20
            assert node_b.stats().bus.bad_deliveries == 0

    run(main())
