"""Request parameters: valid ones parse, bad ones give a one-line reason."""

from __future__ import annotations

import pytest

from ganglion.dashboard.params import MAX_POINTS, BadRequest, history_query, listen_address


def test_a_full_query_parses() -> None:
    q = history_query({"type": "sensors.Temperature", "field": "celsius", "since": "100",
                       "until": "160.5", "points": "7"}, now_s=1000.0)
    assert (q.type, q.field, q.since_ns, q.until_ns, q.points) == (
        "sensors.Temperature", "celsius", 100 * 10**9, 160_500_000_000, 7)


def test_defaults_are_the_last_hour() -> None:
    q = history_query({"type": "a.B", "field": "x"}, now_s=7200.0)
    assert (q.since_ns, q.until_ns, q.points) == (3600 * 10**9, 7200 * 10**9, 1000)


@pytest.mark.parametrize(("params", "words"), [
    ({"field": "x"}, "type is required"),
    ({"type": "a.B"}, "field is required"),
    ({"type": "nodots", "field": "x"}, "not a dotted type name"),
    ({"type": "a.B", "field": "x y"}, "not a field name"),
    ({"type": "a.B", "field": "x", "since": "soon"}, "is not a time"),
    ({"type": "a.B", "field": "x", "since": "nan"}, "between 1970"),
    ({"type": "a.B", "field": "x", "since": "200", "until": "100"}, "must be before"),
    ({"type": "a.B", "field": "x", "points": str(MAX_POINTS + 1)}, "out of range"),
    ({"type": "a.B", "field": "x", "points": "0"}, "out of range"),
    ({"type": "a.B", "field": "x", "points": "-3"}, "not a whole number"),
    ({"type": "a.B", "field": "x", "colour": "red"}, "unknown parameter 'colour'"),
])
def test_bad_parameters_say_why_in_one_line(params: dict[str, str], words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        history_query(params, now_s=1000.0)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.status == 400


def test_listen_addresses() -> None:
    assert listen_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert listen_address("[::1]:0") == ("::1", 0)
    for bad in ("8080", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(ValueError):
            listen_address(bad)
