"""The sim plugin: settings, sensor naming, the publishing schedule, restarts, and a real run."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Coroutine
from typing import Any

import pytest

from ganglion.errors import ConfigError
from ganglion.plugins import Plugin, PluginHost
from ganglion.runtime.endpoint import Endpoint
from hardware.readings import Flow, Humidity, Pressure, Temperature
from hardware.sim_plugin import SimPlugin


class _Stop(Exception):
    """Ends a run after the number of sleeps a test asked for."""


class Clock:
    """Fake time: moves on sleeps, and on publishes by ``publish_cost``."""

    def __init__(self, sleeps_allowed: int, publish_cost: float = 0.0) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []
        self.sleeps_allowed = sleeps_allowed
        self.publish_cost = publish_cost

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        if len(self.sleeps) == self.sleeps_allowed:
            raise _Stop
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingNode:
    def __init__(self, clock: Clock, name: str = "pi-7") -> None:
        self.name = name
        self.node_id = bytes(8)
        self.clock = clock
        self.published: list[tuple[float, Any]] = []

    async def publish(self, msg: object) -> None:
        self.published.append((self.clock.now, msg))
        self.clock.now += self.clock.publish_cost


def drive(plugin: SimPlugin, node: RecordingNode) -> None:
    async def main() -> None:
        await plugin.setup(node)
        with pytest.raises(_Stop):
            await plugin.run(node)

    asyncio.run(asyncio.wait_for(main(), 10))


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 15))


# -- settings --------------------------------------------------------------------------------


def test_defaults_are_one_temperature_sensor_every_second() -> None:
    plugin = SimPlugin()
    assert isinstance(plugin, Plugin)
    assert (plugin.name, plugin.kinds, plugin.interval) == ("sim", ("temperature",), 1.0)
    assert plugin.publishes == (Temperature,)
    assert plugin.subscribes == ()


def test_publishes_follows_the_kinds_in_order() -> None:
    plugin = SimPlugin(["pressure", "flow", "humidity", "temperature"], interval=2)
    assert plugin.publishes == (Pressure, Flow, Humidity, Temperature)
    assert plugin.interval == 2.0


def test_a_lone_kind_string_is_one_kind() -> None:
    assert SimPlugin("humidity").kinds == ("humidity",)


@pytest.mark.parametrize(
    "kinds, match",
    [
        (["temperature", "lightning"], "unknown simulated sensor kind 'lightning'; choose from"),
        ([], "one or more of"),
        (["flow", "flow"], "without repeats"),
    ],
)
def test_bad_kinds_are_config_errors(kinds: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SimPlugin(kinds)


@pytest.mark.parametrize("interval", [0, -1, math.nan, math.inf, True, "1"])
def test_bad_intervals_are_config_errors(interval: Any) -> None:
    with pytest.raises(ConfigError, match="interval must be a number of seconds > 0"):
        SimPlugin(interval=interval)


# -- sensors and schedule ------------------------------------------------------------------------


def test_setup_names_each_sensor_after_the_node() -> None:
    plugin = SimPlugin(["temperature", "flow"])
    before = plugin.sensors
    run(plugin.setup(RecordingNode(Clock(0), name="cellar")))
    assert before == ()
    assert [s.sensor_id for s in plugin.sensors] == ["sim:cellar/temperature", "sim:cellar/flow"]


def test_one_reading_per_sensor_per_interval_on_a_fixed_schedule() -> None:
    clock = Clock(sleeps_allowed=4)
    plugin = SimPlugin(["temperature", "humidity"], interval=0.5, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)
    drive(plugin, node)
    times = [t for t, _ in node.published]
    assert times == [500.0, 500.0, 500.5, 500.5, 501.0, 501.0, 501.5, 501.5, 502.0, 502.0]
    kinds = [type(m) for _, m in node.published]
    assert kinds == [Temperature, Humidity] * 5
    assert clock.sleeps == [0.5] * 4
    assert plugin.published == 10


def test_time_spent_publishing_does_not_make_the_schedule_drift() -> None:
    clock = Clock(sleeps_allowed=3, publish_cost=0.1)
    plugin = SimPlugin(["temperature", "flow"], interval=1.0, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)
    drive(plugin, node)
    firsts = [t for t, m in node.published if isinstance(m, Temperature)]
    assert firsts == pytest.approx([500.0, 501.0, 502.0, 503.0])
    assert clock.sleeps == pytest.approx([0.8, 0.8, 0.8])


def test_a_late_run_skips_missed_ticks_instead_of_bursting() -> None:
    clock = Clock(sleeps_allowed=3, publish_cost=2.5)  # each publish overruns 2.5 intervals
    plugin = SimPlugin(["pressure"], interval=1.0, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)
    drive(plugin, node)
    times = [t for t, _ in node.published]
    assert times == pytest.approx([500.0, 503.0, 506.0, 509.0])  # on ticks, never back to back
    assert all(0 < s <= 1.0 for s in clock.sleeps)


class EarlyClock(Clock):
    """Sleeps end 0.4 ms early, as uvloop's whole-millisecond timers can end them."""

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        if seconds > 0.0004:
            self.now -= 0.0004


