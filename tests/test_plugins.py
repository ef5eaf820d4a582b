"""The plugin host and entry-point loading, against a real Endpoint on loopback.

``LoopNode`` is a small node stand-in: an :class:`Endpoint` on 127.0.0.1 (its own
port, every type on the test's own group) wrapped to offer what plugins use:
``name``, ``node_id``, ``await publish(msg)`` and ``subscribe``. Backoff is
driven by a fake clock and sleep, so no test waits for a real backoff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import sys
import types
from collections.abc import Callable, Coroutine, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import ganglion.plugins as plugins_mod
from ganglion.config import NodeConfig
from ganglion.errors import ConfigError, LocalError, PluginNotFoundError
from ganglion.plugins import (
    ENTRY_POINT_GROUP,
    Plugin,
    PluginHost,
    PluginState,
    RestartPolicy,
    installed_plugins,
    load_plugin,
    load_plugins,
)
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import Callback, MessageInfo, Subscription
from ganglion.types import message
from hardware.readings import Flow, Temperature
from hardware.sim_plugin import SimPlugin

pytestmark = pytest.mark.usefixtures("multicast_loopback")


@message("test_plugins.Ping")
@dataclasses.dataclass
class Ping:
    n: int


@dataclasses.dataclass
class NotRegistered:
    x: int


def run(coro: Coroutine[Any, Any, None], timeout: float = 15.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (bounded) until ``predicate()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class LoopNode:
    """An Endpoint on loopback with the node surface plugins use."""

    def __init__(self, endpoint: Endpoint, name: str = "test-node") -> None:
        self.endpoint = endpoint
        self.name = name
        self.node_id = endpoint.node_id

    async def publish(self, msg: object) -> None:
        self.endpoint.publish(msg)

    def subscribe(self, type_or_name: type | str, callback: Callback | None = None, *,
                  maxsize: int = 1024) -> Subscription:
        return self.endpoint.subscribe(type_or_name, callback, maxsize=maxsize)


@pytest.fixture
def endpoint_factory(free_udp_port: int, test_group: str) -> Callable[[], Endpoint]:
    return lambda: Endpoint(interface="127.0.0.1", port=free_udp_port,
                            group_for=lambda name: test_group, ttl=0)


class FakeTime:
    """A clock that only moves when the host sleeps (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Basic:
    """A configurable test plugin."""

    publishes: tuple[type | str, ...] = (Ping,)
    subscribes: tuple[type | str, ...] = ()

    def __init__(self, name: str, events: list[str] | None = None) -> None:
        self.name = name
        self.events = events if events is not None else []
        self.forever = asyncio.Event()

    async def setup(self, node: Any) -> None:
        self.events.append(f"setup {self.name}")
        await asyncio.sleep(0)  # a host that ran this plugin before the next setup would show it

    async def run(self, node: Any) -> None:
        self.events.append(f"run {self.name}")
        await self.forever.wait()


class Crasher(Basic):
    """Raises in ``run`` for the first ``crashes`` calls; then runs until cancelled."""

    def __init__(self, name: str, crashes: int, time: FakeTime | None = None,
                 healthy_for: dict[int, float] | None = None) -> None:
        super().__init__(name)
        self.crashes = crashes
        self.calls = 0
        self.time = time
        self.healthy_for = healthy_for or {}  # call number -> fake seconds it runs before crashing

    async def run(self, node: Any) -> None:
        self.calls += 1
        if self.calls <= self.crashes:
            if self.time is not None:
                self.time.now += self.healthy_for.get(self.calls, 0.0)
            raise ValueError(f"boom {self.calls}")
        await self.forever.wait()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


# -- the start barrier --------------------------------------------------------------------


def test_every_setup_finishes_before_any_run_starts(endpoint_factory: Callable[[], Endpoint]) -> None:
    events: list[str] = []

    async def main() -> None:
        async with endpoint_factory() as ep:
            node = LoopNode(ep)
            plugins = [Basic(f"p{i}", events) for i in range(4)]
            async with PluginHost(node, plugins):
                await until(lambda: len(events) == 8)
        setups = [e for e in events if e.startswith("setup")]
        assert setups == ["setup p0", "setup p1", "setup p2", "setup p3"]
        assert events[:4] == setups

    run(main())


def test_a_later_plugin_gets_the_first_message_an_earlier_one_publishes(
    endpoint_factory: Callable[[], Endpoint]
) -> None:
    received: list[tuple[int, bool]] = []

    class FirstPublisher(Basic):
        async def run(self, node: Any) -> None:
            await node.publish(Ping(1))  # the very first thing run() does
            await self.forever.wait()

    class LateSubscriber(Basic):
        subscribes = (Ping,)
        publishes = ()

        async def setup(self, node: Any) -> None:
            await asyncio.sleep(0)
            node.subscribe(Ping, lambda msg, info: received.append((msg.n, info.local)))

    async def main() -> None:
        async with endpoint_factory() as ep:
            node = LoopNode(ep)
            # The publisher is first in start order: without the barrier its run()
            # would publish before the subscriber's setup had subscribed.
            host = PluginHost(node, [FirstPublisher("pub"), LateSubscriber("sub")])
            await host.start()
            await until(lambda: bool(received))
            await asyncio.sleep(0.05)
            await host.stop()
        assert received == [(1, True)]

    run(main())


def test_a_subscriber_on_another_endpoint_gets_plugin_messages_over_multicast(
    endpoint_factory: Callable[[], Endpoint]
) -> None:
    got: list[int] = []

    class Publisher(Basic):
        async def run(self, node: Any) -> None:
            for n in range(3):
                await node.publish(Ping(n))
            await self.forever.wait()

    async def main() -> None:
        async with endpoint_factory() as remote, endpoint_factory() as ep:
            remote.subscribe(Ping, lambda msg, info: got.append(msg.n))
            async with PluginHost(LoopNode(ep), [Publisher("pub")]):
                await until(lambda: len(got) == 3)
        assert got == [0, 1, 2]

    run(main())


def test_a_failing_setup_does_not_hold_back_the_others_and_is_retried(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    class BadSetup(Basic):
        attempts = 0

        async def setup(self, node: Any) -> None:
            BadSetup.attempts += 1
            if BadSetup.attempts < 3:
                raise OSError("device not ready")
            events.append("setup bad")

    async def main() -> None:
        bad, good = BadSetup("bad", events), Basic("good", events)
        host = PluginHost(object(), [bad, good], clock=fake_time.clock, sleep=fake_time.sleep)
        await host.start()
        await until(lambda: "run bad" in events)
        stats = host.stats()["bad"]
        assert (stats.crashes, stats.restarts) == (2, 2)
        assert stats.state is PluginState.RUNNING
        assert stats.last_error == "OSError: device not ready"
        await host.stop()

    with caplog.at_level(logging.ERROR, logger="ganglion.plugins"):
        run(main())
    assert events.index("run good") < events.index("setup bad")
    assert fake_time.sleeps == [0.5, 1.0]
    assert any("failed in setup" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_hanging_setup_times_out_and_the_others_run() -> None:
    events: list[str] = []

    class Hangs(Basic):
        async def setup(self, node: Any) -> None:
            await asyncio.Event().wait()

    async def main() -> None:
        host = PluginHost(object(), [Hangs("hangs"), Basic("ok", events)], setup_timeout=0.05)
        await host.start()
        await until(lambda: "run ok" in events)
        stats = host.stats()["hangs"]
        assert stats.crashes == 1
        assert stats.last_error == "TimeoutError: setup took longer than 0.05 s"
        await host.stop(timeout=2.0)

    run(main())


# -- crashes and backoff --------------------------------------------------------------------


def test_a_crashing_plugin_is_restarted_with_doubling_backoff(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    crasher = Crasher("crasher", crashes=5)

    async def main() -> None:
        host = PluginHost(object(), [crasher], clock=fake_time.clock, sleep=fake_time.sleep)
        await host.start()
        await until(lambda: crasher.calls == 6)
        stats = host.stats()["crasher"]
        assert stats.state is PluginState.RUNNING
        assert (stats.restarts, stats.crashes) == (5, 5)
        assert stats.last_error == "ValueError: boom 5"
        assert stats.last_error_at == fake_time.now - 8.0  # before the last backoff
        await host.stop()
        assert host.stats()["crasher"].state is PluginState.STOPPED

    with caplog.at_level(logging.ERROR, logger="ganglion.plugins"):
        run(main())
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    crashes = [r for r in caplog.records if "failed in run" in r.getMessage()]
    assert len(crashes) == 5
    assert all(r.exc_info and r.exc_info[0] is ValueError for r in crashes)  # the traceback


def test_backoff_is_capped(fake_time: FakeTime) -> None:
    crasher = Crasher("crasher", crashes=10)

    async def main() -> None:
        async with PluginHost(object(), [crasher], clock=fake_time.clock, sleep=fake_time.sleep):
            await until(lambda: crasher.calls == 11)

    run(main())
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_backoff_starts_over_after_a_healthy_run(fake_time: FakeTime) -> None:
    # Runs 1, 2 crash at once; run 3 lasts 61 s (healthy) then crashes; run 4 crashes at once.
    crasher = Crasher("crasher", crashes=4, time=fake_time, healthy_for={3: 61.0})

    async def main() -> None:
        async with PluginHost(object(), [crasher], clock=fake_time.clock, sleep=fake_time.sleep):
            await until(lambda: crasher.calls == 5)

    run(main())
    assert fake_time.sleeps == [0.5, 1.0, 0.5, 1.0]


def test_a_custom_policy_is_used(fake_time: FakeTime) -> None:
    crasher = Crasher("crasher", crashes=4)
    policy = RestartPolicy(initial=0.1, factor=3.0, maximum=1.0, reset_after=5.0)

    async def main() -> None:
        async with PluginHost(object(), [crasher], policy=policy, clock=fake_time.clock,
                              sleep=fake_time.sleep):
            await until(lambda: crasher.calls == 5)

    run(main())
    assert fake_time.sleeps == pytest.approx([0.1, 0.3, 0.9, 1.0])


def test_a_crash_never_stops_the_other_plugins(endpoint_factory: Callable[[], Endpoint]) -> None:
    got: list[int] = []

    class Ticker(Basic):
        async def run(self, node: Any) -> None:
            for n in range(1000):
                await node.publish(Ping(n))
                await asyncio.sleep(0.001)

    class AlwaysCrashes(Basic):
        async def run(self, node: Any) -> None:
            raise RuntimeError("always")

    async def quick_sleep(seconds: float) -> None:
        await asyncio.sleep(0.001)

    async def main() -> None:
        async with endpoint_factory() as ep:
            node = LoopNode(ep)
            node.subscribe(Ping, lambda msg, info: got.append(msg.n))
            host = PluginHost(node, [AlwaysCrashes("crash"), Ticker("tick")], sleep=quick_sleep)
            await host.start()
            await until(lambda: host.stats()["crash"].crashes >= 20 and len(got) >= 20)
            assert host.stats()["tick"].state is PluginState.RUNNING
            assert host.stats()["tick"].crashes == 0
            await host.stop()

    run(main())
    assert got == list(range(len(got)))


def test_a_run_that_returns_is_finished_and_not_restarted(fake_time: FakeTime) -> None:
    calls: list[int] = []

    class OneShot(Basic):
        async def run(self, node: Any) -> None:
            calls.append(1)

    async def main() -> None:
        host = PluginHost(object(), [OneShot("once")], clock=fake_time.clock, sleep=fake_time.sleep)
        await host.start()
        await until(lambda: host.stats()["once"].state is PluginState.FINISHED)
        await asyncio.sleep(0.01)
        await host.stop()
        assert host.stats()["once"].state is PluginState.FINISHED

    run(main())
    assert calls == [1]
    assert fake_time.sleeps == []


# -- stop ---------------------------------------------------------------------------------


def test_stop_cancels_every_plugin_and_waits_for_their_cleanup() -> None:
    cleaned: list[str] = []

    class Cleans(Basic):
        async def run(self, node: Any) -> None:
            try:
                await self.forever.wait()
            finally:
                await asyncio.sleep(0.01)  # cleanup that itself awaits
                cleaned.append(self.name)

    async def main() -> None:
        host = PluginHost(object(), [Cleans("a"), Cleans("b")])
        await host.start()
        await until(lambda: all(s.state is PluginState.RUNNING for s in host.stats().values()))
        await host.stop()
        assert sorted(cleaned) == ["a", "b"]
        assert {s.state for s in host.stats().values()} == {PluginState.STOPPED}
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("plugin ")]

    run(main())


def test_stop_gives_up_on_a_plugin_that_ignores_cancellation(
    caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event

    class Stubborn(Basic):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.release: asyncio.Event | None = None

        async def run(self, node: Any) -> None:
            self.release = release()
            try:
                await self.forever.wait()
            except asyncio.CancelledError:
                await self.release.wait()  # swallows the cancel until the test lets go

    stubborn = Stubborn("stubborn")

    async def main() -> None:
        host = PluginHost(object(), [stubborn, Basic("ok")])
        await host.start()
        await until(lambda: stubborn.release is not None)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await host.stop(timeout=0.1)
        assert loop.time() - began < 1.0
        assert host.stats()["ok"].state is PluginState.STOPPED
        assert host.stats()["stubborn"].state is PluginState.RUNNING
        assert stubborn.release is not None
        stubborn.release.set()
        leftover = [t for t in asyncio.all_tasks() if t.get_name() == "plugin stubborn"]
        await asyncio.wait(leftover, timeout=2.0)

    with caplog.at_level(logging.WARNING, logger="ganglion.plugins"):
        run(main())
    assert any("'stubborn' did not stop within 0.1 s" in r.getMessage() for r in caplog.records)


def test_stop_without_start_and_twice_is_harmless() -> None:
    async def main() -> None:
        host = PluginHost(object(), [Basic("a")])
        await host.stop()
        await host.start()
        await host.stop()
        await host.stop()
        assert host.stats()["a"].state is PluginState.STOPPED

    run(main())


def test_start_twice_is_refused() -> None:
    async def main() -> None:
        async with PluginHost(object(), []) as host:
            with pytest.raises(LocalError, match="already started"):
                await host.start()

    run(main())


def test_stats_before_start_are_pending_and_in_order() -> None:
    host = PluginHost(object(), [Basic("b"), Basic("a")])
    stats = host.stats()
    assert list(stats) == ["b", "a"]
    assert stats["a"] == plugins_mod.PluginStats("a", PluginState.PENDING, 0, 0, None, None)


# -- declarations and validation --------------------------------------------------------------


def test_declared_types_are_reported_by_name() -> None:
    class Mixed(Basic):
        publishes = (Ping, "other.Thing")
        subscribes = ("sensors.Temperature", Flow)

    host = PluginHost(object(), [Mixed("m"), Basic("b")])
    assert host.publishes() == {"test_plugins.Ping", "other.Thing"}
    assert host.subscribes() == {"sensors.Temperature", "sensors.Flow"}


class _NoSetup:
    name = "nosetup"
    publishes = ()
    subscribes = ()

    async def run(self, node: Any) -> None:
        return None


def _with(**attrs: Any) -> Any:
    obj = _NoSetup()
    for key, value in attrs.items():
        setattr(obj, key, value)
    return obj


def _sync_run(node: Any) -> None:
    return None


@pytest.mark.parametrize(
    "plugin, message",
    [
        (_with(name=""), "needs a non-empty str `name`"),
        (_with(name=3), "needs a non-empty str `name`"),
        (_with(run=_sync_run), "`run` must be an `async def`"),
        (_with(setup=_sync_run), "`setup` must be an `async def`"),
        (_with(publishes=Ping), "`publishes` must be a tuple"),
        (_with(subscribes=(NotRegistered,)), "subscribes entry"),
        (_with(publishes=("not a name",)), "publishes entry 'not a name'"),
    ],
)
def test_objects_that_are_not_plugins_are_refused(plugin: Any, message: str) -> None:
    with pytest.raises(LocalError, match=re.escape(message)):
        PluginHost(object(), [plugin])


def test_a_plugin_without_setup_runs() -> None:
    plugin = _NoSetup()
    assert isinstance(plugin, Plugin)

    async def main() -> None:
        host = PluginHost(object(), [plugin])
        await host.start()
        await until(lambda: host.stats()["nosetup"].state is PluginState.FINISHED)

    run(main())


def test_duplicate_plugin_names_are_refused() -> None:
    with pytest.raises(LocalError, match="two plugins are named 'x'"):
        PluginHost(object(), [Basic("x"), Basic("x")])


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"reset_after": -1}]
)
def test_bad_restart_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalError):
        RestartPolicy(**kwargs)


