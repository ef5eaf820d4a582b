"""The bridge's sans-IO core, checked against Home Assistant's documented discovery schema.

Home Assistant's MQTT discovery (home-assistant.io/integrations/mqtt, "MQTT Discovery",
"Device discovery payload") and the MQTT sensor platform (integrations/sensor.mqtt)
define what a config must hold; :func:`check_sensor_entity` and
:func:`check_device_config` encode those rules, so these tests fail on a payload
Home Assistant would reject or misread.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ganglion import type_schema
from ganglion.errors import ConfigError
from ganglion.mqtt import BridgeCore, BridgeSettings, Outbox, parse_broker, parse_route, to_message
from ganglion.mqtt.bridge import EXPIRE_STEPS, Publish, expire_step
from ganglion.mqtt.discovery import NodeDevice, unique_id
from ganglion.mqtt.topics import level, reading_payload, reading_topic, sensor_label
from ganglion.types import DEVICE_CLASSES, STATE_CLASSES, Record
from hardware.messages import Position
from hardware.readings import Flow, Temperature

A = bytes.fromhex("0102030405060708")
B = bytes.fromhex("1112131415161718")
NODE_A = NodeDevice(A, "brewpi", "0.1.0")
SETTINGS = BridgeSettings(version="0.1.0", forget_after=100.0)
#: MQTT sensor options Home Assistant knows (integrations/sensor.mqtt, configuration variables).
SENSOR_OPTIONS = {
    "platform", "unique_id", "name", "state_topic", "value_template", "unit_of_measurement",
    "device_class", "state_class", "expire_after", "availability", "availability_mode",
    "payload_available", "payload_not_available", "device", "origin",
}
UNIT_OF = {"temperature": {"°C", "°F", "K"}, "volume_flow_rate": {"L/min", "m³/h", "L/h"},
           "volume": {"L", "mL", "m³", "gal"}, "pressure": {"hPa", "Pa", "kPa", "bar", "mbar"},
           "humidity": {"%"}, "distance": {"m", "km", "cm", "mm"}, "speed": {"m/s", "km/h"}}


def check_sensor_entity(config: dict[str, Any], topics: set[str]) -> None:
    """Everything Home Assistant requires and checks of one MQTT sensor config."""
    assert set(config) <= SENSOR_OPTIONS, set(config) - SENSOR_OPTIONS
    assert config["state_topic"] in topics, "the state topic carries the readings"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", config["unique_id"])
    assert config["value_template"].startswith("{{ value_json[")
    dc, sc = config.get("device_class"), config.get("state_class")
    assert dc is None or dc in DEVICE_CLASSES
    assert sc is None or sc in STATE_CLASSES
    if dc in UNIT_OF:
        assert config["unit_of_measurement"] in UNIT_OF[dc], "HA refuses a unit its class lacks"
    if dc == "volume":
        assert sc != "measurement", "HA: volume cannot be a measurement"
    assert isinstance(config.get("expire_after", 1), int)
    assert config["availability_mode"] == "all"
    avail = [a["topic"] for a in config["availability"]]
    assert avail[0] == "ganglion/bridge/state" and avail[1].endswith("/availability")


def check_device_config(doc: dict[str, Any], topics: set[str]) -> dict[str, dict[str, Any]]:
    """A device-based config (Home Assistant 2024.12): device, origin, cmps with platform."""
    assert set(doc) == {"device", "origin", "cmps"}
    assert doc["device"]["identifiers"] and doc["device"]["name"]
    assert doc["origin"]["name"] == "ganglion" and "sw_version" in doc["origin"]
    assert doc["origin"]["support_url"].startswith("https://")
    full = {}
    for uid, comp in doc["cmps"].items():
        assert comp["platform"] == "sensor"
        if len(comp) > 1:
            assert comp["unique_id"] == uid
            check_sensor_entity(comp, topics)
            full[uid] = comp
    return full


def reading(core: BridgeCore, msg: Any, *, node: NodeDevice = NODE_A, seq: int = 0,
            now: float = 0.0, schema: Any = "class", last_value: bool = False) -> list[Publish]:
    from ganglion.types import as_dict, type_of

    mtype = type_of(msg)
    return core.reading(mtype.name, as_dict(msg), sender=node.node_id, seq=seq,
                        sent_ns=1_700_000_000_000_000_000 + seq, sensor=sensor_label(mtype.key_of(msg)),
                        node=node, schema=type_schema(msg) if schema == "class" else schema,
                        now=now, last_value=last_value)


def by_topic(out: list[Publish]) -> dict[str, Publish]:
    return {p.topic: p for p in out}


def test_the_first_reading_gives_availability_a_device_config_and_the_retained_state() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    out = reading(core, Flow("w1:28-ff/x", 1.5, 10.0))
    topics = [p.topic for p in out]
    state = "ganglion/brewpi/sensors.Flow/w1:28-ff_x"
    assert topics == ["ganglion/brewpi/availability",
                      "homeassistant/device/ganglion_0102030405060708/config", state]
    avail, config, data = out
    assert (avail.payload, avail.retain, avail.queue) == (b"online", True, False)
    assert (data.retain, data.qos, data.queue) == (True, 0, True)
    body = json.loads(data.payload)
    assert body == {"ts": "2023-11-14T22:13:20.000000+00:00", "seq": 0, "sensor": "w1:28-ff/x",
                    "litres_per_minute": 1.5, "total_litres": 10.0}
    entities = check_device_config(json.loads(config.payload), {state})
    assert len(entities) == 2
    flow = entities[unique_id(A, "sensors.Flow", "w1:28-ff/x", "litres_per_minute")]
    assert (flow["unit_of_measurement"], flow["device_class"], flow["state_class"]) == \
        ("L/min", "volume_flow_rate", "measurement")
    total = entities[unique_id(A, "sensors.Flow", "w1:28-ff/x", "total_litres")]
    assert (total["device_class"], total["state_class"]) == ("volume", "total_increasing")
    assert "expire_after" not in flow, "no interval is known after one reading"
    # a second reading of the same stream: state only
    assert [p.topic for p in reading(core, Flow("w1:28-ff/x", 1.6, 10.1), seq=1, now=1.0)] \
        == [topics[1], state], "the interval is now known: expire_after is published once"
    assert [p.topic for p in reading(core, Flow("w1:28-ff/x", 1.6, 10.2), seq=2, now=2.0)] \
        == [state]


def test_unique_ids_are_stable_and_distinct_across_nodes_types_sensors_and_fields() -> None:
    ids = {unique_id(n, t, s, f) for n in (A, B) for t in ("sensors.Flow", "sensors.Temp")
           for s in ("i2c:1/0x76", "i2c:1_0x76", "-") for f in ("a", "b")}
    assert len(ids) == 2 * 2 * 3 * 2
    assert unique_id(A, "sensors.Flow", "x", "total") == unique_id(A, "sensors.Flow", "x", "total")
    assert all(re.fullmatch(r"ganglion_[0-9a-f]{16}_[A-Za-z0-9_-]+_[0-9a-f]{8}", i) for i in ids)


def test_per_component_mode_publishes_one_config_per_entity_with_device_and_origin() -> None:
    core = BridgeCore(BridgeSettings(ha_mode="component", version="0.1.0"), now=0.0)
    out = reading(core, Temperature("w1:1", 20.5))
    configs = [p for p in out if p.topic.startswith("homeassistant/")]
    assert len(configs) == 1
    uid = unique_id(A, "sensors.Temperature", "w1:1", "celsius")
    assert configs[0].topic == f"homeassistant/sensor/{uid}/config"
    doc = json.loads(configs[0].payload)
    check_sensor_entity(doc, {"ganglion/brewpi/sensors.Temperature/w1:1"})
    assert doc["device"]["identifiers"] == ["ganglion_0102030405060708"]
    assert doc["device"]["sw_version"] == "0.1.0" and doc["origin"]["name"] == "ganglion"
    assert (doc["unit_of_measurement"], doc["device_class"]) == ("°C", "temperature")


def test_only_numeric_fields_become_entities_and_optional_ones_count() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    out = reading(core, Position("gps:0", 1.0, 2.0, "GGA", altitude_m=3.0))
    doc = json.loads(by_topic(out)["homeassistant/device/ganglion_0102030405060708/config"].payload)
    names = sorted(c["value_template"] for c in doc["cmps"].values())
    assert names == sorted("{{ value_json['" + f + "'] }}" for f in (
        "latitude_deg", "longitude_deg", "altitude_m", "speed_mps", "course_deg", "satellites",
        "hdop"))


def test_a_type_nobody_described_gets_entities_from_its_values_and_field_names() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    out = core.reading("x.Custom", {"sensor": "s", "celsius": 3.5, "count": 2, "on": True,
                                    "label": "hi"}, sender=A, seq=0, sent_ns=0, sensor="s",
                       node=NODE_A, schema=None, now=0.0)
    doc = json.loads(out[1].payload)
    got = {c["value_template"]: (c.get("device_class"), c.get("unit_of_measurement"))
           for c in doc["cmps"].values()}
    assert got == {"{{ value_json['celsius'] }}": ("temperature", "°C"),
                   "{{ value_json['count'] }}": (None, None)}
    # the schema arrives later (announced by the publisher): the config is published again
    described = type_schema(Temperature)
    again = core.reading("x.Custom", {"sensor": "s", "celsius": 3.6}, sender=A, seq=1,
                         sent_ns=0, sensor="s", node=NODE_A, schema=described, now=1.0)
    assert any(p.topic.endswith("/config") for p in again)


def test_availability_follows_membership_and_comes_back() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    reading(core, Temperature("t", 1.0))
    assert core.peers({A: "brewpi"}, 1.0) == []
    gone = core.peers({}, 2.0)
    assert [(p.topic, p.payload, p.retain) for p in gone] == \
        [("ganglion/brewpi/availability", b"offline", True)]
    assert core.peers({}, 3.0) == []
    back = core.peers({A: "brewpi"}, 4.0)
    assert [p.payload for p in back] == [b"online"]


def test_reconnect_and_home_assistant_online_republish_everything() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    reading(core, Temperature("t", 1.0))
    reading(core, Temperature("t", 1.0), node=NodeDevice(B, "cellar"))
    again = core.connected()
    assert again[0] == Publish("ganglion/bridge/state", b"online", 1, True)
    assert sum(p.topic.endswith("/config") for p in again) == 2
    assert sum(p.topic.endswith("/availability") for p in again) == 2
    assert len(core.ha_status(b"online")) == 4 and core.ha_status(b"offline") == []


def test_expire_after_follows_the_interval_with_hysteresis() -> None:
    assert expire_step(1.0) == 10 and expire_step(5.0) == 30 and expire_step(1e9) == EXPIRE_STEPS[-1]
    core = BridgeCore(SETTINGS, now=0.0)
    configs = []
    now = 0.0
    for i in range(40):
        now += 1.0 if i < 20 else 1.3 if i % 2 else 0.7  # then jitter around 1 s
        out = reading(core, Temperature("t", 1.0), seq=i, now=now)
        configs += [json.loads(p.payload) for p in out if p.topic.endswith("/config")]
    expires = [next(iter(c["cmps"].values())).get("expire_after") for c in configs]
    assert expires == [None, 10], "steady one-second readings settle on one step"
    slow = reading(core, Temperature("t", 1.0), seq=100, now=now + 1000.0)
    assert any(p.topic.endswith("/config") for p in slow), "a long gap grows expire_after at once"


def test_last_values_do_not_count_as_an_interval() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    reading(core, Temperature("t", 1.0), now=0.0, last_value=True)
    out = reading(core, Temperature("t", 1.0), now=500.0, seq=1)
    assert not any(p.topic.endswith("/config") for p in out)


def test_a_vanished_node_and_a_silent_sensor_are_forgotten_after_forget_after() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    reading(core, Temperature("t1", 1.0), now=0.0)
    reading(core, Temperature("t2", 1.0), now=0.0)
    reading(core, Temperature("t1", 1.0), node=NodeDevice(B, "cellar"), now=0.0)
    for now in range(0, 100, 10):
        reading(core, Temperature("t1", 1.0), now=float(now), seq=now)  # t2 goes silent
    core.peers({A: "brewpi"}, 50.0)  # cellar is lost at 50 s
    assert core.tick(99.0) == []
    out = core.tick(150.0)
    topics = {p.topic: p.payload for p in out}
    assert topics["homeassistant/device/ganglion_1112131415161718/config"] == b""
    assert topics["ganglion/cellar/availability"] == b""
    assert topics["ganglion/cellar/sensors.Temperature/t1"] == b""
    assert topics["ganglion/brewpi/sensors.Temperature/t2"] == b""
    brew = json.loads(topics["homeassistant/device/ganglion_0102030405060708/config"])
    t2 = unique_id(A, "sensors.Temperature", "t2", "celsius")
    assert brew["cmps"][t2] == {"platform": "sensor"}, "HA removes a component sent bare"
    assert core.stats()["nodes"] == 1


def test_stale_configs_found_at_start_are_cleared_after_the_grace_period_only() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    old = BridgeCore(SETTINGS, now=0.0)
    ghost = reading(old, Temperature("gone", 1.0), node=NodeDevice(B, "ghost"))
    live = reading(old, Temperature("t", 1.0)) + reading(old, Temperature("old", 1.0))
    for p in ghost + live:
        if p.topic.endswith("/config"):
            core.retained_config(p.topic, p.payload)
    core.retained_config("homeassistant/device/zigbee_1/config",
                         json.dumps({"origin": {"name": "Zigbee2MQTT"}, "cmps": {}}).encode())
    reading(core, Temperature("t", 1.0), now=1.0)
    assert core.tick(50.0) == [] or all(not p.topic.endswith("/config") for p in core.tick(50.0))
    out = by_topic(core.tick(101.0))
    assert out["homeassistant/device/ganglion_1112131415161718/config"].payload == b""
    brew = json.loads(out["homeassistant/device/ganglion_0102030405060708/config"].payload)
    assert brew["cmps"][unique_id(A, "sensors.Temperature", "old", "celsius")] == \
        {"platform": "sensor"}
    assert "homeassistant/device/zigbee_1/config" not in out, "somebody else's config"
    assert core.tick(200.0) == []


def test_purge_clears_every_config_of_this_prefix_only() -> None:
    core = BridgeCore(SETTINGS, now=0.0)
    other = BridgeCore(BridgeSettings(prefix="elsewhere"), now=0.0)
    for p in reading(BridgeCore(SETTINGS, now=0.0), Temperature("t", 1.0)):
        if p.topic.endswith("/config"):
            core.retained_config(p.topic, p.payload)
            other.retained_config(p.topic, p.payload)
    assert [(p.topic, p.payload) for p in core.purge()] == \
        [("homeassistant/device/ganglion_0102030405060708/config", b"")]
    assert other.purge() == []


@pytest.mark.parametrize("text, want", [
    ("a/b", "a_b"), ("a+b#c", "a_b_c"), ("", "_"), ("w1:28-ff", "w1:28-ff"),
])
def test_topic_levels_hold_no_separators_or_wildcards(text: str, want: str) -> None:
    assert level(text) == want
    assert reading_topic("p", "n/x", "t", text).count("/") == 3


def test_reading_payloads_are_json_for_every_kind() -> None:
    import datetime as dt
    body = json.loads(reading_payload({"b": b"\x01", "t": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                       "nan": float("nan"), "seq": 7}, sent_ns=0, seq=3))
    assert body == {"ts": "1970-01-01T00:00:00.000000+00:00", "seq": 7, "b": "01",
                    "t": "2024-01-01T00:00:00+00:00", "nan": None}
    assert sensor_label(None) == "-" and sensor_label(("a", 2)) == "a,2"


def test_settings_and_addresses_are_checked() -> None:
    for bad in ({"prefix": "a/#"}, {"ha_prefix": "/x"}, {"ha_mode": "both"}, {"qos": 2},
                {"forget_after": 0}):
        with pytest.raises(ValueError):
            BridgeSettings(**bad)  # type: ignore[arg-type]
    assert str(parse_broker("mqtts://ha@example.org")) == "mqtts://ha@example.org:8883"
    assert parse_broker("127.0.0.1:1884").port == 1884
    for bad_url in ("http://x", "mqtt://u:p@x", "mqtt://x/path", "mqtt://"):
        with pytest.raises(ConfigError):
            parse_broker(bad_url)


def test_the_outbox_is_bounded_by_count_and_bytes_and_counts_what_it_drops() -> None:
    box = Outbox(max_messages=3, max_bytes=100)
    for i in range(5):
        box.put(f"t/{i}", b"x" * 10, 0, True)
    assert len(box) == 3 and box.dropped == 2
    assert box.pop() == ("t/2", b"x" * 10, 0, True)
    box.put("big", b"y" * 80, 0, False)  # 83 bytes: 13 + 13 + 83 > 100, the oldest goes
    assert len(box) == 2 and box.dropped == 3 and box.bytes == 96
    box.put("huge", b"z" * 200, 0, False)  # larger than the whole queue: refused
    assert box.dropped == 4 and len(box) == 2


def test_commands_are_validated_by_the_type_and_refused_with_one_line() -> None:
    assert parse_route("ganglion/set/+=sensors.Temperature").topic == "ganglion/set/+"
    for bad in ("noequals", "=x.Y", "a=not a type"):
        with pytest.raises(ConfigError):
            parse_route(bad)
    msg = to_message("sensors.Temperature", b'{"sensor": "set", "celsius": 64}')
    assert msg == Temperature("set", 64.0)
    for payload, reason in ((b"nope", "not JSON"), (b"[1]", "JSON object"),
                            (b'{"sensor": "s", "celsius": "hot"}', "celsius"),
                            (b'{"sensor": "s", "celsius": 1, "x": 2}', "no field x")):
        with pytest.raises(ValueError, match=reason) as info:
            to_message("sensors.Temperature", payload)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="no publisher announced"):
        to_message("nobody.Knows", b"{}")
    remote = type_schema(Temperature)
    rec = to_message("remote.Temp", b'{"sensor": "a", "celsius": 2}',
                     schema=remote)
    assert rec == Record("remote.Temp", {"sensor": "a", "celsius": 2})
    with pytest.raises(ValueError, match="expected float"):
        to_message("remote.Temp", b'{"celsius": "x"}', schema=remote)


def test_without_home_assistant_only_readings_and_availability_go_out() -> None:
    core = BridgeCore(BridgeSettings(ha=False, retain=False, qos=1), now=0.0)
    out = reading(core, Temperature("t", 1.0)) + reading(core, Temperature("t", 2.0), now=1.0)
    assert [(p.topic, p.retain, p.qos) for p in out] == [
        ("ganglion/brewpi/availability", True, 1),
        ("ganglion/brewpi/sensors.Temperature/t", False, 1),
        ("ganglion/brewpi/sensors.Temperature/t", False, 1)]
    assert not any(p.topic.endswith("/config") for p in core.connected() + core.tick(1e9))
