"""The leak check (``make leakcheck``: millions of messages) at a small scale, and the
check itself: it must see one object, or one reference, kept per message."""

from __future__ import annotations

from typing import Any

import pytest

from .__main__ import main, verdict
from .bus_paths import busfast
from .check import BLOCKS_SLACK, leaky, measure
from .copy_paths import copyfast
from .paths import PATHS, speedups

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")]


@pytest.mark.parametrize("name", list(PATHS))
def test_each_compiled_path_holds_its_memory_and_references(name: str) -> None:
    spec = PATHS[name]
    if spec.bus and busfast is None:
        pytest.skip("ganglion._busfast is not built (or cannot find libzmq)")
    if spec.copy and copyfast is None:
        pytest.skip("ganglion._copyfast is not built (or cannot find SQLite)")
    result = measure(name, spec.make, 24_000)
    assert result.messages == 18_000
    assert verdict(result, spec) == []
    if spec.compiled:
        assert result.delivered == result.messages


def test_the_check_sees_an_object_kept_per_message() -> None:
    store: list[Any] = []
    result = measure("leaky", leaky(store), 4 * BLOCKS_SLACK)
    assert result.blocks >= 3 * BLOCKS_SLACK
    assert result.leaks and "allocated blocks" in result.leaks[0]


def test_the_check_sees_a_reference_kept_per_message() -> None:
    store: list[Any] = []
    result = measure("leaky", leaky(store, references=True), 4_000)
    assert result.refs == {"thing": 3_000}
    assert result.leaks == ["thing: +3000 references"]


def test_the_command_runs_one_path_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--messages", "8000", "--path", "send-lone+drain"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("send-lone+drain") and out.rstrip().endswith("flat")
    assert len(out.splitlines()) == 1
