"""Several in-process nodes on 127.0.0.1: agreement, delivery, restarts, observers, keys.

Each test builds its nodes on a port pair no other test uses (data port P, control
port P + 1), each member with its own state directory under ``tmp_path``, and with
mDNS off except in the one discovery test (which runs only in a private namespace).
Every test drives its own event loop through :func:`node_support.run`, which puts a
deadline on the whole scenario; every wait inside is a bounded :func:`until`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from node_support import LOOPBACK, run, until

from consensus.allocator import is_assignable
from ganglion.node import Node
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, message

pytestmark = pytest.mark.usefixtures("multicast_loopback")

READING = "nodetest.Reading"
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


@message(READING)
@dataclass
class Reading:
    value: int


PROBE = "nodetest.Probe"


@message(PROBE, key="sensor")
@dataclass
class Probe:
    sensor: str
    value: int


Seen = list[tuple[bytes, int, int, MessageInfo]]


def make(tmp_path: Path, port: int, name: str, **kwargs: Any) -> Node:
    """A node on loopback with fast heartbeats, its state under ``tmp_path / name``."""
    options: dict[str, Any] = {
        "interface": LOOPBACK, "port": port, "control_port": port + 1, "discovery": False,
        "heartbeat_seconds": 0.2, "peer_timeout": 2.0,
    }
    if not kwargs.get("observer"):
        options["state_dir"] = tmp_path / name
    options.update(kwargs)
    return Node(name=name, **options)


@contextlib.asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[tuple[Node, ...]]:
    """Start every node (in order) and close them all on exit."""
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        yield nodes


async def connected(*nodes: Node, timeout: float = 5.0) -> None:
    """Wait until every node hears every other one."""
    ids = {n.node_id for n in nodes}
    await until(lambda: all({p.id for p in n.peers()} >= ids - {n.node_id} for n in nodes),
                f"{len(nodes)} nodes to hear each other", timeout)


def collect(node: Node, type_name: str = READING, **kwargs: Any) -> Seen:
    """Subscribe on ``node``; return the list (sender, seq, value, info) it fills."""
    seen: Seen = []

    def on(msg: Any, info: MessageInfo) -> None:
        value = msg.value if isinstance(msg, Reading) else int(msg.fields.get("value", -1))
        seen.append((info.sender, info.seq, value, info))

    node.subscribe(type_name, on, **kwargs)
    return seen


def has_type(*nodes: Node, type_name: str = READING) -> bool:
    return all(type_name in n.types() for n in nodes)


async def settled(*nodes: Node, type_name: str = READING) -> None:
    """Wait until the type is agreed everywhere and no node holds messages back."""
    await until(lambda: has_type(*nodes, type_name=type_name)
                and all(n.stats().endpoint.pending == 0 for n in nodes),
                "the type agreed and every waiting message sent")
    await asyncio.sleep(0.1)  # the released messages are on their way; let them land


# --------------------------------------------------------------------- agreement + data


def test_type_agreed_by_all_and_every_reading_arrives_with_exact_seqs(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b, c = (make(tmp_path, port, n) for n in "abc")
        async with running(a, b, c):
            await connected(a, b, c)
            seen = {n.name: collect(n) for n in (a, b, c)}
            await until(lambda: has_type(a, b, c), "the type to be agreed everywhere")
            assert a.types() == b.types() == c.types()
            for value in range(20):
                await a.publish(Reading(value))
            await until(lambda: len(seen["b"]) >= 20 and len(seen["c"]) >= 20,
                        "20 readings on b and c")
            await asyncio.sleep(0.2)  # any duplicate would show up by now
            for name in "bc":
                assert [(s, q, v) for s, q, v, _ in seen[name]] == \
                    [(a.node_id, i, i) for i in range(20)]
                assert not any(info.local for *_, info in seen[name])
            assert [(q, v, info.local) for _, q, v, info in seen["a"]] == \
                [(i, i, True) for i in range(20)]

    run(scenario())


def test_publish_before_agreement_waits_and_nothing_is_lost(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b, c = (make(tmp_path, port, n) for n in "abc")
        async with running(a, b, c):
            await connected(a, b, c)
            # subscribers that do not propose: only the first publish starts agreement
            seen_b = collect(b, propose=False)
            seen_c = collect(c, propose=False)
            await asyncio.sleep(0.1)
            assert not has_type(a) and not has_type(b)
            for value in range(10):
                a.publish_nowait(Reading(value))
            # a three-node quorum needs replies: nothing can be decided synchronously
            assert READING not in a.types()
            assert a.stats().endpoint.pending == 10
            assert a.stats().types[READING].group is None
            await until(lambda: len(seen_b) >= 10 and len(seen_c) >= 10, "the queued readings")
            await asyncio.sleep(0.2)
            for seen in (seen_b, seen_c):
                assert [(q, v) for _, q, v, _ in seen] == [(i, i) for i in range(10)]
            stats = a.stats()
            assert stats.endpoint.pending == 0
            assert stats.dropped == 0
            assert stats.types[READING].group == a.types()[READING]
            assert b.stats().types[READING].lost == 0

    run(scenario())


def test_full_waiting_queue_drops_the_oldest_and_counts_them(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        # an observer alone has no member to agree with: its publishes must wait
        lonely = make(tmp_path, port, "lonely", observer=True, pending_limit=3)
        async with running(lonely):
            for value in range(10):
                await lonely.publish(Reading(value))
            await asyncio.sleep(0.3)
            stats = lonely.stats()
            assert READING not in lonely.types()
            assert stats.dropped == 7
            assert stats.endpoint.pending == 3
            assert stats.types[READING].sent == 10
            # a member appears: it is asked to propose, and the three newest go out
            member = make(tmp_path, port, "member")
            async with running(member):
                seen = collect(member, propose=False)
                await until(lambda: len(seen) >= 3, "the three queued readings", timeout=8.0)
                await asyncio.sleep(0.2)
                assert [v for _, _, v, _ in seen] == [7, 8, 9]
                assert lonely.stats().endpoint.pending == 0
                assert lonely.stats().dropped == 7

    run(scenario())


def pending_limit_scenario(tmp_path: Path, port: int) -> tuple[Seen, Seen]:
    """A member with ``pending_limit=3`` publishes ten readings before agreement.

    Returns:
        What the publisher's own subscriber and a remote subscriber received.
    """

    async def scenario() -> tuple[Seen, Seen]:
        a = make(tmp_path, port, "a", pending_limit=3)
        b = make(tmp_path, port, "b")
        async with running(a, b):
            await connected(a, b)
            local = collect(a, propose=False)
            remote = collect(b, propose=False)
            for value in range(10):
                a.publish_nowait(Reading(value))
            assert a.stats().dropped == 7
            await until(lambda: len(remote) >= 3, "the three newest readings")
            await asyncio.sleep(0.2)
            assert a.stats().endpoint.pending == 0
            return local, remote

    return run(scenario())


def test_members_pending_limit_keeps_the_newest(tmp_path: Path, port: int) -> None:
    local, remote = pending_limit_scenario(tmp_path, port)
    assert [v for _, _, v, _ in remote] == [7, 8, 9]
    assert [v for _, _, v, _ in local] == list(range(10))
    assert [q for _, q, _, _ in remote] == sorted({q for _, q, _, _ in remote})


def test_pending_limit_local_and_remote_seqs_agree(tmp_path: Path, port: int) -> None:
    local, remote = pending_limit_scenario(tmp_path, port)
    local_seq = {v: q for _, q, v, _ in local}
    assert len(set(local_seq.values())) == 10, f"repeated local seqs: {local_seq}"
    assert {v: q for _, q, v, _ in remote} == {v: local_seq[v] for v in (7, 8, 9)}


# --------------------------------------------------------------------------- last values


def test_late_joiner_gets_each_publishers_latest_reading(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b, late = (make(tmp_path, port, n) for n in ("a", "b", "late"))
        async with running(a, b, late):
            await connected(a, b, late)
            for value in range(5):
                await a.publish(Reading(100 + value))
            for value in range(3):
                await b.publish(Reading(200 + value))
            await settled(a, b, late)
            seen = collect(late, last_value=True)
            await until(lambda: len(seen) >= 2, "one last value from each publisher")
            await asyncio.sleep(0.3)
            got = {(s, q, v, info.last_value) for s, q, v, info in seen}
            assert got == {(a.node_id, 4, 104, True), (b.node_id, 2, 202, True)}
            assert len(seen) == 2

    run(scenario())


def test_late_joiner_gets_the_latest_reading_of_every_key(tmp_path: Path, port: int) -> None:
    """Three probes in one keyed stream: a late joiner gets each probe's latest, no loss."""

    async def scenario() -> None:
        a, late = make(tmp_path, port, "a"), make(tmp_path, port, "late")
        async with running(a, late):
            await connected(a, late)
            for value in range(10):  # probes 0, 1, 2 in turn; probe 0 last at value 9
                await a.publish(Probe(f"w1:{value % 3}", value))
            await settled(a, late, type_name=PROBE)
            seen: list[tuple[str, int, int, bool]] = []
            late.subscribe(PROBE, lambda msg, info: seen.append(
                (msg.sensor, msg.value, info.seq, info.last_value)), last_value=True)
            await until(lambda: len(seen) >= 3, "one last value per probe")
            await asyncio.sleep(0.3)
            assert seen == [("w1:1", 7, 7, True), ("w1:2", 8, 8, True), ("w1:0", 9, 9, True)]
            await a.publish(Probe("w1:1", 10))
            await until(lambda: len(seen) >= 4, "the next live reading")
            assert seen[-1] == ("w1:1", 10, 10, False)
            # the numbers between answers were other probes' older readings, not losses
            assert late.stats().types[PROBE].lost == 0
            assert a.stats().types[PROBE].sent_per_key == {("w1:0",): 4, ("w1:1",): 4,
                                                           ("w1:2",): 3}
            assert a.stats().endpoint.last_value_keys[PROBE] == 3

    run(scenario())


