"""The bounded last-value table (ganglion.runtime.lastvalues) and type keys (@message(key=))."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import cbor2
import pytest

from ganglion.errors import TypeRegistrationError
from ganglion.runtime.lastvalues import LastValues
from ganglion.types import Record, TypeRegistry

REG = TypeRegistry()


@REG.message("lvtest.Temp", key="sensor")
@dataclass
class Temp:
    sensor: str
    celsius: float


@REG.message("lvtest.Reading", key=("sensor", "quantity"))
@dataclass
class Reading:
    sensor: str
    quantity: str
    value: float


@REG.message("lvtest.Plain")
@dataclass
class Plain:
    value: int


FP = bytes(8)


def table(max_keys: int = 256) -> LastValues:
    return LastValues(max_keys=max_keys, types=REG.lookup)


def test_key_fields_are_declared_and_read() -> None:
    temp, reading, plain = (REG.lookup(n) for n in ("lvtest.Temp", "lvtest.Reading",
                                                    "lvtest.Plain"))
    assert temp is not None and reading is not None and plain is not None
    assert temp.key_fields == ("sensor",) and reading.key_fields == ("sensor", "quantity")
    assert plain.key_fields == () and plain.key_of(Plain(1)) is None
    assert temp.key_of(Temp("w1:a", 1.0)) == ("w1:a",)
    assert reading.key_of(Record("lvtest.Reading", {"sensor": "s", "quantity": "q"})) == ("s", "q")
    assert reading.key_of({"sensor": "s"}) == ("s", None)  # an older sender's payload


def test_a_key_does_not_change_the_fingerprint() -> None:
    reg = TypeRegistry()

    @reg.message("lvtest.A", key="sensor")
    @dataclass
    class A:
        sensor: str
        celsius: float

    @reg.message("lvtest.B")
    @dataclass
    class B:
        sensor: str
        celsius: float

    a, b = reg.lookup("lvtest.A"), reg.lookup("lvtest.B")
    assert a is not None and b is not None
    assert a.fingerprint == b.fingerprint and a.schema == b.schema


def test_the_builtin_reading_types_are_keyed_by_sensor() -> None:
    import hardware.messages
    import hardware.readings
    from ganglion.types import type_of

    for cls in (hardware.readings.Temperature, hardware.readings.Humidity,
                hardware.readings.Pressure, hardware.readings.Flow, hardware.messages.Position,
                hardware.messages.DigitalInput, hardware.messages.Counter,
                hardware.messages.SensorInfo):
        assert type_of(cls).key_fields == ("sensor",), cls
    # a serial device prints several quantities under one sensor
    assert type_of(hardware.messages.Reading).key_fields == ("sensor", "quantity")


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(("annotation", "ok"), [
    (str, True), (int, True), (bool, True), (bytes, True), (Colour, True),
    (float, False), (list[str], False), (str | None, False),
])
def test_key_field_kinds(annotation: object, ok: bool) -> None:
    reg = TypeRegistry()
    cls = dataclass(type("K", (), {"__annotations__": {"k": annotation, "v": int}}))
    if ok:
        assert reg.register(cls, "lvtest.K", key="k").key_fields == ("k",)
    else:
        with pytest.raises(TypeRegistrationError, match="key field 'k' is of kind"):
            reg.register(cls, "lvtest.K", key="k")


def test_key_field_must_exist_and_not_repeat() -> None:
    reg = TypeRegistry()
    cls = dataclass(type("K", (), {"__annotations__": {"sensor": str}}))
    with pytest.raises(TypeRegistrationError, match="'probe' is not a field"):
        reg.register(cls, "lvtest.K", key="probe")
    with pytest.raises(TypeRegistrationError, match="names a field twice"):
        reg.register(cls, "lvtest.K", key=("sensor", "sensor"))


def test_unkeyed_type_keeps_one_latest() -> None:
    lv = table()
    for seq in range(5):
        lv.keep("lvtest.Plain", Plain(seq), None, FP, seq, 1000 + seq)
    [(key, entry)] = lv.entries("lvtest.Plain")
    assert key is None and entry.seq == 4 and entry.msg == Plain(4)
    assert lv.counts() == {} and lv.keys() == {"lvtest.Plain": 1}


def test_keyed_type_keeps_one_per_key_in_sequence_order() -> None:
    lv = table()
    probes = ["w1:a", "w1:b", "w1:c"]
    for seq in range(9):
        lv.keep("lvtest.Temp", Temp(probes[seq % 3], float(seq)), None, FP, seq, seq)
    lv.keep("lvtest.Temp", Temp("w1:a", 99.0), None, FP, 9, 9)
    entries = lv.entries("lvtest.Temp")
    assert [(k, e.seq) for k, e in entries] == [(("w1:b",), 7), (("w1:c",), 8), (("w1:a",), 9)]
    assert lv.latest("lvtest.Temp") is entries[-1][1]
    assert lv.counts() == {("lvtest.Temp", ("w1:a",)): 4, ("lvtest.Temp", ("w1:b",)): 3,
                           ("lvtest.Temp", ("w1:c",)): 3}


def test_two_field_key_separates_quantities_of_one_sensor() -> None:
    lv = table()
    lv.keep("lvtest.Reading", Reading("serial:x", "t", 1.0), None, FP, 0, 0)
    lv.keep("lvtest.Reading", Reading("serial:x", "rh", 50.0), None, FP, 1, 1)
    lv.keep("lvtest.Reading", Reading("serial:x", "t", 2.0), None, FP, 2, 2)
    assert [k for k, _ in lv.entries("lvtest.Reading")] == [("serial:x", "rh"), ("serial:x", "t")]


def test_a_full_table_evicts_the_least_recently_published_key() -> None:
    lv = table(max_keys=3)
    for seq, probe in enumerate(["a", "b", "c", "a", "d"]):  # "b" is the stalest at "d"
        lv.keep("lvtest.Temp", Temp(probe, 0.0), None, FP, seq, seq)
    assert [k for k, _ in lv.entries("lvtest.Temp")] == [("c",), ("a",), ("d",)]
    assert lv.evicted == 1
    for seq in range(5, 1005):  # a counter in the key field: memory stays bounded
        lv.keep("lvtest.Temp", Temp(f"n{seq}", 0.0), None, FP, seq, seq)
    assert lv.keys()["lvtest.Temp"] == 3 and lv.evicted == 1001


def encode_payload(msg: object) -> bytes:
    mtype = REG.type_of(msg)
    return mtype.encode(msg)


def test_key_read_from_the_payload_when_only_bytes_are_kept() -> None:
    lv = table()
    for seq, probe in enumerate(["a", "b", "a"]):
        lv.keep("lvtest.Temp", None, encode_payload(Temp(probe, float(seq))), FP, seq, seq,
                newer_only=True)
    assert [(k, e.seq) for k, e in lv.entries("lvtest.Temp")] == [(("b",), 1), (("a",), 2)]
    # an older message released late does not replace a newer one of its key
    lv.keep("lvtest.Temp", None, encode_payload(Temp("a", 0.0)), FP, 0, 0, newer_only=True)
    assert dict(lv.entries("lvtest.Temp"))[("a",)].seq == 2


def test_an_unreadable_key_shares_one_entry() -> None:
    lv = table()
    lv.keep("lvtest.Temp", None, cbor2.dumps([1, 2]), FP, 0, 0)  # not a map
    lv.keep("lvtest.Temp", None, cbor2.dumps({"sensor": [1]}), FP, 1, 1)  # unhashable value
    assert [(k, e.seq) for k, e in lv.entries("lvtest.Temp")] == [(None, 1)]


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        LastValues(max_keys=0)


def test_a_payload_encoded_later_is_kept_for_its_entry_only() -> None:
    lv = table()
    lv.keep("lvtest.Plain", Plain(1), None, FP, 1, 1)
    lv.keep("lvtest.Temp", Temp("a", 1.0), None, FP, 2, 2)
    lv.store_payload("lvtest.Plain", None, 1, b"p1")
    lv.store_payload("lvtest.Temp", ("a",), 2, b"t2")
    lv.store_payload("lvtest.Temp", ("a",), 1, b"stale")  # an older number: ignored
    assert lv.entries("lvtest.Plain")[0][1].payload == b"p1"
    assert lv.entries("lvtest.Temp")[0][1].payload == b"t2"
    assert lv.keys() == {"lvtest.Plain": 1, "lvtest.Temp": 1}
