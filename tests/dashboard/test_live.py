"""The live state: latest values, bounded ring buffers, events and Last-Event-ID catch-up."""

from __future__ import annotations

import json

import pytest

from ganglion.dashboard.live import LiveReading, LiveState, numeric_fields, sensor_of


def reading(i: int, sensor: str = "s1", node: str = "aa" * 8, type_name: str = "t.A") -> LiveReading:
    return LiveReading.build(type_name, node, {"sensor": sensor, "v": float(i), "flag": True,
                                           "name": "x", "raw": b"\x01"},
                         seq=i, sent_ns=i * 10**9, received_ns=i * 10**9 + 5)


def events(payload: bytes) -> list[tuple[str, str, object]]:
    """Parse text/event-stream bytes into (id, event, data) tuples."""
    out = []
    for block in payload.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
    return out


def test_fields_and_sensor_conventions() -> None:
    assert numeric_fields({"a": 1, "b": 2.5, "c": True, "d": "x", "e": float("nan")}) == {"a": 1, "b": 2.5}
    assert sensor_of({"sensor": 3}) == "3" and sensor_of({}) == ""
    r = reading(1)
    assert r.data["raw"] == {"$bytes": "AQ=="}  # JSON-ready, as the log stores it
    assert r.key == ("t.A", "aa" * 8, "s1")


def test_latest_and_ring_are_bounded() -> None:
    live = LiveState("e1", ring=5, max_series=2)
    for i in range(12):
        live.add(reading(i))
    live.add(reading(1, sensor="s2"))
    live.add(reading(1, sensor="s3"))  # a third series: over max_series
    assert live.refused == 1 and live.received == 14
    assert [r.seq for r in live.latest()] == [11, 1]
    window = live.window()
    assert [w[2] for w in window] == ["s1", "s2"]
    assert [p[1]["v"] for p in window[0][3]] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert live.fields == {"t.A": {"v": None}}


def test_flush_batches_readings_into_one_event_with_an_id() -> None:
    live = LiveState("e1")
    assert live.flush() is None
    for i in range(3):
        live.add(reading(i))
    event = live.flush()
    assert event is not None and event.id == "e1-1" and live.last_id == "e1-1"
    [(eid, name, data)] = events(event.payload)
    assert (eid, name) == ("e1-1", "readings")
    assert [r["seq"] for r in data] == [0, 1, 2]  # type: ignore[union-attr, index]
    assert live.flush() is None


def test_since_gives_what_was_missed_or_none_for_a_snapshot() -> None:
    live = LiveState("e1", backlog=3)
    for i in range(5):
        live.add(reading(i))
        live.flush()
    assert [e.id for e in live.since("e1-3") or []] == ["e1-4", "e1-5"]
    assert live.since("e1-5") == []
    assert [e.id for e in live.since("e1-2") or []] == ["e1-3", "e1-4", "e1-5"]
    assert live.since("e1-1") is None  # e1-2 fell out of the backlog
    assert live.since("other-3") is None  # another server run
    assert live.since("e1-9") is None and live.since("garbage") is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LiveState("a-b")
    with pytest.raises(ValueError):
        LiveState("e", ring=0)
