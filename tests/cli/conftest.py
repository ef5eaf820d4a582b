"""Fixtures for CLI tests: subprocesses that are always ended.

Every subprocess is a ``python -m ganglion ...`` started by the ``spawn`` fixture,
which kills it by its PID when the test ends, however it ends. Output is read
with a deadline (:mod:`cli_procs`), never with a blocking read that could hang a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from cli_procs import Proc, clean_env


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """Start ``python -m ganglion <args>``; every process is killed by PID at teardown."""
    procs: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(args), env if env is not None else clean_env())
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
