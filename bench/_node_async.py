"""The benchmark's worker roles that run a :class:`ganglion.Node` on asyncio.

Theory of operation: each ``run_*`` coroutine takes the role's JSON config and
the queue of stdin commands, starts one real node on 127.0.0.1 (mDNS off, a state
directory of the orchestrator's choosing), reports on stdout with
:func:`_node_common.emit`, and returns the process exit status. Timestamps are
taken in the node's own callbacks with ``time.monotonic_ns()``, so what is
measured is what a plugin would see. See ``bench/README.md`` for the definitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from _node_common import LOOPBACK, MEASURED, WARMUP, NodeReading, Tally, emit

from ganglion import Node
from ganglion.membership import MEMBER
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record

READING_TYPE = "bench.NodeReading"


def _node(cfg: dict[str, Any], *, observer: bool = False) -> Node:
    port = int(cfg["port"])
    # "bus": also serve the plugin bus on ipc in the state directory (internal <-> external)
    return Node(name=str(cfg.get("name", "bench")), interface=LOOPBACK, port=port,
                control_port=port + 1, state_dir=None if observer else cfg["state_dir"],
                discovery=False, observer=observer, bus_ipc=bool(cfg.get("bus", False)))


def _members(node: Node) -> int:
    return sum(1 for p in node.peers() if p.role == MEMBER)


async def _next_command(commands: asyncio.Queue[str], timeout: float) -> str | None:
    try:
        return await asyncio.wait_for(commands.get(), timeout)
    except TimeoutError:
        return None


async def _until_quit(commands: asyncio.Queue[str]) -> None:
    while await commands.get() != "quit":
        pass


async def run_member(cfg: dict[str, Any], commands: asyncio.Queue[str]) -> int:
    """A cluster member for the agreement measurement.

    Emits ``ready`` once it hears ``peers`` other members; then on ``expect NAME``
    waits for NAME's group and emits ``learned`` (with ``t_ns``); on ``publish
    NAME`` publishes the first message of NAME and emits ``published`` (``t0_ns``
    taken just before the publish).
    """
    async with _node(cfg) as node:
        want = int(cfg["peers"])
        tasks: set[asyncio.Task[None]] = set()

        async def learn(name: str) -> None:
            try:
                await node.wait_for_group(name, float(cfg.get("agree_timeout_s", 10.0)))
                emit("learned", type=name, t_ns=time.monotonic_ns())
            except TimeoutError:
                emit("learned", type=name, t_ns=None)

        ready = False
        while True:
            if not ready and _members(node) >= want:
                ready = True
                emit("ready", peers=_members(node))
            command = await _next_command(commands, 0.02)
            if command is None:
                continue
            verb, _, arg = command.partition(" ")
            if verb == "quit":
                break
            if verb == "expect":
                task = asyncio.get_running_loop().create_task(learn(arg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                emit("expecting", type=arg)
            elif verb == "publish":
                t0 = time.monotonic_ns()
                node.publish_nowait(Record(arg, {"v": 1}))
                emit("published", type=arg, t0_ns=t0)
            elif verb == "peers":
                emit("peers", peers=_members(node))
        for task in list(tasks):
            task.cancel()
    return 0


async def run_receiver(cfg: dict[str, Any], commands: asyncio.Queue[str]) -> int:
    """An already running node subscribed to ``type`` (the start-up measurement).

    Emits ``ready`` once the type's group is agreed, then ``reading`` with ``t_ns``
    (taken in the subscription callback) for the first message of every sender.
    """
    import hardware.readings  # noqa: F401  (registers sensors.Temperature)

    type_name = str(cfg["type"])
    seen: set[bytes] = set()

    def on_reading(_msg: object, info: MessageInfo) -> None:
        now = time.monotonic_ns()
        if info.sender not in seen and not info.last_value:
            seen.add(info.sender)
            emit("reading", sender=info.sender.hex(), t_ns=now, seq=info.seq)

    async with _node(cfg) as node:
        node.subscribe(type_name, callback=on_reading)
        await node.wait_for_group(type_name, 10.0)
        emit("ready", group=node.types()[type_name])
        await _until_quit(commands)
    return 0


async def run_node_sub(cfg: dict[str, Any], commands: asyncio.Queue[str]) -> int:
    """Node B: subscribes to NodeReading with a callback and tallies the measured phase.

    Emits ``ready`` (group agreed), ``warm`` (first warm-up message), then ``result``
    once every message arrived or none came for ``idle_s`` after the first.
    """
    tally = Tally(int(cfg["count"]), keep_latency=cfg["mode"] == "paced")
    warm = False

    def on_reading(msg: NodeReading, _info: MessageInfo) -> None:
        nonlocal warm
        if msg.phase == MEASURED:
            tally.add(msg.seq, msg.mono_ns, time.monotonic_ns())
        elif not warm:
            warm = True
            emit("warm")

    idle_ns = int(float(cfg.get("idle_s", 0.5)) * 1e9)
    async with _node(cfg) as node:
        node.subscribe(NodeReading, callback=on_reading)
        emit("ready", group=await node.wait_for_group(READING_TYPE, 10.0))
        while not tally.complete:
            if await _next_command(commands, 0.05) == "quit":
                break
            if tally.received and time.monotonic_ns() - tally.last_ns > idle_ns:
                break
        stats = node.stats().types.get(READING_TYPE)
        emit("result", **tally.result(), lost=stats.lost if stats else None)
    return 0


async def run_node_pub(cfg: dict[str, Any], commands: asyncio.Queue[str]) -> int:
    """Node A: publishes warm-up readings until ``go``, then the measured blast or paced run.

    Emits ``sent`` with the count and the send loop's duration, then waits for ``quit``.
    """
    count, mode = int(cfg["count"]), str(cfg["mode"])
    yield_every, rate = int(cfg.get("yield_every", 32)), float(cfg.get("rate", 1000.0))
    async with _node(cfg) as node:
        publish = node.publish_nowait
        while True:
            publish(NodeReading(0, WARMUP, time.monotonic_ns(), 0.0, "warm-up"))
            command = await _next_command(commands, 0.02)
            if command == "quit":
                return 0
            if command == "go":
                break
        start = time.monotonic()
        for seq in range(count):
            if mode == "paced":
                delay = start + seq / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            publish(NodeReading(seq, MEASURED, time.monotonic_ns(), 21.5, "bench/probe"))
            if mode == "blast" and seq % yield_every == yield_every - 1:
                await asyncio.sleep(0)
        send_seconds = time.monotonic() - start
        await asyncio.sleep(0.2)  # let the endpoint flush its last batch
        emit("sent", sent=count, send_seconds=send_seconds, dropped=node.stats().dropped)
        await _until_quit(commands)
    return 0


async def run_watch(cfg: dict[str, Any], commands: asyncio.Queue[str]) -> int:
    """An observer that emits ``types`` with the size of the agreed map whenever it changes."""
    async with _node(cfg, observer=True) as node:
        last = -1
        while True:
            count = len(node.types())
            if count != last:
                last = count
                emit("types", count=count)
            if await _next_command(commands, 0.1) == "quit":
                return 0


async def run_inprocess_loop(count: int, port: int, state_dir: str, yield_every: int) -> float:
    """Publisher and callback subscriber in one started node; return delivered msg/s.

    Used when ``bench/inprocess.py`` is not there: ``count`` publishes of
    :class:`NodeReading` after the type's group is agreed, yielding every
    ``yield_every``; the rate is deliveries over first publish to last delivery.
    """
    received, last_ns = 0, 0

    def on_reading(_msg: NodeReading, _info: MessageInfo) -> None:
        nonlocal received, last_ns
        received += 1
        last_ns = time.perf_counter_ns()

    cfg = {"port": port, "state_dir": state_dir, "name": "bench-inprocess"}
    async with _node(cfg) as node:
        node.subscribe(NodeReading, callback=on_reading)
        node.publish_nowait(NodeReading(0, WARMUP, 0, 0.0, "warm-up"))
        await node.wait_for_group(READING_TYPE, 10.0)
        received = 0
        publish = node.publish_nowait
        start = time.perf_counter_ns()
        for seq in range(count):
            publish(NodeReading(seq, MEASURED, 0, 21.5, "probe-1"))
            if seq % yield_every == yield_every - 1:
                await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while received < count:
                    await asyncio.sleep(0.001)
    if received != count:
        raise RuntimeError(f"delivered {received} of {count}")
    return count / ((last_ns - start) / 1e9)
