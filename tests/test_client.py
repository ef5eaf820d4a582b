"""PluginClient against a real PluginBus (run on its own loop in a thread), and real plugin processes.

The client is synchronous, so the bus runs in a background thread
(:class:`BusThread`); the test talks to it only through thread-safe calls.
The last tests start a real Python plugin process that uses the client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.client import (
    BUS_SECRET_ENV,
    STATE_DIR_BUS_NAME,
    BusAddress,
    BusSecret,
    PluginClient,
    PluginMeta,
    bus_address,
    ipc_address,
)
from ganglion.errors import (
    ConfigError,
    DecodeError,
    TransportError,
    TypeNameError,
    TypeRegistrationError,
)
from ganglion.runtime.bus import PluginBus
from ganglion.types import Record, encode_payload, message

NODE_ID = bytes.fromhex("a1a2a3a4a5a6a7a8")
REPO = Path(__file__).resolve().parent.parent


@message("test_client.Reading")
@dataclasses.dataclass
class Reading:
    sensor: str
    celsius: float


@dataclasses.dataclass
class Unregistered:
    x: int


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``cond`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


class BusThread:
    """A PluginBus running on an event loop in a background thread."""

    def __init__(self, ipc_path: Path | None, tcp_port: int | None = None, **kw: Any) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.bus = PluginBus(
            ipc_path=ipc_path, tcp_port=tcp_port, node_id=NODE_ID,
            on_publish=lambda n, p: self.published.append((n, p)),
            on_subscribe=self.subscribed.append, on_unsubscribe=self.unsubscribed.append, **kw,
        )
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.bus.start())

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the bus loop and return its result (bounded wait)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def deliver(self, type_name: str, payload: bytes, meta: PluginMeta) -> bool:
        """Call bus.deliver on its loop."""
        async def go() -> bool:
            return self.bus.deliver(type_name, payload, meta)
        return bool(self.call(go()))

    def stop(self) -> None:
        try:
            self.call(self.bus.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temp dir with a short path (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gzcli", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bus(short_dir: Path) -> Iterator[BusThread]:
    """A bus on ipc (state-dir layout) and tcp."""
    running = BusThread(short_dir / STATE_DIR_BUS_NAME, tcp_port=0)
    yield running
    running.stop()


def meta(seq: int = 1) -> PluginMeta:
    return PluginMeta(sender=NODE_ID, seq=seq, sent_ns=1_700_000_000_123_456_789, local=False)


# -- addresses ------------------------------------------------------------------


def test_bus_address_accepts_every_documented_form(short_dir: Path) -> None:
    pair = BusAddress(f"ipc://{short_dir}/bus.pub", f"ipc://{short_dir}/bus.sub")
    assert bus_address(short_dir) == pair  # a state dir
    assert bus_address(str(short_dir)) == pair
    assert bus_address(short_dir / "bus") == pair  # an ipc base
    assert bus_address(f"ipc://{short_dir}/bus") == pair
    assert bus_address(pair) is pair
    assert ipc_address(short_dir / "bus") == pair
    assert bus_address("tcp://127.0.0.1:47810") == BusAddress(
        "tcp://127.0.0.1:47810", "tcp://127.0.0.1:47811"
    )


@pytest.mark.parametrize(
    "bad", ["tcp://127.0.0.1", "tcp://:5555", "tcp://127.0.0.1:0", "tcp://127.0.0.1:65535",
            "tcp://127.0.0.1:http"],
)
def test_bus_address_refuses_unusable_tcp_urls(bad: str) -> None:
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        bus_address(bad)


# -- the meta frame -----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(sender=st.binary(min_size=8, max_size=8), seq=st.integers(0, 2**64 - 1),
       sent_ns=st.integers(0, 2**63 - 1), local=st.booleans())
def test_meta_round_trips(sender: bytes, seq: int, sent_ns: int, local: bool) -> None:
    m = PluginMeta(sender=sender, seq=seq, sent_ns=sent_ns, local=local)
    assert PluginMeta.decode(m.encode()) == m
    assert m.sender_hex == sender.hex()


def test_meta_ignores_unknown_keys() -> None:
    frame = cbor2.dumps({"sender": NODE_ID, "seq": 1, "sent_ns": 2, "local": True, "new": [1]})
    assert PluginMeta.decode(frame) == PluginMeta(NODE_ID, 1, 2, True)


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xff",
        cbor2.dumps([1, 2]),
        cbor2.dumps({"sender": NODE_ID, "seq": 1, "sent_ns": 2}),
        cbor2.dumps({"sender": "text", "seq": 1, "sent_ns": 2, "local": True}),
        cbor2.dumps({"sender": NODE_ID, "seq": 1.0, "sent_ns": 2, "local": True}),
        cbor2.dumps({"sender": NODE_ID, "seq": 1, "sent_ns": 2, "local": 1}),
    ],
)
def test_meta_refuses_malformed_frames(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        PluginMeta.decode(frame)


# -- publishing -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_publish_encodes_registered_messages_and_records(bus: BusThread, transport: str) -> None:
    where = bus.bus.endpoints[0] if transport == "ipc" else f"tcp://127.0.0.1:{bus.bus.tcp_port}"
    with PluginClient(where) as client:
        assert client.publish(Reading("probe", 21.5))
        assert client.publish(Record("test_client.Other", {"n": 3}))
        assert client.publish_raw("test_client.Raw", cbor2.dumps({"ok": True}))
        wait_until(lambda: len(bus.published) == 3)
    assert bus.published == [
        ("test_client.Reading", encode_payload(Reading("probe", 21.5))),
        ("test_client.Other", cbor2.dumps({"n": 3})),
        ("test_client.Raw", cbor2.dumps({"ok": True})),
    ]


def test_first_publish_is_not_lost_to_the_slow_joiner_window(bus: BusThread) -> None:
    # A fresh connection per message: each first publish must wait for the bus.
    for i in range(20):
        with PluginClient(bus.bus.endpoints[0]) as client:
            client.publish(Reading("probe", float(i)))
    wait_until(lambda: len(bus.published) == 20)


def test_publish_refuses_bad_input_before_sending(bus: BusThread) -> None:
    with PluginClient(bus.bus.endpoints[0]) as client:
        with pytest.raises(TypeNameError):
            client.publish_raw("NoNamespace", cbor2.dumps({}))
        with pytest.raises(TypeRegistrationError):
            client.publish(Unregistered(1))
        client.publish_raw("test_client.Barrier", cbor2.dumps({}))
        wait_until(lambda: len(bus.published) == 1)
    assert bus.published == [("test_client.Barrier", cbor2.dumps({}))]


def test_publish_without_a_node_raises_after_the_ready_timeout(short_dir: Path) -> None:
    with PluginClient(short_dir, ready_timeout=0.2) as client:
        start = time.monotonic()
        with pytest.raises(TransportError, match="no node is listening"):
            client.publish(Reading("probe", 1.0))
        assert 0.15 < time.monotonic() - start < 3.0


def test_a_node_started_after_the_plugin_is_found(short_dir: Path) -> None:
    with PluginClient(short_dir, ready_timeout=5.0) as client:
        late = BusThread(short_dir / STATE_DIR_BUS_NAME)
        try:
            client.publish(Reading("probe", 2.0))
            wait_until(lambda: len(late.published) == 1)
        finally:
            late.stop()


def test_publish_counts_drops_when_the_node_stops_reading(short_dir: Path) -> None:
    # A raw XSUB that subscribes but never reads stands in for a stuck node.
    ctx = zmq.Context()
    node = ctx.socket(zmq.XSUB)
    node.linger = 0
    node.rcvhwm = 1
    node.bind(f"ipc://{short_dir}/bus.pub")
    node.send(b"\x01")
    try:
        with PluginClient(short_dir, hwm=1) as client:
            # A sync XSUB attaches a new connection only when it is next used:
            # poke it until the client sees its subscription.
            for _ in range(100):
                node.send(b"\x01")
                try:
                    client.wait_ready(0.05)
                    break
                except TransportError:
                    continue
            blob = cbor2.dumps({"data": b"x" * 65536})
            results = [client.publish_raw("test_client.Blob", blob) for _ in range(2000)]
            assert results.count(False) == client.dropped > 0
    finally:
        node.close(0)
        ctx.term()


# -- subscribing --------------------------------------------------------------


def test_recv_decodes_to_the_registered_class_with_meta(bus: BusThread) -> None:
    with PluginClient(bus.bus.endpoints[0]) as client:
        client.subscribe(Reading)
        wait_until(lambda: bus.subscribed == ["test_client.Reading"])
        assert bus.deliver("test_client.Reading", encode_payload(Reading("p", 3.0)), meta(5))
        msg, m = client.recv(timeout=5)
        assert msg == Reading("p", 3.0)
        assert m == meta(5)
        assert bus.deliver("test_client.Reading", cbor2.dumps({"extra": 1}), meta(6))
        record, _ = client.recv(timeout=5)
        assert record == Record("test_client.Reading", {"extra": 1})


def test_recv_filters_prefix_matches_and_counts_them(bus: BusThread) -> None:
    # The bus itself only sends a valid type name to its exact subscribers, so
    # a raw plugin's prefix subscription is what makes it send Temperature.
    ctx = zmq.Context()
    prefix_sub = ctx.socket(zmq.SUB)
    prefix_sub.linger = 0
    prefix_sub.connect(bus.bus.endpoints[0].subscribe)
    prefix_sub.subscribe(b"test_client.")
    try:
        with PluginClient(bus.bus.endpoints[0]) as client:
            client.subscribe("test_client.Temp")
            wait_until(lambda: bus.bus.stats().subscriptions == ("test_client.Temp",
                                                                  "test_client."))
            # zmq matches the client's prefix too; the client must not hand this over.
            assert bus.deliver("test_client.Temperature", cbor2.dumps({"c": 1}), meta(1))
            assert bus.deliver("test_client.Temp", cbor2.dumps({"c": 2}), meta(2))
            msg, _ = client.recv(timeout=5)
            assert msg == Record("test_client.Temp", {"c": 2})
            assert client.filtered == 1
    finally:
        prefix_sub.close(0)
        ctx.term()


def test_the_bus_sends_a_valid_name_only_to_its_exact_subscribers(bus: BusThread) -> None:
    with PluginClient(bus.bus.endpoints[0]) as client:
        client.subscribe("test_client.Temp")
        wait_until(lambda: bus.subscribed == ["test_client.Temp"])
        assert not bus.deliver("test_client.Temperature", cbor2.dumps({"c": 1}), meta(1))
        assert client.filtered == 0


def test_recv_times_out(bus: BusThread) -> None:
    with PluginClient(bus.bus.endpoints[0]) as client:
        client.subscribe("test_client.Quiet")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client.recv(timeout=0.1)
        assert time.monotonic() - start < 2.0


def test_unsubscribe_stops_delivery_and_reaches_the_bus(bus: BusThread) -> None:
    with PluginClient(bus.bus.endpoints[0]) as client:
        client.subscribe("test_client.A", "test_client.B")
        wait_until(lambda: sorted(bus.subscribed) == ["test_client.A", "test_client.B"])
        client.unsubscribe("test_client.A", "test_client.NeverSubscribed")
        wait_until(lambda: bus.unsubscribed == ["test_client.A"])
        assert not bus.deliver("test_client.A", cbor2.dumps({}), meta())
        assert bus.deliver("test_client.B", cbor2.dumps({}), meta())
        assert client.recv(timeout=5)[0] == Record("test_client.B", {})


def test_iteration_yields_messages_in_order(bus: BusThread) -> None:
    with PluginClient(bus.bus.endpoints[0]) as client:
        client.subscribe(Reading)
        wait_until(lambda: bool(bus.subscribed))
        for i in range(5):
            bus.deliver("test_client.Reading", encode_payload(Reading("p", float(i))), meta(i))
        got = [m.seq for _, (_, m) in zip(range(5), client, strict=False)]
    assert got == [0, 1, 2, 3, 4]


def test_malformed_deliveries_are_skipped_and_counted(short_dir: Path) -> None:
    # A raw XPUB plays a node that sends garbage.
    ctx = zmq.Context()
    node = ctx.socket(zmq.XPUB)
    node.linger = 0
    node.bind(f"ipc://{short_dir}/bus.sub")
    try:
        with PluginClient(short_dir) as client:
            client.subscribe("test_client.X")
            assert node.poll(5000) and node.recv() == b"\x01test_client.X"
            good = [b"test_client.X", cbor2.dumps({"ok": 1}), meta().encode()]
            for frames in (
                [b"test_client.X", cbor2.dumps({"ok": 1})],  # no meta
                [b"test_client.X", cbor2.dumps([1]), meta().encode()],  # not a map
                [b"test_client.X", cbor2.dumps({"ok": 1}), b"\x00"],  # bad meta
                [b"test_client.X\xff", cbor2.dumps({"ok": 1}), meta().encode()],
                good,
            ):
                node.send_multipart(frames)
            msg, _ = client.recv(timeout=5)
            assert msg == Record("test_client.X", {"ok": 1})
            assert client.bad_messages == 4
    finally:
        node.close(0)
        ctx.term()


def test_a_closed_client_refuses_use_and_closes_once(bus: BusThread) -> None:
    client = PluginClient(bus.bus.endpoints[0])
    client.close()
    client.close()
    with pytest.raises(TransportError, match="closed"):
        client.publish(Reading("p", 1.0))
    with pytest.raises(TransportError, match="closed"):
        client.recv(timeout=0)
    with pytest.raises(TransportError, match="closed"):
        client.subscribe("test_client.A")
    assert list(client) == []


def test_a_shared_context_is_left_open(bus: BusThread) -> None:
    ctx = zmq.Context()
    try:
        with PluginClient(bus.bus.endpoints[0], context=ctx) as client:
            client.publish(Reading("p", 1.0))
        assert not ctx.closed
    finally:
        ctx.term()


# -- a real plugin process -------------------------------------------------------

PLUGIN_SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys
    from ganglion.client import PluginClient
    from ganglion.types import message

    @message("test_client.Pong")
    @dataclasses.dataclass
    class Pong:
        n: int
        seq: int

    with PluginClient(sys.argv[1]) as bus:
        bus.subscribe("test_client.Ping")
        print("subscribed", flush=True)
        for msg, meta in bus:
            if msg["n"] < 0:
                break
            bus.publish(Pong(n=msg["n"] * 2, seq=meta.seq))
    """
)


