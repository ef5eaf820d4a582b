"""Running an asyncio main under a CLI command with a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import click

from ganglion.errors import ConfigError
from ganglion.eventloop import loop_factory, run
from ganglion.runtime._lifecycle import wait_or_stop as wait_or_stop  # for the commands


def run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    """Run ``main(stop)`` on a fresh event loop; SIGINT/SIGTERM set ``stop`` instead of killing.

    The loop is uvloop where it is installed (:mod:`ganglion.eventloop`).

    Args:
        main: a coroutine function that returns when ``stop`` is set (or earlier)
            and gives the process exit code.

    Returns:
        The exit code ``main`` returned.
    """

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        loop_factory()  # a bad GANGLION_EVENT_LOOP is the user's to fix: say so, no traceback
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return run(runner())
