"""Home Assistant MQTT discovery payloads, as pure functions of type metadata.

Home Assistant's MQTT discovery (home-assistant.io/integrations/mqtt, "MQTT
Discovery") reads retained JSON configs under ``<discovery prefix>/...``:

* **device-based** (Home Assistant 2024.12 and later): one message per device on
  ``<prefix>/device/<device id>/config`` holding ``device``, ``origin`` and
  ``cmps``, a map of component id -> entity config with ``platform``. A
  component is removed by publishing the device config with that component
  holding only its ``platform``; the device by an empty retained payload.
* **per component** (every version): one message per entity on
  ``<prefix>/sensor/<unique id>/config`` holding the entity config with its own
  ``device`` and ``origin``; removed by an empty retained payload.

One ganglion node is one device (``identifiers``: ``ganglion_<node id hex>``);
one numeric field of one (type, sensor) is one ``sensor`` entity whose
``unique_id`` is derived from (node id, type, sensor, field) only, so it is
stable across restarts of the node, of the bridge and of Home Assistant.
``unit_of_measurement``, ``device_class`` and ``state_class`` come from the
type's self-description (:class:`ganglion.types.TypeSchema`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from typing import Any

from ganglion.types import FieldSchema

__all__ = [
    "DEVICE_PREFIX",
    "Entity",
    "NodeDevice",
    "component_topic",
    "device_config",
    "device_id",
    "device_topic",
    "entity_config",
    "origin",
    "unique_id",
]

#: Device identifiers (and the start of every unique_id) of ganglion's devices.
DEVICE_PREFIX = "ganglion_"
#: Field names a value_template can address safely (Python identifiers, as dataclasses have).
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
SUPPORT_URL = "https://github.com/ganglion-net/ganglion/blob/main/docs/home-assistant.md"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeDevice:
    """A ganglion node as a Home Assistant device.

    Attributes:
        node_id: the node's 8-byte id.
        name: its human name.
        version: its ganglion version ("" when unknown).
    """

    node_id: bytes
    name: str
    version: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Entity:
    """One numeric field of one (type, sensor) of one node: a Home Assistant sensor.

    Attributes:
        node_id: the publishing node's id.
        type_name: the reading's type.
        sensor: the sensor label (``-`` for a type without a key).
        field: the field and its metadata.
        state_topic: where the readings go.
        expire_after: seconds after which Home Assistant shows it unavailable
            without a new reading, or None.
    """

    node_id: bytes
    type_name: str
    sensor: str
    field: FieldSchema
    state_topic: str
    expire_after: int | None = None

    @property
    def unique_id(self) -> str:
        """The stable id of this entity (:func:`unique_id`)."""
        return unique_id(self.node_id, self.type_name, self.sensor, self.field.name)


def entity_fields(fields: Iterable[FieldSchema]) -> list[FieldSchema]:
    """The fields that become sensor entities: numeric, with a name a template can address."""
    return [f for f in fields if f.numeric and _IDENT.match(f.name)]


def device_id(node_id: bytes) -> str:
    """The device's identifier: ``ganglion_<node id hex>``."""
    return DEVICE_PREFIX + node_id.hex()


def unique_id(node_id: bytes, type_name: str, sensor: str, field: str) -> str:
    """``ganglion_<node id>_<type>_<sensor>_<field>_<hash>``: readable, safe and unique.

    The readable part is cut to what topics and entity ids allow; the 8 hex digits of
    BLAKE2b over the exact (type, sensor, field) keep two sensors apart whose names
    differ only in characters the readable part replaces.
    """
    raw = "\0".join((type_name, sensor, field)).encode()
    digest = hashlib.blake2b(raw, digest_size=4).hexdigest()
    slug = _SLUG.sub("_", f"{type_name}_{sensor}_{field}").strip("_")[:80]
    return f"{device_id(node_id)}_{slug}_{digest}"


def device_topic(ha_prefix: str, node_id: bytes) -> str:
    """Where a device-based config goes."""
    return f"{ha_prefix}/device/{device_id(node_id)}/config"


def component_topic(ha_prefix: str, uid: str) -> str:
    """Where a per-component config goes."""
    return f"{ha_prefix}/sensor/{uid}/config"


def origin(version: str) -> dict[str, str]:
    """The ``origin`` block: who made these configs."""
    return {"name": "ganglion", "sw_version": version, "support_url": SUPPORT_URL}


def device_block(device: NodeDevice) -> dict[str, Any]:
    """The ``device`` block of a node."""
    block: dict[str, Any] = {"identifiers": [device_id(device.node_id)], "name": device.name,
                             "manufacturer": "ganglion", "model": "ganglion node",
                             "serial_number": device.node_id.hex()}
    if device.version:
        block["sw_version"] = device.version
    return block


def entity_config(entity: Entity, availability: list[str]) -> dict[str, Any]:
    """The config of one sensor entity (without ``platform``, ``device`` and ``origin``).

    Args:
        entity: the entity.
        availability: topics that must all say ``online`` (the bridge's, the node's).
    """
    f = entity.field
    label = f.name if entity.sensor == "-" else f"{entity.sensor} {f.name}"
    config: dict[str, Any] = {
        "unique_id": entity.unique_id,
        "name": f"{entity.type_name.rsplit('.', 1)[-1]} {label}",
        "state_topic": entity.state_topic,
        "value_template": "{{ value_json['" + f.name + "'] }}",
        "availability": [{"topic": t} for t in availability],
        "availability_mode": "all",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    if f.unit:
        config["unit_of_measurement"] = f.unit
    if f.device_class:
        config["device_class"] = f.device_class
    if f.state_class:
        config["state_class"] = f.state_class
    if entity.expire_after is not None:
        config["expire_after"] = entity.expire_after
    return config


def device_config(device: NodeDevice, entities: Iterable[Entity], availability: list[str], *,
                  version: str, removed: Iterable[str] = ()) -> dict[str, Any]:
    """A device-based discovery config: the node and every entity of it.

    Args:
        device: the node.
        entities: its entities now.
        availability: see :func:`entity_config`.
        version: the bridge's ganglion version (``origin``).
        removed: component ids to remove (each sent as only its ``platform``).
    """
    cmps: dict[str, Any] = {uid: {"platform": "sensor"} for uid in removed}
    for entity in entities:
        cmps[entity.unique_id] = {"platform": "sensor", **entity_config(entity, availability)}
    return {"device": device_block(device), "origin": origin(version), "cmps": cmps}


def component_config(device: NodeDevice, entity: Entity, availability: list[str], *,
                     version: str) -> dict[str, Any]:
    """A per-component discovery config of one entity."""
    return {**entity_config(entity, availability), "device": device_block(device),
            "origin": origin(version)}
