"""What the compiled receive path's tests share: a recording ``Incoming`` (``Harness``),
a loopback socket pair the compiled drain reads (``Wire``), datagrams of one message,
and the comparison of the compiled drain with the Python ``on_datagram`` on the same
datagrams (``compare``); for the send lanes, a stand-in sender, a packer and the
values the lanes write themselves (``common``) or leave to Python (``unusual``)."""

from __future__ import annotations

import collections
import dataclasses
import socket
from types import SimpleNamespace
from typing import Any

from hypothesis import strategies as st
from sample_type import sample_class

from ganglion.defaults import MAX_DATAGRAM
from ganglion.runtime import _accel
from ganglion.runtime._incoming import Incoming
from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.sequence import SequenceTable
from ganglion.types import encode_message, type_of
from ganglion.wire import KeyRing, Packer

speedups = _accel.speedups

OURS = b"\x00" * 8
PEER = b"\x01" * 8
OTHER_PEER = b"\x02" * 8
KEY = bytes(range(32))
#: A sender's encryption session, fixed so that encrypted datagrams are reproducible.
SESSION = bytes(range(8))
#: How the keyed tests' datagrams are made: in clear, signed (MAC) or encrypted.
KEYINGS = ("clear", "mac", "aead")


def keyed_packer(keying: str, *, node_id: bytes = PEER, type_name: str, fingerprint: bytes,
                 first_seq: int = 0, boot: int = 7, key: bytes = KEY,
                 session: bytes = SESSION, max_datagram: int = MAX_DATAGRAM) -> Packer:
    """A packer that builds ``keying``'s datagrams (``KEYINGS``) under ``key``."""
    sealer = KeyRing([key]).sealer(node_id, session, type_name) if keying == "aead" else None
    return Packer(node_id=node_id, type_name=type_name, fingerprint=fingerprint,
                  first_seq=first_seq, boot=boot, key=key if keying == "mac" else None,
                  sealer=sealer, max_datagram=max_datagram)


def _refuse_label(self: Any) -> None:
    if self.label == "refuse":
        raise ValueError("the class refuses this label")


def _refuse_setting_label(self: Any, name: str, value: Any) -> None:
    if name == "label" and value == "refuse":
        raise ValueError("the class refuses this label")
    object.__setattr__(self, name, value)


#: Refuses one label in ``__post_init__``.
Sample: Any = sample_class("test_speedups.Sample", module=__name__,
                           namespace={"__post_init__": _refuse_label})
#: Sample's fields, refused in ``__setattr__`` (the lane sets each field itself).
Guarded: Any = sample_class("test_speedups.Guarded", module=__name__,
                            namespace={"__setattr__": _refuse_setting_label})
#: Sample's fields, frozen and slotted (the lane sets them as object.__setattr__).
Frozen: Any = sample_class("test_speedups.Frozen", module=__name__, frozen=True, slots=True)

SAMPLE = "test_speedups.Sample"
#: Classes with Sample's fields, each built another way by the lane.
KINDS = (Sample, Guarded, Frozen)


class Harness:
    """An Incoming with one recording subscriber per type name."""

    def __init__(self, *types: str, key: bytes | None = None, raising: bool = False) -> None:
        self.got: list[tuple[Any, MessageInfo]] = []
        self.bad: list[tuple[str, str]] = []
        self.sequences = SequenceTable(strict=key is not None)

        def record(msg: Any, info: MessageInfo) -> None:
            self.got.append((msg, info))
            if raising and len(self.got) % 3 == 0:
                raise RuntimeError("a subscriber that fails now and then")

        self.subs: dict[str, list[Subscription]] = {
            name: [Subscription(name, callback=record, maxsize=16, on_close=lambda s: None)]
            for name in types}
        self.incoming = Incoming(node_id=OURS, key=key, subs=self.subs, sequences=self.sequences,
                                 count_bad=lambda kind, detail, src: self.bad.append((kind, detail)))

    def outcome(self) -> tuple[Any, ...]:
        got = [(m, i._replace(received_ns=0)) for m, i in self.got]
        counted = [(s.delivered, s.callback_errors) for subs in self.subs.values() for s in subs]
        stats = {key: dataclasses.astuple(value) for key, value in self.sequences.stats().items()}
        # What the counters do not show: each tracker's newest timestamp and window.
        state = {key: (t._newest_ts, t._highest, t._seen, t._boot, t._resync)
                 for key, t in self.sequences._trackers.items()}
        return got, self.bad, self.incoming.received, counted, stats, state