@pytest.fixture
def plugin_file(short_dir: Path) -> Path:
    path = short_dir / "plugin.py"
    path.write_text(PLUGIN_SCRIPT)
    return path


def start_plugin(script: Path, where: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(script), where], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_a_plugin_process_subscribes_and_publishes_through_the_bus(
    bus: BusThread, plugin_file: Path, short_dir: Path, transport: str
) -> None:
    where = str(short_dir) if transport == "ipc" else f"tcp://127.0.0.1:{bus.bus.tcp_port}"
    proc = start_plugin(plugin_file, where)
    try:
        with PluginClient(bus.bus.endpoints[0]) as watcher:
            watcher.subscribe("test_client.Pong")  # sees the plugin's publishes forwarded
            wait_until(lambda: sorted(bus.subscribed) == ["test_client.Ping", "test_client.Pong"],
                       timeout=15)
            for i in range(50):
                assert bus.deliver("test_client.Ping", cbor2.dumps({"n": i}), meta(100 + i))
            pongs = [watcher.recv(timeout=10) for _ in range(50)]
        wait_until(lambda: len(bus.published) == 50)
        bus.deliver("test_client.Ping", cbor2.dumps({"n": -1}), meta())
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait(timeout=10)
    # The watcher has no Pong class: it gets Records (the plugin process has one).
    assert all(isinstance(p, Record) for p, _ in pongs)
    assert [(p["n"], p["seq"]) for p, _ in pongs if isinstance(p, Record)] == [
        (2 * i, 100 + i) for i in range(50)
    ]
    assert all(m.local and m.sender == NODE_ID for _, m in pongs)
    assert [cbor2.loads(p)["n"] for _, p in bus.published] == [2 * i for i in range(50)]
    wait_until(lambda: "test_client.Ping" in bus.unsubscribed)