def test_restart_policy_delays() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(10_000) == 30  # no overflow for a very long streak


# -- entry points ------------------------------------------------------------------------------


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Replace the installed entry points with ``name -> "module:attr"`` of the test's choosing."""
    table: dict[str, str] = {}

    def entry_points(*, group: str) -> list[EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return [EntryPoint(name=n, value=v, group=group) for n, v in table.items()]

    monkeypatch.setattr(plugins_mod, "entry_points", entry_points)
    yield table


def test_the_sim_plugin_is_installed_under_its_entry_point() -> None:
    installed = installed_plugins()
    assert installed["sim"].value == "hardware.sim_plugin:SimPlugin"
    plugin = load_plugin("sim", {"kinds": ["flow", "temperature"], "interval": 0.5})
    assert isinstance(plugin, SimPlugin)
    assert plugin.publishes == (Flow, Temperature)
    assert plugin.interval == 0.5


def test_an_unknown_name_lists_the_installed_plugins() -> None:
    with pytest.raises(PluginNotFoundError) as info:
        load_plugin("smi")
    assert str(info.value).startswith("no plugin named 'smi' is installed; installed plugins: ")
    assert "sim" in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, LookupError)


def test_with_nothing_installed_the_error_says_so(fake_entry_points: dict[str, str]) -> None:
    with pytest.raises(PluginNotFoundError, match=r"installed plugins: none$"):
        load_plugin("sim")


