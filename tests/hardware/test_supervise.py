"""FaultLog: one report per failure streak, doubling backoff with a cap, recovery report."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hw_support import RecordingNode, run

from hardware.errors import BadReading, SensorGone
from hardware.sensors import PolledSensor
from hardware.supervise import FaultLog, Runtime


def test_first_failure_is_a_warning_naming_sensor_and_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hardware")
    log = FaultLog("w1:28-1", initial=1.0, maximum=8.0)
    delays = [log.failed(SensorGone("w1:28-1: No such file or directory")) for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith(
        "sensor w1:28-1 failed: No such file or directory (retrying")
    assert (log.failures, log.streak, log.failing) == (6, 6, True)


def test_success_after_a_streak_reports_recovery_and_resets(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hardware")
    log = FaultLog("i2c:1/0x76", initial=0.5)
    log.succeeded()
    assert caplog.records == []  # nothing to say when all is well
    log.failed(BadReading("garbage"))
    log.failed(BadReading("garbage"))
    log.succeeded()
    assert "works again after 2 failed attempt(s)" in caplog.records[-1].getMessage()
    assert log.failed(BadReading("again")) == 0.5  # backoff starts over
    assert sum("failed:" in r.getMessage() for r in caplog.records) == 2  # a new streak


def test_an_exception_without_a_message_is_named_by_its_type() -> None:
    log = FaultLog("x")
    log.failed(ZeroDivisionError())
    assert log.last_reason == "ZeroDivisionError"


class Scripted(PolledSensor):
    """Reads from a script of results: a value or an exception."""

    def __init__(self, script: list[Any], runtime: Runtime) -> None:
        super().__init__("test:1", interval=0.5, runtime=runtime)
        self.script = script
        self.closed = 0

    def read(self) -> list[object]:
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return [item]

    def close(self) -> None:
        self.closed += 1


def test_polled_sensor_sleeps_interval_or_backoff_and_closes_on_failure() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 5:
            raise asyncio.CancelledError

    async def inline(func: Any, *args: Any) -> Any:
        return func(*args)

    runtime = Runtime(run_blocking=inline, sleep=sleep, initial_backoff=1.0, max_backoff=3.0)
    sensor = Scripted(["a", SensorGone("gone"), SensorGone("gone"), "b", "c"], runtime)
    node = RecordingNode()

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await sensor.run(node)

    run(main())
    assert slept == [0.5, 1.0, 2.0, 0.5, 0.5]
    assert node.published == ["a", "b", "c"]
    assert sensor.closed == 3  # after each failure, and when the run ends
    assert sensor.published == 3
