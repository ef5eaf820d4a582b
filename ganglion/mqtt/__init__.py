"""The MQTT bridge's sans-IO core: topics, payloads, Home Assistant discovery, commands.

Theory of operation (docs/mqtt.md, docs/home-assistant.md): ganglion readings go to
``<prefix>/<node>/<type>/<sensor>`` as JSON; Home Assistant learns one device per
ganglion node and one sensor entity per numeric field of each (type, sensor), with
units and device classes from the types' self-description
(:func:`ganglion.types.type_schema`). Everything here is pure: readings, peer
lists, broker events and the time go in, :class:`Publish` records come out.
The connection to a broker (aiomqtt on paho-mqtt, the ``mqtt`` extra) lives in
:mod:`ganglion.runtime.mqtt`; nothing in this package imports it.

Modules: :mod:`.topics` (names and payloads), :mod:`.discovery` (the discovery
payloads), :mod:`.bridge` (the state machine: entities, availability, expiry,
no ghosts), :mod:`.outbox` (the bounded queue while the broker is away),
:mod:`.commands` (MQTT messages into typed publishes).
"""

from __future__ import annotations

from ganglion.mqtt.bridge import BridgeCore, BridgeSettings, Publish
from ganglion.mqtt.broker import BrokerAddress, parse_broker
from ganglion.mqtt.commands import CommandRoute, parse_route, to_message
from ganglion.mqtt.outbox import Outbox

__all__ = [
    "BridgeCore",
    "BridgeSettings",
    "BrokerAddress",
    "CommandRoute",
    "Outbox",
    "Publish",
    "parse_broker",
    "parse_route",
    "to_message",
]
