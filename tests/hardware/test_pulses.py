"""Debounced input state and the pulse counter, on exact fake times."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.drivers.pulses import InputState, PulseCounter


def test_input_state_accepts_a_change_and_ignores_the_bounce() -> None:
    state = InputState(True, debounce=0.02)  # pulled up, idle high: inactive
    assert not state.active
    assert state.edge(1.000, False)
    assert state.active and state.changes == 1
    assert not state.edge(1.005, True)  # bounce inside the lock-out
    assert not state.edge(1.010, False)  # same level as accepted
    assert state.edge(1.030, True)
    assert (state.active, state.changes) == (False, 2)


def test_active_high_inputs() -> None:
    state = InputState(False, active_low=False)
    assert not state.active
    state.edge(0.5, True)
    assert state.active


def test_pulse_counter_counts_one_edge_with_lockout() -> None:
    counter = PulseCounter(per_unit=450, debounce=0.005, start=0.0)
    times = [0.100, 0.102, 0.200, 0.300]  # 0.102 is a bounce of 0.100
    for t in times:
        counter.edge(t, False)
        counter.edge(t + 0.001, True)  # the rising edge is not a pulse
    assert (counter.pulses, counter.rejected) == (3, 1)


def test_rate_is_per_minute_over_the_sample_period_and_total_accumulates() -> None:
    counter = PulseCounter(per_unit=450, debounce=0.0, start=100.0)
    for i in range(900):  # 900 pulses in 60 s: 2 litres per minute
        counter.edge(100.0 + i * 60 / 900, False)
    first = counter.sample(160.0)
    assert first.per_minute == pytest.approx(2.0)
    assert (first.total, first.pulses) == (2.0, 900)
    for i in range(225):  # then 225 pulses in 30 s: 1 litre per minute
        counter.edge(160.0 + i * 30 / 225, False)
    second = counter.sample(190.0)
    assert second.per_minute == pytest.approx(1.0)
    assert second.total == pytest.approx(2.5)


def test_no_time_passed_is_rate_zero() -> None:
    counter = PulseCounter(per_unit=1, start=5.0)
    assert counter.sample(5.0).per_minute == 0.0


def test_rising_edge_counting() -> None:
    counter = PulseCounter(per_unit=1, edge="rising", debounce=0)
    counter.edge(1.0, False)
    counter.edge(1.1, True)
    assert counter.pulses == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"per_unit": 0}, "pulses per unit"), ({"per_unit": float("nan")}, "pulses per unit"),
    ({"per_unit": 1, "debounce": -1}, "debounce"),
    ({"per_unit": 1, "edge": "both"}, "edge"),
])
def test_bad_counter_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PulseCounter(**kwargs)  # type: ignore[arg-type]


def test_negative_input_debounce_is_refused() -> None:
    with pytest.raises(ValueError, match="debounce"):
        InputState(True, debounce=-0.1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 0.1), min_size=1, max_size=50), st.floats(0.001, 0.05))
def test_counted_pulses_are_never_closer_than_the_debounce(gaps: list[float],
                                                           debounce: float) -> None:
    counter = PulseCounter(per_unit=1, debounce=debounce)
    t, counted = 0.0, []
    for gap in gaps:
        t += gap
        if counter.edge(t, False):
            counted.append(t)
    assert all(b - a >= debounce for a, b in itertools.pairwise(counted))
    assert counter.pulses + counter.rejected == len(gaps)


def test_settle_takes_the_level_even_inside_the_lockout() -> None:
    state = InputState(True, debounce=0.02)
    assert state.edge(1.0, False)
    assert not state.edge(1.001, True)  # ignored: inside the lock-out
    assert state.settle(1.0, True)  # but the pin reads high once the lock-out is over
    assert (state.active, state.changes) == (False, 2)
    assert not state.settle(1.1, True)
