"""Clock sanity detection through adjtimex(2)."""

from __future__ import annotations

import sys

import pytest

from ganglion import clock


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux-only")
def test_kernel_clock_state_is_one_of_the_documented_states() -> None:
    assert clock.kernel_clock_state() in {0, 1, 2, 3, 4, 5}


def test_time_error_means_not_synchronised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "kernel_clock_state", lambda: 5)
    assert clock.clock_synchronized() is False


@pytest.mark.parametrize("state", [0, 1, 2, 3, 4, None])
def test_other_states_and_unknown_count_as_synchronised(monkeypatch: pytest.MonkeyPatch,
                                                        state: int | None) -> None:
    monkeypatch.setattr(clock, "kernel_clock_state", lambda: state)
    assert clock.clock_synchronized() is True