@pytest.mark.parametrize("interval", [1.0, 0.05])
def test_a_sleep_that_ends_early_does_not_publish_its_tick_twice(interval: float) -> None:
    clock = EarlyClock(sleeps_allowed=8)
    plugin = SimPlugin(["temperature"], interval=interval, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)
    drive(plugin, node)
    times = [t - 500.0 for t, _ in node.published]
    # One reading per tick, each at most 0.4 ms before it: never two for one tick.
    assert [round(t / interval) for t in times] == list(range(len(times)))
    assert all(-0.0005 < t - round(t / interval) * interval <= 0 for t in times)
    assert len(times) >= 5


def test_an_early_wake_after_skipped_ticks_does_not_repeat_a_tick() -> None:
    # A late round (ticks skipped), then sleeps that end early: still one per tick.
    clock = EarlyClock(sleeps_allowed=6, publish_cost=0.0)
    plugin = SimPlugin(["flow"], interval=1.0, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)

    async def main() -> None:
        await plugin.setup(node)
        clock.now += 2.5  # the loop was busy: ticks 1 and 2 are missed
        with pytest.raises(_Stop):
            await plugin.run(node)

    asyncio.run(asyncio.wait_for(main(), 10))
    ticks = [round(t - 500.0) for t, _ in node.published]
    assert ticks == sorted(set(ticks)) and ticks[:2] == [2, 3]


def test_readings_carry_the_elapsed_time_so_values_drift_smoothly() -> None:
    clock = Clock(sleeps_allowed=200)
    plugin = SimPlugin(["temperature"], interval=1.0, seed=3, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)
    drive(plugin, node)
    values = [m.celsius for _, m in node.published]
    assert len(values) == 201
    assert all(-40.0 <= v <= 85.0 for v in values)
    assert max(abs(b - a) for a, b in itertools.pairwise(values)) < 1.0
    assert len(set(values)) > 50  # it does drift


def test_the_same_seed_gives_the_same_readings() -> None:
    series = []
    for _ in range(2):
        clock = Clock(sleeps_allowed=20)
        plugin = SimPlugin(["humidity", "flow"], seed=11, clock=clock, sleep=clock.sleep)
        node = RecordingNode(clock)
        drive(plugin, node)
        series.append([m for _, m in node.published])
    assert series[0] == series[1]
    clock = Clock(sleeps_allowed=20)
    other = SimPlugin(["humidity", "flow"], seed=12, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)
    drive(other, node)
    assert [m for _, m in node.published] != series[0]


def test_a_restarted_run_continues_the_same_series() -> None:
    clock = Clock(sleeps_allowed=3)
    plugin = SimPlugin(["flow"], interval=60.0, clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock)
    drive(plugin, node)
    clock.sleeps_allowed = 6

    async def again() -> None:
        with pytest.raises(_Stop):
            await plugin.run(node)  # the host calls run again after a crash, not setup

    run(again())
    totals = [m.total_litres for _, m in node.published]
    assert len(totals) == 4 + 4
    assert totals == sorted(totals)  # the flow meter's total never goes back
    assert node.published[4][0] == 680.0  # the new run publishes at once, where the old one stopped


def test_run_without_setup_sets_itself_up() -> None:
    clock = Clock(sleeps_allowed=1)
    plugin = SimPlugin(["humidity"], clock=clock, sleep=clock.sleep)
    node = RecordingNode(clock, name="solo")

    async def main() -> None:
        with pytest.raises(_Stop):
            await plugin.run(node)

    run(main())
    assert [m.sensor for _, m in node.published] == ["sim:solo/humidity"] * 2


# -- a real run ----------------------------------------------------------------------------------


class _EndpointNode:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.name = "loop"
        self.node_id = endpoint.node_id

    async def publish(self, msg: object) -> None:
        self.endpoint.publish(msg)


@pytest.mark.usefixtures("multicast_loopback")
def test_under_the_host_readings_reach_another_endpoint(free_udp_port: int, test_group: str) -> None:
    got: list[Any] = []

    async def main() -> None:
        def endpoint() -> Endpoint:
            return Endpoint(interface="127.0.0.1", port=free_udp_port, ttl=0,
                            group_for=lambda name: test_group)

        async with endpoint() as remote, endpoint() as ep:
            remote.subscribe(Pressure, lambda msg, info: got.append(msg))
            remote.subscribe(Humidity, lambda msg, info: got.append(msg))
            plugin = SimPlugin(["pressure", "humidity"], interval=0.01)
            async with PluginHost(_EndpointNode(ep), [plugin]):
                deadline = asyncio.get_running_loop().time() + 5.0
                while len(got) < 10 and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.01)
        assert len(got) >= 10
        assert {type(m) for m in got} == {Pressure, Humidity}
        assert {m.sensor for m in got} == {"sim:loop/pressure", "sim:loop/humidity"}
        assert all(870.0 <= m.hpa <= 1085.0 for m in got if isinstance(m, Pressure))

    run(main())
