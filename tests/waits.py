"""Bounded waits shared by the test helpers (tests/node, tests/logger, tests/dashboard).

Every wait polls until a deadline and fails naming what it waited for, so a broken
node fails a test quickly and readably instead of hanging it. ``tests/`` is on
``sys.path`` in every test (pytest puts the root conftest's folder there), so the
helpers import this as ``waits``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop, failing it after ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0,
                interval: float = 0.02) -> None:
    """Poll ``condition`` (plain or returning an awaitable) every ``interval`` seconds
    until it is true.

    Raises:
        AssertionError: it was not within ``timeout`` seconds; names ``what``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
