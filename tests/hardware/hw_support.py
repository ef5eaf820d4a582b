"""Helpers for the hardware plugin tests: a recording node, bounded waits, fast runtimes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hardware.supervise import Runtime

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
_handed_out: set[int] = set()


class RecordingNode:
    """Stands in for a node: records what is published, in order."""

    def __init__(self, name: str = "pi") -> None:
        self.name = name
        self.node_id = bytes(8)
        self.published: list[Any] = []

    async def publish(self, msg: object) -> None:
        self.published.append(msg)

    def of(self, sensor: str, kind: type | None = None) -> list[Any]:
        """What was published for ``sensor`` (optionally of one type)."""
        return [m for m in self.published
                if m.sensor == sensor and (kind is None or isinstance(m, kind))]


def fast_runtime() -> Runtime:
    """Threads as in production, but backoff in hundredths of a second."""
    return Runtime(initial_backoff=0.01, max_backoff=0.05)


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run ``coro`` on a fresh loop with a deadline on the whole scenario."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def until(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def free_port_pair() -> int:
    """A UDP port P with P and P + 1 free on loopback (data and control port)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
            if port >= 65534 or port in _handed_out or port + 1 in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind((LOOPBACK, port + 1))
                except OSError:
                    continue
        _handed_out.update((port, port + 1))
        return port
    raise RuntimeError("no free UDP port pair after 200 tries")
