"""The plugin bus's sans-IO routing core: subscriptions, routes, validation, numbering.

No sockets: the events are the bytes zmq's XPUB reports and the frames a plugin sends.
"""

from __future__ import annotations

import cbor2
import pytest

from ganglion.runtime._bus_routes import (
    FORWARD,
    MAX_ROUTES,
    TO_NODE,
    Bad,
    BusRoutes,
    judge,
)

GOOD = cbor2.dumps({"celsius": 21.5})


def test_the_first_subscriber_and_the_last_one_leaving_are_reported_once() -> None:
    routes = BusRoutes(forward=True, node_wants=None)
    assert routes.on_subscription(b"\x01ex.A") == (1, "ex.A")
    assert routes.on_subscription(b"\x01ex.A") is None  # already known
    assert routes.subscribed("ex.A") and routes.topics() == ("ex.A",)
    assert routes.on_subscription(b"\x00ex.A") == (0, "ex.A")
    assert routes.on_subscription(b"\x00ex.A") is None  # not known any more
    assert not routes.subscribed("ex.A") and routes.topics() == ()


@pytest.mark.parametrize("event", [b"", b"\x02ex.A", b"hello", b"\xffex.A"])
def test_data_written_to_a_sub_socket_means_nothing(event: bytes) -> None:
    routes = BusRoutes(forward=True, node_wants=None)
    assert routes.on_subscription(event) is None
    assert routes.topics() == ()


def test_prefixes_match_but_name_no_group() -> None:
    routes = BusRoutes(forward=True, node_wants=None)
    assert routes.on_subscription(b"\x01") is None  # everything
    assert routes.on_subscription(b"\x01sensors.") is None
    assert routes.subscribed("ex.A") and routes.topics() == ("", "sensors.")
    routes.on_subscription(b"\x00")
    assert not routes.subscribed("ex.A") and routes.subscribed("sensors.Temperature")
    routes.on_subscription(b"\x00sensors.")
    assert not routes.subscribed("sensors.Temperature")


def test_flags_follow_subscriptions_and_the_nodes_interest() -> None:
    wanted = {"ex.A"}
    routes = BusRoutes(forward=True, node_wants=lambda name: name in wanted)
    assert routes.flags("ex.A") == TO_NODE
    assert routes.flags("ex.B") == 0
    routes.on_subscription(b"\x01ex.B")
    assert routes.flags("ex.B") == FORWARD
    assert BusRoutes(forward=False, node_wants=None).flags("ex.B") == TO_NODE


def test_remembered_routes_are_recomputed_on_reroute() -> None:
    wanted: set[str] = set()
    routes = BusRoutes(forward=True, node_wants=lambda name: name in wanted)
    routes.remember(b"ex.A", "ex.A")
    assert routes.routes == {b"ex.A": ("ex.A", 0)}
    routes.on_subscription(b"\x01ex.A")
    wanted.add("ex.A")
    assert routes.routes[b"ex.A"] == ("ex.A", 0)  # until asked again
    routes.reroute()
    assert routes.routes[b"ex.A"] == ("ex.A", FORWARD | TO_NODE)
    routes.forget(b"ex.A")
    assert routes.routes == {}


def test_at_most_max_routes_are_remembered() -> None:
    routes = BusRoutes(forward=True, node_wants=None)
    for i in range(MAX_ROUTES + 10):
        routes.remember(f"ex.T{i}".encode(), f"ex.T{i}")
    assert len(routes.routes) == MAX_ROUTES
    assert b"ex.T0" in routes.routes and f"ex.T{MAX_ROUTES}".encode() not in routes.routes


def test_forwards_are_numbered_per_type_from_one_and_restart_with_new_subscribers() -> None:
    routes = BusRoutes(forward=True, node_wants=None)
    routes.on_subscription(b"\x01ex.A")
    assert [routes.next_seq(b"ex.A") for _ in range(3)] == [1, 2, 3]
    assert routes.next_seq(b"ex.B") == 1
    routes.on_subscription(b"\x00ex.A")
    assert routes.next_seq(b"ex.A") == 1


@pytest.mark.parametrize(("frames", "count", "reason"), [
    ([b"ex.A"], 1, "bad_frames"),
    ([b"ex.A", GOOD, b"x"], 3, "bad_frames"),
    ([b"ex.A", GOOD], 50, "bad_frames"),  # only the first frames kept
    ([], 0, "bad_frames"),
    ([b"Reading", GOOD], 2, "bad_type_names"),
    ([b"ex.\xff", GOOD], 2, "bad_type_names"),
    ([b"", GOOD], 2, "bad_type_names"),
    ([b"ex.A", cbor2.dumps([1])], 2, "bad_payloads"),
    ([b"ex.A", b"\xa1\x61a"], 2, "bad_payloads"),
])
def test_a_bad_publish_is_judged_with_its_counter(frames: list[bytes], count: int,
                                                  reason: str) -> None:
    verdict = judge(frames, count, {})
    assert isinstance(verdict, Bad) and verdict.reason == reason


def test_a_good_publish_is_judged_by_its_name() -> None:
    assert judge([b"ex.A", GOOD], 2, {}) == "ex.A"
    # a name already checked is taken from the routes
    assert judge([b"ex.A", GOOD], 2, {b"ex.A": ("ex.A", FORWARD)}) == "ex.A"
    # but its payload is still checked
    verdict = judge([b"ex.A", b"\x01"], 2, {b"ex.A": ("ex.A", FORWARD)})
    assert isinstance(verdict, Bad) and verdict.reason == "bad_payloads"


def test_what_is_logged_of_a_bad_publish_is_bounded() -> None:
    huge = b"\xff" * 1_000_000
    for frames, count in (([b"ex.A"], 1), ([huge, GOOD], 2), ([b"ex.A", huge], 2)):
        verdict = judge(frames, count, {})
        assert isinstance(verdict, Bad) and len(verdict.what) < 600
