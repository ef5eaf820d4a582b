"""Types that describe themselves: declared metadata, the conventions behind it, the wire form."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from ganglion import quantity, type_schema
from ganglion.errors import TypeRegistrationError
from ganglion.logger.catalog import describe
from ganglion.logger.schema import open_log
from ganglion.types import Record, TypeRegistry, TypeSchema, schema_fingerprint, type_of
from hardware.messages import Counter, Position
from hardware.readings import Flow, Humidity, Pressure, Temperature


def test_declared_metadata_is_in_the_schema_and_not_in_the_fingerprint() -> None:
    reg = TypeRegistry()

    @reg.message("t.Plain", key="sensor")
    @dataclasses.dataclass
    class Plain:
        sensor: str
        flow: float

    plain_fp = reg.type_of(Plain).fingerprint

    other = TypeRegistry()

    @other.message("t.Plain", key="sensor")
    @dataclasses.dataclass
    class Described:
        """Beer through the chiller."""

        sensor: str
        flow: float = quantity(unit="L/min", kind="volume_flow_rate", state="measurement",
                               description="through the chiller")

    schema = other.type_schema(Described)
    assert other.type_of(Described).fingerprint == plain_fp
    assert schema.description == "Beer through the chiller."
    assert schema.key == ("sensor",)
    flow = schema.field("flow")
    assert flow is not None
    assert (flow.wire, flow.unit, flow.device_class, flow.state_class, flow.description,
            flow.declared) == ("float", "L/min", "volume_flow_rate", "measurement",
                               "through the chiller", True)
    sensor = schema.field("sensor")
    assert sensor is not None and sensor.unit is None and sensor.state_class is None
    assert not sensor.numeric and flow.numeric
    assert schema_fingerprint(schema.canonical) == schema.fingerprint


def test_a_plain_metadata_mapping_works_like_the_helper() -> None:
    reg = TypeRegistry()

    @reg.message("t.Meta")
    @dataclasses.dataclass
    class Meta:
        celsius: float = dataclasses.field(metadata={"unit": "K", "kind": "temperature"})

    f = reg.type_schema("t.Meta").field("celsius")
    assert f is not None and (f.unit, f.device_class, f.declared) == ("K", "temperature", True)


def test_types_that_declare_nothing_fall_back_to_the_field_name_conventions() -> None:
    reg = TypeRegistry()

    @reg.message("t.Old")
    @dataclasses.dataclass
    class Old:
        celsius: float
        hpa: float
        percent: float
        total_litres: float
        count: int
        label: str

    s = reg.type_schema(Old)
    got = {f.name: (f.unit, f.device_class, f.state_class, f.declared) for f in s.fields}
    assert got == {
        "celsius": ("°C", "temperature", "measurement", False),
        "hpa": ("hPa", "pressure", "measurement", False),
        "percent": ("%", None, "measurement", False),  # humidity or battery: not guessed
        "total_litres": ("L", "volume", "total_increasing", False),
        "count": (None, None, "measurement", False),
        "label": (None, None, None, False),
    }
    assert s.description == ""  # the dataclass's generated signature is no description


@pytest.mark.parametrize("meta, match", [
    ({"kind": "temprature"}, "not a Home Assistant device class"),
    ({"state_class": "gauge"}, "state_class 'gauge'"),
    ({"unit": 5}, "must be text"),
])
def test_bad_metadata_is_refused_at_registration_naming_the_field(meta: dict[str, object],
                                                                    match: str) -> None:
    reg = TypeRegistry()

    @dataclasses.dataclass
    class Bad:
        value: float = dataclasses.field(metadata=meta)

    with pytest.raises(TypeRegistrationError, match=rf"t\.Bad\.value: .*{match}"):
        reg.register(Bad, "t.Bad")


def test_the_built_in_sensor_types_declare_their_units_and_kinds() -> None:
    expected = {
        (Temperature, "celsius"): ("°C", "temperature", "measurement"),
        (Humidity, "percent"): ("%", "humidity", "measurement"),
        (Pressure, "hpa"): ("hPa", "pressure", "measurement"),
        (Flow, "litres_per_minute"): ("L/min", "volume_flow_rate", "measurement"),
        (Flow, "total_litres"): ("L", "volume", "total_increasing"),
        (Position, "altitude_m"): ("m", "distance", "measurement"),
        (Counter, "total"): (None, None, "total_increasing"),
    }
    for (cls, name), want in expected.items():
        f = type_schema(cls).field(name)
        assert f is not None and f.declared, (cls, name)
        assert (f.unit, f.device_class, f.state_class) == want, (cls, name)
    assert type_schema(Temperature).description == "Air or liquid temperature."


def test_the_plain_form_round_trips_and_refuses_what_is_out_of_bounds() -> None:
    schema = type_schema(Flow)
    back = TypeSchema.from_plain(json.loads(json.dumps(schema.to_plain())))
    assert back.fields == schema.fields and back.fingerprint == schema.fingerprint
    assert back.source == "network" and back.key == ("sensor",)
    plain = schema.to_plain()
    with pytest.raises(ValueError, match="at most 64"):
        TypeSchema.from_plain({**plain, "fields": [plain["fields"][0]] * 65})
    with pytest.raises(ValueError, match="device_class"):
        TypeSchema.from_plain({**plain, "fields": [{"name": "x", "wire": "float",
                                                    "device_class": "bogus"}]})
    with pytest.raises(ValueError, match="name is missing"):
        TypeSchema.from_plain({**plain, "name": None})
    with pytest.raises(ValueError, match="at most 200"):
        TypeSchema.from_plain({**plain, "description": "x" * 201})


def test_the_logger_stores_units_and_the_schema_of_a_class_and_of_an_announced_type(
        tmp_path: Path) -> None:
    version = describe("sensors.Temperature", Temperature("a", 1.0), {}, None)
    assert json.loads(version.units or "") == {"celsius": "°C"}
    assert json.loads(version.schema or "")["fields"][1]["device_class"] == "temperature"

    announced = type_schema(Flow)
    fp = type_of(Flow).fingerprint
    asked: list[tuple[str, bytes | None]] = []

    def lookup(name: str, fingerprint: bytes | None) -> TypeSchema | None:
        asked.append((name, fingerprint))
        return announced
    rec = Record("sensors.Flow", {"sensor": "x", "litres_per_minute": 1.0, "total_litres": 2.0})
    observed = describe("sensors.Flow", rec, dict(rec.fields), fp, lookup)
    assert asked == [("sensors.Flow", fp)]
    assert observed.source == "observed"
    assert json.loads(observed.schema or "")["fields"][2]["device_class"] == "volume"
    conn = open_log(tmp_path / "log.db")
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(types)")]
    finally:
        conn.close()
    assert "units" in columns and "schema" in columns
    assert sqlite3.connect(tmp_path / "log.db").execute("PRAGMA user_version").fetchone() == (4,)


def test_the_schema_cache_is_bounded_checks_fingerprints_and_throttles_asking() -> None:
    from ganglion.schemas import SchemaCache, check_announced

    good = type_schema(Flow)
    check_announced(good)
    with pytest.raises(ValueError, match="not the hash"):
        check_announced(dataclasses.replace(good, fingerprint=bytes(8)))
    with pytest.raises(ValueError, match="key field"):
        check_announced(dataclasses.replace(good, key=("nope",)))
    cache = SchemaCache(max_entries=2, ask_seconds=1.0)
    assert cache.should_ask("a.B", None, 10.0) and not cache.should_ask("a.B", None, 10.5)
    assert cache.should_ask("a.B", None, 11.0)
    versions = [dataclasses.replace(good, name=f"t.V{i}", fingerprint=bytes([i]) * 8)
                for i in range(3)]
    for v in versions:
        assert cache.put(v)
    assert not cache.put(versions[2])
    assert len(cache) == 2 and cache.counts["schema_evicted"] == 1
    assert cache.get("t.V0") is None and cache.get("t.V2") == versions[2]
    assert cache.get("t.V1", bytes([1]) * 8) == versions[1]