def test_a_setting_the_plugin_does_not_take_lists_the_ones_it_does() -> None:
    with pytest.raises(ConfigError) as info:
        load_plugin("sim", {"kinds": ["flow"], "colour": "red"})
    message = str(info.value)
    assert message.startswith("[plugin.sim]: ")
    assert "'colour'" in message
    assert "plugin 'sim' takes: kinds, interval, name, seed, clock, sleep" in message


def test_a_setting_the_plugin_refuses_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="plugin 'sim' refused its settings: unknown simulated"):
        load_plugin("sim", {"kinds": ["lightning"]})


def test_a_plugin_that_cannot_be_imported_is_a_config_error(
    fake_entry_points: dict[str, str]
) -> None:
    fake_entry_points["broken"] = "no_such_module_for_ganglion_tests:Thing"
    with pytest.raises(ConfigError, match=r"plugin 'broken' \(no_such_module.*cannot be imported"):
        load_plugin("broken")


def test_an_entry_point_that_makes_no_plugin_is_refused(fake_entry_points: dict[str, str]) -> None:
    fake_entry_points["notaplugin"] = "builtins:dict"
    with pytest.raises(LocalError, match="is not a plugin"):
        load_plugin("notaplugin")


def test_load_plugins_takes_names_or_specs_in_order(fake_entry_points: dict[str, str]) -> None:
    fake_entry_points["sim"] = "hardware.sim_plugin:SimPlugin"
    fake_entry_points["sim2"] = "hardware.sim_plugin:SimPlugin"
    by_name = load_plugins(["sim"])
    assert [p.name for p in by_name] == ["sim"]
    specs = {"sim2": {"name": "second", "kinds": ["pressure"]}, "sim": {"kinds": ["humidity"]}}
    loaded = load_plugins(specs)
    assert [p.name for p in loaded] == ["second", "sim"]


