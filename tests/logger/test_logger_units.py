"""Unit tests of the logger's pure parts: data JSON, gaps, catalog, retention parsing, time."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.logger import datajson
from ganglion.logger.budget import LruMap
from ganglion.logger.catalog import describe, unit_of
from ganglion.logger.export import flatten
from ganglion.logger.gaps import Gap, GapTracker
from ganglion.logger.query import parse_time
from ganglion.logger.recorder import matches
from ganglion.logger.retention import (
    Retention,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)
from ganglion.logger.u64 import from_sql, to_sql
from ganglion.types import Record
from hardware.readings import Flow

# -- data JSON ---------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=True) | st.text(max_size=20) | st.binary(max_size=20)
           | st.datetimes(timezones=st.just(dt.UTC)))
plain = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or repr(a) == repr(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), plain, max_size=6))
def test_data_json_round_trips_every_plain_value_exactly(fields: dict[str, Any]) -> None:
    text = datajson.dumps(fields)
    assert _equal(datajson.loads(text), fields)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), plain, max_size=6))
def test_sqlite_json_functions_accept_every_stored_value(fields: dict[str, Any]) -> None:
    conn = sqlite3.connect(":memory:")
    assert conn.execute("SELECT json_valid(?)", (datajson.dumps(fields),)).fetchone() == (1,)


def test_special_values_are_tagged_and_ordinary_ones_are_plain_json() -> None:
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    text = datajson.dumps({"c": 21.5, "b": b"\x01", "t": when, "n": float("-inf")})
    assert text == ('{"c":21.5,"b":{"$bytes":"AQ=="},"t":{"$datetime":"2024-05-01T12:00:00+00:00"},'
                    '"n":{"$float":"-Infinity"}}')
    assert datajson.dumps({"s": "é"}) == '{"s":"é"}'
    with pytest.raises(TypeError):
        datajson.dumps({"x": object()})
    with pytest.raises(ValueError, match="object"):
        datajson.loads("[1]")


def test_an_object_that_only_looks_like_a_tag_is_left_alone() -> None:
    assert datajson.loads('{"a":{"$bytes":1}}') == {"a": {"$bytes": 1}}
    assert datajson.loads('{"a":{"$bytes":"AA==","x":1}}') == {"a": {"$bytes": "AA==", "x": 1}}


# -- gaps --------------------------------------------------------------------------------

S = ("t.A", b"\x01" * 8, 1)


def test_the_first_number_of_a_stream_opens_no_gap_and_consecutive_ones_none_either() -> None:
    tracker = GapTracker(settle_ns=0)
    for seq in (57, 58, 59):
        tracker.observe(S, seq, 0)
    assert tracker.flush() == []


def test_a_skipped_run_is_one_gap_with_its_first_and_last_missing_number() -> None:
    tracker = GapTracker(settle_ns=10)
    for seq, now in ((0, 1), (1, 2), (5, 3), (6, 4), (9, 5)):
        tracker.observe(S, seq, now)
    assert tracker.settled(12) == []
    assert tracker.settled(13) == [Gap(S, 2, 4, 3)]
    assert tracker.settled(15) == [Gap(S, 7, 8, 5)]


def test_late_arrivals_shrink_or_split_a_settling_gap() -> None:
    tracker = GapTracker(settle_ns=100)
    tracker.observe(S, 0, 0)
    tracker.observe(S, 10, 1)  # gap 1..9
    for late in (1, 9, 5):
        tracker.observe(S, late, 2)
    assert tracker.flush() == [Gap(S, 2, 4, 1), Gap(S, 6, 8, 1)]
    tracker.observe(S, 3, 3)  # the gap is final now: only counted
    assert tracker.late == 1 and tracker.flush() == []


def test_a_gap_filled_entirely_disappears_and_streams_are_separate() -> None:
    tracker = GapTracker(settle_ns=100)
    other = ("t.A", b"\x01" * 8, 2)  # a new boot: its own numbering
    tracker.observe(S, 0, 0)
    tracker.observe(S, 2, 0)
    tracker.observe(other, 100, 0)
    tracker.observe(S, 1, 0)
    assert tracker.flush() == []


def test_too_many_open_gaps_settle_the_oldest_early() -> None:
    tracker = GapTracker(settle_ns=10**12, max_open=2)
    for seq in (0, 2, 4, 6):
        tracker.observe(S, seq, seq)
    assert tracker.settled(0) == [Gap(S, 1, 1, 2)]


def test_the_tracker_remembers_at_most_max_streams_and_counts_what_it_forgets() -> None:
    tracker = GapTracker(settle_ns=10**12, max_streams=3)
    for boot in range(10):  # ten boots of one sender: ten streams
        stream = ("t.A", b"\x01" * 8, boot)
        tracker.observe(stream, 0, boot)
        tracker.observe(stream, 2, boot)  # a gap (1) that is settling
    assert tracker.streams == 3 and tracker.evicted == 7
    assert tracker.open_gaps == 3  # the forgotten streams' gaps settled at once
    assert len(tracker.settled(0)) == 7 and len(tracker.flush()) == 3
    assert not tracker.knows(("t.A", b"\x01" * 8, 0)) and tracker.knows(("t.A", b"\x01" * 8, 9))


def test_settling_gaps_are_bounded_in_all_even_when_late_arrivals_split_them() -> None:
    tracker = GapTracker(settle_ns=10**12, max_open=10**6, max_open_total=5)
    tracker.observe(S, 0, 0)
    tracker.observe(S, 1000, 1)  # one gap 1..999
    for late in range(2, 1000, 2):  # every split adds a piece
        tracker.observe(S, late, 2)
        assert tracker.open_gaps <= 5
    missing = {n for gap in tracker.flush() for n in range(gap.first, gap.last + 1)}
    # Settled early, a gap can no longer shrink: it may over-report, never miss a number.
    assert set(range(1, 1000, 2)) <= missing <= set(range(1, 1000))


def test_a_resumed_stream_opens_a_gap_from_the_stored_position() -> None:
    tracker = GapTracker(settle_ns=0)
    tracker.resume(S, 9)  # an earlier run logged up to 9
    assert tracker.knows(S) and tracker.highest(S) == 9
    tracker.observe(S, 15, 7)
    assert tracker.flush() == [Gap(S, 10, 14, 7)]
    tracker.resume(S, 3)  # a known stream keeps what it knows
    assert tracker.highest(S) == 15


def test_a_forged_jump_of_2_64_costs_one_gap_not_its_size() -> None:
    tracker = GapTracker(settle_ns=0)
    tracker.observe(S, 0, 0)
    tracker.observe(S, 2**64 - 1, 1)
    assert tracker.flush() == [Gap(S, 1, 2**64 - 2, 1)]


# -- u64 storage and budgets -------------------------------------------------------------


@given(st.integers(0, 2**64 - 1))
def test_every_u64_fits_an_sqlite_integer_and_comes_back_exactly(value: int) -> None:
    stored = to_sql(value)
    assert -(2**63) <= stored < 2**63 and from_sql(stored) == value
    assert (stored == value) == (value < 2**63)  # what older logs hold is unchanged
    conn = sqlite3.connect(":memory:")
    assert from_sql(conn.execute("SELECT ?", (stored,)).fetchone()[0]) == value


@pytest.mark.parametrize("bad", [-1, 2**64, -(2**63)])
def test_values_outside_u64_are_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        to_sql(bad)


def test_an_lru_map_keeps_the_most_recently_used_and_counts_evictions() -> None:
    lru: LruMap[str, int] = LruMap(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now b is the least recently used
    assert lru.put("c", 3) == ("b", 2)
    assert "b" not in lru and len(lru) == 2 and lru.evicted == 1
    lru.put("a", 10)  # an update evicts nothing
    assert lru.get("a") == 10 and lru.evicted == 1
    with pytest.raises(ValueError):
        LruMap(0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=40))
def test_gaps_are_exactly_the_numbers_never_seen_between_first_and_highest(seqs: list[int]) -> None:
    tracker = GapTracker(settle_ns=10**12)
    for s in seqs:
        tracker.observe(S, s, 0)
    missing = set()
    for gap in tracker.flush():
        missing.update(range(gap.first, gap.last + 1))
    assert missing == set(range(seqs[0], max(seqs) + 1)) - set(seqs)


# -- catalog -----------------------------------------------------------------------------


def test_a_registered_class_describes_its_declared_fields_fingerprint_and_units() -> None:
    msg = Flow("f", 1.0, 2.0)
    version = describe("sensors.Flow", msg, {"sensor": "f", "litres_per_minute": 1.0,
                                             "total_litres": 2.0}, None)
    assert version.source == "class" and version.fingerprint is not None
    assert len(version.fingerprint) == 16
    assert '"units"' not in version.fields and "litres_per_minute" in version.fields
    assert version.units == '{"litres_per_minute": "L/min", "total_litres": "L"}'


def test_a_record_describes_what_it_carried() -> None:
    version = describe("x.Y", Record("x.Y", {"a": 1, "celsius": 2.5}), {"a": 1, "celsius": 2.5},
                       b"\x01" * 8)
    assert version.source == "observed" and version.fingerprint == "01" * 8
    assert version.fields == '[{"name":"a","kind":"int"},{"name":"celsius","kind":"float"}]'
    assert unit_of("Celsius") == "°C" and unit_of("celsiusish") is None
    assert unit_of("pressure_hpa") == "hPa" and unit_of("id") is None


# -- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400),
                                                ("45", 45), ("2w", 14 * 86400), ("1.5s", 1.5)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("1GB", 10**9), ("500mb", 5 * 10**8), ("2GiB", 2 * 2**30),
                                            ("64k", 64000), ("123", 123)])
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "ten", "5 parsecs", "-1d"])
def test_bad_durations_and_sizes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
    with pytest.raises(ValueError):
        parse_size(bad)


def test_the_defaults_are_printed_readably() -> None:
    assert Retention().describe() == "retention: keep 30d, at most 1 GB"
    assert Retention(max_age=0, max_size=0).describe() == "retention: keep forever, at most no size limit"
    assert format_duration(90) == "90s" and format_size(512) == "512 B"
    with pytest.raises(ValueError):
        Retention(every=0)


def test_times_parse_as_iso_epoch_or_ago() -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    base = int(now.timestamp() * 1e9)
    assert parse_time("2024-05-01T12:00:00+00:00") == base
    assert parse_time("1714564800") == base
    assert parse_time("10m", now=now) == base - 600 * 10**9
    assert parse_time("2h ago", now=now) == base - 7200 * 10**9
    assert parse_time("-1d", now=now) == base - 86400 * 10**9
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday-ish")


def test_type_patterns_are_globs_and_none_means_all() -> None:
    assert matches("sensors.Temperature", [])
    assert matches("sensors.Temperature", ["sensors.*"])
    assert not matches("sensors.Temperature", ["sensors.H*", "x.*"])
    assert not matches("Sensors.Temperature", ["sensors.*"])  # case matters, like type names


def test_flatten_names_nested_fields_with_dots_and_indices() -> None:
    assert flatten({"a": {"b": 1, "c": [True, None]}, "e": [], "f": {}, "g": 0.1}) == {
        "a.b": "1", "a.c.0": "true", "a.c.1": "", "e": "[]", "f": "{}", "g": "0.1"}
