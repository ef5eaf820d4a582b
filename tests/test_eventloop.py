"""ganglion.run picks uvloop where installed, asyncio's loop otherwise, as GANGLION_EVENT_LOOP says."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import warnings

import pytest

import ganglion
from ganglion.errors import ConfigError
from ganglion.eventloop import ENV, loop_factory, loop_name, run


async def running_loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_auto_takes_uvloop_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(ENV, raising=False)
    assert loop_name() == "uvloop"
    assert run(running_loop_module()).startswith("uvloop")
    assert ganglion.run is run


def test_auto_without_uvloop_and_asyncio_by_name_take_asyncios_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "asyncio")
    assert loop_factory() is None and loop_name() == "asyncio"
    assert run(running_loop_module()).startswith("asyncio")
    monkeypatch.setenv(ENV, "auto")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it now fails
    assert loop_name() == "asyncio"
    assert run(running_loop_module()).startswith("asyncio")


def test_asking_for_uvloop_where_it_is_missing_says_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(ConfigError, match=r"pip install 'ganglion-net\[fast\]'"):
        loop_factory()


def test_an_unknown_choice_is_refused_and_the_coroutine_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "trio")
    coro = running_loop_module()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
        with pytest.raises(ConfigError, match="GANGLION_EVENT_LOOP='trio' is not one of auto, "
                                              "uvloop, asyncio"):
            run(coro)
    assert coro.cr_frame is None  # closed


def test_run_returns_the_result_and_propagates_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)

    async def fails() -> None:
        raise KeyError("x")

    async def value() -> int:
        return 7

    assert run(value()) == 7
    with pytest.raises(KeyError):
        run(fails())


def test_a_command_with_a_bad_choice_says_what_is_wrong_without_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "ganglion", "types", "--iface", "127.0.0.1",
                           "--timeout", "1"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, ENV: "trio"}, check=False)
    assert done.returncode == 1
    assert "Error: GANGLION_EVENT_LOOP='trio' is not one of auto, uvloop, asyncio" in done.stderr
    assert "Traceback" not in done.stderr