def test_config_to_running_sim_plugin_end_to_end(endpoint_factory: Callable[[], Endpoint]) -> None:
    cfg = NodeConfig(sim_kinds=("temperature", "flow"), sim_interval=0.01)
    got: list[tuple[str, MessageInfo]] = []

    async def main() -> None:
        async with endpoint_factory() as remote, endpoint_factory() as ep:
            for kind in (Temperature, Flow):
                remote.subscribe(kind, lambda msg, info: got.append((msg.sensor, info)))
            async with PluginHost(LoopNode(ep, name="pi-1"), load_plugins(cfg.plugin_specs())):
                await until(lambda: len(got) >= 6)
        sensors = {sensor for sensor, _ in got}
        assert sensors == {"sim:pi-1/temperature", "sim:pi-1/flow"}
        assert all(not info.local for _, info in got)  # these came over multicast

    run(main())


def test_the_guides_example_plugin_works(
    endpoint_factory: Callable[[], Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    source = re.search(r"```python\n(.*?)```", guide, re.DOTALL)
    assert source is not None
    module = types.ModuleType("plugins_guide_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look it up
    exec(compile(source.group(1), "docs/plugins.md", "exec"), module.__dict__)
    namespace = module.__dict__
    alarms: list[Any] = []

    async def main() -> None:
        async with endpoint_factory() as ep:
            node = LoopNode(ep)
            node.subscribe("brewery.Alarm", lambda msg, info: alarms.append(msg))
            async with PluginHost(node, [namespace["OverheatAlarm"](limit=25.0)]):
                for celsius in (20.0, 26.5, 24.0, 30.0):
                    await node.publish(Temperature(sensor="vat", celsius=celsius))
                await until(lambda: len(alarms) == 2)
        assert [a.celsius for a in alarms] == [26.5, 30.0]

    run(main())
