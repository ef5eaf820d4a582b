"""MockInputPin: a GPIO input the test drives, stamped with a fake clock.

Like gpiozero's ``MockPin`` (``drive_high``/``drive_low``, recorded ``states``),
but edges carry the factory's fake time instead of ``time.monotonic()``, so
debounce and rate tests state exact times instead of tolerances, and callbacks
run synchronously in the test's thread.
"""

from __future__ import annotations

from collections.abc import Callable

from hardware.port import EdgeCallback, InputPin, Pull

__all__ = ["MockInputPin"]


class MockInputPin(InputPin):
    """A digital input driven by the test.

    Args:
        name: the pin's name.
        pull: the bias; it sets the idle level (up: high, down and none: low).
        clock: the time edges are stamped with.
    """

    def __init__(self, name: str, *, pull: Pull = "up", clock: Callable[[], float]) -> None:
        self._name = name
        self._clock = clock
        self._level = pull == "up"
        self._callback: EdgeCallback | None = None
        self.pull = pull
        self.states: list[tuple[float, bool]] = [(clock(), self._level)]
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def value(self) -> bool:
        return self._level

    def on_edge(self, callback: EdgeCallback | None) -> None:
        self._callback = callback

    def drive(self, level: bool, at: float | None = None) -> None:
        """Set the level; an actual change calls the edge callback.

        Args:
            level: the new level.
            at: the edge's time; the clock's current time when None.
        """
        if level == self._level:
            return
        when = self._clock() if at is None else at
        self._level = level
        self.states.append((when, level))
        if self._callback is not None and not self.closed:
            self._callback(when, level)

    def drive_high(self, at: float | None = None) -> None:
        """Drive the pin high."""
        self.drive(True, at)

    def drive_low(self, at: float | None = None) -> None:
        """Drive the pin low."""
        self.drive(False, at)

    def pulse(self, at: float, width: float = 0.001, *, active_low: bool = True) -> None:
        """One pulse: to the active level at ``at``, back ``width`` seconds later."""
        self.drive(not active_low, at)
        self.drive(active_low, at + width)

    def close(self) -> None:
        self.closed = True
        self._callback = None