class Wire:
    """A loopback UDP socket the compiled drain reads, and a socket that sends to it."""

    def __init__(self) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        self.source = self.tx.getsockname()
        self.buffer = bytearray(speedups.RECV_SIZE if speedups else 0)
        self.counts = [0] * 6
        self.reports: list[tuple[str, object]] = []
        self.slot = SimpleNamespace(closed=False)

    def close(self) -> None:
        self.rx.close()
        self.tx.close()

    def send(self, *datagrams: bytes) -> None:
        for datagram in datagrams:
            self.tx.sendto(datagram, self.rx.getsockname())

    def drain(self, h: Harness | None, *, limit: int = 100_000, on_datagram: Any = None) -> None:
        assert speedups is not None
        lane = h.incoming.lane() if h is not None else None
        on_datagram = on_datagram or (h.incoming.on_datagram if h else None)
        speedups.drain(self.rx.fileno(), self.slot, limit, self.buffer, lane, on_datagram,
                       h.incoming.on_run if h else None, lambda: 0.0,
                       lambda kind, detail: self.reports.append((kind, detail)), self.counts,
                       65535, 0)


def sample_datagram(seq: int, sample: Any, *, node_id: bytes = PEER, name: str | None = None,
                    boot: int = 7, key: bytes | None = None, refused: bool = False,
                    keying: str | None = None, session: bytes = SESSION) -> bytes:
    """A datagram of one Sample (or one of the other KINDS), under its type's name unless
    ``name``; ``refused``: with the label its class refuses. ``keying`` (``KEYINGS``):
    in clear, signed or encrypted under ``key`` (default ``KEY``); without it, signed
    when ``key`` is given."""
    mtype = type_of(type(sample))
    if keying is None:
        keying = "clear" if key is None else "mac"
    pk = keyed_packer(keying, node_id=node_id, type_name=name or mtype.name,
                      fingerprint=mtype.fingerprint, first_seq=seq, boot=boot,
                      key=key or KEY, session=session, max_datagram=MAX_DATAGRAM)
    if refused:
        sample = dataclasses.replace(sample, label="refusx")
    payload = encode_message(sample, mtype)
    if refused:
        payload = payload.replace(b"refusx", b"refuse")
    return pk.build_one(payload, 1_000_000 + seq)


def compare(wire: Wire, datagrams: list[bytes], *types: str, key: bytes | None = None,
            raising: bool = False) -> tuple[Harness, Harness]:
    """Compiled drain vs Python on_datagram over the same datagrams; both harnesses."""
    compiled, reference = Harness(*types, key=key, raising=raising), \
        Harness(*types, key=key, raising=raising)
    for at in range(0, len(datagrams), 50):  # within the socket buffer
        wire.send(*datagrams[at:at + 50])
        wire.drain(compiled)
    for datagram in datagrams:
        reference.incoming.on_datagram(datagram, wire.source, 0.0)
    assert compiled.outcome() == reference.outcome()
    return compiled, reference


# -- the send side --------------------------------------------------------------


class Sender:
    """The two attributes send_lone reads of a MulticastSender: its queue and socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._queue: collections.deque[object] = collections.deque()
        self._sock: socket.socket | None = sock


def sample_packer(key: bytes | None = None, first_seq: int = 10, *,
                  keying: str | None = None) -> Packer:
    """A Sample packer; ``keying`` as :func:`sample_datagram`'s."""
    if keying is None:
        keying = "clear" if key is None else "mac"
    return keyed_packer(keying, type_name=SAMPLE, fingerprint=type_of(Sample).fingerprint,
                        first_seq=first_seq, boot=3, key=key or KEY, max_datagram=MAX_DATAGRAM)


def received(wire: Wire) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(wire.rx.recv(65536))
        except BlockingIOError:
            return out


# Values the lane writes itself (it must: else it would never be used) and values it
# leaves to Python (nothing may happen then).
common = st.builds(Sample, st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False,
                   allow_infinity=False), st.booleans(),
                   st.text(max_size=60).filter(lambda t: t != "refuse"), st.binary(max_size=600))
unusual = st.one_of(
    st.builds(Sample, st.one_of(st.integers(max_value=-(2**63) - 1), st.integers(min_value=2**64)),
              st.just(1.0), st.just(True), st.just(""), st.just(b"")),
    st.builds(Sample, st.just(1), st.sampled_from([float("nan"), float("inf"), -float("inf")]),
              st.just(True), st.just(""), st.just(b"")),
    st.builds(Sample, st.just(1), st.just(1.0), st.just(True), st.just("\ud800"), st.just(b"")),
    st.builds(Sample, st.just(True), st.just(1.0), st.just(True), st.just(""), st.just(b"")),
    st.builds(Sample, st.just(1), st.just(1), st.just(True), st.just(""), st.just(b"")),
    st.builds(Sample, st.just(1), st.just(1.0), st.just(1), st.just(""), st.just(b"")),
    st.builds(Sample, st.just(1), st.just(1.0), st.just(True), st.just(""), st.just(bytearray())),
)
