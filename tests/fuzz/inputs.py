"""What the harness sends: seeded streams of inputs for each receive path.

Theory of operation: each generator owns a ``random.Random`` and answers
:meth:`next` with one :class:`Input` (the bytes of a datagram, or the zmq frames of
a plugin message) and a one-line description. Nothing the node does feeds back into
a generator, so a seed and a count replay the same inputs exactly.

Inputs start from valid ones the project's own encoders build (envelopes with
:func:`ganglion.wire.encode_datagram`, payloads with :func:`ganglion.types.encode_payload`,
consensus messages as the trees ``to_wire`` gives) and then put fields at their
extremes. Senders come from a small pool of forged node ids, each keeping its stream
(boot and next sequence number per type), so a mutated sequence number is a jump on
a stream the node already tracks, not just another first datagram. The real peers'
ids are never forged: on a keyless network anyone can speak for them, which is
documented, not a bug the harness should report.

:func:`directed` gives the inputs of the issue's findings, which every run sends
first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Sequence

import cbor2

from ganglion.runtime.control_messages import Heartbeat, LastValue, LastValueRequest, PaxosFrame
from ganglion.types import Record, encode_payload, lookup

from .datagrams import Field, Shape, fields_of, join, mutate, set_int
from .extremes import INT_EXTREMES, MAX_NAME, cbor_item, cbor_value, pick_int
from .fuzztypes import PLAIN, RICH, Inner, Level, Plain, Rich

#: Where an input goes: a data group (by the type whose group it is), the control
#: group, or one of the plugin bus's two sockets.
DATA_TARGETS = (PLAIN, RICH)
CONTROL = "control"
BUS_PUB = "bus.pub"
BUS_SUB = "bus.sub"
#: Largest UDP payload over IPv4: bigger inputs are cut to it.
MAX_UDP = 65_507
#: A plausible wall clock for timestamps (2023-11-14), so most are not extremes.
NOW_NS = 1_700_000_000_000_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class Input:
    """One thing to send.

    Attributes:
        index: its position in the generator's sequence (with the seed, replays it).
        kind: the generator's name for how it was made, e.g. ``data/mutated``.
        detail: what is extreme about it, for reports.
        target: a type name (its data group), :data:`CONTROL`, :data:`BUS_PUB` or
            :data:`BUS_SUB`.
        frames: the datagram (one frame) or the zmq frames.
    """

    index: int
    kind: str
    detail: str
    target: str
    frames: tuple[bytes, ...]

    def describe(self) -> str:
        """One line: index, kind, detail, target and the first bytes."""
        head = self.frames[0][:48].hex() if self.frames else ""
        sizes = "+".join(str(len(f)) for f in self.frames)
        return f"#{self.index} {self.kind} [{self.detail}] -> {self.target} ({sizes} B) {head}"


class _Streams:
    """A pool of forged senders, each with a boot counter and a next seq per type."""

    def __init__(self, rng: random.Random, own_id: bytes, size: int) -> None:
        self.rng = rng
        # The node's own id is in the pool: a datagram "from itself" must be ignored.
        self.ids = [rng.randbytes(8) for _ in range(size)] + [own_id, b"\x00" * 8, b"\xff" * 8]
        self.boot = {node: rng.choice((0, 1, 7, 2**31, 2**32 - 1)) for node in self.ids}
        self.next_seq: dict[tuple[bytes, str], int] = {}

    def take(self, type_name: str, count: int = 1) -> tuple[bytes, int, int]:
        """A sender, its boot and the next ``count`` numbers of its stream of ``type_name``."""
        node = self.rng.choice(self.ids)
        key = (node, type_name)
        seq = self.next_seq.get(key, self.rng.choice((0, 0, 5, 1000)))
        self.next_seq[key] = (seq + count) % 2**64
        return node, self.boot[node], seq

    def jump(self, type_name: str) -> tuple[bytes, int, int, str]:
        """A sender whose stream of ``type_name`` jumps by an extreme (or to one)."""
        node = self.rng.choice(self.ids)
        key = (node, type_name)
        now = self.next_seq.get(key, 0)
        if self.rng.random() < 0.5:
            step = self.rng.choice((2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**63, 2**64 - 1))
            seq = (now + step) % 2**64
            detail = f"seq jump +{step:#x} to {seq:#x}"
        else:
            seq = self.rng.choice(INT_EXTREMES)
            detail = f"seq set to {seq:#x}"
        self.next_seq[key] = (seq + 1) % 2**64
        return node, self.boot[node], seq, detail


def _ts(rng: random.Random) -> int:
    return rng.choice((NOW_NS, NOW_NS, NOW_NS + rng.randrange(10**9), 0, 2**63 - 1, 2**64 - 1))


def _fingerprint(type_name: str) -> bytes:
    mtype = lookup(type_name)
    assert mtype is not None, f"{type_name} is not registered"
    return mtype.fingerprint


def plain_payload(rng: random.Random) -> tuple[str, bytes]:
    """A payload of :class:`Plain`: valid, or with one field at an extreme."""
    if rng.random() < 0.5:
        return "valid", encode_payload(Plain(value=rng.randrange(1000), ratio=0.5,
                                             label="x", blob=b"\x00"))
    fields: dict[str, object] = {"value": 1, "ratio": 0.5, "ok": True, "label": "l", "blob": b""}
    name = rng.choice(sorted(fields))
    detail, value = cbor_value(rng)
    fields[name] = value
    return f"{name}: {detail}", cbor2.dumps(fields)


def rich_payload(rng: random.Random) -> tuple[str, bytes]:
    """A payload of :class:`Rich`: valid, or with one field at an extreme."""
    if rng.random() < 0.5:
        msg = Rich(value=rng.randrange(1000), samples=[1, 2], note="n",
                   when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), level=Level.HIGH,
                   inner=Inner(depth=1, tags=["a"]))
        return "valid", encode_payload(msg)
    fields: dict[str, object] = {"value": 1, "samples": [], "note": None, "when": None,
                                 "level": 1, "inner": None}
    name = rng.choice(sorted(fields))
    detail, value = cbor_value(rng)
    if name == "when" and rng.random() < 0.5:
        detail, value = "datetime tag 1 at an extreme", cbor2.CBORTag(1, pick_int(rng, wide=True))
    fields[name] = value
    return f"{name}: {detail}", cbor2.dumps(fields)


def _cut(data: bytes) -> bytes:
    return data[:MAX_UDP]


class DataInputs:
    """Datagrams for the node's data groups (the types of :mod:`.fuzztypes`).

    Args:
        seed: the seed of every choice.
        own_id: the target node's id (forged too: its own datagrams must be ignored).
    """

    def __init__(self, seed: int, own_id: bytes) -> None:
        self.rng = random.Random(seed)
        self.streams = _Streams(self.rng, own_id, 6)
        self.index = 0
        self._batches: dict[tuple[str, int, bool], tuple[list[Field], bytes]] = {}
        for target in DATA_TARGETS:  # build the big batches now, before anything is timed
            for alternating, counts in ((True, (100, 3000, 5000)), (False, (300, 3000, 20_000))):
                for count in counts:
                    self._batch(target, count, alternating)

    def _payload(self, type_name: str) -> tuple[str, bytes]:
        return (plain_payload if type_name == PLAIN else rich_payload)(self.rng)

    def _shape(self, type_name: str, count: int, seq_detail: str = "",
               jump: bool = False) -> tuple[Shape, str]:
        rng = self.rng
        if jump:
            node, boot, seq, seq_detail = self.streams.jump(type_name)
            count = 1
        else:
            node, boot, seq = self.streams.take(type_name, count)
        if seq + count > 2**64:
            count = 2**64 - seq
        details, payloads = [], []
        for _ in range(count):
            detail, payload = self._payload(type_name)
            details.append(detail)
            payloads.append(payload)
        base = _ts(rng)
        stamps = [min(base + i * 1000, 2**64 - 1) for i in range(count)]
        shape = Shape(node_id=node, type_name=type_name, fingerprint=_fingerprint(type_name),
                      first_seq=seq, timestamps=tuple(stamps), payloads=tuple(payloads),
                      boot=boot)
        what = "; ".join(sorted(set(details)))
        return shape, f"{seq_detail} {what}".strip()

    def next(self) -> Input:
        """The next input."""
        rng = self.rng
        self.index += 1
        target = rng.choice(DATA_TARGETS)
        roll = rng.random()
        if roll < 0.15:
            shape, detail = self._shape(target, rng.choice((1, 1, 2, 5)))
            return self._input("data/valid", detail, target, join(fields_of(shape)))
        if roll < 0.25:
            shape, detail = self._shape(target, 1, jump=True)
            return self._input("data/seq-jump", detail, target, join(fields_of(shape)))
        if roll < 0.30:
            return self._big_batch(target)
        if roll < 0.35:
            return self._foreign(target)
        if roll < 0.38:
            data = rng.randbytes(rng.choice((0, 1, 4, 24, 43, 60, 200)))
            return self._input("data/random", "random bytes", target, data)
        shape, detail = self._shape(target, rng.choice((1, 1, 1, 3)))
        fields = fields_of(shape)
        how = mutate(rng, fields)
        return self._input("data/mutated", f"{how}; {detail}", target, join(fields))

    def _big_batch(self, target: str) -> Input:
        """Many tiny messages in one datagram, with time deltas at their extremes.

        The messages are encoded once per shape and kept: only the header (sender,
        boot, first seq) changes, so a 20,000-message datagram costs the sender
        microseconds, not the 100 ms its encoding takes (time the stall monitor would
        otherwise blame on the node).
        """
        rng = self.rng
        # 12 bytes a message with deltas at the extremes, 3 without: both fit 65,507
        alternating = rng.random() < 0.5
        count = rng.choice((100, 3000, 5000) if alternating else (300, 3000, 20_000))
        node, boot, seq = self.streams.take(target, count)
        if seq + count > 2**64:
            seq = 0
        cached = self._batch(target, count, alternating)
        head = [Field(f.name, f.data) for f in cached[0]]
        set_int(head, "boot", boot)
        set_int(head, "first_seq", seq)
        head[3] = Field("node_id", node)
        return self._input("data/big-batch", f"{count} empty maps"
                           + (", deltas +-2**63" if alternating else ""), target,
                           join(head) + cached[1])

    def _batch(self, target: str, count: int, alternating: bool) -> tuple[list[Field], bytes]:
        """The header fields up to ``count`` and the encoded messages of a big batch."""
        key = (target, count, alternating)
        cached = self._batches.get(key)
        if cached is None:
            if alternating:  # deltas alternating between the i64 extremes
                stamps = [NOW_NS if i % 2 == 0 else NOW_NS + 2**63 - 1 for i in range(count)]
            else:
                stamps = [NOW_NS + i for i in range(count)]
            shape = Shape(node_id=b"\x00" * 8, type_name=target,
                          fingerprint=_fingerprint(target), first_seq=0,
                          timestamps=tuple(stamps), payloads=(b"\xa0",) * count)
            fields = fields_of(shape)
            cut = next(i for i, f in enumerate(fields) if f.name == "count") + 1
            cached = self._batches[key] = (fields[:cut], join(fields[cut:]))
        return cached

    def _foreign(self, target: str) -> Input:
        """A valid datagram of another type on this group (control types, unknown names)."""
        rng = self.rng
        name = rng.choice(("ganglion.control.Heartbeat", "ganglion.control.Paxos",
                           "fuzz.Unknown", PLAIN if target == RICH else RICH))
        node, boot, seq = self.streams.take(name)
        payload = rng.choice((b"\xa0", cbor2.dumps({"value": 1}), b"\xa1\x61x\x00"))
        fingerprint = rng.choice((rng.randbytes(8), b"\x00" * 8))
        shape = Shape(node_id=node, type_name=name, fingerprint=fingerprint, first_seq=seq,
                      timestamps=(NOW_NS,), payloads=(payload,), boot=boot)
        return self._input("data/foreign-type", name, target, join(fields_of(shape)))

    def _input(self, kind: str, detail: str, target: str, data: bytes) -> Input:
        return Input(self.index, kind, detail, target, (_cut(data),))


# -- control -----------------------------------------------------------------------------

#: The consensus message kinds and the shape of their ``to_wire`` trees after
#: ``[kind, sender]`` (consensus/messages.py).
PAXOS_KINDS = ("prepare", "promise", "accept", "accepted", "nack", "commit", "status",
               "catchup?", "catchup", "propose")


class ControlInputs:
    """Datagrams for the node's control group: heartbeats, consensus frames, last values.

    Args:
        seed: the seed of every choice.
        own_id: the target node's id.
        peer_ids: the real peers' ids: consensus messages may be addressed to them
            (``to``) but never claim to come from them.
    """

    def __init__(self, seed: int, own_id: bytes, peer_ids: Sequence[bytes] = ()) -> None:
        self.rng = random.Random(seed)
        self.streams = _Streams(self.rng, own_id, 12)
        self.own_int = int.from_bytes(own_id, "big")
        self.peer_ints = [int.from_bytes(p, "big") for p in peer_ids]
        self.index = 0

    # consensus trees ----------------------------------------------------------

    def _small(self, limit: int = 40) -> int:
        rng = self.rng
        return rng.randrange(limit) if rng.random() < 0.7 else pick_int(rng, wide=rng.random() < 0.2)

    def _ballot(self) -> list[object]:
        rng = self.rng
        node = rng.choice([int.from_bytes(i, "big") for i in self.streams.ids[:4]]) \
            if rng.random() < 0.8 else pick_int(rng)
        return [self._small(), node]

    def _value(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            a, b = rng.randrange(1, 255), rng.randrange(1, 255)
            return f"assign fuzz.Junk{rng.randrange(50)} 239.255.{a}.{b}".encode()
        if roll < 0.6:
            return f"assign {PLAIN} 239.255.{rng.randrange(1, 255)}.7".encode()  # a forged move
        if roll < 0.7:
            return f"move {PLAIN} 239.255.1.1 239.255.2.2".encode()
        return rng.randbytes(rng.choice((0, 1, 64, 512, 513)))

    def _type_name(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return f"fuzz.Junk{rng.randrange(200)}"
        return rng.choice(("", "a", "a." + "b" * (MAX_NAME - 2), "a." + "b" * MAX_NAME,
                           "a b.c", "\u00e9.b", "x.y\n"))

    def paxos_tree(self) -> tuple[str, list[object]]:
        """A consensus message as its primitive tree, fields mostly plausible, some extreme."""
        rng = self.rng
        kind = rng.choice(PAXOS_KINDS)
        sender = int.from_bytes(rng.choice(self.streams.ids), "big") if rng.random() < 0.9 \
            else pick_int(rng, wide=True)
        slot = self._small()
        fields: list[object]
        if kind in ("prepare", "accepted"):
            fields = [slot, self._ballot()]
        elif kind == "promise":
            prior = rng.random() < 0.5
            fields = [slot, self._ballot(), self._ballot() if prior else None,
                      self._value() if prior else None]
        elif kind == "accept":
            fields = [slot, self._ballot(), self._value()]
        elif kind == "nack":
            fields = [slot, self._ballot(), self._ballot()]
        elif kind == "commit":
            fields = [slot, self._value()]
        elif kind == "status":
            fields = [self._small(), rng.randbytes(rng.choice((16, 16, 0, 17)))]
        elif kind == "catchup":
            fields = [[[self._small(), self._value()] for _ in range(rng.choice((0, 1, 16, 17)))]]
        elif kind == "propose":
            fields = [self._type_name()]
        else:
            fields = []
        tree: list[object] = [kind, sender, *fields]
        detail = f"{kind} " + " ".join(_short(v) for v in tree[1:])
        if rng.random() < 0.25:  # break the structure itself
            detail += "; " + self._break_tree(tree)
        return detail, tree

    def _break_tree(self, tree: list[object]) -> str:
        rng = self.rng
        at = rng.randrange(len(tree))
        roll = rng.randrange(4)
        if roll == 0:
            detail, value = cbor_value(rng)
            tree[at] = value
            return f"field {at} = {detail}"
        if roll == 1:
            tree.append(rng.choice((0, None, b"", [])))
            return "one field too many"
        if roll == 2:
            del tree[at:]
            return f"cut to {at} fields"
        tree[at] = [[[[]]]] if rng.random() < 0.5 else rng.choice(("", "prepare", True, 1.5))
        return f"field {at} of the wrong kind"

    def _paxos_frame(self) -> tuple[str, bytes]:
        rng = self.rng
        if rng.random() < 0.1:
            detail, body = cbor_item(rng)
            detail = "raw body: " + detail
        else:
            detail, tree = self.paxos_tree()
            body = cbor2.dumps(tree)
        roll = rng.random()
        to: int | None
        if roll < 0.7:
            to = None
        elif roll < 0.85:
            to = self.own_int
        else:
            to = pick_int(rng, wide=True)
        return detail + ("" if to is None else f" to={_short(to)}"), \
            _encode_frame(PaxosFrame, {"body": body, "to": to})

    # other control messages ------------------------------------------------------

    def _heartbeat(self) -> tuple[str, bytes]:
        rng = self.rng
        fields: dict[str, object] = {
            "name": "fuzz", "role": rng.choice(("member", "member", "observer")),
            "version": "0.1.0", "clock_synced": True, "publishes": [], "goodbye": False,
            "subscribes": rng.choice((None, [], [PLAIN])),
        }
        detail = f"heartbeat {fields['role']}"
        if rng.random() < 0.5:
            name = rng.choice(sorted(fields))
            roll = rng.random()
            if roll < 0.3 and name in ("publishes", "subscribes"):
                n = rng.choice((1000, 5000))
                value: object = [f"fuzz.T{i}" for i in range(n)]
                what = f"{n} names"
            elif roll < 0.5 and name in ("name", "role", "version"):
                value = rng.choice(("", "x" * 10_000, "\x00\n\u202e"))
                what = f"str({len(value)})"
            elif name == "goodbye":
                value, what = True, "goodbye"
            else:
                what, value = cbor_value(rng)
            fields[name] = value
            detail += f"; {name}: {what}"
        return detail, cbor2.dumps(fields)

    def _last_value(self) -> tuple[str, bytes]:
        rng = self.rng
        if rng.random() < 0.4:
            name = rng.choice((PLAIN, RICH, "fuzz.Nobody", ""))
            return f"last-value request {name!r}", _encode_frame(LastValueRequest,
                                                                 {"type_name": name})
        fields: dict[str, object] = {
            "to": self.own_int, "type_name": rng.choice((PLAIN, RICH)),
            "fingerprint": _fingerprint(PLAIN), "seq": rng.randrange(100), "boot": 1,
            "sent_ns": NOW_NS, "payload": plain_payload(rng)[1], "clock_synced": True,
        }
        name = rng.choice(("seq", "boot", "sent_ns", "to", "payload", "fingerprint", "type_name"))
        if name == "payload":
            what, fields[name] = cbor_item(rng)
        elif name in ("fingerprint", "type_name"):
            what, fields[name] = cbor_value(rng)
        else:
            value = pick_int(rng, wide=True)
            fields[name], what = value, _short(value)
        return f"last value; {name}: {what}", cbor2.dumps(fields)

    def _envelope(self, type_name: str, payload: bytes, jump: bool = False) -> tuple[str, bytes]:
        if jump:
            node, boot, seq, detail = self.streams.jump(type_name)
        else:
            (node, boot, seq), detail = self.streams.take(type_name), ""
        shape = Shape(node_id=node, type_name=type_name, fingerprint=_fingerprint(type_name),
                      first_seq=seq, timestamps=(NOW_NS,), payloads=(payload,), boot=boot)
        fields = fields_of(shape)
        if not jump and self.rng.random() < 0.2:
            detail = mutate(self.rng, fields)
        return detail, join(fields)

    def next(self) -> Input:
        """The next input."""
        rng = self.rng
        self.index += 1
        roll = rng.random()
        if roll < 0.25:
            detail, payload = self._heartbeat()
            type_name = "ganglion.control.Heartbeat"
        elif roll < 0.85:
            detail, payload = self._paxos_frame()
            type_name = "ganglion.control.Paxos"
        else:
            detail, payload = self._last_value()
            type_name = "ganglion.control.LastValue" if detail.startswith("last value") \
                else "ganglion.control.LastValueRequest"
        jump = rng.random() < 0.05
        how, data = self._envelope(type_name, payload, jump)
        kind = "control/" + type_name.rsplit(".", 1)[1].lower()
        return Input(self.index, kind, f"{detail}; {how}".strip("; "), CONTROL, (_cut(data),))


def _encode_frame(cls: type, fields: dict[str, object]) -> bytes:
    """A control message's payload: the project's encoder when the values allow it,
    else the same map by cbor2 (values the class refuses are the point)."""
    try:
        return encode_payload(cls(**fields))
    except Exception:
        return cbor2.dumps(fields)


def _short(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:#x}" if abs(value) < 2**80 else "huge-int"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- plugin bus --------------------------------------------------------------------------


class BusInputs:
    """zmq frames for the plugin bus: publishes to its XSUB, subscription events to its XPUB.

    Args:
        seed: the seed of every choice.
        names: valid type names a plugin may use (a small pool: every valid
            subscription makes the node join a group and propose the type).
    """

    def __init__(self, seed: int, names: Sequence[str]) -> None:
        self.rng = random.Random(seed)
        self.names = list(names)
        self.index = 0
        self._big: dict[int, bytes] = {}
        for size in (1401, 65_536, (1 << 20) - 64, (1 << 20) + 1):  # encoded now, not timed
            self._big[size] = cbor2.dumps({"value": 1, "blob": b"\xab" * size})

    def _name(self) -> tuple[str, bytes]:
        rng = self.rng
        if rng.random() < 0.7:
            name = rng.choice(self.names)
            return name, name.encode()
        raw = rng.choice((b"", b"a", b"a.", b".a", b"a.b\x00", b"\xff\xfe.x", b"a." + b"b" * 198,
                          b"a." + b"b" * 199, b"a." + b"b" * 4000, b"ganglion.control.Paxos"))
        return f"name {raw[:24]!r} ({len(raw)} B)", raw

    def _payload(self, name: str) -> tuple[str, bytes]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return "valid", encode_payload(Record(name, {"value": rng.randrange(100)})) \
                if name != PLAIN else plain_payload(rng)[1]
        if roll < 0.6:
            detail, value = cbor_value(rng)
            return f"value: {detail}", cbor2.dumps({"value": value})
        if roll < 0.9:
            detail, item = cbor_item(rng, room=rng.choice((1400, 65_536)))
            return detail, rng.choice((item, b"\xa1\x65value" + item))
        # a megabyte in one input in 50: each costs zmq a disconnect or the node a decode
        size = rng.choices((1401, 65_536, (1 << 20) - 64, (1 << 20) + 1), (4, 4, 1, 1))[0]
        big = self._big.get(size)
        if big is None:  # encoded once: a megabyte costs the sender milliseconds
            big = self._big[size] = cbor2.dumps({"value": 1, "blob": b"\xab" * size})
        return f"map with bytes({size})", big

    def next(self) -> Input:
        """The next input."""
        rng = self.rng
        self.index += 1
        if rng.random() < 0.15:
            return self._subscription()
        name_detail, raw_name = self._name()
        detail, payload = self._payload(name_detail if raw_name == name_detail.encode() else "x.y")
        frames: tuple[bytes, ...] = (raw_name, payload)
        roll = rng.random()
        if roll < 0.05:
            frames = (raw_name,)
            detail += "; one frame"
        elif roll < 0.1:
            frames = (raw_name, payload, rng.choice((b"", b"meta", payload)))
            detail += "; three frames"
        elif roll < 0.12:
            frames = (raw_name, payload) + (b"x",) * 100
            detail += "; 102 frames"
        elif roll < 0.14:
            frames = (b"", b"")
            detail = "two empty frames"
        return Input(self.index, "bus/publish", f"{name_detail}; {detail}", BUS_PUB, frames)

    def _subscription(self) -> Input:
        rng = self.rng
        detail, raw = self._name()
        roll = rng.random()
        if roll < 0.6:
            event = b"\x01" + raw
            what = "subscribe"
        elif roll < 0.9:
            event = b"\x00" + raw
            what = "unsubscribe"
        else:
            event = rng.choice((b"", b"\x02" + raw, b"\xff"))
            what = f"event {event[:1].hex() or 'empty'}"
        return Input(self.index, "bus/subscription", f"{what} {detail}", BUS_SUB, (event,))


# -- the findings of issue 21 --------------------------------------------------------------


def _heartbeat_payload(role: str = "member") -> bytes:
    return encode_payload(Heartbeat(name="forged", role=role, version="0.1.0",
                                    clock_synced=True))


def directed(path: str, own_id: bytes) -> list[Input]:
    """The inputs the issue's findings describe, sent first by every run of ``path``.

    Args:
        path: ``data``, ``control`` or ``bus``.
        own_id: the target node's id.

    Returns:
        The inputs, in order.
    """
    rng = random.Random(21)  # fixed: the same bytes every run
    out: list[Input] = []

    def add(kind: str, detail: str, target: str, *frames: bytes) -> None:
        out.append(Input(-len(out) - 1, kind, detail, target, frames))

    def datagram(node: bytes, type_name: str, seq: int, payload: bytes, boot: int = 1) -> bytes:
        return encode_datagram_for(node, type_name, seq, payload, boot)

    ids = [bytes([0xF0, i]) + rng.randbytes(6) for i in range(10)]
    if path == "data":
        # finding 1, data plane: seq 0 then jumps of 2**31 and 2**32 on one stream
        payload = encode_payload(Plain(value=1))
        for node in ids[:3]:
            for seq in (0, 2**31, 2**32, 2**32 + 2**31):
                add("finding1/data", f"seq {seq:#x}", PLAIN, datagram(node, PLAIN, seq, payload))
        # finding 8: a 60 KB datagram, far above the 1,400-byte budget
        big = encode_payload(Plain(value=2, blob=b"\x00" * 60_000))
        add("finding8/oversize", "60 KB datagram", PLAIN, datagram(ids[3], PLAIN, 0, big))
    elif path == "control":
        # finding 1: 20 forged heartbeats, seq 0 then 2**32, from 10 ids
        hb = _heartbeat_payload()
        for seq in (0, 2**32):
            for node in ids:
                add("finding1/heartbeat", f"seq {seq:#x}", CONTROL,
                    datagram(node, "ganglion.control.Heartbeat", seq, hb))
        # finding 5: fake members inflate the view (50 more)
        for i in range(50):
            node = bytes([0xF1, i]) + rng.randbytes(6)
            add("finding5/members", f"member {i}", CONTROL,
                datagram(node, "ganglion.control.Heartbeat", 0, hb))
        # finding 2: one forged Prepare with round 2**63-1 (several slots)
        for slot in range(4):
            tree = ["prepare", int.from_bytes(ids[0], "big"), slot, [2**63 - 1, 1]]
            body = encode_payload(PaxosFrame(body=cbor2.dumps(tree), to=None))
            add("finding2/prepare", f"slot {slot} round 2**63-1", CONTROL,
                datagram(ids[0], "ganglion.control.Paxos", 100 + slot, body))
        # finding 5: forged ProposeRequests, a CatchUpRequest burst, a forged Commit
        for i in range(200):
            tree = ["propose", int.from_bytes(ids[1], "big"), f"fuzz.Junk{i}"]
            body = encode_payload(PaxosFrame(body=cbor2.dumps(tree), to=None))
            add("finding5/propose", f"fuzz.Junk{i}", CONTROL,
                datagram(ids[1], "ganglion.control.Paxos", 200 + i, body))
        for i in range(20):
            body = encode_payload(PaxosFrame(
                body=cbor2.dumps(["catchup?", int.from_bytes(ids[2], "big")]), to=None))
            add("finding5/catchup", f"request {i}", CONTROL,
                datagram(ids[2], "ganglion.control.Paxos", 500 + i, body))
        for slot in range(3):
            tree = ["commit", int.from_bytes(ids[3], "big"), slot,
                    f"assign {PLAIN} 239.255.99.{slot + 1}".encode()]
            body = encode_payload(PaxosFrame(body=cbor2.dumps(tree), to=None))
            add("finding5/commit", f"slot {slot}", CONTROL,
                datagram(ids[3], "ganglion.control.Paxos", 600 + slot, body))
        # finding 3's values on the control plane: u64 above 2**63 in a last value
        lv = encode_payload(LastValue(to=int.from_bytes(own_id, "big"), type_name=PLAIN,
                                      fingerprint=_fingerprint(PLAIN), seq=2**64 - 1,
                                      boot=2**32 - 1, sent_ns=2**64 - 1,
                                      payload=encode_payload(Plain(value=3))))
        add("finding3/last-value", "seq and sent_ns 2**64-1", CONTROL,
            datagram(ids[4], "ganglion.control.LastValue", 0, lv))
    elif path == "bus":
        # finding 7: 1 MB frames that are no valid message, and one that is too large to send
        junk = b"\xa1\x65value\x5a" + (1 << 20).to_bytes(4, "big")  # claims more than it has
        add("finding7/bad-frame", "1 MB malformed payload", BUS_PUB, PLAIN.encode(),
            junk + b"\xee" * ((1 << 20) - 64))
        big = cbor2.dumps({"value": 1, "blob": b"\xab" * ((1 << 20) - 100)})
        add("finding7/too-large", "1 MB valid map (no datagram can carry it)", BUS_PUB,
            b"fuzz.Bulk", big)
    return out


def encode_datagram_for(node: bytes, type_name: str, seq: int, payload: bytes,
                        boot: int = 1) -> bytes:
    """One valid datagram carrying ``payload`` (the project's encoder, no size budget)."""
    shape = Shape(node_id=node, type_name=type_name, fingerprint=_fingerprint(type_name),
                  first_seq=seq, timestamps=(NOW_NS,), payloads=(payload,), boot=boot)
    return join(fields_of(shape))


__all__ = ["BUS_PUB", "BUS_SUB", "CONTROL", "DATA_TARGETS", "BusInputs", "ControlInputs",
           "DataInputs", "Input", "directed", "encode_datagram_for"]
