"""A fake clock for tests: time moves only when the test (or a fake sleep) says so."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """Monotonic seconds that advance on demand.

    Args:
        start: the initial reading.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward; returns the new time."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.now += seconds
        return self.now

    def sleep(self, seconds: float) -> None:
        """A blocking-sleep stand-in: records the wait and advances time by it."""
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
