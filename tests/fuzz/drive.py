"""The driver: two real nodes on loopback, one receive path fuzzed, then a liveness check.

Theory of operation: :func:`run_path` starts a *target* node (a member, with a state
directory, and for the ``bus`` path its plugin bus on ipc sockets) and a *witness*
node (another member, so the target needs a real quorum), both on 127.0.0.1 with
fresh ports and mDNS off. The target subscribes to the two fuzz types and the
witness proves delivery works. Then, for ``settings.seconds``, inputs from
:mod:`.inputs` (the findings of issue 21 first, then the seeded generator) go to the
chosen path from the harness's own sockets: UDP to the data groups or the control
group with ``IP_MULTICAST_IF=127.0.0.1``, multicast loop on and TTL 0, or zmq frames
to the bus. Inputs go out in small chunks with a yield after each, so the nodes read
them as they come and the monitor (:class:`.watch.Watch`) can tell which chunk came
before a stall. A run stops early once a property is broken.

Afterwards the forged peers must time out, the target must agree a type it has never
seen with the witness and receive the witness's messages of it and of a fuzzed type,
and (bus path) a clean plugin's publish must reach the witness. Every wait has a
deadline; everything started is closed, however the run ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq

from ganglion.defaults import CONTROL_GROUP
from ganglion.node import Node
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, encode_payload

from .fuzztypes import PLAIN, RICH, Plain, Rich
from .inputs import BUS_PUB, CONTROL, BusInputs, ControlInputs, DataInputs, Input, directed
from .watch import Watch

LOOPBACK = "127.0.0.1"
#: What a sink answers: the input went out; the sink is full (send it again later);
#: the sink refuses it for good (too large for UDP).
SENT, RETRY, REFUSED = "sent", "retry", "refused"
PATHS = ("data", "control", "bus")
#: Environment settings (CLI options override them).
ENV_SECONDS = "GANGLION_FUZZ_SECONDS"
ENV_SEED = "GANGLION_FUZZ_SEED"
ENV_RSS_MB = "GANGLION_FUZZ_RSS_MB"
ENV_STALL_MS = "GANGLION_FUZZ_STALL_MS"
#: Seconds per path in ``make test`` (the whole fuzz suite stays under ~30 s).
DEFAULT_SECONDS = 2.5
#: Node timing: fast heartbeats so forged peers time out quickly after the run.
HEARTBEAT = 0.2
PEER_TIMEOUT = 2.0
#: Inputs per chunk, and the time one chunk may take to send, before yielding.
CHUNK = 16
CHUNK_SECONDS = 0.003
#: Seconds a run may take beyond its fuzzing time (start, liveness check, close).
RUN_GRACE = 45.0
#: Plugin types a bus input may name (each valid subscription joins a group).
BUS_NAMES = (PLAIN, "fuzz.Bus1", "fuzz.Bus2", "fuzz.Bus3")


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run of one path.

    Attributes:
        path: ``data``, ``control`` or ``bus``.
        seconds: how long to send (the directed inputs always go out whole).
        seed: the seed of the generator; the same seed sends the same inputs.
        max_inputs: stop after this many generated inputs (replays a report's count).
        stall_ms: longest stall allowed.
        rss_mb: largest RSS growth allowed.
        fail_fast: stop sending at the first broken property.
        directed: send the findings' inputs first.
        chunk: inputs sent between two yields to the loop; 1 pins a violation on
            exactly one input (slower).
    """

    path: str
    seconds: float = DEFAULT_SECONDS
    seed: int = 0
    max_inputs: int = 5_000_000
    stall_ms: float = 100.0
    rss_mb: float = 100.0
    fail_fast: bool = True
    directed: bool = True
    chunk: int = CHUNK

    @classmethod
    def from_env(cls, path: str, **overrides: Any) -> Settings:
        """Settings from ``GANGLION_FUZZ_*`` (a random seed when none is set).

        Raises:
            ValueError: a variable does not parse as a number.
        """
        env = os.environ
        values: dict[str, Any] = {
            "path": path,
            "seconds": float(env.get(ENV_SECONDS, DEFAULT_SECONDS)),
            "seed": int(env[ENV_SEED]) if env.get(ENV_SEED) else random.randrange(2**32),
            "stall_ms": float(env.get(ENV_STALL_MS, 100.0)),
            "rss_mb": float(env.get(ENV_RSS_MB, 100.0)),
        }
        values.update(overrides)
        return cls(**values)

    def replay_hint(self, sent: int) -> str:
        """The command line that sends the same inputs again."""
        return (f"python -m tests.fuzz --path {self.path} --seed {self.seed} "
                f"--max-inputs {sent} --seconds {max(self.seconds, 60):g} --chunk 1")


