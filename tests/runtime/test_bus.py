"""PluginBus over real zmq sockets: ipc:// in a short temp dir and tcp://127.0.0.1.

The "plugins" here are raw pyzmq sockets on the test's own event loop, so the
tests can send exactly the frames they want (including malformed ones). A raw
publisher is an XPUB that waits for the bus's ``\\x01`` before sending, so no
message is lost to zmq's slow-joiner window; a raw subscriber waits until the
bus reports its subscription. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import stat
from pathlib import Path
from typing import Any

import cbor2
import pytest
import zmq
import zmq.asyncio
from bus_helpers import Plugin, Recorder, addresses, run, short_dir, wait_until

from ganglion.client import BusAddress, PluginMeta
from ganglion.errors import ConfigError, TransportError
from ganglion.runtime.bus import MAX_IPC_PATH, BusStats, PluginBus, meta_from_info
from ganglion.runtime.subscription import MessageInfo

GOOD = cbor2.dumps({"celsius": 21.5})
NODE_ID = bytes.fromhex("0102030405060708")

__all__ = ["short_dir"]  # the fixture, imported for these tests


# -- binding and closing ----------------------------------------------------


def test_ipc_sockets_are_private_and_removed_on_close(short_dir: Path) -> None:
    async def main() -> None:
        bus = Recorder().bus(ipc_path=short_dir / "bus")
        async with bus:
            assert bus.endpoints == (
                BusAddress(f"ipc://{short_dir}/bus.pub", f"ipc://{short_dir}/bus.sub"),
            )
            for suffix in (".pub", ".sub"):
                st = (short_dir / f"bus{suffix}").lstat()
                assert stat.S_ISSOCK(st.st_mode)
                assert stat.S_IMODE(st.st_mode) == 0o600
            assert bus.tcp_port is None
        assert sorted(os.listdir(short_dir)) == []
        assert not bus.endpoints

    run(main())


def test_tcp_port_zero_binds_a_consecutive_pair_on_loopback() -> None:
    async def main() -> None:
        async with Recorder().bus(ipc_path=None, tcp_port=0) as bus:
            port = bus.tcp_port
            assert port is not None
            assert bus.endpoints == (
                BusAddress(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"),
            )

    run(main())


def test_explicit_tcp_port_and_ipc_together(short_dir: Path) -> None:
    async def main() -> None:
        async with Recorder().bus(ipc_path=None, tcp_port=0) as probe:
            port = probe.tcp_port
        assert port is not None
        async with Recorder().bus(ipc_path=short_dir / "b", tcp_port=port) as bus:
            assert [a.publish for a in bus.endpoints] == [
                f"ipc://{short_dir}/b.pub",
                f"tcp://127.0.0.1:{port}",
            ]
            assert bus.tcp_port == port

    run(main())


def test_tcp_port_in_use_raises_transport_error_and_cleans_up(short_dir: Path) -> None:
    async def main() -> None:
        async with Recorder().bus(ipc_path=None, tcp_port=0) as first:
            port = first.tcp_port
            clash = Recorder().bus(ipc_path=short_dir / "bus", tcp_port=port)
            with pytest.raises(TransportError, match=str(port)):
                await clash.start()
            # The failed start closed what it had bound, ipc files included.
            assert os.listdir(short_dir) == []
            assert clash.endpoints == ()

    run(main())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ipc_path": None}, "ipc_path, a tcp_port"),
        ({"ipc_path": None, "tcp_port": 65535}, "0..65534"),
        ({"ipc_path": None, "tcp_port": -1}, "0..65534"),
        ({"ipc_path": Path("/tmp/" + "x" * (MAX_IPC_PATH - 5))}, "shorter state directory"),
        ({"ipc_path": None, "tcp_port": 0, "node_id": b"short"}, "8 bytes"),
    ],
)
def test_bad_configuration_is_refused_when_built(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Recorder().bus(**kwargs)


def test_a_second_bus_on_a_live_ipc_path_is_refused(short_dir: Path) -> None:
    async def main() -> None:
        async with Recorder().bus(ipc_path=short_dir / "bus"):
            with pytest.raises(TransportError, match="in use"):
                await Recorder().bus(ipc_path=short_dir / "bus").start()
            # The first bus's sockets are untouched.
            assert stat.S_ISSOCK((short_dir / "bus.pub").lstat().st_mode)

    run(main())


def test_a_stale_socket_file_is_taken_over(short_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_dir / "bus.pub"))
    stale.close()  # the file stays, as after a node killed with SIGKILL

    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus") as bus:
            plugin = Plugin(bus.endpoints[0])
            try:
                await plugin.wait_listening()
                await plugin.send(b"ex.Reading", GOOD)
                await wait_until(lambda: len(rec.published) == 1)
            finally:
                plugin.close()

    run(main())


def test_a_regular_file_in_the_way_is_not_deleted(short_dir: Path) -> None:
    (short_dir / "bus.sub").write_text("precious")

    async def main() -> None:
        with pytest.raises(ConfigError, match="not a socket"):
            await Recorder().bus(ipc_path=short_dir / "bus").start()

    run(main())
    assert (short_dir / "bus.sub").read_text() == "precious"


def test_start_twice_is_an_error(short_dir: Path) -> None:
    async def main() -> None:
        async with Recorder().bus(ipc_path=short_dir / "bus") as bus:
            with pytest.raises(RuntimeError, match="twice"):
                await bus.start()

    run(main())


def test_close_is_idempotent_and_deliver_after_close_is_refused(short_dir: Path) -> None:
    async def main() -> None:
        bus = Recorder().bus(ipc_path=short_dir / "bus")
        await bus.start()
        await bus.close()
        await bus.close()
        assert bus.deliver("ex.Reading", GOOD, PluginMeta(NODE_ID, 1, 0, False)) is False

    run(main())


def test_a_shared_context_is_left_open(short_dir: Path) -> None:
    async def main() -> None:
        ctx = zmq.asyncio.Context()
        try:
            async with Recorder().bus(ipc_path=short_dir / "bus", context=ctx):
                pass
            assert not ctx.closed
        finally:
            ctx.term()

    run(main())


# -- publishes from plugins -------------------------------------------------


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_plugin_publish_reaches_on_publish(short_dir: Path, transport: str) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", tcp_port=0) as bus:
            plugin = Plugin(addresses(bus, transport))
            try:
                await plugin.wait_listening()
                for i in range(100):
                    await plugin.send(b"ex.Reading", cbor2.dumps({"i": i}))
                await wait_until(lambda: len(rec.published) == 100)
            finally:
                plugin.close()
            assert rec.published == [("ex.Reading", cbor2.dumps({"i": i})) for i in range(100)]
            stats = bus.stats()
            assert (stats.received, stats.published, stats.forwarded) == (100, 100, 0)

    run(main())


def test_malformed_publishes_are_counted_and_dropped(short_dir: Path) -> None:
    bad: list[tuple[list[bytes], str]] = [
        ([b"ex.Reading"], "bad_frames"),
        ([b"ex.Reading", GOOD, b"extra"], "bad_frames"),
        ([b"Reading", GOOD], "bad_type_names"),
        ([b"ex.Bad Name", GOOD], "bad_type_names"),
        ([b"ex.\xff\xfe", GOOD], "bad_type_names"),
        ([b"", GOOD], "bad_type_names"),
        ([b"ex.Reading", b"\xff\x00garbage"], "bad_payloads"),
        ([b"ex.Reading", cbor2.dumps([1, 2, 3])], "bad_payloads"),
        ([b"ex.Reading", b""], "bad_payloads"),
        ([b"ex.Reading", cbor2.dumps({1: "int key"})], "bad_payloads"),
    ]

    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus") as bus:
            plugin = Plugin(bus.endpoints[0])
            try:
                await plugin.wait_listening()
                for frames, _ in bad:
                    await plugin.send(*frames)
                await plugin.send(b"ex.Reading", GOOD)  # barrier: handled after the bad ones
                await wait_until(lambda: len(rec.published) == 1)
            finally:
                plugin.close()
            assert rec.published == [("ex.Reading", GOOD)]
            stats = bus.stats()
            assert stats.received == len(bad) + 1
            assert stats.published == 1
            for counter in ("bad_frames", "bad_type_names", "bad_payloads"):
                expected = sum(1 for _, c in bad if c == counter)
                assert getattr(stats, counter) == expected, counter

    run(main())


def test_an_oversized_frame_never_reaches_the_node(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", max_message=1000) as bus:
            big = Plugin(bus.endpoints[0])
            small = Plugin(bus.endpoints[0])
            try:
                await big.wait_listening()
                await small.wait_listening()
                await big.send(b"ex.Big", cbor2.dumps({"blob": b"x" * 5000}))
                await small.send(b"ex.Small", GOOD)
                await wait_until(lambda: len(rec.published) == 1)
                await asyncio.sleep(0.1)
            finally:
                big.close()
                small.close()
            assert rec.published == [("ex.Small", GOOD)]

    run(main())


def test_a_raising_on_publish_is_counted_and_the_bus_goes_on(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def on_publish(name: str, payload: bytes) -> None:
        seen.append(name)
        if name == "ex.Boom":
            raise RuntimeError("plugin handler bug")

    async def main() -> None:
        bus = PluginBus(ipc_path=short_dir / "bus", on_publish=on_publish,
                        on_subscribe=lambda n: None, on_unsubscribe=lambda n: None)
        async with bus:
            plugin = Plugin(bus.endpoints[0])
            try:
                await plugin.wait_listening()
                await plugin.send(b"ex.Boom", GOOD)
                await plugin.send(b"ex.Fine", GOOD)
                await wait_until(lambda: len(seen) == 2)
            finally:
                plugin.close()
            assert seen == ["ex.Boom", "ex.Fine"]
            assert bus.stats().callback_errors == 1
            assert bus.stats().published == 2

    run(main())
    assert "plugin handler bug" in caplog.text


# -- subscriptions ------------------------------------------------------------


def test_subscriptions_are_reference_counted_across_plugins(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", tcp_port=0) as bus:
            a = Plugin(addresses(bus, "ipc"))
            b = Plugin(addresses(bus, "tcp"))
            try:
                a.sub.subscribe(b"ex.Reading")
                await wait_until(lambda: rec.subscribed == ["ex.Reading"])
                b.sub.subscribe(b"ex.Reading")
                a.sub.subscribe(b"ex.Reading")  # the same plugin twice
                b.sub.subscribe(b"ex.Other")  # barrier: events arrive in order
                await wait_until(lambda: "ex.Other" in rec.subscribed)
                assert rec.subscribed == ["ex.Reading", "ex.Other"]
                a.sub.unsubscribe(b"ex.Reading")
                a.sub.unsubscribe(b"ex.Reading")
                b.sub.unsubscribe(b"ex.Other")  # barrier
                await wait_until(lambda: rec.unsubscribed == ["ex.Other"])
                assert bus.stats().subscriptions == ("ex.Reading",)
                b.sub.unsubscribe(b"ex.Reading")
                await wait_until(lambda: rec.unsubscribed == ["ex.Other", "ex.Reading"])
                assert bus.stats().subscriptions == ()
            finally:
                a.close()
                b.close()

    run(main())


def test_a_closed_plugin_connection_unsubscribes_its_topics(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus") as bus:
            stays = Plugin(bus.endpoints[0])
            leaves = Plugin(bus.endpoints[0])
            try:
                stays.sub.subscribe(b"ex.Shared")
                leaves.sub.subscribe(b"ex.Shared")
                leaves.sub.subscribe(b"ex.Mine")
                await wait_until(lambda: sorted(rec.subscribed) == ["ex.Mine", "ex.Shared"])
                leaves.close()
                await wait_until(lambda: rec.unsubscribed == ["ex.Mine"])
                await asyncio.sleep(0.05)
                assert rec.unsubscribed == ["ex.Mine"]
                assert bus.subscribed("ex.Shared")
            finally:
                stays.close()
            await wait_until(lambda: rec.unsubscribed == ["ex.Mine", "ex.Shared"])

    run(main())


def test_prefix_subscriptions_match_but_join_nothing(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus") as bus:
            plugin = Plugin(bus.endpoints[0])
            try:
                plugin.sub.subscribe(b"sensors.")
                plugin.sub.subscribe(b"")
                await wait_until(lambda: len(bus.stats().subscriptions) == 2)
                assert rec.subscribed == []
                assert bus.subscribed("sensors.Temperature")
                assert bus.subscribed("other.Thing")  # the empty prefix matches all
                plugin.sub.unsubscribe(b"")
                await wait_until(lambda: bus.stats().subscriptions == ("sensors.",))
                assert not bus.subscribed("other.Thing")
                assert bus.deliver("sensors.Flow", GOOD, PluginMeta(NODE_ID, 1, 2, False))
                frames = await plugin.recv()
                assert frames[0] == b"sensors.Flow"
                plugin.sub.unsubscribe(b"sensors.")
                await wait_until(lambda: bus.stats().subscriptions == ())
                assert rec.unsubscribed == []
            finally:
                plugin.close()

    run(main())


def test_a_raising_on_subscribe_still_tracks_the_topic(short_dir: Path) -> None:
    def on_subscribe(name: str) -> None:
        raise ValueError("join failed")

    async def main() -> None:
        bus = PluginBus(ipc_path=short_dir / "bus", on_publish=lambda n, p: None,
                        on_subscribe=on_subscribe, on_unsubscribe=lambda n: None)
        async with bus:
            plugin = Plugin(bus.endpoints[0])
            try:
                plugin.sub.subscribe(b"ex.Reading")
                await wait_until(lambda: bus.stats().callback_errors == 1)
                assert bus.subscribed("ex.Reading")
            finally:
                plugin.close()

    run(main())


# -- delivery to plugins ------------------------------------------------------


def test_deliver_sends_three_frames_only_to_subscribers(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus") as bus:
            meta = PluginMeta(sender=NODE_ID, seq=7, sent_ns=1_700_000_000_000_000_000,
                              local=False)
            assert bus.deliver("ex.Reading", GOOD, meta) is False  # nobody listens yet
            plugin = Plugin(bus.endpoints[0])
            try:
                plugin.sub.subscribe(b"ex.Reading")
                await wait_until(lambda: rec.subscribed == ["ex.Reading"])
                assert bus.deliver("ex.Other", GOOD, meta) is False
                assert bus.deliver("ex.Reading", GOOD, meta) is True
                name, payload, meta_frame = await plugin.recv()
                assert (name, payload) == (b"ex.Reading", GOOD)
                assert PluginMeta.decode(meta_frame) == meta
                assert cbor2.loads(meta_frame) == {
                    "sender": NODE_ID, "seq": 7, "sent_ns": 1_700_000_000_000_000_000,
                    "local": False,
                }
                assert await plugin.nothing_within(0.05)
            finally:
                plugin.close()
            assert bus.stats().delivered == 1

    run(main())


def test_plugin_publishes_are_forwarded_to_plugin_subscribers(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", tcp_port=0, node_id=NODE_ID) as bus:
            publisher = Plugin(addresses(bus, "tcp"))
            subscriber = Plugin(addresses(bus, "ipc"))
            try:
                subscriber.sub.subscribe(b"ex.Reading")
                await wait_until(lambda: rec.subscribed == ["ex.Reading"])
                await publisher.wait_listening()
                await publisher.send(b"ex.Reading", GOOD)
                await publisher.send(b"ex.Unwatched", GOOD)
                await publisher.send(b"ex.Reading", GOOD)
                metas = [PluginMeta.decode((await subscriber.recv())[2]) for _ in range(2)]
                assert await subscriber.nothing_within(0.05)
            finally:
                publisher.close()
                subscriber.close()
            assert [m.seq for m in metas] == [1, 2]
            assert all(m.sender == NODE_ID and m.local for m in metas)
            assert metas[0].sent_ns <= metas[1].sent_ns
            assert len(rec.published) == 3
            assert bus.stats().forwarded == 2

    run(main())


def test_forward_off_leaves_delivery_to_the_node(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", forward=False) as bus:
            plugin = Plugin(bus.endpoints[0])
            try:
                plugin.sub.subscribe(b"ex.Reading")
                await wait_until(lambda: rec.subscribed == ["ex.Reading"])
                await plugin.wait_listening()
                await plugin.send(b"ex.Reading", GOOD)
                await wait_until(lambda: len(rec.published) == 1)
                assert await plugin.nothing_within(0.1)
            finally:
                plugin.close()
            assert bus.stats().forwarded == 0

    run(main())


def test_a_stuck_subscriber_costs_drops_not_a_blocked_node(short_dir: Path) -> None:
    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", hwm=4) as bus:
            stuck = Plugin(bus.endpoints[0], rcvhwm=4)
            healthy = Plugin(bus.endpoints[0])
            try:
                stuck.sub.subscribe(b"ex.Blob")
                healthy.sub.subscribe(b"ex.Reading")
                await wait_until(lambda: len(rec.subscribed) == 2)
                blob = cbor2.dumps({"data": b"x" * 65536})
                meta = PluginMeta(NODE_ID, 0, 0, False)
                # Kernel socket buffers absorb some messages before zmq's
                # queues fill; 2,000 x 64 KiB is far beyond any of them.
                results = [bus.deliver("ex.Blob", blob, meta) for _ in range(2000)]
                assert results.count(False) > 0
                assert bus.stats().dropped == results.count(False)
                assert bus.stats().delivered == results.count(True)
                # Another type's subscriber is not held up by the stuck one.
                assert bus.deliver("ex.Reading", GOOD, meta)
                assert (await healthy.recv())[0] == b"ex.Reading"
            finally:
                stuck.close()
                healthy.close()

    run(main())


# -- helpers ------------------------------------------------------------------


def test_meta_from_info_copies_the_fields_plugins_see() -> None:
    info = MessageInfo(type_name="ex.Reading", sender=NODE_ID, seq=9, sent_ns=123,
                       received_ns=456, boot=3, local=True, source=None)
    assert meta_from_info(info) == PluginMeta(sender=NODE_ID, seq=9, sent_ns=123, local=True)


def test_stats_start_at_zero() -> None:
    bus = Recorder().bus(ipc_path=None, tcp_port=0)
    assert bus.stats() == BusStats(compiled=bus.stats().compiled)
    assert dataclasses.asdict(bus.stats())["subscriptions"] == ()
