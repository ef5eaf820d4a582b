"""Helpers for the hardware plugin tests: a recording node, bounded waits, fast runtimes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from port_pairs import free_port_pair as free_port_pair  # re-exported for the tests here

from hardware.supervise import Runtime

__all__ = ["free_port_pair"]  # re-exported for the hardware tests

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


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