@dataclasses.dataclass
class Outcome:
    """What one run found.

    Attributes:
        settings: how it ran.
        sent: generated inputs sent (not counting the directed ones).
        kinds: inputs sent per kind.
        send_errors: inputs the harness's own socket refused (too large for UDP).
        retries: times a full socket made the harness pause and send again.
        violations: the broken properties, each with the inputs before it.
        summary: the measured numbers.
        stats: what the target counted (proves the inputs reached it).
    """

    settings: Settings
    sent: int = 0
    kinds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    send_errors: int = 0
    retries: int = 0
    violations: list[str] = dataclasses.field(default_factory=list)
    summary: str = ""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no property broke."""
        return not self.violations

    def report(self) -> str:
        """A readable report: seed, numbers, counts and every violation."""
        s = self.settings
        lines = [f"fuzz path={s.path} seed={s.seed} seconds={s.seconds:g} "
                 f"inputs={self.sent} (+directed) send_errors={self.send_errors} "
                 f"retries={self.retries}",
                 f"  {self.summary}",
                 f"  target counted: {self.stats}",
                 "  kinds: " + ", ".join(f"{k}={n}" for k, n in sorted(self.kinds.items()))]
        if self.violations:
            lines.append(f"  replay: {s.replay_hint(self.sent)}")
            lines += [f"  VIOLATION: {v}" for v in self.violations]
        return "\n".join(lines)


def multicast_problem() -> str | None:
    """Why multicast over loopback does not work here, or None when it does.

    Sends one datagram to a group in 239.255.128.0/17 out of 127.0.0.1 (TTL 0) and
    waits up to two seconds for it.
    """
    port = free_port_pair()
    group = f"239.255.{random.randrange(128, 255)}.{random.randrange(1, 250)}"
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = _UdpSink()
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.bind(("", port))
        mreq = socket.inet_aton(group) + socket.inet_aton(LOOPBACK)
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        rx.settimeout(2.0)
        tx.send(b"probe", (group, port))
        if rx.recv(64) != b"probe":
            return "multicast over loopback delivered the wrong datagram"
    except OSError as exc:
        return f"multicast over loopback does not work here ({exc}); is lo up?"
    finally:
        rx.close()
        tx.close()
    return None


def free_port_pair() -> int:
    """A UDP port P with P + 1 free too (data and control ports).

    Raises:
        RuntimeError: none found in 200 tries.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind((LOOPBACK, 0))
            port = int(a.getsockname()[1])
            if port >= 65534:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind((LOOPBACK, port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free UDP port pair after 200 tries")


async def until(cond: Callable[[], bool], what: str, timeout: float,
                step: Callable[[], None] | None = None, interval: float = 0.05) -> None:
    """Poll ``cond`` (calling ``step`` before each poll) until it holds.

    Raises:
        AssertionError: it did not hold within ``timeout`` seconds; names ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        if cond():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


class _Recent:
    """The inputs sent in the last chunks, for reports.

    With a ``progress`` file they are also written there after every chunk: if the
    node freezes inside a C call (nothing in this process runs again), the
    supervising process still knows what was sent last.
    """

    def __init__(self, progress: Path | None = None) -> None:
        self.chunks: collections.deque[list[str]] = collections.deque(maxlen=2)
        self._fd = None if progress is None else \
            os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def flush(self) -> None:
        """Write the recent inputs to the progress file (if any)."""
        if self._fd is not None:
            data = ("\n".join(self.lines()) + "\n").encode()
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def new_chunk(self) -> None:
        self.chunks.append([])

    def add(self, inp: Input) -> None:
        if not self.chunks:
            self.new_chunk()
        self.chunks[-1].append(inp.describe()[:300])

    def lines(self) -> list[str]:
        return [line for chunk in self.chunks for line in chunk][-CHUNK * 2:]


class _UdpSink:
    """The harness's own multicast sender: loopback only, TTL 0, loop on."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.setblocking(False)

    def send(self, data: bytes, address: tuple[str, int]) -> str:
        try:
            self.sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            return RETRY  # the socket buffer is full: send it again after a pause
        except OSError:  # too large for UDP: the harness's problem, counted
            return REFUSED
        return SENT

    def close(self) -> None:
        self.sock.close()


class _BusSink:
    """A misbehaving plugin: an XPUB on the bus's publish socket, an XSUB on its
    subscribe socket (which lets it send any subscription event)."""

    def __init__(self, publish: str, subscribe: str) -> None:
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.XPUB)
        self.sub = self.ctx.socket(zmq.XSUB)
        for sock in (self.pub, self.sub):
            sock.linger = 0
            sock.sndhwm = 64  # the harness's own queue must not hold a gigabyte of frames
        self.pub.setsockopt(zmq.XPUB_NODROP, 1)
        self.pub.connect(publish)
        self.sub.connect(subscribe)

    async def ready(self, timeout: float = 5.0) -> None:
        """Wait for the node's subscription (zmq drops what a PUB sends before it)."""

        def heard() -> bool:
            with contextlib.suppress(zmq.Again):
                return self.pub.recv(zmq.DONTWAIT) == b"\x01"
            return False

        await until(heard, "the plugin bus to subscribe to the harness's XPUB", timeout)

    def send(self, inp: Input) -> str:
        sock = self.pub if inp.target == BUS_PUB else self.sub
        try:
            sock.send_multipart(list(inp.frames), flags=zmq.DONTWAIT)
        except zmq.Again:
            return RETRY  # the queue to the node is full: send it again after a pause
        except zmq.ZMQError:
            return REFUSED
        return SENT

    def close(self) -> None:
        self.pub.close(0)
        self.sub.close(0)
        self.ctx.term()


def _generator(settings: Settings, target: Node,
               witness: Node) -> DataInputs | ControlInputs | BusInputs:
    if settings.path == "data":
        return DataInputs(settings.seed, target.node_id)
    if settings.path == "control":
        return ControlInputs(settings.seed, target.node_id, [witness.node_id])
    return BusInputs(settings.seed, BUS_NAMES)


def _forever(gen: DataInputs | ControlInputs | BusInputs) -> Iterator[Input]:
    while True:
        yield gen.next()


def _make_node(workdir: Path, port: int, name: str, **kwargs: Any) -> Node:
    return Node(name=name, interface=LOOPBACK, port=port, control_port=port + 1,
                control_group=CONTROL_GROUP, discovery=False, heartbeat_seconds=HEARTBEAT, peer_timeout=PEER_TIMEOUT,
                state_dir=workdir / name, **kwargs)


async def run_path(settings: Settings, workdir: Path, progress: Path | None = None) -> Outcome:
    """Fuzz one receive path of a real node and check it is still alive afterwards.

    Args:
        settings: the path, time, seed and limits.
        workdir: an empty directory for the nodes' state.
        progress: a file the last inputs are written to after each chunk; the file
            with its suffix changed to ``.alive`` is touched while the loop turns.

    Returns:
        The :class:`Outcome`; ``outcome.ok`` is the verdict.
    """
    if settings.path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {settings.path!r}")
    outcome = Outcome(settings)
    recent = _Recent(progress)
    watch = Watch(stall_limit=settings.stall_ms / 1000, rss_limit=int(settings.rss_mb * 2**20),
                  context=recent.lines,
                  alive=None if progress is None else progress.with_suffix(".alive"))
    port = free_port_pair()
    bus = workdir / "bus" if settings.path == "bus" else False
    target = _make_node(workdir, port, "target", bus_ipc=bus)
    witness = _make_node(workdir, port, "witness")
    watch.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(target)
            await stack.enter_async_context(witness)
            await _fuzz_and_check(settings, outcome, watch, recent, target, witness, stack)
    except AssertionError as exc:
        outcome.violations.append(f"liveness: {exc}" + _recent(recent))
    finally:
        await watch.stop()
        recent.close()
    outcome.violations = watch.violations() + outcome.violations
    outcome.summary = watch.summary()
    return outcome


def _recent(recent: _Recent) -> str:
    lines = recent.lines()[-4:]
    return "" if not lines else "\n  last inputs sent:\n    " + "\n    ".join(lines)


async def _fuzz_and_check(settings: Settings, outcome: Outcome, watch: Watch, recent: _Recent,
                          target: Node, witness: Node, stack: contextlib.AsyncExitStack) -> None:
    await until(lambda: {p.id for p in target.peers()} == {witness.node_id}
                and {p.id for p in witness.peers()} == {target.node_id},
                "the two nodes to hear each other", 10.0)
    seen: dict[str, list[tuple[bytes, Any]]] = {PLAIN: [], RICH: []}

    def collector(name: str) -> Callable[[Any, MessageInfo], None]:
        def on(msg: Any, info: MessageInfo) -> None:
            if len(seen[name]) < 100_000:
                seen[name].append((info.sender, msg))
        return on

    target.subscribe(Plain, collector(PLAIN))
    target.subscribe(Rich, collector(RICH))
    for name in (PLAIN, RICH):
        await target.wait_for_group(name, timeout=10.0)
    await _delivered(witness, seen[PLAIN], PLAIN, "before fuzzing")

    sink_udp: _UdpSink | None = None
    sink_bus: _BusSink | None = None
    if settings.path == "bus":
        publish, subscribe = target.bus_endpoints()[:2]
        sink_bus = _BusSink(publish, subscribe)
        stack.callback(sink_bus.close)
        await sink_bus.ready()
    else:
        sink_udp = _UdpSink()
        stack.callback(sink_udp.close)
    control_address = (CONTROL_GROUP, target.port + 1)

    def send(inp: Input) -> str:
        if sink_bus is not None:
            return sink_bus.send(inp)
        assert sink_udp is not None
        if inp.target == CONTROL:
            return sink_udp.send(inp.frames[0], control_address)
        group = target.types().get(inp.target)
        return REFUSED if group is None else sink_udp.send(inp.frames[0], (group, target.port))

    # The generator encodes its big inputs once when made (a second of CPU for the
    # data path): in a thread, so the loop keeps running and no stall is measured.
    stream = _forever(await asyncio.to_thread(_generator, settings, target, witness))
    watch.rebaseline()  # memory is measured from here: both nodes running and warm
    first = directed(settings.path, target.node_id) if settings.directed else []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.seconds
    queue: Iterator[Input] = iter(first)
    held: Input | None = None  # an input the sink could not take yet
    while True:
        if settings.fail_fast and watch.broken():
            break
        if loop.time() >= deadline and next_is_generated(queue):
            break
        if outcome.sent >= settings.max_inputs:
            break
        recent.new_chunk()
        started = time.perf_counter()
        pause = 0.001
        for _ in range(settings.chunk):
            inp, held = held, None
            if inp is None:
                inp = next(queue, None)
            if inp is None:
                queue = _Counting(stream, outcome)
                inp = next(queue)
            verdict = send(inp)
            if verdict == RETRY:
                held, pause = inp, 0.010  # let the node catch up, then send it again
                outcome.retries += 1
                break
            recent.add(inp)
            outcome.kinds[inp.kind] += 1
            outcome.send_errors += verdict == REFUSED
            if time.perf_counter() - started > CHUNK_SECONDS or outcome.sent >= settings.max_inputs:
                break
        recent.flush()
        await asyncio.sleep(pause)  # the nodes read what was sent
    await asyncio.sleep(0.2)  # the last chunks are read and answered
    outcome.stats = _counted(target, settings.path)
    if settings.fail_fast and watch.broken():
        return  # the report is the violation; liveness would only add noise
    _check_reached(outcome)
    recent.new_chunk()
    # -- liveness: the forged peers go, a new type is agreed, messages arrive --------
    await until(lambda: {p.id for p in target.peers()} == {witness.node_id}
                and {p.id for p in witness.peers()} == {target.node_id},
                "forged peers to time out (only the witness left)", PEER_TIMEOUT * 2 + 5.0)
    fresh = f"fuzz.After{settings.path.capitalize()}{settings.seed % 100_000}"
    got: list[Any] = []
    target.subscribe(fresh, lambda msg, info: got.append((info.sender, msg)))
    try:
        await target.wait_for_group(fresh, timeout=10.0)
    except TimeoutError:
        raise AssertionError(f"the target did not agree the new type {fresh} within 10 s "
                             f"(control counters: {target.stats().control})") from None
    count = iter(range(1_000_000))
    await until(lambda: any(sender == witness.node_id for sender, _ in got),
                f"the witness's {fresh} to reach the target", 10.0,
                step=lambda: witness.publish_nowait(Record(fresh, {"value": next(count)})),
                interval=0.1)
    await _delivered(witness, seen[PLAIN], PLAIN, "after fuzzing")
    if sink_bus is not None:
        await _plugin_round_trip(target, witness, fresh + "Bus")


class _Counting(Iterator[Input]):
    """The generated inputs, counted as they are taken."""

    def __init__(self, stream: Iterator[Input], outcome: Outcome) -> None:
        self.stream = stream
        self.outcome = outcome

    def __next__(self) -> Input:
        self.outcome.sent += 1
        return next(self.stream)


def next_is_generated(queue: Iterator[Input]) -> bool:
    """True once the directed inputs are all sent (the time bound applies then)."""
    return isinstance(queue, _Counting)


async def _delivered(witness: Node, seen: list[tuple[bytes, Any]], name: str, when: str) -> None:
    start = len(seen)
    count = iter(range(1_000_000))

    def arrived() -> bool:
        return any(sender == witness.node_id for sender, _ in seen[start:])

    await until(arrived, f"the witness's {name} to reach the target {when}", 10.0,
                step=lambda: witness.publish_nowait(Plain(value=next(count))), interval=0.1)


async def _plugin_round_trip(target: Node, witness: Node, name: str) -> None:
    """A clean plugin publishes through the fuzzed bus; the witness must receive it."""
    got: list[Any] = []
    witness.subscribe(name, lambda msg, info: got.append(msg))
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.linger = 0
    try:
        pub.connect(target.bus_endpoints()[0])
        payload = encode_payload(Record(name, {"value": 1}))

        def publish() -> None:
            with contextlib.suppress(zmq.Again):
                pub.recv(zmq.DONTWAIT)  # the node's subscription (or noise)
            with contextlib.suppress(zmq.ZMQError):
                pub.send_multipart([name.encode(), payload], flags=zmq.DONTWAIT)

        await until(lambda: bool(got), f"a clean plugin's {name} to reach the witness", 10.0,
                    step=publish, interval=0.1)
    finally:
        pub.close(0)
        ctx.term()


def _counted(target: Node, path: str) -> dict[str, Any]:
    stats = target.stats()
    out: dict[str, Any] = {"decode_errors": stats.decode_errors, "bad_mac": stats.bad_mac,
                           "received": stats.endpoint.received, "peers": stats.peers,
                           "types": len(target.types())}
    if path == "control":
        out.update({k: v for k, v in stats.control.items() if isinstance(v, int)})
    bus = getattr(target, "_bus", None)
    if path == "bus" and bus is not None:
        out.update({f"bus_{k}": v for k, v in dataclasses.asdict(bus.stats()).items()
                    if isinstance(v, int)})
    return out


def _check_reached(outcome: Outcome) -> None:
    """The inputs must have reached the node: a harness that sends nowhere proves nothing."""
    s = outcome.stats
    if outcome.settings.path == "bus":
        reached = s.get("bus_received", 0) > 0
    elif outcome.settings.path == "control":
        reached = s.get("paxos_received", 0) + s.get("paxos_malformed", 0) > 0 \
            or s["decode_errors"] > 0
    else:
        reached = s["decode_errors"] > 0 and s["received"] > 0
    if not reached:
        outcome.violations.append(f"the inputs never reached the target (counters: {s})")


def run(settings: Settings, workdir: Path, progress: Path | None = None) -> Outcome:
    """:func:`run_path` on a fresh event loop, with an overall deadline.

    The deadline only helps while the loop still turns; a node frozen inside one call
    is caught by :mod:`.supervise`, which runs this in a child process.

    Raises:
        TimeoutError: the run took far longer than it should.
    """

    async def bounded() -> Outcome:
        return await asyncio.wait_for(run_path(settings, workdir, progress),
                                      settings.seconds + RUN_GRACE)

    return asyncio.run(bounded())


__all__ = ["BUS_NAMES", "DEFAULT_SECONDS", "ENV_SECONDS", "ENV_SEED", "PATHS", "Outcome",
           "Settings", "free_port_pair", "multicast_problem", "run", "run_path"]
