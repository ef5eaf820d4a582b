"""The plugin bus's socket I/O: the drain loop over its publish socket and its sends.

Theory of operation. When the bus's XSUB becomes readable the bus drains it without
waiting (``NOBLOCK`` until ``EAGAIN``, at most a budget of messages) and moves bytes:
a message of a type name already checked (:attr:`BusRoutes.routes
<ganglion.runtime._bus_routes.BusRoutes.routes>`) whose payload passes
:func:`~ganglion.types._payload.payload_problem`'s check is forwarded with its meta
frame as it came, never decoded, and/or kept for the node. The first message the loop
is not sure of stops it and is returned, for the bus to judge (and count, and log).

:func:`drain_python` is the reference; where the compiled ``ganglion._busfast`` loads
(:mod:`ganglion.runtime._bus_accel`) :class:`Drainer` runs the same loop in C on the
same sockets, passing only payloads in a plain subset it can check itself and leaving
every other message to the bus in the same way. Sends never wait: a full subscriber
queue (``XPUB_NODROP``) refuses the message, and the caller counts it as dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType

import zmq

from ganglion.plugin_frames import PluginMeta
from ganglion.runtime._bus_routes import FORWARD, TO_NODE, BusRoutes
from ganglion.types._payload import payload_problem

#: Frames of a message kept for the report (a bad message's first frame names it).
KEEP_FRAMES = 8

_DONTWAIT = int(zmq.DONTWAIT)  # a plain int: pyzmq's enum costs a few us per message

#: A message left to the bus: (frame count, its first frames, what zmq knows of its sender).
Other = tuple[int, list[bytes], "str | None"]

#: (messages for the node, a message left to the bus or None, received, forwarded,
#: dropped): what one drain returns.
DrainResult = tuple[list[tuple[str, bytes]], "Other | None", int, int, int]


class Drainer:
    """Reads the publish socket and sends on the subscribe socket, in C or in Python."""

    def __init__(self, xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], routes: BusRoutes,
                 node_id: bytes, fast: ModuleType | None) -> None:
        """Bind the loop to a bus's sockets (synchronous shadows) and routing state.

        Args:
            xsub: the publish socket (read).
            xpub: the subscribe socket (sent to).
            routes: the bus's routes and forward numbers.
            node_id: the sender id in the meta of messages forwarded.
            fast: the compiled module, or None for the Python reference.
        """
        self.xsub = xsub
        self.xpub = xpub
        self._routes = routes
        self._node_id = node_id
        self.fast = fast

    def drain(self, limit: int) -> DrainResult:
        """Read up to ``limit`` publishes without waiting (see the module docstring).

        Raises:
            zmq.ZMQError: the socket is closing.
        """
        fast = self.fast
        if fast is not None:
            result: DrainResult = fast.drain(
                self.xsub.underlying, self.xpub.underlying, self._routes.routes,
                self._routes.forward_seq, self._node_id, limit)
            return result
        return drain_python(self.xsub, self._routes, self.forward, limit)

    def forward(self, raw_name: bytes, payload: bytes) -> bool:
        """Send a plugin's publish on to the plugin subscribers of its type, with its meta."""
        meta = PluginMeta(sender=self._node_id, seq=self._routes.next_seq(raw_name),
                          sent_ns=time.time_ns(), local=True)
        try:
            self.xpub.send_multipart([raw_name, payload, meta.encode()], flags=_DONTWAIT)
        except zmq.Again:
            return False
        return True

    def send(self, raw_name: bytes, payload: bytes, sender: bytes, seq: int, sent_ns: int,
             local: bool) -> bool:
        """Send one delivery ``[name, payload, meta]``; False when a queue refused it."""
        if self.fast is not None:
            # The same three frames, the meta frame written in C (fast.meta is
            # PluginMeta.encode's bytes, tests/runtime/test_bus_fast.py).
            return bool(self.fast.deliver(self.xpub.underlying, raw_name, payload, sender, seq,
                                          sent_ns, local))
        meta = PluginMeta(sender=sender, seq=seq, sent_ns=sent_ns, local=local)
        try:
            self.xpub.send_multipart([raw_name, payload, meta.encode()], flags=_DONTWAIT)
        except zmq.Again:
            return False
        return True

    def payload_ok(self, payload: bytes) -> bool:
        """Whether a payload is one plain CBOR map (the compiled check first, when there)."""
        if self.fast is not None and self.fast.check_payload(payload):
            return True
        return payload_problem(payload) is None


def drain_python(sock: zmq.Socket[bytes], routes: BusRoutes,
                 forward: Callable[[bytes, bytes], bool], limit: int) -> DrainResult:
    """The reference drain loop: what ``ganglion._busfast.drain`` does, in Python.

    Reads up to ``limit`` publishes without waiting. A message of two frames whose raw
    type name is in the routes and whose payload is well-formed is forwarded and/or
    kept for the node as its route says; the first other one stops the loop and is
    returned, for the bus to judge.
    """
    table, to_node = routes.routes, []
    other: Other | None = None
    received = forwarded = dropped = 0
    while received < limit:
        try:
            # copy=False keeps zmq's per-connection metadata, to name a bad sender.
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            break
        received += 1
        if len(frames) == 2:
            raw, payload = frames[0].bytes, frames[1].bytes
            route = table.get(raw)
            if route is not None and payload_problem(payload) is None:
                name, flags = route
                if flags & FORWARD:
                    if forward(raw, payload):
                        forwarded += 1
                    else:
                        dropped += 1
                if flags & TO_NODE:
                    to_node.append((name, payload))
                continue
        other = (len(frames), [f.bytes for f in frames[:KEEP_FRAMES]], peer_of(frames[0]))
        break
    return to_node, other, received, forwarded, dropped


def peer_of(frame: zmq.Frame) -> str | None:
    """What zmq knows of a received frame's sender: a ZAP user id, else its address."""
    for prop in ("User-Id", "Peer-Address"):
        try:
            value = frame.get(prop)
        except zmq.ZMQError:  # no such property on this connection
            continue
        if value:
            return str(value)
    return None
