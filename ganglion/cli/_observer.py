"""Short-lived commands join the network as observers: they learn the agreed map by
catch-up and never count in a quorum (so a burst of CLI runs cannot disturb it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ganglion.cli._options import NetworkSettings
from ganglion.node import Node


def control_port_for(port: int) -> int:
    """The control port that goes with a data port: the next one (47800 -> 47801)."""
    return port + 1 if port < 65535 else port - 1


@asynccontextmanager
async def observer(settings: NetworkSettings, *, name: str = "ganglion-cli") -> AsyncIterator[Node]:
    """An observer node on the chosen interface, closed on exit."""
    node = Node(name=name, interface=settings.interface, port=settings.port,
                control_port=control_port_for(settings.port), key=settings.key,
                ttl=settings.ttl, observer=True, discovery=False)
    await node.start()
    try:
        yield node
    finally:
        await node.close()


async def settle(node: Node, timeout: float) -> None:
    """Wait until the map stops growing after a peer was heard, or ``timeout`` passes.

    Catch-up delivers the whole map in one or a few replies, so "a peer is known and
    the map has not changed for three heartbeats" means the observer has caught up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet_needed = 0.6
    last, quiet_since = -1, loop.time()
    while loop.time() < deadline:
        count = len(node.types())
        if count != last:
            last, quiet_since = count, loop.time()
        elif node.peers() and count and loop.time() - quiet_since >= quiet_needed:
            return
        await asyncio.sleep(0.05)
