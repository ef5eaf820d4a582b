"""The control channel wakes by deadlines, not every tick, and its logical clock keeps time.

An idle channel has nothing due between its heartbeats (the state machine's
``Status`` goes on the same tick), so its timer fires about twice a second with
0.5 s heartbeats, where a fixed 50 ms tick fired twenty times; yet ``tick()`` is
still called once per elapsed tick before any input reaches the state machine
(``consensus/sim``'s contract), and heartbeat ticks sit on the wall clock's
multiples of the interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _control_support import channel, until

from ganglion.runtime._tickclock import TickClock
from ganglion.runtime.control import ControlChannel

pytestmark = pytest.mark.usefixtures("multicast_loopback")

PORT = 47991
GROUP = "239.255.0.79"


def run(coro: object, timeout: float = 30.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)  # type: ignore[arg-type]

    asyncio.run(bounded())


@pytest.fixture
def wakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Loop times at which any control channel's timer fired."""
    fired: list[float] = []
    original = ControlChannel._on_timer

    def on_timer(self: ControlChannel) -> None:
        fired.append(asyncio.get_running_loop().time())
        original(self)

    monkeypatch.setattr(ControlChannel, "_on_timer", on_timer)
    yield fired


def test_an_idle_channel_wakes_for_its_heartbeats_only(tmp_path: Path,
                                                       wakes: list[float]) -> None:
    async def main() -> None:
        ch = channel(tmp_path, "a", PORT, GROUP, heartbeat_seconds=0.5, peer_timeout=2.0)
        await ch.start()
        try:
            await asyncio.sleep(0.2)
            first, wakes[:] = ch.stats()["ticks"], []
            await asyncio.sleep(2.0)
            ticks = ch.stats()["ticks"]
        finally:
            await ch.close()
        # Four heartbeat ticks in 2 s (a fifth at most, by where the window falls);
        # every 50 ms tick would be 40 wakes.
        assert 3 <= len(wakes) <= 5, wakes
        # The logical clock still advanced by one tick per 50 ms (as far as a timer
        # that fires at the last heartbeat tick shows).
        assert ticks - first >= 30

    run(main())


def test_ticks_are_caught_up_before_an_input_reaches_the_state_machine(
        tmp_path: Path, wakes: list[float]) -> None:
    async def main() -> None:
        ch = channel(tmp_path, "b", PORT + 2, GROUP, heartbeat_seconds=0.5, peer_timeout=2.0)
        await ch.start()
        try:
            # Past the first interval, just after a heartbeat tick's wake.
            await until(lambda: ch.stats()["ticks"] >= 11, "the second heartbeat tick")
            start, before, fired = time.monotonic(), ch.stats()["ticks"], len(wakes)
            await asyncio.sleep(0.3)  # the next tick that acts is 0.5 s after the last
            assert len(wakes) == fired
            ch.propose("test.Deadline")  # an input: six ticks have passed since
            elapsed = time.monotonic() - start
            assert ch.stats()["ticks"] - before >= int(elapsed / 0.05) - 1
            await until(lambda: "test.Deadline" in ch.groups(), "a group for the type")
        finally:
            await ch.close()

    run(main())


@pytest.mark.parametrize("wall", [0.0, 0.01, 0.25, 0.49, 0.5, 0.96, 1234567.891])
def test_heartbeat_ticks_fall_on_multiples_of_the_interval(wall: float) -> None:
    loop_now, tick, every = 100.0, 0.05, 10
    clock = TickClock(loop_now, wall, tick, every)

    def wall_of(n: int) -> float:
        return wall + clock.time_of(n) - loop_now

    assert wall_of(1) == pytest.approx(wall + tick)  # the first Status: one tick in
    for n in (1 + every, 1 + 2 * every, 1 + 7 * every):
        phase = wall_of(n) % 0.5
        assert min(phase, 0.5 - phase) == pytest.approx(0.0, abs=1e-6)
    # The first interval's ticks are 0.5 to 1.5 ticks long: the clock never stalls.
    gaps = [clock.time_of(n + 1) - clock.time_of(n) for n in range(1, 1 + 3 * every)]
    assert all(0.5 * tick - 1e-9 <= gap <= 1.5 * tick + 1e-9 for gap in gaps)


def test_the_tick_clock_inverts_its_times_and_slips_by_whole_intervals() -> None:
    clock = TickClock(50.0, 7.3, 0.05, 10)
    assert clock.ticks_at(50.0) == 0
    for n in range(1, 60):
        at = clock.time_of(n)
        assert clock.ticks_at(at) == n
        assert clock.ticks_at(at - 1e-6) == n - 1
    before = clock.time_of(31)
    clock.slip(2)
    assert clock.time_of(31) == pytest.approx(before + 1.0)


def test_heartbeat_ticks_and_a_plugins_polls_share_one_loop_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Periodic work on the wall clock's grid (``ganglion.plugins.until_aligned``) falls on
    the very loop times of the heartbeat ticks, so one wake-up serves both: the wall clock
    is mapped to the loop's once per loop, not read afresh by each (here it moves 1 ms
    at every reading, as a slewing clock would between two readings far apart)."""
    from ganglion.plugins import until_aligned

    real = time.time
    readings = [0]

    def moving() -> float:
        readings[0] += 1
        return real() + 0.001 * readings[0]

    monkeypatch.setattr(time, "time", moving)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ch = channel(tmp_path, "a", PORT, GROUP, heartbeat_seconds=0.5, peer_timeout=2.0)
        await ch.start()
        try:
            assert ch._clock is not None
            every = 10  # heartbeat ticks: 1 + k * every
            beats = [ch._clock.time_of(1 + k * every) for k in range(1, 12)]
            for _ in range(3):
                now = loop.time()
                poll = now + until_aligned(2.0)
                # equal but for float rounding (the clock moved 1 ms per reading)
                assert min(abs(poll - beat) for beat in beats) < 1e-5, (poll, beats)
                await asyncio.sleep(0.3)
        finally:
            await ch.close()

    run(main())


def test_a_heartbeat_ticks_datagrams_leave_together_without_a_yield(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``Heartbeat`` and the ``Status`` of one tick leave back to back at the end of
    the loop iteration: a peer reads both in one wake-up. (A lone send gives up the CPU
    after it, for a local subscriber's latency; between these two it would let each
    peer read the first and sleep again before the second.)"""
    from ganglion.runtime import endpoint as endpoint_mod

    yields: list[float] = []
    monkeypatch.setattr(endpoint_mod, "YIELD_CPU", lambda: yields.append(time.monotonic()))

    async def main() -> None:
        ch = channel(tmp_path, "a", PORT, GROUP, heartbeat_seconds=0.5, peer_timeout=2.0)
        await ch.start()
        try:
            await asyncio.sleep(0.3)
            out = ch.endpoint._out
            assert out is not None
            ticks, sent, yields[:] = ch.stats()["ticks"], out.datagrams, []
            await asyncio.sleep(1.1)  # two heartbeat ticks or three
            assert ch.stats()["ticks"] - ticks >= 20
            assert out.datagrams - sent >= 4  # a Heartbeat and a Status per tick
            assert yields == []
        finally:
            await ch.close()

    run(main())