def test_a_killed_plugin_process_gives_back_its_subscriptions(
    bus: BusThread, plugin_file: Path, short_dir: Path
) -> None:
    proc = start_plugin(plugin_file, str(short_dir))
    try:
        wait_until(lambda: bus.subscribed == ["test_client.Ping"], timeout=15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: bus.unsubscribed == ["test_client.Ping"])
        assert bus.bus.stats().subscriptions == ()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_bus_thread_helper_reports_errors() -> None:
    # The harness itself must fail loudly when a coroutine raises.
    running = BusThread(None, tcp_port=0)
    try:
        async def boom() -> None:
            raise KeyError("x")
        with pytest.raises(KeyError):
            running.call(boom())
    finally:
        running.stop()


def test_the_raw_pyzmq_example_in_the_frame_docs_works(bus: BusThread, short_dir: Path) -> None:
    doc = (REPO / "docs" / "plugin-frames.md").read_text()
    example = doc.split("```python\n", 1)[1].split("```", 1)[0]
    state_line = next(line for line in example.splitlines() if line.startswith("state = "))
    script = short_dir / "raw_plugin.py"
    script.write_text(example.replace(state_line, f"state = {str(short_dir)!r}"))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: bus.subscribed == ["sensors.Temperature"], timeout=15)
        wait_until(lambda: len(bus.published) == 1, timeout=15)
        payload = cbor2.dumps({"sensor": "sim", "celsius": 19.75})
        assert bus.deliver("sensors.Temperature", payload, meta(42))
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert out.split() == [NODE_ID.hex(), "42", "19.75"]
    assert bus.published == [("examples.Counter", cbor2.dumps({"count": 1, "source": "py"}))]


