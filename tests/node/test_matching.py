"""Publisher-side matching: a node sends a type only while some live peer subscribes.

Real nodes on 127.0.0.1 (fast heartbeats, no mDNS), each test on its own port
pair. "Sent" is the data endpoint's ``datagrams_sent``; control traffic is not
in it. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from node_support import LOOPBACK, run, until

from ganglion.errors import EncodeError, MessageTooLarge
from ganglion.node import MATCHING_WARMUP_HEARTBEATS, Node
from ganglion.runtime.control_messages import Heartbeat
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import message

pytestmark = pytest.mark.usefixtures("multicast_loopback")

HEARTBEAT = 0.2
WARMUP = MATCHING_WARMUP_HEARTBEATS * HEARTBEAT + 0.1
#: How long a publisher may take to react to a subscription change (a heartbeat
#: goes out at once, rate-limited to one per 50 ms; loopback delivers it in µs).
REACT = 1.0


@message("matching.Reading")
@dataclass
class Reading:
    value: int


@message("matching.Blob")
@dataclass
class Blob:
    text: str
    data: bytes = b""


Seen = list[tuple[bytes, int, int, MessageInfo]]


def make(tmp_path: Path, port: int, name: str, **kwargs: Any) -> Node:
    options: dict[str, Any] = {
        "interface": LOOPBACK, "port": port, "control_port": port + 1, "discovery": False,
        "heartbeat_seconds": HEARTBEAT, "peer_timeout": 2.0,
    }
    if not kwargs.get("observer"):
        options["state_dir"] = tmp_path / name
    options.update(kwargs)
    return Node(name=name, **options)


@contextlib.asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        yield


async def ready(*nodes: Node) -> None:
    """Every node hears every other one, and all are past the matching warm-up."""
    ids = {n.node_id for n in nodes}
    await until(lambda: all({p.id for p in n.peers()} >= ids - {n.node_id} for n in nodes),
                "the nodes to hear each other", 5.0)
    await asyncio.sleep(WARMUP)


def collect(node: Node, **kwargs: Any) -> tuple[Seen, Any]:
    seen: Seen = []

    def on(msg: Reading, info: MessageInfo) -> None:
        seen.append((info.sender, info.seq, msg.value, info))

    return seen, node.subscribe(Reading, on, **kwargs)


async def at_least(seen: Seen, count: int, what: str, timeout: float = 10.0) -> None:
    await until(lambda: len(seen) >= count, what, timeout)


def sent(node: Node) -> int:
    return node.stats().endpoint.datagrams_sent


def consecutive(seen: Seen) -> bool:
    seqs = [q for _s, q, _v, _i in seen]
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


@contextlib.asynccontextmanager
async def publishing(node: Node, every: float = 0.002) -> AsyncIterator[list[int]]:
    """Publish Reading(0), Reading(1), ... every ``every`` s in the background."""
    count = [0]

    async def loop() -> None:
        while True:
            node.publish_nowait(Reading(count[0]))
            count[0] += 1
            await asyncio.sleep(every)

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield count
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_nothing_is_sent_for_a_type_nobody_else_subscribes_to(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await ready(a, b)
            local, _sub = collect(a)
            before = sent(a)
            for value in range(200):
                await a.publish(Reading(value))
            await a.wait_for_group("matching.Reading")
            await asyncio.sleep(0.3)
            assert sent(a) == before
            assert a.stats().types["matching.Reading"].sent == 200
            assert [(q, v, i.local) for _s, q, v, i in local] == [(i, i, True) for i in range(200)]

    run(scenario())


def test_sending_follows_a_remote_subscriber_and_nothing_is_missed(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await ready(a, b)
            local, _sub = collect(a)
            async with publishing(a) as count:
                await a.wait_for_group("matching.Reading")
                await asyncio.sleep(0.2)
                assert sent(a) == 0
                for _round in range(2):
                    at = count[0]
                    seen, sub = collect(b)
                    await at_least(seen, 1, "the first reading at b", REACT)
                    # it arrived within REACT of subscribing: a missed at most that much
                    assert seen[0][2] >= at
                    await at_least(seen, 40, "40 readings at b")
                    assert consecutive(seen), [q for _s, q, _v, _i in seen]
                    assert all(v == q for _s, q, v, _i in seen)
                    sub.close()
                    await asyncio.sleep(REACT)
                    stopped = sent(a)
                    await asyncio.sleep(0.2)
                    assert sent(a) == stopped, "a still sends after b left"
            stats = b.stats().types["matching.Reading"]
            assert (stats.lost, stats.duplicates, stats.stale) == (0, 0, 0)
            assert consecutive(local) and local[0][1] == 0 and len(local) == count[0]

    run(scenario())


def test_no_false_losses_after_unsubscribe_and_resubscribe(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await ready(a, b)
            async with publishing(a, every=0.001):
                for _round in range(3):
                    seen, sub = collect(b)
                    await at_least(seen, 20, "readings at b")
                    sub.close()
                    await asyncio.sleep(0.3)  # a goes quiet while numbering on
            endpoint = b.stats().endpoint
            assert endpoint.lost == 0 and endpoint.received >= 60

    run(scenario())


def test_last_value_is_served_while_not_sending(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, late = make(tmp_path, port, "a"), make(tmp_path, port, "late")
        async with running(a, late):
            await ready(a, late)
            for value in range(10):
                await a.publish(Reading(100 + value))
            await a.wait_for_group("matching.Reading")
            await asyncio.sleep(0.2)
            assert sent(a) == 0
            seen, _sub = collect(late, last_value=True)
            await at_least(seen, 1, "the last value at late")
            sender, seq, value, info = seen[0]
            assert (sender, seq, value, info.last_value) == (a.node_id, 9, 109, True)
            await asyncio.sleep(REACT)  # a now knows late subscribes
            for value in range(10, 20):
                await a.publish(Reading(100 + value))
            await at_least(seen, 11, "the live readings at late")
            assert [(q, v) for _s, q, v, _i in seen] == [(i, 100 + i) for i in range(9, 20)]
            assert late.stats().types["matching.Reading"].lost == 0

    run(scenario())


def test_too_large_is_refused_at_publish_while_not_sending(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await ready(a, b)
            got: list[tuple[str, int]] = []
            a.subscribe(Blob, lambda m, i: got.append((m.text, i.seq)))
            a.publish_nowait(Blob("small"))
            await a.wait_for_group("matching.Blob")
            await asyncio.sleep(0.2)
            for big in (Blob("x" * 2000), Blob("é" * 800), Blob("", b"\0" * 1400)):
                with pytest.raises(MessageTooLarge):
                    a.publish_nowait(big)
            with pytest.raises(EncodeError):
                a.publish_nowait(Blob(5))  # type: ignore[arg-type]
            near = 1300  # fits, though its bound alone may not: measured exactly
            a.publish_nowait(Blob("y" * near))
            a.publish_nowait(Blob("é" * 300))
            assert sent(a) == 0
            # refused messages took no sequence number
            assert got == [("small", 0), ("y" * near, 1), ("é" * 300, 2)]

    run(scenario())


def test_an_observer_subscription_is_interest(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a = make(tmp_path, port, "a")
        tail = make(tmp_path, port, "tail", observer=True)
        async with running(a, tail):
            await ready(a, tail)
            async with publishing(a):
                await a.wait_for_group("matching.Reading")
                await until(lambda: "matching.Reading" in tail.types(), "the map at tail")
                seen, _sub = collect(tail)
                await at_least(seen, 20, "readings at the observer")
                assert consecutive(seen)
            peers = {p.name: p for p in a.peers()}
            assert peers["tail"].subscribes == frozenset({"matching.Reading"})

    run(scenario())


def test_a_peer_that_does_not_say_gets_everything(tmp_path: Path, port: int) -> None:
    """An older node's heartbeat has no ``subscribes``: it is sent every type."""

    async def scenario() -> None:
        a = make(tmp_path, port, "a")
        async with running(a):
            await asyncio.sleep(WARMUP)
            async with publishing(a):
                await a.wait_for_group("matching.Reading")
                await asyncio.sleep(0.2)
                assert sent(a) == 0
                old = Endpoint(interface=LOOPBACK, port=port + 1,
                               group_for=lambda _name: "239.255.0.1")
                async with old:
                    for _ in range(10):
                        old.publish(Heartbeat(name="old", role="member", version="0.0",
                                              clock_synced=True))
                        if sent(a):
                            break
                        await asyncio.sleep(HEARTBEAT)
                    assert sent(a) > 0
                    # matched at once, although an older node (no heartbeat nonce) is
                    # only a candidate until its probation ends (docs/protocol.md 7.2)
                    control = a._control
                    assert control is not None
                    assert [p.subscribes for p in control.membership.candidates()] == [None]

    run(scenario())


