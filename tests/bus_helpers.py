"""What the plugin-bus tests share: a loop runner, a bounded wait, a short temp dir, the bus's
callbacks recorded, and raw pyzmq sockets standing in for a plugin.

Used by tests/runtime/test_bus*.py and tests/examples/test_c_plugin.py (``tests/`` is on
``sys.path`` for every test module, as for ``port_pairs``). A test module that uses the
``short_dir`` fixture imports it by name (pytest finds fixtures in the module's namespace).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from ganglion.bus_secret import BusSecret
from ganglion.plugin_frames import BusAddress
from ganglion.runtime.bus import PluginBus


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    """Run a test coroutine on a fresh loop, failing it after ``timeout`` seconds."""
    asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``cond`` on the loop until it holds; fail after ``timeout`` seconds."""

    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private (0700) temp dir with a short path (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gzbus", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Recorder:
    """The bus callbacks, recording what they were called with."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []

    def on_publish(self, name: str, payload: bytes) -> None:
        self.published.append((name, payload))

    def on_subscribe(self, name: str) -> None:
        self.subscribed.append(name)

    def on_unsubscribe(self, name: str) -> None:
        self.unsubscribed.append(name)

    def bus(self, **kwargs: Any) -> PluginBus:
        """A bus wired to this recorder (``on_publish`` may be given instead)."""
        kwargs.setdefault("on_publish", self.on_publish)
        return PluginBus(on_subscribe=self.on_subscribe, on_unsubscribe=self.on_unsubscribe,
                         **kwargs)


class Plugin:
    """Raw zmq sockets (XPUB to publish, SUB to receive) standing in for a plugin process.

    Args:
        address: the bus's address pair.
        secret: CURVE keys to present (a restricted bus), or None.
        sockopts: zmq options set on both sockets, by name (``sndhwm=0``).
    """

    def __init__(self, address: BusAddress, secret: BusSecret | None = None,
                 **sockopts: int) -> None:
        self.ctx = zmq.asyncio.Context()
        self.pub = self.ctx.socket(zmq.XPUB)
        self.sub = self.ctx.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            sock.linger = 0
            for opt, value in sockopts.items():
                sock.setsockopt(getattr(zmq, opt.upper()), value)
            if secret is not None:
                sock.curve_serverkey = secret.public
                sock.curve_publickey = secret.public
                sock.curve_secretkey = secret.secret
        self.pub.connect(address.publish)
        self.sub.connect(address.subscribe)

    async def wait_listening(self, timeout: float = 10.0) -> None:
        """Wait for the bus's subscribe-to-everything (so nothing is lost)."""
        assert await asyncio.wait_for(self.pub.recv(), timeout) == b"\x01"

    async def listening_within(self, seconds: float) -> bool:
        """Whether the bus's subscribe-to-everything arrives within ``seconds``."""
        events: int = await self.pub.poll(int(seconds * 1000))  # type: ignore[assignment]
        return bool(events) and await self.pub.recv() == b"\x01"

    async def send(self, *frames: bytes) -> None:
        await self.pub.send_multipart(list(frames))

    async def recv(self, timeout: float = 5.0) -> list[bytes]:
        return list(await asyncio.wait_for(self.sub.recv_multipart(), timeout))

    async def received_within(self, seconds: float) -> list[list[bytes]]:
        """Every message that arrives within ``seconds``."""
        got = []
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            if await self.sub.poll(int(left * 1000)):
                got.append(await self.sub.recv_multipart())
        return got

    async def nothing_within(self, seconds: float) -> bool:
        events: int = await self.sub.poll(int(seconds * 1000))  # type: ignore[assignment]
        return events == 0

    def close(self) -> None:
        self.pub.close(0)
        self.sub.close(0)
        self.ctx.term()


def addresses(bus: PluginBus, transport: str) -> BusAddress:
    """The bus's ipc or tcp address pair."""
    return next(a for a in bus.endpoints if a.publish.startswith(transport))