def test_the_restricted_bus_example_in_the_frame_docs_works(short_dir: Path) -> None:
    """The raw pyzmq snippet of docs/plugin-frames.md for a bus with a secret publishes."""
    secret_file = short_dir / "bus.secret"
    secret = BusSecret.generate()
    secret_file.write_text(secret.to_text())
    os.chmod(secret_file, 0o600)
    doc = (REPO / "docs" / "plugin-frames.md").read_text()
    example = next(block.split("```", 1)[0] for block in doc.split("```python\n")[1:]
                   if "curve_serverkey" in block)
    state_line = next(line for line in example.splitlines() if line.startswith("state = "))
    script = short_dir / "raw_secret_plugin.py"
    script.write_text(example.replace(state_line, f"state = {str(short_dir)!r}"))
    running = BusThread(short_dir / STATE_DIR_BUS_NAME, secret=secret)
    try:
        env = {**os.environ, BUS_SECRET_ENV: str(secret_file)}
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              env=env, timeout=30)
        assert proc.returncode == 0, proc.stderr
        wait_until(lambda: len(running.published) == 1, timeout=10)
        assert running.published == [
            ("examples.Counter", cbor2.dumps({"count": 2, "source": "py"}))]
        # The same script without the secret's keys is refused and publishes nothing.
        env[BUS_SECRET_ENV] = str(_other_secret(short_dir))
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              env=env, timeout=30)
        assert proc.returncode != 0 and "refused our key" in proc.stderr
        assert len(running.published) == 1
    finally:
        running.stop()


def _other_secret(directory: Path) -> Path:
    path = directory / "other.secret"
    path.write_text(BusSecret.generate().to_text())
    os.chmod(path, 0o600)
    return path


def test_the_secret_comes_from_the_environment_only_when_asked(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUS_SECRET_ENV, raising=False)
    with PluginClient(short_dir) as plain:
        assert plain.secret is None
    monkeypatch.setenv(BUS_SECRET_ENV, str(short_dir / "missing.secret"))
    with pytest.raises(ConfigError, match="cannot read the bus secret file"):
        PluginClient(short_dir)
    explicit = BusSecret.generate()
    with PluginClient(short_dir, secret=explicit) as given:  # an argument wins over the env
        assert given.secret == explicit
