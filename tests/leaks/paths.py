"""The compiled paths (ganglion._speedups), each run over real loopback sockets for a leak check.

Every path pairs a sender with a receiver the way an endpoint does, without the
endpoint's other work around them (so that what grows can only be these paths): a
route's ``SendLane`` (or the module's ``send_lone`` and ``batch_add``) sends through a
real ``MulticastSender`` socket to 127.0.0.1, and the compiled ``drain`` reads the
datagrams with the receiving ``Incoming``'s ``Lane``, which decodes each payload with
its type's plan, records it in place in the stream's ``SequenceTracker`` and hands it
to a ``Subscription``'s callback. Each path counts what the Python reference paths
did instead (``fallbacks``), so a run shows that the compiled path was the one taken.
No datagram leaves 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ganglion.runtime import _accel
from ganglion.runtime._incoming import Incoming
from ganglion.runtime._sender import MulticastSender
from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.sequence import SequenceTable
from ganglion.types import encode_message, message, type_of
from ganglion.wire import KeyRing, Packer
from ganglion.wire._packer import FULL

from .bus_paths import BusPath
from .copy_paths import CopyPath

speedups = _accel.speedups

SENDER_ID = b"\x01" * 8
RECEIVER_ID = b"\x02" * 8
KEY = bytes(range(32))
#: Datagrams sent before each drain: well within a loopback socket's receive buffer.
CHUNK = 48
#: Set while a receiver decodes, so that a class refuses what its sender made.
REFUSING = [False]


@message("leakcheck.Reading")
@dataclass
class Reading:
    """Built by the lane as the dataclass's generated __init__ would (SET)."""

    n: int
    celsius: float
    ok: bool
    probe: str
    raw: bytes


@message("leakcheck.Frozen")
@dataclass(frozen=True, slots=True)
class Frozen:
    """Built by the lane with object.__setattr__ (SET_FROZEN)."""

    n: int
    celsius: float
    ok: bool
    probe: str
    raw: bytes


@message("leakcheck.Checked")
@dataclass
class Checked:
    """Built by calling the class (CALL: it has a __post_init__), which may refuse."""

    n: int
    celsius: float
    ok: bool
    probe: str
    raw: bytes

    def __post_init__(self) -> None:
        if REFUSING[0] and self.probe == "refuse":
            raise ValueError("refused by the class")


def sample(cls: type, n: int) -> Any:
    return cls(n, n / 4, n % 2 == 0, f"probe-{n % 7}", bytes(n % 24))


