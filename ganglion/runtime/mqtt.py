"""The MQTT bridge's I/O: a ganglion node's readings to a broker, commands back.

Theory of operation: :class:`MqttBridge` feeds :class:`~ganglion.mqtt.BridgeCore`
(the pure state machine) from a node and sends what it returns over one MQTT
connection (aiomqtt on paho-mqtt 2.x, the ``mqtt`` extra, imported only here).

* **Readings** arrive through node subscriptions (every agreed type matching the
  ``--type`` patterns, followed as the map grows, with ``propose=False`` and the
  publishers' last values, like the logger). The callback runs on the node's
  event loop and only encodes JSON and hands the message to paho, whose socket
  writes happen when the socket is writable (aiomqtt's loop integration): the
  bridge never blocks the loop.
* **The connection supervisor is ours**: a connection that fails or drops is
  retried after a delay that doubles from ``backoff[0]`` to ``backoff[1]`` seconds
  (with 20 % jitter); the first failure of a streak is one log line, the rest
  are counted (``connect_failures``). After each connect, the subscriptions are
  made again and :meth:`BridgeCore.connected` re-publishes birth, availability
  and discovery. A bad user name or password, "not authorised" or a TLS
  certificate that does not verify is final: :class:`BrokerRefusedError`.
* **While the broker is away** readings wait in the :class:`~ganglion.mqtt.Outbox`
  (bounded by count and bytes, oldest dropped and counted) and are sent in order
  after the reconnect; QoS 1 readings paho had not yet seen acknowledged when the
  connection dropped go back to the front of it. Configs and availability do not
  wait: the reconnect re-derives them.
* **Peers**: every ``poll`` seconds the node's membership (:meth:`Node.heard`) is
  handed to the core, which turns a node lost to the heartbeat timeout into
  ``offline`` on its availability topic; the same tick forgets what is gone.
* **Commands in**: messages on a ``--subscribe`` topic become publishes of its type
  (:func:`~ganglion.mqtt.to_message`); a bad one is counted and logged once per
  topic, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ganglion.errors import BrokerRefusedError, ConfigError
from ganglion.mqtt.bridge import BridgeCore, BridgeSettings, Publish
from ganglion.mqtt.broker import BrokerAddress
from ganglion.mqtt.commands import CommandRoute, to_message
from ganglion.mqtt.discovery import NodeDevice
from ganglion.mqtt.outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Outbox
from ganglion.mqtt.topics import sensor_label
from ganglion.runtime._lifecycle import wait_or_stop
from ganglion.types import Record, TypeSchema, as_dict, lookup

__all__ = ["MqttBridge", "purge", "read_password"]

_log = logging.getLogger(__name__)

#: Seconds between looks at the map, the membership and the clock.
DEFAULT_POLL = 0.2
#: Connection retry delays: first, and the cap.
DEFAULT_BACKOFF = (0.5, 30.0)
#: QoS 1 messages paho keeps in flight before queueing (its default of 20 halves the rate).
_MAX_INFLIGHT = 1000
#: (topic, reason) pairs logged at most for bad commands; the rest are counted only.
_MAX_LOGGED = 256
_NOT_AUTHORISED = "not authorised (a wrong password, or a user the broker does not allow)"
_CONNACK_REFUSED = {4: "bad user name or password", 5: _NOT_AUTHORISED,
                    134: "bad user name or password", 135: _NOT_AUTHORISED}


def read_password(path: Path | str) -> str:
    """The password in a file (its first line).

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--password-file {path}: {exc}") from None
    return lines[0] if lines else ""


