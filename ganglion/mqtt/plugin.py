"""The ``mqtt`` internal plugin: a node that bridges its network to an MQTT broker.

The same bridge as ``ganglion mqtt`` (:class:`ganglion.runtime.mqtt.MqttBridge`), run
by the node's plugin host, so a node on a Pi that already runs needs no second
process. Enable it in the config file (docs/config.md, ``[plugin.mqtt]``)::

    [plugin.mqtt]
    broker = "mqtt://homeassistant.local"
    password_file = "/etc/ganglion/mqtt.password"

A broker that refuses the credentials or whose TLS certificate does not verify is
logged once as an error and ends the plugin (*finished*, not restarted in a loop);
a broker that is down is retried for as long as the node runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganglion import __version__
from ganglion.errors import BrokerRefusedError, ConfigError
from ganglion.mqtt.bridge import BridgeSettings
from ganglion.mqtt.broker import parse_broker
from ganglion.mqtt.commands import parse_route
from ganglion.mqtt.outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES

__all__ = ["MqttPlugin"]

_log = logging.getLogger(__name__)


class MqttPlugin:
    """Bridges the node's readings to MQTT, with Home Assistant discovery.

    Args:
        broker: ``mqtt[s]://[user@]HOST[:PORT]``.
        password_file: a file whose first line is the broker password.
        ca: a CA certificate file for ``mqtts://``.
        prefix: the topic prefix of readings and availability.
        ha: publish Home Assistant discovery configs.
        ha_prefix: Home Assistant's discovery prefix.
        ha_mode: ``device`` (Home Assistant 2024.12+) or ``component``.
        types: glob patterns of the types to bridge (empty: every type).
        qos: QoS of readings, 0 or 1.
        retain: retain the latest reading per topic.
        subscribe: ``TOPIC=TYPE`` routes of commands in.
        forget_after: seconds before a vanished node's or sensor's entities are removed.
        max_queue: readings kept while the broker is away.
        max_queue_bytes: their bytes at most.
        name: the plugin's name.

    Raises:
        ConfigError: a setting is not valid.
    """

    publishes: tuple[type | str, ...] = ()
    subscribes: tuple[type | str, ...] = ()

    def __init__(self, broker: str, password_file: str | None = None, ca: str | None = None,
                 prefix: str = "ganglion", ha: bool = True, ha_prefix: str = "homeassistant",
                 ha_mode: str = "device", types: Sequence[str] = (), qos: int = 0,
                 retain: bool = True, subscribe: Sequence[str] = (),
                 forget_after: float = 3600.0, max_queue: int = DEFAULT_MAX_MESSAGES,
                 max_queue_bytes: int = DEFAULT_MAX_BYTES, name: str = "mqtt") -> None:
        if isinstance(types, str) or isinstance(subscribe, str):
            raise ConfigError("mqtt plugin: `types` and `subscribe` must be lists")
        from ganglion.runtime.mqtt import MqttBridge, read_password

        try:
            settings = BridgeSettings(prefix=prefix, ha=ha, ha_prefix=ha_prefix, ha_mode=ha_mode,
                                      qos=qos, retain=retain, forget_after=float(forget_after),
                                      version=__version__)
        except ValueError as exc:
            raise ConfigError(f"mqtt plugin: {exc}") from None
        self.name = name
        self.bridge = MqttBridge(
            broker=parse_broker(broker), settings=settings,
            password=read_password(password_file) if password_file else None,
            ca=Path(ca) if ca else None, patterns=tuple(types),
            routes=tuple(parse_route(r) for r in subscribe), max_queue=max_queue,
            max_queue_bytes=max_queue_bytes)

    async def setup(self, node: Any) -> None:
        """Subscribe to the types agreed so far (the bridge follows the map from then on)."""
        self.bridge.attach(node)

    async def run(self, node: Any) -> None:
        """Bridge until the node stops; a final refusal by the broker ends the plugin."""
        try:
            await self.bridge.run(node)
        except BrokerRefusedError as exc:
            _log.error("mqtt plugin stops: %s", exc)

    def status(self) -> dict[str, Any]:
        """The bridge's counters (``ganglion status``)."""
        return self.bridge.stats()
