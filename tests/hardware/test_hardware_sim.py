"""Simulated sensors: deterministic for a seed, physically bounded, smooth, flow totals grow.

Pure: time is an argument and randomness a seeded ``random.Random``, so every
test here is exact and needs no clock.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.readings import Flow, Humidity, Pressure, Temperature
from hardware.sim import KINDS, SimulatedSensor

#: Physical bounds every reading must respect, by kind.
BOUNDS = {
    "temperature": (-40.0, 85.0),
    "humidity": (0.0, 100.0),
    "pressure": (870.0, 1085.0),
    "flow": (0.0, 60.0),
}
#: Where a simulated sensor should normally sit (well inside the hard bounds).
TYPICAL = {
    "temperature": (5.0, 35.0),
    "humidity": (15.0, 75.0),
    "pressure": (1000.0, 1025.0),
    "flow": (0.0, 25.0),
}
CLASSES = {"temperature": Temperature, "humidity": Humidity, "pressure": Pressure, "flow": Flow}


def value_of(reading: object) -> float:
    for field in ("celsius", "percent", "hpa", "litres_per_minute"):
        if hasattr(reading, field):
            return float(getattr(reading, field))
    raise AssertionError(f"unexpected reading {reading!r}")


def series(kind: str, seed: int, steps: int, dt: float, start: float = 0.0) -> list[object]:
    sensor = SimulatedSensor(kind, f"n/{kind}", rng=random.Random(seed))
    return [sensor.read(start + i * dt) for i in range(steps)]


def test_kinds_are_the_four_sensor_types() -> None:
    assert set(KINDS) == set(CLASSES)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_produces_its_message_class_named_after_the_sensor(kind: str) -> None:
    reading = SimulatedSensor(kind, "brewery/x", rng=random.Random(1)).read(0.0)
    assert type(reading) is CLASSES[kind]
    assert reading.sensor == "sim:brewery/x"


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_the_same_readings(kind: str) -> None:
    assert series(kind, 1234, 200, 1.0) == series(kind, 1234, 200, 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_different_seeds_give_different_readings(kind: str) -> None:
    assert series(kind, 1, 50, 1.0) != series(kind, 2, 50, 1.0)


def test_sensors_sharing_one_rng_are_deterministic_as_a_group() -> None:
    def run(seed: int) -> list[object]:
        rng = random.Random(seed)
        sensors = [SimulatedSensor(k, k, rng=rng) for k in KINDS]
        return [s.read(t * 0.5) for t in range(100) for s in sensors]

    assert run(9) == run(9)


@pytest.mark.parametrize("kind", KINDS)
def test_values_stay_within_physical_bounds_over_a_long_run(kind: str) -> None:
    low, high = BOUNDS[kind]
    tlow, thigh = TYPICAL[kind]
    # Ten simulated days at one reading a minute, for a few seeds.
    for seed in range(3):
        values = [value_of(r) for r in series(kind, seed, 14_400, 60.0)]
        assert all(math.isfinite(v) for v in values)
        assert min(values) >= low and max(values) <= high
        inside = sum(tlow <= v <= thigh for v in values) / len(values)
        assert inside > 0.95, f"{kind} wanders off its typical range: {min(values)}..{max(values)}"


@pytest.mark.parametrize("kind", KINDS)
def test_values_are_not_constant(kind: str) -> None:
    values = [value_of(r) for r in series(kind, 5, 500, 60.0)]
    assert len(set(values)) > 100


@pytest.mark.parametrize(
    ("kind", "max_step"),
    # Per one-second step: a few noise sigmas plus the daily cycle's slope and rounding.
    [("temperature", 0.3), ("humidity", 1.2), ("pressure", 0.3), ("flow", 3.5)],
)
def test_drift_is_smooth_step_to_step(kind: str, max_step: float) -> None:
    values = [value_of(r) for r in series(kind, 77, 5_000, 1.0)]
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    low, high = BOUNDS[kind]
    assert max(steps) < max_step
    # A smooth series moves much less per step than across the run.
    assert sum(steps) / len(steps) < (max(values) - min(values)) / 5
    assert max_step < (high - low) / 10


@pytest.mark.parametrize("kind", KINDS)
def test_first_reading_is_near_the_mean_and_has_no_noise(kind: str) -> None:
    tlow, thigh = TYPICAL[kind]
    for seed in range(20):
        assert tlow <= value_of(series(kind, seed, 1, 1.0)[0]) <= thigh


def test_flow_total_never_decreases_and_grows_over_time() -> None:
    readings = series("flow", 3, 3_000, 1.0)
    totals = [r.total_litres for r in readings]  # type: ignore[attr-defined]
    assert totals[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(totals))
    assert totals[-1] > totals[len(totals) // 2] > 0.0


def test_flow_total_matches_the_rates_integrated_over_time() -> None:
    readings = series("flow", 11, 600, 2.0)
    rates = [r.litres_per_minute for r in readings]  # type: ignore[attr-defined]
    expected = sum(rate * 2.0 / 60.0 for rate in rates[1:])
    assert readings[-1].total_litres == pytest.approx(expected, abs=0.01)  # type: ignore[attr-defined]


def test_time_going_backwards_adds_no_flow() -> None:
    sensor = SimulatedSensor("flow", "f", rng=random.Random(4))
    for t in range(10):
        sensor.read(float(t))
    before = sensor.read(10.0)
    after = sensor.read(5.0)  # dt clamps to 0
    assert isinstance(before, Flow) and isinstance(after, Flow)
    assert before.total_litres > 0.0
    assert after.total_litres == before.total_litres


def test_a_long_gap_between_readings_stays_stable() -> None:
    sensor = SimulatedSensor("temperature", "t", rng=random.Random(8))
    sensor.read(0.0)
    value = value_of(sensor.read(1e7))  # months later, one step
    assert TYPICAL["temperature"][0] <= value <= TYPICAL["temperature"][1]


@pytest.mark.parametrize("kind", ["", "Temperature", "wind", "gps"])
def test_unknown_kind_is_refused_with_the_valid_choices(kind: str) -> None:
    with pytest.raises(ValueError, match="temperature") as caught:
        SimulatedSensor(kind, "x", rng=random.Random(0))
    assert repr(kind) in str(caught.value)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32),
    gaps=st.lists(st.floats(0.0, 7200.0, allow_nan=False), min_size=1, max_size=60),
)
def test_any_schedule_of_irregular_reads_stays_bounded(kind: str, seed: int,
                                                       gaps: list[float]) -> None:
    sensor = SimulatedSensor(kind, "h", rng=random.Random(seed))
    low, high = BOUNDS[kind]
    now = 0.0
    for gap in gaps:
        now += gap
        value = value_of(sensor.read(now))
        assert math.isfinite(value)
        assert low <= value <= high