def test_local_subscribers_see_consecutive_seqs_across_interest_changes(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await ready(a, b)
            local, _sub = collect(a)
            async with publishing(a, every=0.001) as count:
                for _round in range(3):
                    seen, sub = collect(b)
                    await at_least(seen, 10, "readings at b")
                    sub.close()
                    await asyncio.sleep(0.1)
            assert [q for _s, q, _v, _i in local] == list(range(count[0]))
            assert sent(a) > 0

    run(scenario())


def test_subscription_changes_send_rate_limited_heartbeats(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a = make(tmp_path, port, "a", heartbeat_seconds=5.0)  # regular ones out of the way
        async with running(a):
            beats: list[tuple[float, list[str] | None]] = []
            loop = asyncio.get_running_loop()
            listener = Endpoint(interface=LOOPBACK, port=port + 1,
                                group_for=lambda _name: "239.255.0.1")
            async with listener:
                listener.subscribe(Heartbeat, lambda hb, info: beats.append(
                    (loop.time(), hb.subscribes)) if info.sender == a.node_id else None)
                await asyncio.sleep(0.1)
                beats.clear()
                start = loop.time()
                for _ in range(20):  # 40 changes of the subscription set within ~0.4 s
                    _seen, sub = collect(a)
                    await asyncio.sleep(0.01)
                    sub.close()
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)
                elapsed = loop.time() - start
                # 40 changes, but at most one early heartbeat per 50 ms (+1 at once, +1 slack)
                assert 2 <= len(beats) <= elapsed / 0.05 + 2
                assert beats[-1][1] == []  # the last one says what is true now
                assert beats[0][0] - start < 0.5  # the first change went out without waiting

    run(scenario())