class MqttBridge:
    """Bridges one started node to one MQTT broker.

    Args:
        broker: the broker's address.
        settings: topics, Home Assistant discovery, QoS, retain, forgetting.
        password: the broker password, or None.
        ca: a CA certificate file for ``mqtts://`` (else the system's CAs).
        patterns: glob patterns of the types to bridge (none: every type).
        routes: commands in (``--subscribe TOPIC=TYPE``).
        max_queue: readings kept at most while the broker is away.
        max_queue_bytes: their bytes at most.
        backoff: first and longest delay between connection attempts.
        poll: seconds between looks at the map and the membership.
        client_id: the MQTT client id (``ganglion-<node id>`` by default).
        keepalive: MQTT keepalive seconds (the broker sends the last will after
            1.5 x this of silence).
    """

    def __init__(self, *, broker: BrokerAddress, settings: BridgeSettings,
                 password: str | None = None, ca: Path | str | None = None,
                 patterns: Iterable[str] = (), routes: Iterable[CommandRoute] = (),
                 max_queue: int = DEFAULT_MAX_MESSAGES, max_queue_bytes: int = DEFAULT_MAX_BYTES,
                 backoff: tuple[float, float] = DEFAULT_BACKOFF, poll: float = DEFAULT_POLL,
                 client_id: str | None = None, keepalive: int = 30) -> None:
        if not 0 < backoff[0] <= backoff[1] or poll <= 0:
            raise ConfigError("backoff must be 0 < first <= longest, and poll > 0")
        self.broker = broker
        self.settings = settings
        self._password = password
        self._tls = _tls_context(ca) if broker.tls else None
        if ca is not None and not broker.tls:
            raise ConfigError("--ca is for mqtts:// brokers; use mqtts://HOST to connect with TLS")
        self.patterns = tuple(patterns)
        self.routes = tuple(routes)
        self.outbox = Outbox(max_queue, max_queue_bytes)
        self._backoff = backoff
        self._poll = poll
        self._client_id = client_id
        self._keepalive = keepalive
        # asyncio's clock is time.monotonic (uvloop's too): the core's grace period starts now
        self.core: BridgeCore | None = BridgeCore(settings, now=time.monotonic())
        self._client: Any = None
        self._paho: Any = None
        self._subs: dict[str, Any] = {}
        self._schemas: dict[tuple[str, bytes | None], TypeSchema | None] = {}
        self._schema_retry: dict[tuple[str, bytes | None], float] = {}
        self._peers: dict[bytes, tuple[str, str]] = {}
        self._devices: dict[bytes, NodeDevice] = {}
        self._logged: set[tuple[str, str]] = set()
        self._node: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._established = False
        self.connected = asyncio.Event()
        #: Counters besides the core's (docs/mqtt.md names each).
        self.counts: dict[str, int] = {
            "connects": 0, "connect_failures": 0, "disconnects": 0, "sent": 0,
            "send_errors": 0, "requeued": 0, "commands": 0, "commands_rejected": 0,
            "ha_online": 0}

    # -- public --------------------------------------------------------------------------

    def attach(self, node: Any) -> None:
        """Subscribe to the node's matching types (agreed so far); call before :meth:`run`."""
        self._node = node
        self._loop = asyncio.get_running_loop()
        if self.core is None:
            self.core = BridgeCore(self.settings, now=self._loop.time())
        self._subscribe_new()

    async def run(self, node: Any, stop: asyncio.Event | None = None) -> None:
        """Bridge until ``stop`` is set (or cancelled).

        Raises:
            BrokerRefusedError: the broker refused the credentials, or its TLS
                certificate does not verify.
        """
        if self._node is not node:
            self.attach(node)
        stop = stop or asyncio.Event()
        poller = asyncio.create_task(self._poll_forever(stop), name="mqtt-poll")
        supervisor = asyncio.create_task(self._supervise(stop), name="mqtt-connection")
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({supervisor, waiter, poller},
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter:
                    task.result()  # BrokerRefusedError (or a bug) ends the bridge
        finally:
            await self._say_offline()
            for task in (poller, supervisor, waiter):
                task.cancel()
            await asyncio.gather(poller, supervisor, waiter, return_exceptions=True)
            for sub in self._subs.values():
                sub.close()
            self._subs.clear()

    def stats(self) -> dict[str, Any]:
        """Counters: the connection's, the queue's and the core's."""
        core = self.core.stats() if self.core is not None else {}
        return {**self.counts, **core, "connected": self.connected.is_set(),
                "queued": len(self.outbox), "queued_bytes": self.outbox.bytes,
                "queue_dropped": self.outbox.dropped, "queue_limit": self.outbox.max_messages,
                "queue_limit_bytes": self.outbox.max_bytes, "types": len(self._subs)}

    # -- readings in -----------------------------------------------------------------------

    def _subscribe_new(self) -> None:
        import fnmatch

        node = self._node
        for name in node.types():
            if name in self._subs or name.startswith("ganglion.control."):
                continue
            if self.patterns and not any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
                continue
            self._subs[name] = node.subscribe(name, callback=self._on_reading, propose=False,
                                              last_value=True)
            if lookup(name) is None:
                node.request_type_schema(name)

    def _on_reading(self, msg: Any, info: Any) -> None:
        core, loop = self.core, self._loop
        if core is None or loop is None:
            return
        now = loop.time()
        fields = msg.fields if isinstance(msg, Record) else as_dict(msg)
        schema = self._schema(info.type_name, info.fingerprint, now)
        mtype = None if isinstance(msg, Record) else lookup(info.type_name)
        if mtype is not None:
            key = mtype.key_of(msg)
        elif schema is not None and schema.key:
            key = tuple(fields.get(k) for k in schema.key)
        else:
            key = (fields["sensor"],) if isinstance(fields.get("sensor"), str) else None
        device = self._device(info.sender)
        for p in core.reading(info.type_name, fields, sender=info.sender, seq=info.seq,
                              sent_ns=info.sent_ns, sensor=sensor_label(key), node=device,
                              schema=schema, now=now, last_value=info.last_value):
            self._send(p)

    def _device(self, sender: bytes) -> NodeDevice:
        """The sender as a device. Its name is what its heartbeats say; a reading that
        arrives before its first heartbeat was heard (a node that just restarted) looks
        again, then keeps the name known before, so topics do not change under it."""
        device = self._devices.get(sender)
        if device is not None:
            return device
        known = self._peers.get(sender)
        if known is None and sender == self._node.node_id:
            from ganglion import __version__

            known = self._peers[sender] = (self._node.name, __version__)
        if known is None:
            self._peers.update((p.id, (p.name, p.version)) for p in self._node.heard())
            known = self._peers.get(sender)
        if known is None:
            return NodeDevice(sender, sender.hex(), "")
        if len(self._peers) > 4096:
            self._peers.clear()
        device = self._devices[sender] = NodeDevice(sender, known[0], known[1])
        return device

    def _schema(self, type_name: str, fingerprint: bytes | None, now: float) -> TypeSchema | None:
        """The type's schema, looked up once (again at most once a second while unknown)."""
        pair = (type_name, fingerprint)
        if pair in self._schemas:
            cached = self._schemas[pair]
            if cached is not None or now < self._schema_retry.get(pair, 0.0):
                return cached
        found: TypeSchema | None = self._node.type_schema(type_name, fingerprint)
        if found is None:
            found = self._node.type_schema(type_name)  # another version's units beat none
        if found is None:
            self._node.request_type_schema(type_name, fingerprint)
            self._schema_retry[pair] = now + 1.0
        if len(self._schemas) >= 4096:
            self._schemas.clear()
        self._schemas[pair] = found
        return found

    # -- sending ---------------------------------------------------------------------------

    def _send(self, p: Publish) -> None:
        if self._paho is None:
            if p.queue:
                self.outbox.put(p.topic, p.payload, p.qos, p.retain)
            return  # configs and availability: re-derived at the reconnect
        if p.queue and len(self.outbox):
            self.outbox.put(p.topic, p.payload, p.qos, p.retain)  # keep the order
            self._drain()
            return
        self._publish(p.topic, p.payload, p.qos, p.retain, p.queue)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool, queue: bool) -> bool:
        info = self._paho.publish(topic, payload, qos, retain)
        if info.rc == 0:  # paho.MQTT_ERR_SUCCESS
            self.counts["sent"] += 1
            return True
        self.counts["send_errors"] += 1
        if queue:
            self.outbox.push_front(topic, payload, qos, retain)
        return False

    def _drain(self) -> None:
        while self._paho is not None:
            item = self.outbox.pop()
            if item is None or not self._publish(*item, queue=True):
                return

    def _requeue_unacknowledged(self, paho_client: Any) -> None:
        """QoS 1 readings sent but not acknowledged when the connection dropped: again."""
        # paho keeps them in _out_messages (mid -> MQTTMessage); a new connection is a
        # new client, so they would be lost. Readings only: configs are re-derived.
        pending = list(getattr(paho_client, "_out_messages", {}).values())
        readings = [m for m in pending if m.topic.startswith(self.settings.prefix + "/")
                    and not m.topic.endswith("/availability") and m.payload]
        for m in reversed(readings):
            self.outbox.push_front(m.topic, bytes(m.payload), m.qos, m.retain)
        self.counts["requeued"] += len(readings)

    # -- the connection --------------------------------------------------------------------

    async def _supervise(self, stop: asyncio.Event) -> None:
        import aiomqtt

        failures = 0
        while not stop.is_set():
            self._established = False
            try:
                await self._session(aiomqtt)
            except aiomqtt.MqttError as exc:
                final = _refusal(exc, self.broker)
                if final is not None:
                    raise BrokerRefusedError(final) from None
                if self._established:
                    self.counts["disconnects"] += 1
                    _log.warning("mqtt: lost %s (%s); reconnecting", self.broker, exc)
                    failures = 0
                else:
                    self.counts["connect_failures"] += 1
                    if failures == 0:
                        _log.warning("mqtt: cannot reach %s (%s); retrying with backoff up to "
                                     "%g s (counted in connect_failures)", self.broker, exc,
                                     self._backoff[1])
                failures += 1
            finally:
                self.connected.clear()
            delay = min(self._backoff[1], self._backoff[0] * 2 ** min(failures - 1, 30))
            if await wait_or_stop(stop, delay * random.uniform(0.8, 1.2)):
                return

    async def _session(self, aiomqtt: Any) -> None:
        """One connection, until it drops (sets ``_established`` once connected)."""
        core = self.core
        assert core is not None
        client = aiomqtt.Client(
            self.broker.host, self.broker.port, username=self.broker.username,
            password=self._password, identifier=self._client_id or _default_id(self._node),
            will=aiomqtt.Will(core.state_topic, b"offline", qos=1, retain=True),
            tls_context=self._tls, keepalive=self._keepalive, timeout=10,
            max_inflight_messages=_MAX_INFLIGHT, max_queued_outgoing_messages=self.outbox.max_messages,
            logger=logging.getLogger("ganglion.runtime.mqtt.paho"))
        async with client:
            self._established = True
            self._client, self._paho = client, client._client
            # aiomqtt's on_publish (which builds a PUBACK reason code and properties for
            # every message written, QoS 0 too) serves only its awaitable publish; the
            # bridge hands messages to paho directly and polls is_published() where it
            # waits, so without it each reading costs a third less.
            self._paho.on_publish = None
            _Coalescer.attach(self._paho, asyncio.get_running_loop())
            try:
                self.counts["connects"] += 1
                _log.info("mqtt: connected to %s", self.broker)
                await client.subscribe(self._topics(), timeout=10)
                for p in core.connected():
                    self._send(p)
                self._drain()
                self.connected.set()
                async for message in client.messages:
                    self._dispatch(message)
            finally:
                self._requeue_unacknowledged(self._paho)
                self._client = self._paho = None
                self.connected.clear()

    def _topics(self) -> list[tuple[str, int]]:
        s = self.settings
        topics = []
        if s.ha:
            topics.append((f"{s.ha_prefix}/status", 1))
            kind = "device" if s.ha_mode == "device" else "sensor"
            topics.append((f"{s.ha_prefix}/{kind}/+/config", 1))
        topics.extend((route.topic, 1) for route in self.routes)
        return topics

    def _dispatch(self, message: Any) -> None:
        core = self.core
        assert core is not None
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else \
            str(message.payload or "").encode()
        s = self.settings
        if s.ha and topic == f"{s.ha_prefix}/status":
            outs = core.ha_status(payload)
            if outs:
                self.counts["ha_online"] += 1
            for p in outs:
                self._send(p)
            return
        for route in self.routes:
            if message.topic.matches(route.topic):
                self._command(route, topic, payload)
                return
        if s.ha and topic.startswith(s.ha_prefix + "/") and topic.endswith("/config"):
            core.retained_config(topic, payload)

    def _command(self, route: CommandRoute, topic: str, payload: bytes) -> None:
        self.counts["commands"] += 1
        try:
            msg = to_message(route.type_name, payload, self._node.type_schema(route.type_name))
            self._node.publish_nowait(msg)
        except Exception as exc:  # a bad command is counted and logged, never fatal
            self.counts["commands_rejected"] += 1
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            key = (topic, reason)
            if key not in self._logged and len(self._logged) < _MAX_LOGGED:
                self._logged.add(key)
                _log.warning("mqtt: command on %s refused: %s (counted in commands_rejected)",
                             topic, reason)

    async def _say_offline(self) -> None:
        """A clean stop sends no last will: say ``offline`` before disconnecting."""
        paho_client = self._paho
        if paho_client is None or self.core is None:
            return
        with contextlib.suppress(Exception):
            info = paho_client.publish(self.core.state_topic, b"offline", 1, True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0
            while not info.is_published() and loop.time() < deadline:
                await asyncio.sleep(0.01)

    # -- the poller ------------------------------------------------------------------------

    async def _poll_forever(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        node, core = self._node, self.core
        assert core is not None
        while True:
            self._subscribe_new()
            heard = node.heard()
            self._peers.update((p.id, (p.name, p.version)) for p in heard)  # names outlive peers
            self._devices.clear()  # rebuilt from the names on the next reading of each
            live = {p.id: p.name for p in heard}
            live[node.node_id] = node.name
            now = loop.time()
            for p in core.peers(live, now) + core.tick(now):
                self._send(p)
            self._drain()
            if await wait_or_stop(stop, self._poll):
                return


async def purge(*, broker: BrokerAddress, settings: BridgeSettings, password: str | None = None,
                ca: Path | str | None = None, wait: float = 2.0) -> int:
    """Clear every retained message of a bridge: its discovery configs, readings, availability.

    Args:
        broker: the broker.
        settings: the bridge's topics (``prefix``, ``ha_prefix``, ``ha_mode``).
        password: the broker password.
        ca: a CA file for ``mqtts://``.
        wait: seconds without a new retained message after which all were read.

    Returns:
        How many retained messages were cleared.

    Raises:
        BrokerRefusedError: credentials or TLS refused.
        ConfigError: the broker cannot be reached.
    """
    import aiomqtt

    core = BridgeCore(settings, now=0.0)
    found: list[str] = []
    try:
        async with aiomqtt.Client(broker.host, broker.port, username=broker.username,
                                  password=password,
                                  tls_context=_tls_context(ca) if broker.tls else None,
                                  timeout=10) as client:
            kind = "device" if settings.ha_mode == "device" else "sensor"
            await client.subscribe([(f"{settings.ha_prefix}/{kind}/+/config", 1),
                                    (f"{settings.prefix}/#", 1)])
            while True:
                try:
                    message = await asyncio.wait_for(anext(aiter(client.messages)), wait)
                except TimeoutError:
                    break
                if not message.retain:
                    continue
                topic = str(message.topic)
                payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) \
                    else b""
                if topic.startswith(settings.prefix + "/"):
                    if payload and topic != core.state_topic:
                        found.append(topic)
                else:
                    core.retained_config(topic, payload)
            clear = [p.topic for p in core.purge()] + found
            for topic in clear:
                await client.publish(topic, b"", qos=1, retain=True, timeout=10)
            return len(clear)
    except aiomqtt.MqttError as exc:
        final = _refusal(exc, broker)
        if final is not None:
            raise BrokerRefusedError(final) from None
        raise ConfigError(f"cannot reach {broker}: {exc}") from None


# -- helpers ------------------------------------------------------------------------------


class _Coalescer:
    """Joins the packets paho writes in one event-loop turn into one ``send()``.

    paho writes each MQTT packet with its own ``send()`` system call; at thousands of
    readings a second that call is most of the bridge's cost on the event loop. This
    replaces the client's ``_sock_send`` (plain TCP only; TLS keeps paho's) with one
    that buffers and sends everything of one loop turn at once. A packet counts as
    written when buffered, which for paho only means "QoS 0 published" a moment early.
    What the kernel does not take is retried every millisecond; a failing socket is
    shut down, so paho's reader sees the connection lost and the supervisor reconnects.
    A DISCONNECT is sent at once: paho closes the socket right after writing it.
    """

    __slots__ = ("_loop", "_pending", "_rest", "_scheduled", "_sock")

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self._pending: list[bytes] = []
        self._rest = b""
        self._scheduled = False

    @classmethod
    def attach(cls, paho_client: Any, loop: asyncio.AbstractEventLoop) -> None:
        sock = getattr(paho_client, "_sock", None)
        if type(sock) is socket.socket:  # not ssl.SSLSocket, not a websocket
            paho_client._sock_send = cls(sock, loop).send

    def send(self, buf: bytes | bytearray) -> int:
        self._pending.append(bytes(buf))
        if buf[:1] == b"\xe0":  # DISCONNECT
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)
        return len(buf)

    def flush(self) -> None:
        self._scheduled = False
        data = self._rest + b"".join(self._pending) if self._pending else self._rest
        self._pending.clear()
        if not data:
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._rest = b""
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            return
        self._rest = data[sent:]
        if self._rest and not self._scheduled:
            self._scheduled = True
            self._loop.call_later(0.001, self.flush)



def _tls_context(ca: Path | str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--ca {ca}: {exc}") from None


def _default_id(node: Any) -> str:
    return f"ganglion-{node.node_id.hex()}"


def _refusal(exc: Exception, broker: BrokerAddress) -> str | None:
    """Why retrying cannot help (credentials, TLS), or None for a transient failure."""
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    if isinstance(value, int) and value in _CONNACK_REFUSED:
        who = f" as {broker.username}" if broker.username else " without a user name"
        return f"{broker} refused the connection{who}: {_CONNACK_REFUSED[value]}"
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text:
        return f"TLS with {broker} failed: {text} (is --ca the CA that signed the broker's " \
               f"certificate, and does the certificate name {broker.host}?)"
    return None
