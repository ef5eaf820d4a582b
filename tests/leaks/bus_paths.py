"""The plugin bus's compiled paths (ganglion._busfast), each run through a real bus for a
leak check.

A :class:`~ganglion.runtime.bus.PluginBus` with ``compiled=True`` (a ConfigError, so a
failed check, where ``_busfast`` is not built) listens on ipc sockets in a private
temporary directory, on its own event loop; a "plugin" of raw zmq sockets publishes to
it and subscribes to the type, as in tests/runtime/test_bus.py. Three ways through:

- ``drain``: plugin publishes the compiled drain loop passes by itself: read, checked,
  forwarded to the subscriber with a meta frame written in C, and handed to the node
  (``on_publish``);
- ``deliver``: the node's readings to the plugin (``PluginBus.deliver`` with the payload
  check: ``check_payload`` and ``deliver`` in C);
- ``leftover``: every other publish is outside the plain subset (a tagged datetime),
  which the C loop returns to Python (:meth:`PluginBus._handle_publish`) as it came,
  and every eighth has three frames (counted, dropped).

Each counts what took the Python paths (``fallbacks``) and what the subscriber got.
No traffic leaves the machine: ipc sockets only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import zmq

from ganglion.plugin_frames import PluginMeta
from ganglion.runtime import _bus_accel
from ganglion.runtime.bus import PluginBus

busfast = _bus_accel.load("auto")

NAME = "leakcheck.Bus"
RAW = NAME.encode()
NODE_ID = b"\x03" * 8
PLAIN = cbor2.dumps({"celsius": 21.5, "probe": "cellar", "n": 7, "ok": True, "raw": b"\x01" * 12})
#: Valid, but outside the plain subset (a tag): the C loop leaves it to Python.
TAGGED = cbor2.dumps({"at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), "n": 1})
#: Messages sent before the subscriber's side is read: well under zmq's queue bounds.
CHUNK = 48
#: Longest wait for one chunk to come through, in seconds (the bus runs in this process).
CHUNK_SECONDS = 10.0


class BusPath:
    """A bus, a plugin publishing to it and subscribed to :data:`NAME`, over ipc.

    Args:
        mode: ``drain``, ``deliver`` or ``leftover`` (see the module's docstring).
    """

    def __init__(self, mode: str = "drain") -> None:
        assert mode in ("drain", "deliver", "leftover"), mode
        self.mode = mode
        self.sent = self.delivered = self.fallbacks = self.to_node = 0
        self.errors: list[str] = []
        self.dir = Path(tempfile.mkdtemp(prefix="gzleak", dir="/tmp"))  # short: ipc paths
        self.loop = asyncio.new_event_loop()
        self.ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self.bus = PluginBus(ipc_path=self.dir / "bus", on_publish=self._on_publish,
                             on_subscribe=lambda name: None, on_unsubscribe=lambda name: None,
                             node_id=NODE_ID, compiled=True)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.loop.run_until_complete(self.bus.start())
        # The Python paths the compiled loop hands work to, counted (instance attributes
        # are what the bus's self.<name> calls find first). A renamed method would leave
        # the count at zero unseen: insist that each exists.
        name = "_handle_publish"
        assert callable(getattr(self.bus, name, None)), f"PluginBus.{name} is gone"
        setattr(self.bus, name, self._counted(getattr(self.bus, name)))
        drainer = self.bus._io
        assert drainer is not None and drainer.fast is not None, "the bus runs its Python drain"
        address = self.bus.endpoints[0]
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.XPUB)  # as a plugin's client: waits for the bus's \x01
        self.sub = self.ctx.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            sock.linger = 0
        self.pub.connect(address.publish)
        self.sub.connect(address.subscribe)
        self.sub.setsockopt(zmq.SUBSCRIBE, RAW)
        # libzmq's sockets act on new connections inside calls on them: the bus's loop
        # must run for its \x01 to reach the plugin and the subscription to reach it.
        self.loop.run_until_complete(self._until(
            lambda: self.pub.poll(0) != 0, "the bus to subscribe to the plugin's publishes"))
        if self.pub.recv() != b"\x01":
            raise RuntimeError("the bus sent something else than its subscription")
        self.loop.run_until_complete(self._until(
            lambda: NAME in self.bus.stats().subscriptions, "the bus to see the subscription"))
        self.meta = PluginMeta(sender=b"\x04" * 8, seq=1, sent_ns=1_000, local=False)

    def _on_publish(self, name: str, payload: bytes) -> None:
        self.to_node += 1

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.fallbacks += 1
            return method(*args, **kwargs)
        return call

    async def _until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + CHUNK_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.001)

    def watched(self) -> dict[str, object]:
        """Objects every message passes through, whose reference counts must not move."""
        routes = self.bus._routes
        drainer = self.bus._io
        assert drainer is not None
        return {"bus": self.bus, "routes": routes.routes, "route": routes.routes.get(RAW),
                "forward seqs": routes.forward_seq, "node id": NODE_ID,
                "xsub": drainer.xsub, "xpub": drainer.xpub,
                "payload": PLAIN, "meta": self.meta}

    def run(self, count: int) -> None:
        """Send ``count`` messages, CHUNK at a time, and read what the subscriber gets."""
        # Bad publishes are logged (the first) and summed in a summary line: quiet here.
        log = logging.getLogger("ganglion")
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            self.loop.run_until_complete(self._run(count))
        finally:
            log.setLevel(level)
        self.sent += count

    async def _run(self, count: int) -> None:
        done = 0
        while done < count and not self.errors:
            step = min(CHUNK, count - done)
            wanted = 0
            for i in range(step):
                at = self.sent + done + i
                if self.mode == "deliver":
                    if self.bus.deliver(NAME, PLAIN, self.meta, check=True):
                        wanted += 1
                    else:
                        self.errors.append("deliver refused a plain payload")
                elif self.mode == "leftover" and at % 8 == 7:
                    self.pub.send_multipart([RAW, PLAIN, b"a third frame"])
                else:
                    self.pub.send_multipart(
                        [RAW, TAGGED if self.mode == "leftover" and at % 2 else PLAIN])
                    wanted += 1
            await self._receive(wanted)
            done += step

    async def _receive(self, wanted: int) -> None:
        """Read ``wanted`` forwarded messages, letting the bus's reader run in between."""
        deadline = time.monotonic() + CHUNK_SECONDS
        got = 0
        while got < wanted:
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if time.monotonic() > deadline:
                    self.errors.append(f"{wanted - got} of {wanted} messages did not arrive "
                                       f"within {CHUNK_SECONDS:g} s")
                    return
                await asyncio.sleep(0)  # the bus drains from a reader on this loop
                continue
            got += 1
            if len(frames) != 3 or frames[0] != RAW:
                self.errors.append(f"a forwarded message had {len(frames)} frames")
        self.delivered += got
        if self.mode == "drain" and self.to_node != self.delivered:
            self.errors.append(f"the node got {self.to_node} of {self.delivered} messages")

    def close(self) -> None:
        log = logging.getLogger("ganglion")
        level = log.level
        log.setLevel(logging.CRITICAL)  # the bus's closing summary of the bad publishes
        try:
            if self.ctx is not None:
                self.pub.close(0)
                self.sub.close(0)
                self.ctx.term()
            self.loop.run_until_complete(self.bus.close())
        finally:
            log.setLevel(level)
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)
