"""Short-lived commands join the network as observers: they learn the agreed map by
catch-up and never count in a quorum (so a burst of CLI runs cannot disturb it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ganglion.cli._options import NetworkSettings
from ganglion.node import Node


def control_port_for(port: int) -> int:
    """The control port that goes with a data port: the next one (47800 -> 47801)."""
    return port + 1 if port < 65535 else port - 1


@asynccontextmanager
async def observer(settings: NetworkSettings, *, name: str = "ganglion-cli",
                   repair: bool = True) -> AsyncIterator[Node]:
    """An observer node on the chosen interface, closed on exit.

    ``repair=False``: it asks nobody to repair what it misses (``ganglion log --no-repair``).
    """
    node = Node(name=name, interface=settings.interface, port=settings.port,
                control_port=control_port_for(settings.port), key=settings.key,
                ttl=settings.ttl, observer=True, discovery=False, repair=repair)
    await node.start()
    try:
        yield node
    finally:
        await node.close()


async def settle(node: Node, timeout: float, *, until: Callable[[], bool] | None = None) -> None:
    """Wait until the map stops growing after a peer was heard, or ``timeout`` passes.

    Catch-up delivers the whole map in one or a few replies, so "a peer is known and
    the map has not changed for three heartbeats" means the observer has caught up.
    ``until``, when given, ends the wait as soon as it returns True (the one type a
    command needs is known).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet_needed = 0.6
    last, quiet_since = -1, loop.time()
    while loop.time() < deadline:
        if until is not None and until():
            return
        count = len(node.types())
        if count != last:
            last, quiet_since = count, loop.time()
        elif node.peers() and count and loop.time() - quiet_since >= quiet_needed:
            return
        await asyncio.sleep(0.05)


async def hint_unknown(node: Node, names: tuple[str, ...], *, command: str,
                       patterns: bool = False, timeout: float = 3.0) -> None:
    """Once the map is learned, print one line to stderr per name nobody knows.

    For ``tail`` and ``log``, which keep waiting: the type may appear later, but a
    typo never will, so the line says which known names are close (if any).

    Args:
        node: the command's observer.
        names: type names (or, with ``patterns``, glob patterns) the user gave.
        command: the command's name, for the line.
        patterns: ``names`` are glob patterns (``log --type``).
        timeout: seconds to wait for the map first.
    """
    import fnmatch

    import click

    from ganglion.cli._suggest import hint_for_name, hint_for_pattern, known_names

    def matched(name: str) -> bool:
        agreed = node.types()
        return any(fnmatch.fnmatchcase(t, name) for t in agreed) if patterns else name in agreed

    await settle(node, timeout, until=lambda: all(matched(n) for n in names))
    known = known_names(node.types())
    for name in names:
        if matched(name) or (not patterns and name in known):
            continue
        hint = (hint_for_pattern if patterns else hint_for_name)(name, known)
        what = f"--type {name} matches no agreed type" if patterns else f"{name} is not an agreed type"
        click.echo(f"{command}: {what} yet" + (f"; {hint}" if hint else "") + "; waiting for it",
                   err=True)
