"""The event loop ganglion's programs run on: uvloop where it is installed, else asyncio's.

Theory of operation: every ``ganglion`` command, and any program that starts with
:func:`run` instead of :func:`asyncio.run`, gets its loop from here. uvloop (the
``fast`` extra: ``pip install 'ganglion-net[fast]'``) runs the loop itself in C
(libuv), which is where a message spends much of its time at light traffic.
Measured on loopback at 1,000 msg/s, from a datagram's send to a ``loop.add_reader``
callback reading it: median 61 us on asyncio's loop, 43 us on uvloop, 39 us for a
blocking ``recv``; and 64-byte blasts through an :class:`~ganglion.Endpoint` deliver
about 8 % more. Everything ganglion does works on either loop; the test suite runs
the commands on the chosen one and the library tests on asyncio's.

``GANGLION_EVENT_LOOP`` picks: ``auto`` (the default: uvloop if it imports, else
asyncio), ``uvloop`` (an error if it is missing), or ``asyncio``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ganglion.errors import ConfigError

__all__ = ["ENV", "loop_factory", "loop_name", "run"]

#: The environment variable that picks the loop.
ENV = "GANGLION_EVENT_LOOP"
_CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


def _choice(environ: dict[str, str] | os._Environ[str]) -> str:
    value = environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in _CHOICES:
        raise ConfigError(f"{ENV}={environ.get(ENV)!r} is not one of {', '.join(_CHOICES)}; "
                          f"unset it to use uvloop where it is installed")
    return value


def loop_factory(environ: dict[str, str] | os._Environ[str] = os.environ
                 ) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop; None means asyncio's default.

    Raises:
        ConfigError: ``GANGLION_EVENT_LOOP`` has another value, or asks for uvloop
            where it is not installed.
    """
    choice = _choice(environ)
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigError(f"{ENV}=uvloop but uvloop is not installed: "
                              f"pip install 'ganglion-net[fast]', or unset {ENV}") from exc
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """``"uvloop"`` or ``"asyncio"``: the loop :func:`run` would use now."""
    return "asyncio" if loop_factory(environ) is None else "uvloop"


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a fresh loop of the chosen kind, like :func:`asyncio.run`.

    Raises:
        ConfigError: as :func:`loop_factory`.
    """
    try:
        factory = loop_factory()
    except ConfigError:
        main.close()  # never awaited; close it so Python does not warn about it
        raise
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