class Path:
    """One compiled path from a sender to a subscriber's callback over loopback.

    Args:
        cls: the message class.
        keying: "clear", "mac" (signed) or "aead" (encrypted).
        mode: "lone" (the send lane while idle: one message a datagram), "batch" (the
            send lane under load: into the datagram being filled), "functions"
            (``send_lone`` and ``batch_add``, and a drain without a lane) or "refusals"
            (messages the class refuses and a callback that raises, left to Python).
    """

    def __init__(self, cls: type, *, keying: str = "clear", mode: str = "lone") -> None:
        assert speedups is not None, "ganglion._speedups is not built"
        self.cls, self.mode = cls, mode
        self.mtype = type_of(cls)
        assert self.mtype.plan is not None, f"{cls.__name__} has no plan"
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        self.port = self.rx.getsockname()[1]
        # The lanes send to any IPv4 address (here 127.0.0.1); the Python sends below use
        # the socket itself (MulticastSender.send only sends to multicast groups).
        self.sender = MulticastSender("127.0.0.1", sock=tx, gso=False)
        self._send = lambda datagram: tx.sendto(datagram, ("127.0.0.1", self.port))
        sealer = KeyRing([KEY]).sealer(SENDER_ID, bytes(8), self.mtype.name) \
            if keying == "aead" else None
        self.packer = Packer(node_id=SENDER_ID, type_name=self.mtype.name,
                             fingerprint=self.mtype.fingerprint, first_seq=0, boot=5,
                             key=KEY if keying == "mac" else None, sealer=sealer)
        self.next_seq = {self.mtype.name: 0}
        # Outgoing's busy flag is all the lane reads of it.
        self.out = SimpleNamespace(busy=mode == "batch")
        self.lane = speedups.SendLane(self.next_seq, self.mtype.name, self.sender, self.out,
                                      self.packer, "127.0.0.1", self.port, self.mtype.plan,
                                      1024, False)
        self.delivered = 0
        self.fallbacks = 0
        self.errors: list[str] = []

        def deliver(msg: Any, info: MessageInfo) -> None:
            self.delivered += 1
            if mode == "refusals" and msg.n % 5 == 0:
                raise RuntimeError("a callback that fails now and then")

        self.subscription = Subscription(self.mtype.name, callback=deliver, maxsize=16,
                                         on_close=lambda s: None)
        self.incoming = Incoming(node_id=RECEIVER_ID, key=None if keying == "clear" else KEY,
                                 subs={self.mtype.name: [self.subscription]},
                                 sequences=SequenceTable(strict=keying != "clear"),
                                 count_bad=self._bad)
        # The Python paths the lane hands work to, counted (an instance attribute is
        # what the lane's by-name call finds first).
        for name in ("_deliver", "_decode_slow", "on_datagram", "on_run"):
            setattr(self.incoming, name, self._counted(getattr(self.incoming, name)))
        self.rx_lane = None if mode == "functions" else self.incoming.lane()
        self.buffer = bytearray(speedups.RECV_SIZE)
        self.counts = [0] * 6
        self.slot = SimpleNamespace(closed=False)  # the receiver's socket slot: its flag
        self.messages = [sample(cls, n) for n in range(64)]
        if mode == "refusals":
            self.messages[3] = dataclasses.replace(self.messages[3], probe="refuse")
        self.sent = 0

    def _bad(self, kind: str, detail: str, source: object) -> None:
        if self.mode != "refusals":
            self.errors.append(f"{kind}: {detail}")

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.fallbacks += 1
            return method(*args)
        return call

    def watched(self) -> dict[str, object]:
        """Objects every message passes through, whose reference counts must not move."""
        stream_entries = tuple(self.incoming._lanes.values())
        return {"packer": self.packer, "sender": self.sender, "plan": self.mtype.plan,
                "class": self.cls, "subscription": self.subscription, "incoming": self.incoming,
                "lane": self.rx_lane, "send lane": self.lane, "out": self.out,
                "MessageInfo": MessageInfo, "lane entry": stream_entries[0] if stream_entries
                else None, "message": self.messages[1]}

    def close(self) -> None:
        self.sender.close()
        self.rx.close()

    def run(self, count: int) -> None:
        """Send ``count`` messages, draining the receiver every CHUNK datagrams."""
        # A refused message and a failing callback are logged, with their traceback: not
        # a record per message kept by a handler (pytest's keeps every one).
        log = logging.getLogger("ganglion")
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            self._run(count)
        finally:
            log.setLevel(level)

    def _run(self, count: int) -> None:
        done = 0
        while done < count:
            step = min(CHUNK, count - done)
            if self.mode == "batch":
                self._batch(step)
            elif self.mode == "functions":
                self._functions(step)
            else:
                self._lone(step)
            done += step
            REFUSING[0] = self.mode == "refusals"
            try:
                speedups.drain(self.rx.fileno(), self.slot, 10_000, self.buffer, self.rx_lane,
                               self.incoming.on_datagram, self.incoming.on_run, lambda: 0.0,
                               self._report, self.counts, 65535, 0)
            finally:
                REFUSING[0] = False
        self.sent += count

    def _report(self, kind: str, detail: object) -> None:
        self.errors.append(f"drain {kind}: {detail}")

    def _lone(self, step: int) -> None:
        name, messages = self.mtype.name, self.messages
        for i in range(step):
            done = self.lane.publish(messages[(self.sent + i) % 64])
            if done is None:
                raise AssertionError("the send lane left a message to Python")
            self.next_seq[name] = done[1] + 1

    def _batch(self, step: int) -> None:
        # As Endpoint.publish and Outgoing do under load: the first message opens the
        # datagram (Python), the lane adds the next ones, and a full datagram is built
        # and sent. The lane leaves a message to Python when the datagram is full, or
        # more than 8 us after the one before (a longer delta): it then goes
        # Python's way, counted.
        name, messages, packer = self.mtype.name, self.messages, self.packer
        for i in range(step):
            msg = messages[(self.sent + i) % 64]
            done = self.lane.publish(msg) if packer.count else None
            if done is not None:
                self.next_seq[name] = done[1] + 1
                if done[4]:
                    self._send(packer.build())
                continue
            if packer.count:
                self.fallbacks += 1
            payload = encode_message(msg, self.mtype)
            added = packer.add(payload, time.time_ns())
            if not added:
                self._send(packer.build())
                added = packer.add(payload, time.time_ns())
            self.next_seq[name] += 1
            if added == FULL:
                self._send(packer.build())
        if packer.count:
            self._send(packer.build())

    def _functions(self, step: int) -> None:
        packer, messages, plan = self.packer, self.messages, self.mtype.plan
        for i in range(step):
            msg = messages[(self.sent + i) % 64]
            if i % 8 < 4:
                done = speedups.send_lone(self.sender, "127.0.0.1", self.port, packer,
                                          1_000 + self.sent + i, msg, plan, 1024, False)
                if done is None:
                    raise AssertionError("send_lone left a message to Python")
                continue
            if not packer.count:
                packer.add(encode_message(msg, self.mtype), 1_000 + self.sent + i)
            elif speedups.batch_add(packer, 1_000 + self.sent + i, msg, plan, 1024) is None:
                raise AssertionError("batch_add left a message to Python")
            if i % 8 == 7:
                self._send(packer.build())


