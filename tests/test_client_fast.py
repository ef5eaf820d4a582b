"""PluginClient's compiled reader (``ganglion._busfast.recv_many``) against its Python path.

The compiled reader must give exactly what the pyzmq path gives, message by message,
for good and bad deliveries alike (the counters too), and its meta-frame parser must
agree with :meth:`PluginMeta.decode`, the reference, whenever it answers at all: it
reads only the layout the bus writes and leaves every other frame to the reference.
A raw XPUB plays the node, so any frames can be sent.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion import client as client_module
from ganglion.client import PluginClient, PluginMeta
from ganglion.errors import DecodeError

fast = client_module._fast
needs_fast = pytest.mark.skipif(fast is None, reason="ganglion._busfast is not built")

NODE_ID = bytes.fromhex("a1a2a3a4a5a6a7a8")
NAME = b"test_client_fast.X"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temp dir with a short path (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gzcf", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _meta(seq: int, local: bool = False) -> bytes:
    return PluginMeta(NODE_ID, seq, 1_700_000_000_000_000_000 + seq, local).encode()


#: Deliveries a node (or a broken one) may send: good ones in several meta layouts, bad ones.
STREAM: list[list[bytes]] = [
    [NAME, cbor2.dumps({"v": 1}), _meta(1)],
    [NAME, cbor2.dumps({"v": 2}), _meta(2**40, local=True)],
    [NAME, cbor2.dumps({"v": 3})],                                            # no meta
    [NAME],                                                                   # name only
    [NAME, cbor2.dumps([1]), _meta(3)],                                       # not a map
    [NAME, cbor2.dumps({"v": 4}), b"\x00"],                                   # bad meta
    [NAME + b"\xff", cbor2.dumps({"v": 5}), _meta(4)],                        # not UTF-8
    [NAME + b"Y", cbor2.dumps({"v": 6}), _meta(5)],                           # prefix match
    [NAME, cbor2.dumps({"v": 7}), _meta(6), b"extra", b"frames"],             # more frames
    # Other layouts of a valid meta: read by the reference decoder.
    [NAME, cbor2.dumps({"v": 8}), cbor2.dumps({"seq": 7, "sender": NODE_ID, "sent_ns": 9,
                                                 "local": False})],
    [NAME, cbor2.dumps({"v": 9}), cbor2.dumps({"sender": NODE_ID, "seq": 8, "sent_ns": 9,
                                                 "local": True, "hops": 2})],
    [NAME, cbor2.dumps({"v": 10}), cbor2.dumps({"sender": b"\x01\x02", "seq": 9,
                                                  "sent_ns": 9, "local": True})],
    [NAME, cbor2.dumps({"v": 11}), _meta(10)[:-1]],                           # truncated
    [NAME, cbor2.dumps({"v": 12}), _meta(11) + b"\x00"],  # trailing (cbor2 reads one item)
    [NAME, cbor2.dumps({"v": 13}), _meta(2**64 - 1)],
]


@needs_fast
@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.booleans())
def test_the_compiled_meta_parser_reads_what_the_bus_writes(
        sender: bytes, seq: int, sent_ns: int, local: bool) -> None:
    frame = PluginMeta(sender, seq, sent_ns, local).encode()
    assert fast.meta_fields(frame) == (sender, seq, sent_ns, local)
    assert fast.meta_fields(fast.meta(sender, seq, sent_ns, local)) == (sender, seq, sent_ns,
                                                                        local)


@needs_fast
@settings(max_examples=500, deadline=None)
@given(st.sampled_from([frames[2] for frames in STREAM if len(frames) > 2]),
       st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3),
       st.integers(0, 80))
def test_the_compiled_meta_parser_never_disagrees_with_the_reference(
        base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, value in flips:
        data[pos % len(data)] = value
    frame = bytes(data[:cut] if cut < len(data) else data)
    fields = fast.meta_fields(frame)
    if fields is None:
        return  # left to the reference
    decoded = PluginMeta.decode(frame)  # must not raise: the parser read a valid frame
    assert (decoded.sender, decoded.seq, decoded.sent_ns, decoded.local) == fields


@needs_fast
@pytest.mark.parametrize("frame", [STREAM[9][2], STREAM[10][2], STREAM[11][2], b"\x00",
                                   _meta(1)[:-1], _meta(1) + b"\x00"])
def test_other_layouts_are_left_to_the_reference_decoder(frame: bytes) -> None:
    assert fast.meta_fields(frame) is None


def _read_all(client: PluginClient) -> list[tuple[Any, PluginMeta]]:
    got = []
    while True:
        try:
            got.append(client.recv(timeout=0.3))
        except TimeoutError:
            return got


@needs_fast
def test_compiled_and_python_readers_agree_message_by_message(short_dir: Path) -> None:
    ctx = zmq.Context()
    node = ctx.socket(zmq.XPUB)
    node.linger = 0
    # Every subscription reported, not only the first of a topic: the stream is sent
    # once both clients are connected (else the later one misses it, as under load).
    node.setsockopt(zmq.XPUB_VERBOSE, 1)
    node.bind(f"ipc://{short_dir}/bus.sub")
    clients = [PluginClient(short_dir), PluginClient(short_dir)]
    try:
        clients[1]._fast = None  # the reference
        for client in clients:
            client.subscribe(NAME.decode())
        for _ in clients:
            assert node.poll(5000) and node.recv() == b"\x01" + NAME
        for frames in STREAM * 3:
            node.send_multipart(frames)
        compiled, python = (_read_all(client) for client in clients)
    finally:
        for client in clients:
            client.close()
        node.close(0)
        ctx.term()
    assert compiled == python
    assert [msg.fields["v"] for msg, _ in compiled] == [1, 2, 7, 8, 9, 10, 12, 13] * 3
    assert compiled[1][1] == PluginMeta(NODE_ID, 2**40, 1_700_000_000_000_000_000 + 2**40, True)
    assert [(c.bad_messages, c.filtered) for c in clients] == [(6 * 3, 1 * 3)] * 2


@needs_fast
def test_the_compiled_reader_takes_at_most_a_batch_per_call(short_dir: Path) -> None:
    ctx = zmq.Context()
    node = ctx.socket(zmq.XPUB)
    node.linger = 0
    node.bind(f"ipc://{short_dir}/bus.sub")
    try:
        with PluginClient(short_dir, hwm=10_000) as client:
            client.subscribe(NAME.decode())
            assert node.poll(5000) and node.recv() == b"\x01" + NAME
            count = client_module.RECV_BATCH + 10
            for seq in range(count):
                node.send_multipart([NAME, cbor2.dumps({"v": seq}), _meta(seq)])
            first = client.recv(timeout=5)
            assert first[1].seq == 0
            assert len(client._pending) <= client_module.RECV_BATCH - 1
            rest = [client.recv(timeout=5)[1].seq for _ in range(count - 1)]
            assert rest == list(range(1, count))
    finally:
        node.close(0)
        ctx.term()


def test_a_truncated_meta_frame_is_refused_by_the_reference() -> None:
    with pytest.raises(DecodeError):
        PluginMeta.decode(_meta(1)[:-1])
