"""The ``async with`` halves the runtime's classes share (docs/architecture.md, "Names":
``start()`` and ``close()``, ``async with`` for both).

Two shapes, one mixin each, so that the protocol is written once:

- :class:`ClosesAtOnce`: a plain ``close()`` (nothing to await: the multicast
  sockets), ``async with`` that closes on exit, and the deprecated
  ``async_close()`` alias older callers still use;
- :class:`StartsAndCloses`: ``async with`` that awaits ``start()``, and ``close()``
  both on exit and when ``start()`` itself fails half way (so that what it had
  already opened is released).

And :func:`wait_or_stop`, the one pause of the loops that run until a stop event
(the MQTT bridge's, the CLI commands', a replay's).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Self


class ClosesAtOnce:
    """``async with`` and the deprecated ``async_close()`` around a plain :meth:`close`."""

    def close(self) -> None:
        raise NotImplementedError

    async def async_close(self) -> None:
        """Deprecated: call :meth:`close` (closing needs no await; docs/architecture.md)."""
        warnings.warn(f"{type(self).__name__}.async_close() is deprecated; call close()",
                      DeprecationWarning, stacklevel=2)
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class StartsAndCloses:
    """``async with`` that starts, and closes on exit or when starting fails."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; return True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
