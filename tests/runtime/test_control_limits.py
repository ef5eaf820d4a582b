"""The control plane's limits on loopback: what issue 21's adversarial probe did, bounded.

Each test runs real :class:`ControlChannel` objects on 127.0.0.1 (their own group
and port) and attacks them with datagrams built from docs/protocol.md by a
:class:`Forger`, as the probe did from a third host:

* 50 forged member heartbeats (finding 5): the view stays at the real nodes and a
  new type is still agreed at once;
* a dead node's recorded control traffic replayed at a node that restarted
  (finding 4): the dead node never counts as live;
* floods of CatchUpRequests and ProposeRequests (finding 5): a bounded number of
  answers (by unicast to the requester where that reaches it alone) and of junk
  types decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest
from _control_support import (
    Forger,
    Recorder,
    channel,
    consensus_kinds,
    frame,
    heartbeat,
    until,
)

from consensus import MapChange
from consensus.messages import Ballot, CatchUpRequest, Prepare, ProposeRequest
from ganglion import defaults
from ganglion.membership import MembershipLimits
from ganglion.runtime.control import ControlChannel
from ganglion.runtime.control_messages import (
    LastValue,
    LastValueRequest,
    PaxosFrame,
)
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import TypeRegistry, decode_payload, encode_payload, type_of
from ganglion.wire import decode_datagram, encode_datagram

pytestmark = pytest.mark.usefixtures("multicast_loopback")

KEY = bytes(range(32))


@contextlib.asynccontextmanager
async def started(*channels: ControlChannel) -> AsyncIterator[None]:
    """Start every channel and close them all on exit (closing one twice is harmless)."""
    async with contextlib.AsyncExitStack() as stack:
        for ch in channels:
            await ch.start()
            stack.push_async_callback(ch.close)
        yield


def run(coro: object, timeout: float = 40.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)  # type: ignore[arg-type]

    asyncio.run(bounded())


def live_ids(ch: ControlChannel) -> set[bytes]:
    return {p.id for p in ch.peers()}


# -- proof of liveness between real nodes ---------------------------------------------


def test_new_nodes_prove_each_other_within_a_heartbeat_interval(
        tmp_path: Path, free_udp_port: int, test_group: str) -> None:
    async def scenario() -> None:
        # Periodic heartbeats every 0.5 s: only the early heartbeats (a newcomer, an
        # ask) can make the echo round trip this fast.
        a = channel(tmp_path, "a", free_udp_port, test_group, heartbeat_seconds=0.5)
        b = channel(tmp_path, "b", free_udp_port, test_group, heartbeat_seconds=0.5,
                    peer_timeout=2.0)
        async with started(a, b):
            took = await until(lambda: live_ids(a) == {b.node_id} and live_ids(b) == {a.node_id},
                               "a and b to prove themselves to each other", timeout=3.0)
            assert took < 0.5
            assert a.paxos.view == b.paxos.view == {a.int_id, b.int_id}
            assert a.stats()["peers_proven"] == b.stats()["peers_proven"] == 1

    run(scenario())


# -- finding 5: fifty forged member heartbeats ----------------------------------------


def test_fifty_forged_member_heartbeats_neither_grow_the_view_nor_stall_agreement(
        tmp_path: Path, free_udp_port: int, test_group: str) -> None:
    async def scenario() -> None:
        nodes = [channel(tmp_path, n, free_udp_port, test_group) for n in "abc"]
        real = {n.int_id for n in nodes}
        forger = Forger(test_group, free_udp_port)
        # The lowest ids there are: on the old code they also became the leader.
        fakes = [i.to_bytes(8, "big") for i in range(1, 51)]
        async with started(*nodes):
            await until(lambda: all(n.paxos.view == real for n in nodes), "a view of three")
            largest = 0
            loop = asyncio.get_running_loop()
            flood_end = loop.time() + 3.0
            proposed_at: float | None = None
            agreed_after: float | None = None
            while loop.time() < flood_end:
                for i, fake in enumerate(fakes):
                    forger.send(fake, heartbeat(f"fake{i}", nonce=secrets.token_bytes(8)))
                await asyncio.sleep(0.1)
                largest = max(largest, *(len(n.paxos.view) for n in nodes))
                if proposed_at is None and loop.time() > flood_end - 2.5:
                    proposed_at = loop.time()
                    nodes[0].propose("flood.Agreed")
                if proposed_at is not None and agreed_after is None and all(
                        "flood.Agreed" in n.groups() for n in nodes):
                    agreed_after = loop.time() - proposed_at
            forger.close()
            assert largest == 3, "forged heartbeats entered the quorum view"
            assert agreed_after is not None and agreed_after < 1.0, \
                "a new type was not agreed during the flood"
            for n in nodes:
                stats = n.stats()
                assert stats["view"] == 3 and stats["members"] == 2
                assert stats["candidates"] <= defaults.MAX_CANDIDATES
                # 50 new ids at once: beyond the admission burst, refused and counted
                assert stats["peers_refused_rate"] > 0

    run(scenario())


# -- finding 4: a dead node's recorded control traffic, replayed after a restart ------


@pytest.mark.parametrize("key", [KEY, None], ids=["key", "no-key"])
def test_a_dead_nodes_replayed_control_traffic_does_not_make_it_live_after_a_restart(
        tmp_path: Path, free_udp_port: int, test_group: str, key: bytes | None) -> None:
    async def scenario() -> None:
        a = channel(tmp_path, "a", free_udp_port, test_group, key=key)
        b = channel(tmp_path, "b", free_udp_port, test_group, key=key)
        recorder = Recorder(free_udp_port, test_group)
        recorder.start()
        try:
            async with started(a, b):
                await until(lambda: live_ids(a) == {b.node_id}, "a to count b")
                await asyncio.sleep(1.0)  # record b's traffic for a while
                recorder.stop()
            # a restarts (same id and journal); b stays dead
            recorded = [d for d, _ in recorder.datagrams
                        if recorder_sender(d, key) == b.node_id and not is_goodbye(d, key)]
            assert len(recorded) >= 10
            a2 = channel(tmp_path, "a", free_udp_port, test_group, key=key,
                         node_id=a.node_id)
            replayer = Forger(test_group, free_udp_port)
            async with started(a2):
                loop = asyncio.get_running_loop()
                end = loop.time() + 2.5  # longer than the peer timeout (1 s)
                seen_as_candidate = False
                for datagram in recorded * 3:  # the recording, at its own pace, thrice
                    replayer.raw(datagram)
                    await asyncio.sleep(0.025)
                    assert b.node_id not in live_ids(a2), "a replay made a dead node live"
                    assert b.int_id not in a2.paxos.view
                    seen_as_candidate |= a2.membership.known(b.node_id) is not None
                    if loop.time() > end:
                        break
                replayer.close()
                # the replay did get through the receive path; only the proof stopped it
                assert seen_as_candidate
                assert a2.stats()["view"] == 1
        finally:
            recorder.close()

    run(scenario())


def recorder_sender(datagram: bytes, key: bytes | None) -> bytes:
    return decode_datagram(datagram, key=key).node_id


def is_goodbye(datagram: bytes, key: bytes | None) -> bool:
    env = decode_datagram(datagram, key=key)
    return env.type_name == "ganglion.control.Heartbeat" and any(
        cbor2.loads(p).get("goodbye") for p in env.payloads)


# -- finding 5: catch-up amplification ------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.2", "127.0.0.1"], ids=["own-host", "shared"])
def test_a_catch_up_request_flood_gets_a_bounded_number_of_answers(
        tmp_path: Path, free_udp_port: int, test_group: str, address: str) -> None:
    async def scenario() -> None:
        a = channel(tmp_path, "a", free_udp_port, test_group)
        forger = Forger(test_group, free_udp_port, address=address)
        group_rx = Recorder(free_udp_port, test_group)
        unicast_rx = Recorder(free_udp_port, None, address=address) \
            if address != "127.0.0.1" else None
        requester = b"\x00\x00\x00\x00\x00\x00\xca\xfe"
        try:
            async with started(a):
                for i in range(40):
                    a.propose(f"map.T{i}")
                await until(lambda: len(a.groups()) == 40, "a map of 40 types")
                # An active forger: it reads a's nonce off the wire and echoes it, so
                # it is even live; its requests are still bounded.
                alive = heartbeat("requester", nonce=b"12345678", echo=[a.nonce])
                forger.send(requester, alive)
                await until(lambda: a.membership.get(requester) is not None,
                            "a to count the requester as live")
                group_rx.start()
                if unicast_rx is not None:
                    unicast_rx.start()
                request = frame(CatchUpRequest(sender=int.from_bytes(requester, "big")),
                                to=a.int_id)
                for i in range(300):  # 300 requests in about 1.5 s
                    forger.send(requester, request)
                    if i % 50 == 49:  # it keeps sending heartbeats: it stays known
                        forger.send(requester, alive)
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.3)
                stats = a.stats()
        finally:
            forger.close()
            group_rx.close()
            if unicast_rx is not None:
                unicast_rx.close()
        rate, burst = defaults.CATCHUP_PER_REQUESTER
        chunks = 3  # 40 entries, 16 per reply
        multicast = consensus_kinds(group_rx, sender=a.node_id).count("catchup")
        unicast = 0 if unicast_rx is None else \
            consensus_kinds(unicast_rx, sender=a.node_id).count("catchup")
        # what the flood got, in reply datagrams (the old code: 300 x 3, all multicast)
        assert chunks <= multicast + unicast <= (burst + rate * 2.5) * chunks
        answered = stats["catchup_answered"]
        # the agreement layer may refuse some of what this layer let through, never more
        assert (multicast + unicast) % chunks == 0
        assert multicast + unicast <= answered * chunks
        assert stats["catchup_rate_limited"] == 300 - answered
        if unicast_rx is None:
            assert unicast == 0  # no address of its own: the group
        else:
            assert unicast >= chunks and stats["unicast_sent"] == unicast
            # an answer by unicast, then (asked again at once) one to the group, ...
            assert multicast <= unicast

    run(scenario())


def test_catch_up_and_propose_requests_from_ids_never_heard_are_dropped(
        tmp_path: Path, free_udp_port: int, test_group: str) -> None:
    async def scenario() -> None:
        a = channel(tmp_path, "a", free_udp_port, test_group)
        forger = Forger(test_group, free_udp_port)
        stranger = b"\x00\x00\x00\x00\x00\x00\x0b\xad"
        sid = int.from_bytes(stranger, "big")
        async with started(a):
            a.propose("map.Known")
            await until(lambda: "map.Known" in a.groups(), "one type")
            for i in range(20):
                forger.send(stranger, frame(CatchUpRequest(sender=sid), to=a.int_id))
                forger.send(stranger, frame(ProposeRequest(sender=sid, type_name=f"junk.T{i}")))
                # a forged sender field: the datagram's id differs from the message's
                forger.send(b"\x01" * 8, frame(ProposeRequest(sender=a.int_id,
                                                              type_name=f"junk.U{i}")))
            await until(lambda: a.stats().get("paxos_sender_mismatch", 0) == 20,
                        "the forged senders to be counted")
            stats = a.stats()
        forger.close()
        assert stats["catchup_unknown"] == 20 and stats["propose_unknown"] == 20
        assert stats.get("catchup_answered", 0) == 0
        assert set(a.groups()) == {"map.Known"}

    run(scenario())


# -- finding 5: a ProposeRequest flood -------------------------------------------------


def test_a_propose_request_flood_decides_a_bounded_number_of_junk_types(
        tmp_path: Path, free_udp_port: int, test_group: str) -> None:
    async def scenario() -> None:
        a = channel(tmp_path, "a", free_udp_port, test_group)
        forger = Forger(test_group, free_udp_port)
        requester = b"\x00\x00\x00\x00\x00\x00\xbe\xef"
        rid = int.from_bytes(requester, "big")
        async with started(a):
            alive = heartbeat("requester", role="observer", nonce=b"12345678", echo=[a.nonce])
            forger.send(requester, alive)
            await until(lambda: a.membership.get(requester) is not None, "the requester")
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(2000):
                forger.send(requester, frame(ProposeRequest(sender=rid, type_name=f"junk.T{i}"),
                                             to=a.int_id))
                if i % 20 == 19:
                    await asyncio.sleep(0.01)
                if i % 200 == 199:  # it keeps sending heartbeats: it stays known
                    forger.send(requester, alive)
            await asyncio.sleep(1.0)  # time to decide whatever got through
            elapsed = loop.time() - start
            decided = sum(1 for name in a.groups() if name.startswith("junk."))
            stats = a.stats()
        forger.close()
        rate, burst = defaults.PROPOSE_PER_REQUESTER
        assert decided <= burst + rate * elapsed
        assert stats.get("propose_unknown", 0) == 0
        assert stats["propose_rate_limited"] >= 2000 - (burst + rate * elapsed)

    run(scenario())


# -- older nodes (no nonce) -----------------------------------------------------------


def old_heartbeat_payload(name: str) -> bytes:
    """A heartbeat as ganglion before the nonce sent it: no nonce, ask or echo."""
    return cbor2.dumps({"name": name, "role": "member", "version": "0.old",
                        "clock_synced": True, "publishes": [], "goodbye": False,
                        "subscribes": []})


def old_registry() -> TypeRegistry:
    """A registry holding the heartbeat as ganglion registered it before the nonce."""
    registry = TypeRegistry()

    @registry.message("ganglion.control.Heartbeat")
    class OldHeartbeat:
        name: str
        role: str
        version: str
        clock_synced: bool
        publishes: list[str]
        goodbye: bool = False
        subscribes: list[str] | None = None

    return registry


def old_heartbeat_fingerprint() -> bytes:
    mtype = old_registry().lookup("ganglion.control.Heartbeat")
    assert mtype is not None
    return mtype.fingerprint


def test_an_older_node_still_reads_a_new_heartbeat() -> None:
    new = heartbeat("n", nonce=b"12345678", ask=[b"\x01" * 8], echo=[b"abcdefgh"])
    registry = old_registry()
    old_class = registry.lookup("ganglion.control.Heartbeat")
    assert old_class is not None
    got = decode_payload("ganglion.control.Heartbeat", encode_payload(new),
                         type_of(new).fingerprint, registry=registry)
    assert type(got) is old_class.cls
    assert (got.name, got.subscribes) == ("n", [])  # type: ignore[attr-defined]


@pytest.mark.parametrize(("key", "admitted"), [(None, True), (KEY, False)],
                         ids=["no-key", "key"])
def test_an_older_node_counts_after_probation_only_without_a_key(
        tmp_path: Path, free_udp_port: int, test_group: str, key: bytes | None,
        admitted: bool) -> None:
    async def scenario() -> None:
        probation = 0.6
        limits = MembershipLimits(legacy_probation=probation if key is None else None)
        a = channel(tmp_path, "a", free_udp_port, test_group, key=key, limits=limits)
        forger = Forger(test_group, free_udp_port, key=key)
        old = b"\x00\x00\x00\x00\x00\x00\x01\xd0"
        fingerprint = old_heartbeat_fingerprint()
        async with started(a):
            for seq in range(int(1.5 / 0.1)):
                forger.raw(old_datagram(old, seq, fingerprint, key))
                await asyncio.sleep(0.1)
                if seq * 0.1 < probation - 0.15:
                    assert old not in live_ids(a), "an older node counted before probation"
            assert (old in live_ids(a)) is admitted
            assert a.membership.known(old) is not None
        forger.close()

    run(scenario())


def old_datagram(sender: bytes, seq: int, fingerprint: bytes, key: bytes | None) -> bytes:
    return encode_datagram(node_id=sender, type_name="ganglion.control.Heartbeat",
                           fingerprint=fingerprint, first_seq=seq, timestamps=[time.time_ns()],
                           payloads=[old_heartbeat_payload("old")], boot=1, key=key,
                           max_datagram=None)


def test_control_messages_that_do_not_fit_their_schema_are_counted_not_raised(
        tmp_path: Path, free_udp_port: int, test_group: str,
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        a = channel(tmp_path, "a", free_udp_port, test_group)
        forger = Forger(test_group, free_udp_port)
        sender = b"\x00\x00\x00\x00\x00\x00\x0f\x0f"
        # Under a foreign fingerprint a payload whose fields do not fit the class
        # arrives as a Record; under ours, a field out of range.
        foreign = [
            ("ganglion.control.Heartbeat", {"name": 5}),
            ("ganglion.control.Paxos", {"body": "text, not bytes", "to": None}),
            ("ganglion.control.LastValueRequest", {"type_name": 12}),
            ("ganglion.control.LastValue", {"to": a.int_id, "type_name": "x.Y",
                                            "fingerprint": list(range(2000))}),
        ]
        own = [
            heartbeat("n", nonce=b"x" * 200),  # an absurd nonce
            LastValueRequest(type_name="not a type name"),
            LastValue(to=a.int_id, type_name="x.Y", fingerprint=b"\x01", seq=0, boot=0,
                      sent_ns=0, payload=b"\xa0"),  # a 1-byte fingerprint
            LastValue(to=a.int_id, type_name="x.Y", fingerprint=b"\x01" * 8, seq=2**70,
                      boot=0, sent_ns=0, payload=b"\xa0"),  # a sequence number beyond u64
        ]
        async with started(a):
            for seq, (name, fields) in enumerate(foreign):
                forger.raw(encode_datagram(
                    node_id=sender, type_name=name, fingerprint=b"\xee" * 8, first_seq=seq,
                    timestamps=[1], payloads=[cbor2.dumps(fields)], max_datagram=None))
            for msg in own:
                forger.send(sender, msg)
            await until(lambda: (a.stats().get("heartbeat_malformed", 0),
                                 a.stats().get("paxos_malformed", 0),
                                 a.stats().get("last_value_malformed", 0)) == (2, 1, 5),
                        "every malformed message counted")
            assert a.membership.known(sender) is None
        forger.close()

    with caplog.at_level("ERROR"):
        run(scenario())
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def laughs(levels: int) -> bytes:
    """A CBOR array of ``levels`` shared references (tags 28/29), each level naming the
    previous one twice: a few hundred bytes describing 2**levels leaves."""
    out = bytes([0x80 | levels]) if levels < 24 else b"\x98" + bytes([levels])
    out += b"\xd8\x1c\x82\x01\x01"
    for i in range(1, levels):
        ref = b"\xd8\x1d" + cbor2.dumps(i - 1)
        out += b"\xd8\x1c\x82" + ref + ref
    return out


def test_a_consensus_body_of_shared_references_is_refused_without_stalling(
        tmp_path: Path, free_udp_port: int, test_group: str) -> None:
    async def scenario() -> None:
        a = channel(tmp_path, "a", free_udp_port, test_group)
        forger = Forger(test_group, free_udp_port)
        sender = b"\x00\x00\x00\x00\x00\x00\x0c\xbb"
        loop = asyncio.get_running_loop()
        worst = 0.0

        async def watch() -> None:
            nonlocal worst
            while True:
                before = loop.time()
                await asyncio.sleep(0.005)
                worst = max(worst, loop.time() - before - 0.005)

        async with started(a):
            watcher = loop.create_task(watch())
            await asyncio.sleep(0.1)
            for _ in range(3):
                forger.send(sender, PaxosFrame(body=laughs(20), to=a.int_id))
            await until(lambda: a.stats().get("paxos_malformed", 0) == 3, "3 bodies refused")
            await asyncio.sleep(0.05)
            watcher.cancel()
        forger.close()
        assert worst < 0.1, f"the event loop stalled {worst * 1000:.0f} ms"

    run(scenario())


def test_own_frames_handed_back_by_the_endpoint_are_not_stepped_again(
        tmp_path: Path, free_udp_port: int, test_group: str) -> None:
    async def scenario() -> None:
        # The endpoint hands every frame _pump publishes to the channel's own
        # subscription at once; stepping it again re-entered _pump with a Ready
        # outstanding, which wedged agreement (found by the control-path fuzzer).
        a = channel(tmp_path, "a", free_udp_port, test_group)
        async with started(a):
            own = frame(ProposeRequest(sender=a.int_id, type_name="local.Echo"))
            info = MessageInfo("ganglion.control.Paxos", a.node_id, 0, 0, 0, local=True)
            a._on_paxos(own, info)
            await asyncio.sleep(0.3)
            assert "local.Echo" not in a.groups()
            a.propose("local.Real")  # the channel still works
            await until(lambda: "local.Real" in a.groups(), "a real proposal decided")
            assert a.stats().get("tick_errors", 0) == 0

    run(scenario())


def test_a_pump_re_entered_from_its_own_callbacks_defers_to_the_outer_one(
        tmp_path: Path, free_udp_port: int, test_group: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # Issue 20: "call advance() on the previous Ready before ready() again". Applying a
    # map change calls out to the node, and a node that proposes from there (or any
    # callback that steps the state machine) reached _pump again with a Ready
    # outstanding; the nested ready() raised and the change was reported failed.
    changes: list[str] = []

    def on_change(change: MapChange) -> None:
        changes.append(change.type_name)
        if change.type_name == "first.Type":
            a.propose("second.Type")  # re-enters _pump from inside it
            a._pump()  # and once more, directly

    async def scenario() -> None:
        async with started(a):
            a.propose("first.Type")
            await until(lambda: "second.Type" in a.groups(), "the nested proposal decided")
        assert changes == ["first.Type", "second.Type"]
        assert a.stats()["pump_deferred"] >= 2
        assert a.stats().get("tick_errors", 0) == 0

    a = channel(tmp_path, "a", free_udp_port, test_group)
    a._on_change = on_change
    with caplog.at_level(logging.ERROR, logger="ganglion.runtime.control"):
        run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_forged_prepare_of_round_2_63_is_refused_and_agreement_goes_on(
        tmp_path: Path, free_udp_port: int, test_group: str) -> None:
    # Issue 21 finding 2, over the wire: one Prepare with round 2^63-1 used to be adopted
    # and journaled, and every tick after it raised; agreement stopped for good.
    async def scenario() -> None:
        a = channel(tmp_path, "a", free_udp_port, test_group)
        forger = Forger(test_group, free_udp_port)
        sender = b"\x00\x00\x00\x00\x00\x00\x0d\x01"
        sid = int.from_bytes(sender, "big")
        async with started(a):
            forger.send(sender, heartbeat("forger", nonce=b"87654321", echo=[a.nonce]))
            await until(lambda: a.membership.get(sender) is not None, "the forger heard")
            prepare = Prepare(sender=sid, slot=0, ballot=Ballot(2**63 - 1, sid))
            forger.send(sender, frame(prepare, to=a.int_id))
            await until(lambda: a.stats()["consensus"].get("implausible_round", 0) == 1,
                        "the Prepare refused")
            a.propose("after.Forgery")
            await until(lambda: "after.Forgery" in a.groups(), "a new type agreed")
        forger.close()

    run(scenario())
