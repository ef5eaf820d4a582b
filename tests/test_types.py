"""Message types: registration rules, fingerprints, payload round trips, Record fallback."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Optional

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import DecodeError, EncodeError, TypeNameError, TypeRegistrationError
from ganglion.types import (
    Record,
    TypeRegistry,
    as_dict,
    decode_payload,
    encode_payload,
    is_valid_type_name,
    lookup,
    message,
    registered,
    schema_fingerprint,
    type_name_of,
    type_of,
    validate_type_name,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: float | None = None


@dataclass
class Inner:
    when: dt.datetime
    tags: list[str]


@dataclass
class Outer:
    inner: Inner
    points: list[Point]


@message("test_types.Everything")
@dataclass
class Everything:
    i: int
    f: float
    b: bool
    s: str
    raw: bytes
    when: dt.datetime
    color: Color
    level: Level
    maybe: Optional[int]  # noqa: UP045 - the typing spelling must work too
    maybe2: str | None
    ints: list[int]
    nested: Outer
    nested_opt: Point | None
    matrix: list[list[float]]


@message("test_types.Reading")
class Reading:  # not decorated with @dataclass: @message makes it one
    celsius: float
    sensor: str = "probe"
    tags: list[str] = field(default_factory=list)


@message("test_types.Frozen")
@dataclass(frozen=True, slots=True)
class Frozen:
    a: int
    b: str


@message("test_types.Empty")
class Empty:
    pass


def fresh() -> TypeRegistry:
    return TypeRegistry()


# -- names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["brewery.Temperature", "a.b", "_x.y_1.Z", "a." + "b" * 198]
)
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_type_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Temperature", "namespace"),
        ("", "empty"),
        ("a..b", "empty part"),
        (".a.b", "empty part"),
        ("a.b.", "empty part"),
        ("a.1b", "not an identifier"),
        ("a.b-c", "not an identifier"),
        ("a.b c", "not an identifier"),
        ("brauerei.Temperatür", "ASCII"),
        ("a." + "b" * 199, "limit is 200"),
        (42, "must be a str"),
    ],
)
def test_invalid_names_say_which_rule_they_break(name: object, rule: str) -> None:
    with pytest.raises(TypeNameError, match=rule):
        validate_type_name(name)


def test_message_decorator_rejects_bad_name_at_once() -> None:
    with pytest.raises(TypeNameError, match="namespace"):
        message("NoDots")


# -- registration ----------------------------------------------------------------


def test_registered_type_is_found_by_name_class_and_instance() -> None:
    mtype = lookup("test_types.Reading")
    assert mtype is not None
    assert mtype.cls is Reading
    assert type_of(Reading) is mtype
    assert type_of(Reading(1.0)) is mtype
    assert len(mtype.fingerprint) == 8
    assert [f.name for f in mtype.fields] == ["celsius", "sensor", "tags"]
    assert [f.required for f in mtype.fields] == [True, False, False]
    assert mtype in registered()
    assert type_name_of(Reading(1.0)) == "test_types.Reading"


def test_message_makes_plain_class_a_dataclass() -> None:
    assert dataclasses.is_dataclass(Reading)
    assert Reading(2.0) == Reading(celsius=2.0, sensor="probe", tags=[])


def test_unregistered_class_is_refused_clearly() -> None:
    with pytest.raises(TypeRegistrationError, match="not a registered message type"):
        type_of(Point(1))
    with pytest.raises(TypeRegistrationError):
        encode_payload(Point(1))


def test_lookup_of_unknown_name_is_none() -> None:
    assert lookup("test_types.Nope") is None


def test_same_class_twice_under_same_name_is_idempotent() -> None:
    reg = fresh()
    first = reg.register(Point, "geo.Point")
    assert reg.register(Point, "geo.Point") is first
    assert len(reg) == 1


def test_two_classes_under_one_name_are_refused() -> None:
    reg = fresh()
    reg.register(Point, "geo.Point")

    @dataclass
    class Other:
        z: int

    with pytest.raises(TypeRegistrationError, match="already registered"):
        reg.register(Other, "geo.Point")


def test_one_class_under_two_names_is_refused() -> None:
    reg = fresh()
    reg.register(Point, "geo.Point")
    with pytest.raises(TypeRegistrationError, match="cannot be two"):
        reg.register(Point, "geo.Point2")


def test_reloaded_class_replaces_the_old_one() -> None:
    reg = fresh()
    reg.register(Point, "geo.Point")
    again = dataclasses.make_dataclass(
        "Point", [("x", int), ("y", float | None, dataclasses.field(default=None))]
    )
    again.__module__, again.__qualname__ = Point.__module__, Point.__qualname__
    mtype = reg.register(again, "geo.Point")
    assert mtype.cls is again
    assert reg.type_of(again) is mtype
    with pytest.raises(TypeRegistrationError):
        reg.type_of(Point)


def test_unsupported_field_names_field_and_kinds() -> None:
    @dataclass
    class Bad:
        ok: int
        weird: dict[str, int]

    with pytest.raises(TypeRegistrationError, match=r"x\.Bad\.weird.*supported: int, float"):
        fresh().register(Bad, "x.Bad")


@pytest.mark.parametrize(
    "hint", [complex, tuple[int, int], int | str, list, set[int], object]
)
def test_unsupported_kinds_are_refused(hint: object) -> None:
    cls = dataclasses.make_dataclass("C", [("v", hint)])
    with pytest.raises(TypeRegistrationError, match="unsupported type"):
        fresh().register(cls, "x.C")


def test_unsupported_kind_inside_nested_dataclass_is_named() -> None:
    inner = dataclasses.make_dataclass("In", [("c", complex)])
    outer = dataclasses.make_dataclass("Out", [("inner", inner)])
    with pytest.raises(TypeRegistrationError, match=r"x\.Out\.inner\.c"):
        fresh().register(outer, "x.Out")


def test_recursive_dataclass_is_refused() -> None:
    with pytest.raises(TypeRegistrationError, match="recursive"):
        fresh().register(Node, "x.Node")


@dataclass
class Node:
    value: int
    child: Node | None = None


def test_enum_with_mixed_or_float_values_is_refused() -> None:
    class Mixed(enum.Enum):
        A = 1
        B = "b"

    class Floaty(enum.Enum):
        A = 1.5

    for e in (Mixed, Floaty):
        cls = dataclasses.make_dataclass("C", [("v", e)])
        with pytest.raises(TypeRegistrationError, match="all int or all str"):
            fresh().register(cls, "x.C")


def test_flag_enum_is_refused() -> None:
    class Perm(enum.Flag):
        R = 1
        W = 2

    cls = dataclasses.make_dataclass("C", [("v", Perm)])
    with pytest.raises(TypeRegistrationError, match="Flag"):
        fresh().register(cls, "x.C")


def test_unresolvable_annotation_is_refused() -> None:
    cls = dataclasses.make_dataclass("C", [("v", "NoSuchType")])
    with pytest.raises(TypeRegistrationError, match="cannot resolve"):
        fresh().register(cls, "x.C")


def test_non_dataclass_register_is_refused() -> None:
    class Plain:
        a: int

    with pytest.raises(TypeRegistrationError, match="not a dataclass"):
        fresh().register(Plain, "x.Plain")


def test_init_false_fields_are_not_on_the_wire() -> None:
    @dataclass
    class Derived:
        a: int
        double: int = field(init=False)

        def __post_init__(self) -> None:
            self.double = 2 * self.a

    reg = fresh()
    reg.register(Derived, "x.Derived")
    data = encode_payload(Derived(3), registry=reg)
    assert cbor2.loads(data) == {"a": 3}
    assert decode_payload("x.Derived", data, registry=reg) == Derived(3)


# -- fingerprints ------------------------------------------------------------------


def test_fingerprint_is_blake2b_of_canonical_schema() -> None:
    mtype = type_of(Reading)
    assert mtype.schema == "{celsius:float,sensor:str,tags:list<str>}"
    assert mtype.fingerprint == schema_fingerprint(mtype.schema)
    # Pinned: the fingerprint must be stable across runs, machines and Pythons.
    assert schema_fingerprint("{celsius:float,sensor:str,tags:list<str>}").hex() == (
        __import__("hashlib").blake2b(b"{celsius:float,sensor:str,tags:list<str>}",
                                      digest_size=8).hexdigest()
    )
    assert schema_fingerprint("{a:int}").hex() == "8780270c7c63cb73"  # b2sum -l 64


def test_schema_spells_every_kind() -> None:
    assert type_of(Everything).schema == (
        "{b:bool,color:enum<str>[\"green\",\"red\"],f:float,i:int,ints:list<int>,"
        "level:enum<int>[1,2],matrix:list<list<float>>,maybe:optional<int>,"
        "maybe2:optional<str>,nested:{inner:{tags:list<str>,when:datetime},"
        "points:list<{x:int,y:optional<float>}>},nested_opt:optional<{x:int,"
        "y:optional<float>}>,raw:bytes,s:str,when:datetime}"
    )


def test_field_order_does_not_change_fingerprint() -> None:
    a = dataclasses.make_dataclass("A", [("x", int), ("y", str)])
    b = dataclasses.make_dataclass("B", [("y", str), ("x", int)])
    reg = fresh()
    assert reg.register(a, "x.A").fingerprint == reg.register(b, "x.B").fingerprint


@pytest.mark.parametrize(
    "fields",
    [
        [("x", float), ("y", str)],  # kind changed
        [("z", int), ("y", str)],  # name changed
        [("x", int), ("y", str), ("w", int)],  # field added
        [("x", int | None), ("y", str)],  # now optional
    ],
)
def test_schema_changes_change_fingerprint(fields: list[tuple[str, object]]) -> None:
    reg = fresh()
    base = reg.register(dataclasses.make_dataclass("A", [("x", int), ("y", str)]), "x.A")
    other = reg.register(dataclasses.make_dataclass("B", fields), "x.B")
    assert base.fingerprint != other.fingerprint


def test_defaults_and_enum_member_names_do_not_change_fingerprint() -> None:
    class E1(enum.Enum):
        A = 1

    class E2(enum.Enum):
        RENAMED = 1

    reg = fresh()
    one = reg.register(dataclasses.make_dataclass("A", [("e", E1)]), "x.A")
    two = reg.register(
        dataclasses.make_dataclass("B", [("e", E2, dataclasses.field(default=E2.RENAMED))]), "x.B"
    )
    assert one.fingerprint == two.fingerprint


# -- payload round trips -------------------------------------------------------------

aware_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                               dt.timezone(dt.timedelta(hours=-8))]),
)
floats = st.floats(allow_nan=False)
points = st.builds(Point, x=st.integers(), y=st.none() | floats)
everything = st.builds(
    Everything,
    i=st.integers(min_value=-(2**70), max_value=2**70),
    f=floats,
    b=st.booleans(),
    s=st.text(),
    raw=st.binary(),
    when=aware_datetimes,
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    maybe=st.none() | st.integers(),
    maybe2=st.none() | st.text(),
    ints=st.lists(st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1), max_size=5),
    nested=st.builds(
        Outer,
        inner=st.builds(Inner, when=aware_datetimes, tags=st.lists(st.text(), max_size=3)),
        points=st.lists(points, max_size=3),
    ),
    nested_opt=st.none() | points,
    matrix=st.lists(st.lists(floats, max_size=3), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(everything)
def test_every_field_kind_round_trips(msg: Everything) -> None:
    mtype = type_of(msg)
    back = decode_payload(mtype.name, encode_payload(msg), mtype.fingerprint)
    assert type(back) is Everything
    assert back == msg


@settings(max_examples=200, deadline=None)
@given(everything)
def test_without_the_class_a_record_has_the_same_plain_fields(msg: Everything) -> None:
    data = encode_payload(msg)
    rec = decode_payload("test_types.Unknown", data)
    assert isinstance(rec, Record)
    assert rec.type_name == "test_types.Unknown"
    assert as_dict(rec) == as_dict(msg)
    # and a Record re-encodes to the same payload a class-less relay would send
    assert decode_payload("test_types.Everything", encode_payload(rec)) == msg


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_float_specials_round_trip(value: float) -> None:
    back = decode_payload("test_types.Reading", encode_payload(Reading(value)))
    assert isinstance(back, Reading)
    assert back.celsius == value or (value != value and back.celsius != back.celsius)


def test_payload_is_a_cbor_map_keyed_by_field_name() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=dt.UTC)
    p = Outer(Inner(when, ["a"]), [Point(1, 2.5)])
    reg = fresh()
    reg.register(Outer, "x.Outer")
    raw = cbor2.loads(encode_payload(p, registry=reg))
    assert raw == {"inner": {"when": when, "tags": ["a"]}, "points": [{"x": 1, "y": 2.5}]}


def test_datetime_wire_forms() -> None:
    reg = fresh()
    reg.register(Inner, "x.Inner")
    whole = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    frac = whole.replace(microsecond=1)
    far = dt.datetime(2500, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)
    enc = [encode_payload(Inner(w, []), registry=reg) for w in (whole, frac, far)]
    assert b"\xc1\x1a" in enc[0]  # tag 1, integer seconds
    assert b"\xc1\xfb" in enc[1]  # tag 1, float64 seconds
    assert b"\xc0" in enc[2]  # tag 0, RFC 3339 text
    for w, data in zip((whole, frac, far), enc, strict=True):
        got = decode_payload("x.Inner", data, registry=reg)
        assert isinstance(got, Inner) and got.when == w


def test_decoded_datetimes_keep_the_instant() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    when = dt.datetime(2026, 6, 1, 12, 0, tzinfo=plus2)
    reg = fresh()
    reg.register(Inner, "x.Inner")
    got = decode_payload("x.Inner", encode_payload(Inner(when, []), registry=reg), registry=reg)
    assert isinstance(got, Inner)
    assert got.when == when and got.when.utcoffset() is not None


def test_naive_datetime_is_refused_at_encode() -> None:
    reg = fresh()
    reg.register(Inner, "x.Inner")
    with pytest.raises(EncodeError, match=r"x\.Inner\.when: naive datetime"):
        encode_payload(Inner(dt.datetime(2026, 1, 1), []), registry=reg)


@pytest.mark.parametrize(
    ("msg", "where"),
    [
        (Reading("hot"), "celsius: expected float"),  # type: ignore[arg-type]
        (Reading(True), "celsius: expected float"),
        (Reading(1.0, sensor=3), "sensor: expected str"),  # type: ignore[arg-type]
        (Reading(1.0, tags=["a", 2]), "tags: expected str"),  # type: ignore[list-item]
        (Reading(1.0, tags="abc"), "tags: expected list"),  # type: ignore[arg-type]
    ],
)
def test_wrong_value_is_refused_naming_the_field(msg: Reading, where: str) -> None:
    with pytest.raises(EncodeError, match=where):
        encode_payload(msg)


def test_encode_converts_compatible_values() -> None:
    msg = Reading(3, sensor="x", tags=("a", "b"))  # type: ignore[arg-type]
    back = decode_payload("test_types.Reading", encode_payload(msg))
    assert back == Reading(3.0, "x", ["a", "b"])
    assert isinstance(back, Reading) and type(back.celsius) is float


def test_int_field_refuses_bool_and_bool_field_refuses_int() -> None:
    reg = fresh()
    cls = dataclasses.make_dataclass("C", [("i", int), ("b", bool)])
    reg.register(cls, "x.C")
    with pytest.raises(EncodeError, match="i: expected int"):
        encode_payload(cls(True, True), registry=reg)
    with pytest.raises(EncodeError, match="b: expected bool"):
        encode_payload(cls(1, 1), registry=reg)


def test_frozen_slotted_and_empty_messages_round_trip() -> None:
    for msg in (Frozen(1, "x"), Empty()):
        mtype = type_of(msg)
        assert decode_payload(mtype.name, encode_payload(msg), mtype.fingerprint) == msg
    assert encode_payload(Empty()) == b"\xa0"


# -- decoding rules ------------------------------------------------------------------


def test_unknown_fields_are_ignored() -> None:
    data = cbor2.dumps({"celsius": 1.5, "sensor": "a", "tags": [], "humidity": 40})
    assert decode_payload("test_types.Reading", data, None) == Reading(1.5, "a")


def test_missing_fields_with_defaults_are_filled() -> None:
    data = cbor2.dumps({"celsius": 1.5})
    fp = type_of(Reading).fingerprint
    assert decode_payload("test_types.Reading", data, fp) == Reading(1.5, "probe", [])


def test_float_field_accepts_cbor_integer() -> None:
    got = decode_payload("test_types.Reading", cbor2.dumps({"celsius": 7}))
    assert isinstance(got, Reading) and got.celsius == 7.0 and type(got.celsius) is float


def test_matching_fingerprint_with_bad_fields_is_a_decode_error() -> None:
    fp = type_of(Reading).fingerprint
    with pytest.raises(DecodeError, match="celsius: expected float"):
        decode_payload("test_types.Reading", cbor2.dumps({"celsius": "hot"}), fp)
    with pytest.raises(DecodeError, match="missing field 'celsius'"):
        decode_payload("test_types.Reading", cbor2.dumps({"sensor": "x"}), fp)


def test_mismatched_fingerprint_still_gives_the_class_when_fields_fit() -> None:
    data = cbor2.dumps({"celsius": 1.0, "sensor": "s", "extra": [1, 2]})
    assert decode_payload("test_types.Reading", data, bytes(8)) == Reading(1.0, "s")


@pytest.mark.parametrize("fingerprint", [bytes(8), None])
def test_mismatched_fingerprint_that_cannot_build_gives_a_record(
    fingerprint: bytes | None,
) -> None:
    data = cbor2.dumps({"sensor": "s", "kelvin": 300})
    got = decode_payload("test_types.Reading", data, fingerprint)
    assert got == Record("test_types.Reading", {"sensor": "s", "kelvin": 300})
    data = cbor2.dumps({"celsius": "warm"})
    assert decode_payload("test_types.Reading", data, fingerprint) == Record(
        "test_types.Reading", {"celsius": "warm"}
    )


def test_enum_decoding_is_by_value_and_type() -> None:
    reg = fresh()
    cls = dataclasses.make_dataclass("C", [("level", Level), ("color", Color)])
    mtype = reg.register(cls, "x.C")
    data = encode_payload(cls(Level.HIGH, Color.RED), registry=reg)
    assert cbor2.loads(data) == {"level": 2, "color": "red"}
    assert decode_payload("x.C", data, mtype.fingerprint, registry=reg) == cls(
        Level.HIGH, Color.RED
    )
    # CBOR true must not pass for the member valued 1, nor an unknown value for any.
    for bad in ({"level": True, "color": "red"}, {"level": 1, "color": "blue"}):
        with pytest.raises(DecodeError, match="is not a value of"):
            decode_payload("x.C", cbor2.dumps(bad), mtype.fingerprint, registry=reg)


def test_post_init_errors_become_decode_errors_or_records() -> None:
    @dataclass
    class Positive:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    reg = fresh()
    mtype = reg.register(Positive, "x.Positive")
    data = cbor2.dumps({"n": -1})
    with pytest.raises(DecodeError, match="negative"):
        decode_payload("x.Positive", data, mtype.fingerprint, registry=reg)
    assert decode_payload("x.Positive", data, None, registry=reg) == Record("x.Positive", {"n": -1})


def test_value_sharing_and_string_references_are_refused() -> None:
    # [x, x] nested with shared references: a few bytes per level, twice the nodes to walk.
    dag: list[object] = []
    for _ in range(12):
        dag = [dag, dag]
    for data in (cbor2.dumps({"a": dag}, value_sharing=True),
                 cbor2.dumps({"a": ["abc", "abc"]}, string_referencing=True)):
        assert len(data) < 200
        with pytest.raises(DecodeError, match=r"semantic tag (25|28|256)\b"):
            decode_payload("test_types.Unknown", data)


@pytest.mark.parametrize("tag", [4, 5, 30, 35, 36, 37, 100, 258, 260, 261, 1004, 55799])
def test_semantic_tags_other_than_datetime_and_bignum_are_refused(tag: int) -> None:
    data = cbor2.dumps({"a": cbor2.CBORTag(tag, "x")})
    with pytest.raises(DecodeError):
        decode_payload("test_types.Unknown", data)


def test_bignums_are_accepted() -> None:
    data = cbor2.dumps({"a": 2**100, "b": -(2**100)})
    assert decode_payload("test_types.Unknown", data) == Record(
        "test_types.Unknown", {"a": 2**100, "b": -(2**100)}
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid CBOR"),
        (b"\xff", "not valid CBOR"),
        (b"\x83\x01\x02\x03", "must be a CBOR map"),
        (b"\x01", "must be a CBOR map"),
        (cbor2.dumps({1: 2}), "not valid CBOR"),  # int keys: refused by strict_hashable_types
        (cbor2.dumps({"a": {b"k": 2}}), "text strings"),
        (cbor2.dumps({"a": cbor2.CBORTag(999, 1)}), "unsupported CBOR item"),
        (cbor2.dumps({"a": {"x", "y"}}), "not valid CBOR"),  # tag 258, a set
        (b"\xa1\x61a" + b"\x81" * 40 + b"\x00", "not valid CBOR|deeper"),
        (b"\xa2\x61a\x01\x61a\x02", "not valid CBOR"),  # duplicate key
        (bytes.fromhex("a16161d81c81d81d00"), "not valid CBOR|deeper|unsupported"),  # cycle
    ],
)
def test_bad_payloads_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_payload("test_types.Unknown", data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_payload_fuzz_raises_only_decode_error(data: bytes) -> None:
    for name, fp in (("test_types.Unknown", None), ("test_types.Everything", None),
                     ("test_types.Everything", type_of(Everything).fingerprint)):
        try:
            got = decode_payload(name, data, fp)
        except DecodeError:
            continue
        assert isinstance(got, Everything | Record)


@settings(max_examples=300, deadline=None)
@given(everything, st.data())
def test_decode_payload_fuzz_on_mutated_valid_payloads(msg: Everything, data: st.DataObject) -> None:
    payload = bytearray(encode_payload(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(payload)))
    for candidate in (bytes(payload), bytes(payload[:cut])):
        for fp in (type_of(Everything).fingerprint, None):
            try:
                got = decode_payload("test_types.Everything", candidate, fp)
            except DecodeError:
                continue
            assert isinstance(got, Everything | Record)


# -- Record ------------------------------------------------------------------------


def test_record_compares_reads_and_prints() -> None:
    rec = Record("a.B", {"x": 1, "y": "z"})
    assert rec == Record("a.B", {"x": 1, "y": "z"})
    assert rec != Record("a.C", {"x": 1, "y": "z"})
    assert rec != Record("a.B", {"x": 2, "y": "z"})
    assert rec != {"x": 1}
    assert rec["x"] == 1 and list(rec) == ["x", "y"]
    assert repr(rec) == "Record('a.B', x=1, y='z')"
    assert repr(Record("a.B", {})) == "Record('a.B')"
    assert type_name_of(rec) == "a.B"
    with pytest.raises(TypeError):
        hash(rec)


def test_record_encodes_plain_data_and_refuses_objects() -> None:
    rec = Record("a.B", {"x": [1, {"k": b"v"}], "t": (1, 2)})
    assert cbor2.loads(encode_payload(rec)) == {"x": [1, {"k": b"v"}], "t": [1, 2]}
    with pytest.raises(EncodeError, match="as_dict"):
        encode_payload(Record("a.B", {"p": Point(1)}))
    with pytest.raises(EncodeError, match="unsupported value"):
        encode_payload(Record("a.B", {"p": object()}))
    with pytest.raises(EncodeError, match="text strings"):
        encode_payload(Record("a.B", {"p": {1: 2}}))


def test_as_dict_flattens_nested_enums_and_lists() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    msg = Outer(Inner(when, ["t"]), [Point(1), Point(2, 0.5)])
    reg = fresh()
    reg.register(Outer, "x.Outer")
    assert as_dict(msg, registry=reg) == {
        "inner": {"when": when, "tags": ["t"]},
        "points": [{"x": 1, "y": None}, {"x": 2, "y": 0.5}],
    }
    cls = dataclasses.make_dataclass("C", [("c", Color), ("l", list[Level])])
    reg.register(cls, "x.C")
    assert as_dict(cls(Color.RED, [Level.LOW]), registry=reg) == {"c": "red", "l": [1]}


def test_default_registry_functions_are_the_default_registrys() -> None:
    assert message("test_types.Later") is not None
    assert lookup("test_types.Reading") is type_of(Reading)


cbor_items = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=3)
    | st.builds(cbor2.CBORTag,
                st.sampled_from([0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100,
                                 256, 258, 260, 261, 1004, 55799, 999]),
                children),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["i", "f", "s", "when", "ints", "nested", "x"]),
                       cbor_items, max_size=5))
def test_decode_payload_fuzz_on_structured_cbor_with_any_tags(item: dict[str, object]) -> None:
    try:
        data = cbor2.dumps(item)
    except Exception:
        return  # not every random tree is encodable; the decoder is what is under test
    for name, fp in (("test_types.Unknown", None), ("test_types.Everything", None),
                     ("test_types.Everything", type_of(Everything).fingerprint)):
        try:
            got = decode_payload(name, data, fp)
        except DecodeError:
            continue
        assert isinstance(got, Everything | Record)


# -- more names and registry behaviour ------------------------------------------------

_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ident, min_size=2, max_size=6))
def test_any_dotted_identifier_within_the_limit_is_valid(parts: list[str]) -> None:
    name = ".".join(parts)
    assert validate_type_name(name) == name
    assert is_valid_type_name(name)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_validation_agrees_with_the_rules(name: str) -> None:
    parts = name.split(".")
    expected = (
        name.isascii()
        and len(parts) >= 2
        and all(p and (p[0].isalpha() or p[0] == "_")
                and all(c.isalnum() or c == "_" for c in p) for p in parts)
    )
    assert is_valid_type_name(name) is expected
    if not expected:
        with pytest.raises(TypeNameError):
            validate_type_name(name)


def test_registry_lists_types_sorted_and_answers_membership() -> None:
    reg = fresh()
    b = dataclasses.make_dataclass("B", [("x", int)])
    a = dataclasses.make_dataclass("A", [("x", int)])
    reg.register(b, "z.B")
    reg.register(a, "a.A")
    assert [t.name for t in reg.registered()] == ["a.A", "z.B"]
    assert "a.A" in reg and "a.C" not in reg and len(reg) == 2
    assert repr(reg.lookup("a.A")).startswith("MessageType('a.A', A, ")


def test_a_registered_type_can_be_nested_in_another() -> None:
    reg = fresh()
    reg.register(Point, "geo.Point")
    path = dataclasses.make_dataclass("Path", [("points", list[Point]), ("start", Point)])
    mtype = reg.register(path, "geo.Path")
    assert mtype.schema == "{points:list<{x:int,y:optional<float>}>,start:{x:int,y:optional<float>}}"
    msg = path([Point(1), Point(2, 3.5)], Point(0, 0.0))
    assert decode_payload("geo.Path", encode_payload(msg, registry=reg), registry=reg) == msg


def test_list_of_optionals_and_optional_list() -> None:
    reg = fresh()
    cls = dataclasses.make_dataclass(
        "C", [("a", list[int | None]), ("b", list[str] | None)]
    )
    mtype = reg.register(cls, "x.C")
    assert mtype.schema == "{a:list<optional<int>>,b:optional<list<str>>}"
    for msg in (cls([1, None, 3], None), cls([], ["x"])):
        assert decode_payload("x.C", encode_payload(msg, registry=reg), mtype.fingerprint,
                              registry=reg) == msg


def test_nested_decode_errors_name_the_path() -> None:
    fp = type_of(Everything).fingerprint
    good = cbor2.loads(encode_payload(Everything(
        1, 1.0, True, "s", b"", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), Color.RED, Level.LOW,
        None, None, [], Outer(Inner(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), []), [Point(1)]),
        None, [],
    )))
    good["nested"]["points"][0]["x"] = "one"
    with pytest.raises(DecodeError, match=r"nested: points: x: expected int, got str"):
        decode_payload("test_types.Everything", cbor2.dumps(good), fp)


def test_field_specs_describe_the_schema() -> None:
    specs = {f.name: f for f in type_of(Everything).fields}
    assert specs["maybe"].schema == "optional<int>"
    assert specs["when"].schema == "datetime"
    assert specs["nested"].required and specs["i"].required
    assert repr(specs["i"].kind) == "Kind(int)"
