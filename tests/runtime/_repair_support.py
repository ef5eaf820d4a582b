"""Real nodes on loopback and a hole made without loss, shared by the repair tests.

A hole is made the way a publisher makes one without any loss: while it believes
nobody wants the type (its interest switched off for a moment) its messages are
numbered and kept in its history but not sent, so a subscriber sees a jump.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from waits import until

from ganglion.node import Node

LO = "127.0.0.1"


def make_node(tmp_path: object, port: int, name: str, **kwargs: object) -> Node:
    """A node on loopback (data ``port``, control ``port + 1``), heartbeats every 0.2 s."""
    options: dict[str, object] = {"heartbeat_seconds": 0.2, **kwargs}
    return Node(name=name, interface=LO, port=port, control_port=port + 1,
                state_dir=f"{tmp_path}/{name}", discovery=False,
                **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[None]:
    """Start ``nodes`` in order; stop them all on the way out (also on failure)."""
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        yield


async def ready_to_send(publisher: Node, type_name: str, *others: Node,
                        timeout: float = 10.0) -> None:
    """Wait until every node knows the type's group and ``publisher`` sends it."""
    await until(lambda: all(type_name in n.types() for n in (publisher, *others)),
                "the type's group", timeout=timeout)
    await until(lambda: publisher._running()[0].remote_interest().get(type_name, True),
                "interest")
    await asyncio.sleep(0.5)  # the subscribers hear the publisher's state


async def publish_unsent(publisher: Node, type_name: str, *messages: object) -> None:
    """Publish ``messages`` numbered and kept but not sent: a hole without loss."""
    endpoint = publisher._running()[0]
    endpoint.set_remote_interest(type_name, False)
    try:
        for msg in messages:
            await publisher.publish(msg)
    finally:
        endpoint.set_remote_interest(type_name, True)