class PlanCodec:
    """The plan's writer and reader one payload at a time (``plan_encode``,
    ``plan_decode``), with payloads it leaves to Python and values a class refuses."""

    def __init__(self, cls: type) -> None:
        assert speedups is not None, "ganglion._speedups is not built"
        self.cls, self.mtype = cls, type_of(cls)
        self.messages = [sample(cls, n) for n in range(64)]
        self.messages[3] = dataclasses.replace(self.messages[3], probe="refuse")
        self.sent = self.delivered = self.fallbacks = 0
        self.errors: list[str] = []

    def run(self, count: int) -> None:
        plan, encode, decode = self.mtype.plan, speedups.plan_encode, speedups.plan_decode
        for i in range(count):
            msg = self.messages[(self.sent + i) % 64]
            payload = encode(plan, msg)
            if payload is None:
                raise AssertionError("plan_encode left a message to Python")
            REFUSING[0] = True
            try:
                got = decode(plan, payload if i % 16 else payload + b"\x00")
            except ValueError:
                got = msg  # refused by the class, as it should be
            finally:
                REFUSING[0] = False
            if got is None:
                self.fallbacks += 1  # the trailing byte: left to Python
            elif got == msg:
                self.delivered += 1
            else:
                self.errors.append(f"plan_decode gave {got!r} for {msg!r}")
        self.sent += count

    def watched(self) -> dict[str, object]:
        return {"plan": self.mtype.plan, "class": self.cls, "message": self.messages[1]}

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Spec:
    """A path of the leak check: how to make it, its share of the messages, and whether
    every message after the first must take the compiled path end to end (and arrive)."""

    make: Callable[[], Path | PlanCodec | BusPath | CopyPath]
    share: float
    compiled: bool = True
    #: A path of the plugin bus's extension (``ganglion._busfast``), not ``_speedups``.
    bus: bool = False
    #: A path of the forwarder's encoder (``ganglion._copyfast``), not ``_speedups``.
    copy: bool = False


#: Every path the leak check runs, by name.
PATHS: dict[str, Spec] = {
    "send-lone+drain": Spec(lambda: Path(Reading), 1.0),
    "send-batch+drain-batches": Spec(lambda: Path(Frozen, mode="batch"), 1.0),
    "send-lone+drain (call)": Spec(lambda: Path(Checked), 0.5),
    "keyed-mac": Spec(lambda: Path(Reading, keying="mac"), 0.5),
    "keyed-aead": Spec(lambda: Path(Reading, keying="aead"), 0.5),
    "functions+python-drain": Spec(lambda: Path(Reading, mode="functions"), 0.25, False),
    "refusals": Spec(lambda: Path(Checked, mode="refusals"), 0.25, False),
    "plan-codec": Spec(lambda: PlanCodec(Checked), 0.5, False),
    # The plugin bus's compiled loop (tests/leaks/bus_paths.py).
    "bus-drain": Spec(lambda: BusPath("drain"), 0.5, bus=True),
    "bus-deliver": Spec(lambda: BusPath("deliver"), 0.5, bus=True),
    "bus-leftover": Spec(lambda: BusPath("leftover"), 0.1, False, bus=True),
    # The forwarder's batch encoder (tests/leaks/copy_paths.py): one message is one row.
    "copy-read": Spec(CopyPath, 1.0, copy=True),
}
