""""Did you mean": which known type names count as close to what was typed."""

from __future__ import annotations

import pytest

from ganglion.cli._suggest import close_names, hint_for_name, hint_for_pattern, known_names

KNOWN = {"sensors.Temperature", "sensors.Pressure", "sensors.Humidity", "brewery.MashTun"}


@pytest.mark.parametrize(("typed", "expected"), [
    ("sensors.temprature", ["sensors.Temperature"]),
    ("sensors.Temperatur", ["sensors.Temperature"]),
    ("sensors.temperature", ["sensors.Temperature"]),  # case alone
    ("sensor.Temperature", ["sensors.Temperature"]),
    ("sensors.Presure", ["sensors.Pressure"]),
    ("brewery.MashTon", ["brewery.MashTun"]),
])
def test_typos_of_known_names_are_close(typed: str, expected: list[str]) -> None:
    assert close_names(typed, KNOWN) == expected


@pytest.mark.parametrize("typed", [
    "sensors.Temperature",  # known: nothing to suggest
    "sensors.Voltage",  # another type of the same namespace is not a typo
    "brewery.Temperature",  # the same leaf in another namespace neither
    "sensors.Flow",
])
def test_other_names_are_not_close(typed: str) -> None:
    assert close_names(typed, KNOWN) == []
    assert hint_for_name(typed, KNOWN) is None


def test_hint_names_every_close_candidate() -> None:
    assert hint_for_name("sensors.Temperatur", KNOWN | {"sensors.temprature"}) == \
        "did you mean sensors.Temperature or sensors.temprature?"


@pytest.mark.parametrize(("pattern", "hint"), [
    ("sensors.*", None),  # matches
    ("sensor.*", "did you mean sensors.*?"),
    ("brewry.*", "did you mean brewery.*?"),
    ("sensors.Temperatur", "did you mean sensors.Temperature?"),
    ("garden.*", None),  # nothing close
])
def test_patterns_that_match_nothing_get_a_close_namespace(pattern: str, hint: str | None) -> None:
    assert hint_for_pattern(pattern, KNOWN) == hint


def test_known_names_include_registered_classes() -> None:
    import hardware.readings  # noqa: F401  (registers sensors.*)

    assert {"sensors.Temperature", "x.Agreed"} <= known_names({"x.Agreed"})
