"""Sensor reading types: registered names, fields with units, payload round trips."""

from __future__ import annotations

import dataclasses

import pytest

from ganglion.types import (
    Record,
    TypeRegistry,
    as_dict,
    decode_payload,
    encode_payload,
    lookup,
    type_of,
)
from hardware.readings import Flow, Humidity, Pressure, Temperature

EXAMPLES = [
    Temperature(sensor="28-000005e2fdc3", celsius=21.5),
    Humidity(sensor="i2c-1:0x44", percent=47.25),
    Pressure(sensor="sim:roof/pressure", hpa=1013.25),
    Flow(sensor="gpio17", litres_per_minute=6.5, total_litres=1234.5),
]


def elsewhere() -> TypeRegistry:
    """The registry of a program that knows some type, but none of the sensor readings."""
    registry = TypeRegistry()

    @registry.message("elsewhere.Thing")
    @dataclasses.dataclass
    class Thing:
        x: int

    # Not empty on purpose: the payload codec treats an empty registry as
    # "use the default one" (``registry or default_registry``).
    assert len(registry) == 1
    return registry


@pytest.mark.parametrize(
    ("cls", "name", "fields"),
    [
        (Temperature, "sensors.Temperature", ["sensor", "celsius"]),
        (Humidity, "sensors.Humidity", ["sensor", "percent"]),
        (Pressure, "sensors.Pressure", ["sensor", "hpa"]),
        (Flow, "sensors.Flow", ["sensor", "litres_per_minute", "total_litres"]),
    ],
)
def test_reading_types_are_registered_with_unit_named_fields(cls: type, name: str,
                                                             fields: list[str]) -> None:
    mtype = type_of(cls)
    assert mtype.name == name
    assert lookup(name) is mtype
    assert sorted(f.name for f in mtype.fields) == sorted(fields)


@pytest.mark.parametrize("reading", EXAMPLES, ids=lambda r: type(r).__name__)
def test_readings_round_trip_through_their_payload(reading: object) -> None:
    mtype = type_of(reading)
    back = decode_payload(mtype.name, encode_payload(reading), mtype.fingerprint)
    assert back == reading
    assert type(back) is type(reading)


@pytest.mark.parametrize("reading", EXAMPLES, ids=lambda r: type(r).__name__)
def test_a_receiver_without_the_class_reads_every_field(reading: object) -> None:
    mtype = type_of(reading)
    rec = decode_payload(mtype.name, encode_payload(reading), mtype.fingerprint,
                         registry=elsewhere())
    assert isinstance(rec, Record)
    assert rec.fields == as_dict(reading)


def test_fingerprints_differ_between_reading_types() -> None:
    prints = {type_of(r).fingerprint for r in EXAMPLES}
    assert len(prints) == len(EXAMPLES)