def test_last_value_never_arrives_after_a_newer_reading(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, late = make(tmp_path, port, "a"), make(tmp_path, port, "late")
        async with running(a, late):
            await connected(a, late)
            for value in range(10):
                await a.publish(Reading(value))
            await settled(a, late)
            resume = asyncio.Event()

            async def keep_publishing() -> None:
                await resume.wait()
                for value in range(10, 60):
                    await a.publish(Reading(value))
                    await asyncio.sleep(0.003)

            publisher = asyncio.get_running_loop().create_task(keep_publishing())
            # subscribed while no reading is in flight (a reading in flight at that
            # moment can still arrive twice: see the report on deliver_last_value)
            seen = collect(late, last_value=True)
            await asyncio.sleep(0.01)
            resume.set()
            await asyncio.wait_for(publisher, 10)
            await until(lambda: bool(seen) and seen[-1][1] == 59, "the last live reading")
            await asyncio.sleep(0.2)
            seqs = [q for _, q, _, _ in seen]
            assert seqs == sorted(set(seqs)), f"a reading arrived out of order: {seqs}"
            assert seqs == list(range(9, 60))
            assert seen[0][3].last_value and seen[0][2] == 9
            assert not any(info.last_value for *_, info in seen[1:])

    run(scenario())


def test_last_value_while_first_readings_still_wait(tmp_path: Path, port: int) -> None:
    async def scenario() -> list[int]:
        a, late = make(tmp_path, port, "a"), make(tmp_path, port, "late")
        async with running(a, late):
            await connected(a, late)
            for value in range(5):
                await a.publish(Reading(value))
            # decided, but the first readings are held back for the settle time
            await until(lambda: has_type(a, late), "the type everywhere")
            seen = collect(late, last_value=True)
            await until(lambda: len(seen) >= 1, "the first reading")
            await asyncio.sleep(0.4)
            return [q for _, q, _, _ in seen]

    seqs = run(scenario())
    assert seqs == sorted(set(seqs)), f"older or repeated readings after a newer one: {seqs}"


# ------------------------------------------------------------------------------ restarts


def test_restarted_node_keeps_id_map_and_publishes_with_higher_boot(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        receiver = make(tmp_path, port, "receiver")
        async with running(receiver):
            seen = collect(receiver)
            first = make(tmp_path, port, "sensor")
            async with running(first):
                await connected(first, receiver)
                for value in range(5):
                    await first.publish(Reading(value))
                await until(lambda: len(seen) >= 5, "the first boot's readings")
                node_id, agreed = first.node_id, first.types()
            again = make(tmp_path, port, "sensor")
            async with running(again):
                # the map is back from the journal before any peer is heard
                assert again.node_id == node_id
                assert again.types() == agreed
                for value in range(5, 10):
                    await again.publish(Reading(value))
                await until(lambda: len(seen) >= 10, "the second boot's readings")
                await asyncio.sleep(0.2)
            boots = [info.boot for *_, info in seen]
            assert [(s, q, v) for s, q, v, _ in seen] == \
                [(node_id, i % 5, i) for i in range(10)]
            assert boots[:5] == [boots[0]] * 5 and boots[5:] == [boots[5]] * 5
            assert boots[5] > boots[0]
            stats = receiver.stats().types[READING]
            assert (stats.received, stats.lost, stats.duplicates, stats.stale) == (10, 0, 0, 0)
            assert receiver.types() == agreed

    run(scenario())


# ------------------------------------------------------------------------------ observers


def test_observer_never_counts_and_learns_the_whole_map(tmp_path: Path, port: int) -> None:
    names = [f"nodetest.obs.t{i}" for i in range(6)]

    async def scenario() -> None:
        m1, m2 = make(tmp_path, port, "m1"), make(tmp_path, port, "m2")
        async with running(m1, m2):
            await connected(m1, m2)
            for i, name in enumerate(names):
                await (m1 if i % 2 else m2).publish(Record(name, {"value": i}))
            await until(lambda: len(m1.types()) == len(m2.types()) == len(names),
                        "the members to agree on every type")
            obs = make(tmp_path, port, "obs", observer=True)
            async with running(obs):
                await until(lambda: obs.types() == m1.types(), "the observer's catch-up")
                await connected(m1, m2, obs)
                obs_int = int.from_bytes(obs.node_id, "big")
                for member in (m1, m2):
                    roles = {p.id: p.role for p in member.peers()}
                    assert roles[obs.node_id] == "observer"
                    assert member.stats().control["view"] == 2
                    # the consensus view is what quorums are computed over
                    view = member._control.paxos.view  # type: ignore[union-attr]
                    assert obs_int not in view and len(view) == 2
                assert m2.types() == obs.types()
                assert obs.stats().control["view"] == 2
                # the observer persisted nothing
                assert not (tmp_path / "obs").exists()

    run(scenario())


# ---------------------------------------------------------------------------- uniqueness


def test_thirty_types_from_three_nodes_get_thirty_groups(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        nodes = tuple(make(tmp_path, port, n) for n in "abc")
        async with running(*nodes):
            await connected(*nodes)
            listener = nodes[0]
            seen: list[str] = []
            for i in range(30):
                listener.subscribe(f"nodetest.many.t{i:02d}",
                                   lambda _m, info: seen.append(info.type_name), propose=False)
            # every node publishes its ten types in the same loop iteration
            for k, node in enumerate(nodes):
                for i in range(k * 10, k * 10 + 10):
                    node.publish_nowait(Record(f"nodetest.many.t{i:02d}", {"value": i}))
            await until(lambda: all(len(n.types()) == 30 for n in nodes),
                        "30 types agreed on every node", timeout=20)
            maps = [n.types() for n in nodes]
            assert maps[0] == maps[1] == maps[2]
            groups = list(maps[0].values())
            assert len(set(groups)) == 30
            assert all(is_assignable(IPv4Address(g)) for g in groups)
            await until(lambda: len(set(seen)) == 30, "a reading of every type at the listener")
            assert all(n.stats().dropped == 0 for n in nodes)

    run(scenario(), timeout=40)


# ----------------------------------------------------------------------------- keys


def test_network_key_keeps_a_node_with_the_wrong_key_out(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a = make(tmp_path, port, "a", key=KEY_A)
        b = make(tmp_path, port, "b", key=KEY_A)
        stranger = make(tmp_path, port, "stranger", key=KEY_B)
        async with running(a, b, stranger):
            await connected(a, b)
            seen_b = collect(b)
            seen_x = collect(stranger)
            await until(lambda: has_type(a, b, stranger), "the type on every node")
            for value in range(5):
                await a.publish(Reading(value))
            await until(lambda: len(seen_b) >= 5, "b's readings")
            await asyncio.sleep(0.5)  # at least two heartbeats from everyone
            assert [(q, v) for _, q, v, _ in seen_b] == [(i, i) for i in range(5)]
            assert seen_x == []
            assert stranger.peers() == []
            assert stranger.node_id not in {p.id for p in a.peers()}
            assert a.stats().control["view"] == 2 and b.stats().control["view"] == 2
            assert stranger.stats().control["view"] == 1
            # the stranger alone agreed the same preferred group, so it heard and dropped
            assert stranger.types()[READING] == a.types()[READING]
            assert stranger.stats().bad_mac > 0 and a.stats().bad_mac > 0

    run(scenario())


# ----------------------------------------------------------------------------- stats


def test_stats_per_type(tmp_path: Path, port: int) -> None:
    other = "nodetest.stats.Other"

    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await connected(a, b)
            seen = collect(b)
            seen_other = collect(b, other)
            await until(lambda: has_type(a, b) and has_type(a, b, type_name=other),
                        "both types agreed")
            for value in range(7):
                await a.publish(Reading(value))
            for value in range(3):
                await a.publish(Record(other, {"value": value}))
            await until(lambda: len(seen) >= 7 and len(seen_other) >= 3, "every reading")
            sa, sb = a.stats(), b.stats()
            assert sa.types[READING].sent == 7 and sa.types[other].sent == 3
            assert sa.types[READING].received == 0
            assert sb.types[READING].received == 7 and sb.types[other].received == 3
            assert sb.types[READING].sent == 0
            for s in (sb.types[READING], sb.types[other]):
                assert (s.lost, s.duplicates, s.reordered, s.stale) == (0, 0, 0, 0)
            assert sa.types[READING].group == sb.types[READING].group == a.types()[READING]
            assert sa.types[other].group == b.types()[other]
            assert sa.peers == sb.peers == 1
            assert sb.endpoint.received == 10
            assert sa.dropped == sa.bad_mac == sa.decode_errors == 0

    run(scenario())


# ----------------------------------------------------------------------------- goodbye


def test_close_says_goodbye_and_peers_drop_it_at_once(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        # a peer timeout far longer than the test: only the goodbye can remove c
        a, b, c = (make(tmp_path, port, n, peer_timeout=60.0) for n in "abc")
        async with running(a, b):
            await c.start()
            try:
                await connected(a, b, c)
                assert a.stats().control["view"] == 3
            finally:
                await c.close()
            await until(lambda: all(c.node_id not in {p.id for p in n.peers()} for n in (a, b)),
                        "a and b to drop c", timeout=1.0)
            assert a.stats().control["view"] == b.stats().control["view"] == 2

    run(scenario())


# ----------------------------------------------------------------------------- clock flag


def test_clock_flag_reaches_receivers(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        synced, unsynced, rx = (make(tmp_path, port, n) for n in ("synced", "unsynced", "rx"))
        async with running(synced, unsynced, rx):
            await connected(synced, unsynced, rx)
            # this machine's own clock state must not decide the test: force both ways
            synced._endpoint.set_clock_synced(True)  # type: ignore[union-attr]
            unsynced._endpoint.set_clock_synced(False)  # type: ignore[union-attr]
            seen = collect(rx)
            await until(lambda: has_type(synced, unsynced, rx), "the type everywhere")
            for value in range(3):
                await synced.publish(Reading(value))
                await unsynced.publish(Reading(value))
            await until(lambda: len(seen) >= 6, "six readings")
            flags = {(s, info.clock_synced) for s, _, _, info in seen}
            assert flags == {(synced.node_id, True), (unsynced.node_id, False)}

    run(scenario())


# ----------------------------------------------------------------------------- mDNS


def test_discovery_finds_the_other_node(tmp_path: Path, port: int) -> None:
    if not os.environ.get("GANGLION_TEST_NETNS"):
        pytest.skip("mDNS sends to 224.0.0.251:5353; runs only in a private namespace "
                    "(GANGLION_TEST_NETNS set by the test command)")

    async def scenario() -> None:
        a = make(tmp_path, port, "disc-a", discovery=True)
        b = make(tmp_path, port, "disc-b", discovery=True)
        async with running(a, b):
            await a.publish(Reading(1))
            await until(lambda: any(p.id == a.node_id and READING in p.types
                                    for p in b.discovered()),
                        "b to discover a and the type it publishes", timeout=10)
            found = next(p for p in b.discovered() if p.id == a.node_id)
            assert (found.name, found.role, found.port) == ("disc-a", "member", port)

    run(scenario(), timeout=30)


def test_clock_flag_survives_a_last_value(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        unsynced, late = make(tmp_path, port, "unsynced"), make(tmp_path, port, "late")
        async with running(unsynced, late):
            await connected(unsynced, late)
            unsynced._endpoint.set_clock_synced(False)  # type: ignore[union-attr]
            await unsynced.publish(Reading(1))
            await settled(unsynced, late)
            seen = collect(late, last_value=True)
            await until(lambda: bool(seen), "the last value")
            (_, _, _, info), = seen
            assert info.last_value
            assert info.clock_synced is False

    run(scenario())


def test_watch_types_reports_each_new_assignment(port: int, tmp_path: Path) -> None:
    async def main() -> None:
        seen: list[tuple[str, str]] = []
        async with Node(name="w", interface=LOOPBACK, port=port, control_port=port + 1,
                        state_dir=tmp_path / "w", discovery=False) as node:
            unwatch = node.watch_types(lambda name, group: seen.append((name, group)))
            node.publish_nowait(Record("test_watch.One", {"x": 1}))
            group = await node.wait_for_group("test_watch.One", 10)
            unwatch()
            node.publish_nowait(Record("test_watch.Two", {"x": 2}))
            await node.wait_for_group("test_watch.Two", 10)
        assert seen == [("test_watch.One", group)]

    run(main())
