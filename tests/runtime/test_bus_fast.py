"""The plugin bus's compiled drain loop against its Python reference, message by message.

``ganglion._busfast`` may only ever pass a payload the Python check
(:func:`ganglion.types._payload.payload_problem`) accepts, must pass the plain ones a
plugin normally sends (or it would be no fast path at all), must write the meta
frame :class:`PluginMeta` writes, and a bus running it must forward, hand to the
node and count exactly what a bus running the Python loop does, for the same
sequence of good and bad messages. Buses run over real ipc sockets; the plugins
are raw pyzmq sockets (see test_bus.py).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import cbor2
import pytest
import zmq
from bus_helpers import Plugin, Recorder, addresses, run, short_dir, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.client import PluginMeta
from ganglion.runtime import _bus_accel
from ganglion.runtime.bus import PluginBus
from ganglion.types._payload import payload_problem

NODE_ID = bytes.fromhex("0102030405060708")

__all__ = ["short_dir"]  # the fixture, imported for these tests

fast = _bus_accel.load("auto")
needs_fast = pytest.mark.skipif(fast is None, reason="ganglion._busfast is not built "
                                "(pip install -e ., or /tmp-style build_ext of ganglion/_c/busfast.c)")

#: Payloads a plugin normally sends: the compiled check must pass every one.
PLAIN = [
    {},
    {"celsius": 21.5, "sensor": "sim:temperature"},
    {"seq": 0, "n": -1, "big": 2**64 - 1, "neg": -(2**64), "h": 65535, "w": 2**32},
    {"ok": True, "no": False, "none": None, "raw": b"\x00\xff" * 40, "f": -0.0},
    {"inf": math.inf, "nan": math.nan, "tiny": 5e-324},
    {"text": "ünïcödé ✓ 𝄞", "empty": "", "e": b""},
    {"list": [1, "two", 3.0, [4, [5, {"six": 6}]]], "map": {"a": {"b": {"c": []}}}},
    {f"k{i}": i for i in range(60)},
    {"deep": [[[[[[[[[[[[[[1]]]]]]]]]]]]]]},
]

#: Payloads the Python check refuses: the compiled one must refuse them too.
BAD = [
    b"",
    cbor2.dumps([1, 2]),
    cbor2.dumps("text"),
    cbor2.dumps({1: "int key"}),
    cbor2.dumps({"a": 1})[:-1],
    b"\xa2\x61a\x01\x61a\x02",               # duplicate key
    b"\xa1\x62\xc3\x28\x01",                 # key not UTF-8
    b"\xa1\x61a\x62\xed\xa0",                # truncated text
    b"\xa1\x61a\xf7",                        # undefined
    b"\xa1\x61a\xe0",                        # simple value 0
    b"\xa1\x61a\xd8\x19\x00",                # string reference tag 25
    b"\xa1\x61a\xd9\x01\x02\x80",            # set tag 258
    b"\xa1\x61a\x1c",                        # reserved additional info
    b"\xbf\x61a\x01",                        # indefinite map without its break
    b"\xa1\x61a\xa1\x01\x02",                # nested map with an int key
]

#: Valid, but outside the subset the compiled check is sure of: left to Python.
LEFT_TO_PYTHON = [
    cbor2.dumps({"at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)}),
    cbor2.dumps({"at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)}, datetime_as_timestamp=True),
    cbor2.dumps({"big": 2**80}),
    b"\xbf\x61a\x01\xff",                    # indefinite map
    cbor2.dumps({"a": 1}) + b"\x00",         # trailing bytes (cbor2 reads one item)
    cbor2.dumps({"deep": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}),
    cbor2.dumps({f"k{i}": i for i in range(65)}),
]


@needs_fast
@pytest.mark.parametrize("fields", PLAIN, ids=range(len(PLAIN)))
def test_the_compiled_check_passes_plain_payloads(fields: dict[str, Any]) -> None:
    payload = cbor2.dumps(fields)
    assert payload_problem(payload) is None
    assert fast.check_payload(payload) is True


@needs_fast
@pytest.mark.parametrize("payload", BAD, ids=range(len(BAD)))
def test_the_compiled_check_refuses_what_python_refuses(payload: bytes) -> None:
    assert payload_problem(payload) is not None
    assert fast.check_payload(payload) is False


@needs_fast
@pytest.mark.parametrize("payload", LEFT_TO_PYTHON, ids=range(len(LEFT_TO_PYTHON)))
def test_valid_payloads_outside_the_subset_are_left_to_python(payload: bytes) -> None:
    assert payload_problem(payload) is None
    assert fast.check_payload(payload) is False


@needs_fast
@settings(max_examples=400, deadline=None)
@given(st.sampled_from([cbor2.dumps(f) for f in PLAIN] + BAD + LEFT_TO_PYTHON),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=4),
       st.integers(0, 400))
def test_mutated_payloads_pass_the_compiled_check_only_if_python_accepts(
        base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    payload = bytes(data[:cut] if cut < len(data) else data)
    if fast.check_payload(payload):
        assert payload_problem(payload) is None, payload.hex()


@needs_fast
@given(st.binary(max_size=64))
def test_random_bytes_pass_the_compiled_check_only_if_python_accepts(payload: bytes) -> None:
    if fast.check_payload(payload):
        assert payload_problem(payload) is None, payload.hex()


@needs_fast
@pytest.mark.parametrize("seq", [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])
def test_the_compiled_meta_frame_is_plugin_meta_encode(seq: int) -> None:
    ns = 1_700_000_000_123_456_789
    assert fast.meta(NODE_ID, seq, ns) == PluginMeta(NODE_ID, seq, ns, True).encode()
    assert fast.meta(NODE_ID, 5, seq) == PluginMeta(NODE_ID, 5, seq, True).encode()
    assert fast.meta(NODE_ID, seq, ns, False) == PluginMeta(NODE_ID, seq, ns, False).encode()


#: A session of one plugin: good messages of two types, then every kind of bad one,
#: messages the compiled loop leaves to Python, and good ones again.
SESSION: list[tuple[bytes, ...]] = [
    *[(b"ex.A", cbor2.dumps({"i": i})) for i in range(50)],
    (b"ex.B", cbor2.dumps({"celsius": 20.5})),
    (b"ex.A",),                                          # one frame
    (b"ex.A", cbor2.dumps({"i": -1}), b"extra"),         # three frames
    (b"not a name", cbor2.dumps({"i": -2})),              # bad type name
    (b"\xff\xfe.x", cbor2.dumps({"i": -3})),              # not ASCII
    *[(b"ex.A", payload) for payload in BAD],
    *[(b"ex.B", payload) for payload in LEFT_TO_PYTHON],
    *[(b"ex.C", cbor2.dumps(fields)) for fields in PLAIN],
    *[(b"ex.A", cbor2.dumps({"i": i})) for i in range(50, 100)],
]
GOOD_COUNT = 50 + 1 + len(LEFT_TO_PYTHON) + len(PLAIN) + 50


async def _run_session(bus: PluginBus, rec: Recorder) -> list[tuple[bytes, bytes, int]]:
    """Send SESSION through ``bus``; return what a subscriber of every type got."""
    address = next(iter(bus.endpoints))
    publisher, subscriber = Plugin(address), Plugin(address)
    try:
        for topic in (b"ex.A", b"ex.B", b"ex.C"):
            subscriber.sub.subscribe(topic)
        await wait_until(lambda: len(rec.subscribed) == 3)
        await publisher.wait_listening()
        for frames in SESSION:
            await publisher.send(*frames)
        got = []
        for _ in range(GOOD_COUNT):
            name, payload, meta = await subscriber.recv()
            info = PluginMeta.decode(meta)
            assert info.sender == NODE_ID and info.local
            got.append((name, payload, info.seq))
        assert await subscriber.nothing_within(0.05)
        await wait_until(lambda: bus.stats().received == len(SESSION))
        return got
    finally:
        publisher.close()
        subscriber.close()


@needs_fast
def test_compiled_and_python_loops_forward_count_and_hand_over_the_same(
        short_dir: Path) -> None:
    async def main() -> None:
        outcomes = []
        for compiled in (True, False):
            rec = Recorder()
            async with rec.bus(ipc_path=short_dir / f"b{int(compiled)}", node_id=NODE_ID,
                               compiled=compiled) as bus:
                forwarded = await _run_session(bus, rec)
                stats = bus.stats()
            assert stats.compiled is compiled
            outcomes.append((forwarded, rec.published, _counters(stats)))
        (fast_fwd, fast_node, fast_stats), (py_fwd, py_node, py_stats) = outcomes
        assert fast_fwd == py_fwd
        assert fast_node == py_node
        assert fast_stats == py_stats
        good = [f for f in SESSION if len(f) == 2 and f[0].startswith(b"ex.")
                and payload_problem(f[1]) is None]
        assert [(n, p) for n, p, _ in fast_fwd] == good
        assert fast_node == [(n.decode(), p) for n, p in good]
        assert py_stats["malformed"] == len(SESSION) - len(good)
        assert py_stats["forwarded"] == py_stats["published"] == py_stats["to_node"] == len(good)

    run(main(), timeout=30)


def _counters(stats: Any) -> dict[str, int]:
    keys = ("received", "published", "to_node", "forwarded", "delivered", "dropped",
            "bad_frames", "bad_type_names", "bad_payloads", "rejected", "callback_errors")
    return {**{k: getattr(stats, k) for k in keys}, "malformed": stats.malformed}


@pytest.mark.parametrize("compiled", [True, False])
def test_only_types_the_node_wants_reach_it_and_a_refresh_asks_again(
        short_dir: Path, compiled: bool) -> None:
    if compiled and fast is None:
        pytest.skip("ganglion._busfast is not built")

    async def main() -> None:
        rec = Recorder()
        wanted: set[str] = set()
        asked: list[str] = []

        def node_wants(name: str) -> bool:
            asked.append(name)
            return name in wanted

        async with rec.bus(ipc_path=short_dir / "bus", node_id=NODE_ID, compiled=compiled,
                           node_wants=node_wants) as bus:
            address = addresses(bus, "ipc")
            publisher, subscriber = Plugin(address), Plugin(address)
            try:
                subscriber.sub.subscribe(b"ex.A")
                await wait_until(lambda: rec.subscribed == ["ex.A"])
                await publisher.wait_listening()
                for i in range(20):
                    await publisher.send(b"ex.A", cbor2.dumps({"i": i}))
                for _ in range(20):
                    await subscriber.recv()
                assert rec.published == []  # plugins got them; the node did not want them
                wanted.add("ex.A")
                bus.refresh_interest()
                for i in range(20, 40):
                    await publisher.send(b"ex.A", cbor2.dumps({"i": i}))
                await wait_until(lambda: len(rec.published) == 20)
                for _ in range(20):
                    await subscriber.recv()
            finally:
                publisher.close()
                subscriber.close()
            assert rec.published == [("ex.A", cbor2.dumps({"i": i})) for i in range(20, 40)]
            stats = bus.stats()
            assert (stats.published, stats.forwarded, stats.to_node) == (40, 40, 20)
            assert "ex.A" in asked

    run(main())


def test_bus_fast_off_chooses_the_python_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _bus_accel.load("off") is None
    with pytest.raises(ValueError, match="GANGLION_BUS_FAST"):
        _bus_accel.load("sometimes")
    monkeypatch.setenv("GANGLION_BUS_FAST", "off")
    assert _bus_accel.load() is None


@needs_fast
def test_the_libzmq_found_is_the_one_pyzmq_loaded() -> None:
    path = _bus_accel.libzmq_path()
    assert path is not None and os.path.exists(path) and "libzmq" in path
    assert zmq.zmq_version_info()[0] >= 4


def test_asking_for_the_compiled_loop_without_it_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ganglion.errors import ConfigError
    from ganglion.runtime import bus as bus_module

    monkeypatch.setattr(bus_module, "_fast", None)
    with pytest.raises(ConfigError, match="_busfast"):
        Recorder().bus(ipc_path=None, tcp_port=0, compiled=True)


@needs_fast
def test_compiled_and_python_deliver_send_the_same_frames(short_dir: Path) -> None:
    async def main() -> None:
        got = []
        metas = [PluginMeta(NODE_ID, seq, 1_700_000_000_000_000_000 + seq, seq % 2 == 0)
                 for seq in (0, 1, 24, 70_000, 2**40)]
        for compiled in (True, False):
            rec = Recorder()
            async with rec.bus(ipc_path=short_dir / f"d{int(compiled)}",
                               compiled=compiled) as bus:
                subscriber = Plugin(addresses(bus, "ipc"))
                try:
                    subscriber.sub.subscribe(b"ex.A")
                    await wait_until(lambda r=rec: r.subscribed == ["ex.A"])  # type: ignore[misc]
                    for meta in metas:
                        assert bus.deliver("ex.A", cbor2.dumps({"s": meta.seq}), meta)
                    got.append([await subscriber.recv() for _ in metas])
                finally:
                    subscriber.close()
                assert bus.stats().delivered == len(metas)
        assert got[0] == got[1]
        assert [PluginMeta.decode(frames[2]) for frames in got[0]] == metas

    run(main())


@pytest.mark.parametrize("compiled", [True, False])
def test_checked_deliveries_drop_a_payload_that_is_not_a_plain_map(
        short_dir: Path, compiled: bool) -> None:
    if compiled and fast is None:
        pytest.skip("ganglion._busfast is not built")

    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", compiled=compiled) as bus:
            subscriber = Plugin(addresses(bus, "ipc"))
            try:
                subscriber.sub.subscribe(b"ex.A")
                await wait_until(lambda: rec.subscribed == ["ex.A"])
                meta = PluginMeta(NODE_ID, 1, 2, False)
                for payload in BAD:
                    assert not bus.deliver("ex.A", payload, meta, check=True)
                for payload in LEFT_TO_PYTHON[:2]:
                    assert bus.deliver("ex.A", payload, meta, check=True)
                got = [(await subscriber.recv())[1] for _ in range(2)]
                assert await subscriber.nothing_within(0.05)
            finally:
                subscriber.close()
            assert got == LEFT_TO_PYTHON[:2]
            assert bus.stats().bad_deliveries == len(BAD)
            assert bus.stats().delivered == 2

    run(main())


@pytest.mark.parametrize("compiled", [True, False])
def test_delivering_from_a_message_info_sends_what_its_plugin_meta_would(
        short_dir: Path, compiled: bool) -> None:
    if compiled and fast is None:
        pytest.skip("ganglion._busfast is not built")
    from ganglion.runtime.bus import meta_from_info
    from ganglion.runtime.subscription import MessageInfo

    infos = [MessageInfo(type_name="ex.A", sender=NODE_ID, seq=seq, sent_ns=10**18 + seq,
                         received_ns=0, local=seq % 2 == 0) for seq in (1, 2, 300, 2**33)]

    async def main() -> None:
        rec = Recorder()
        async with rec.bus(ipc_path=short_dir / "bus", compiled=compiled) as bus:
            subscriber = Plugin(addresses(bus, "ipc"))
            try:
                subscriber.sub.subscribe(b"ex.A")
                await wait_until(lambda: rec.subscribed == ["ex.A"])
                for info in infos:
                    payload = cbor2.dumps({"s": info.seq})
                    assert bus.deliver_info("ex.A", payload, info)
                    assert bus.deliver("ex.A", payload, meta_from_info(info))
                got = [await subscriber.recv() for _ in range(2 * len(infos))]
            finally:
                subscriber.close()
            assert got[0::2] == got[1::2]
            assert [PluginMeta.decode(frames[2]) for frames in got[0::2]] == [
                meta_from_info(info) for info in infos]
            assert bus.stats().delivered == 2 * len(infos)

    run(main())
