"""Fixtures for forwarding tests: a real PostgreSQL server, fresh databases, logs.

The server is Debian's PostgreSQL run by :mod:`pg_support` as the ``postgres``
user from a temporary directory, on 127.0.0.1 with a free port; it is stopped
(by PID) and removed at teardown, also when the test fails. Without PostgreSQL
the tests skip, naming what is missing (under ``CI=true`` that skip is a
failure: tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "node"))
sys.path.insert(0, str(HERE.parent / "logger"))

from node_fixtures import port, spawn  # noqa: E402
from pg_support import PgServer, missing  # noqa: E402

__all__ = ["port", "spawn"]  # fixtures of this directory, shared with node/ and logger/

_names = itertools.count(1)


@contextlib.contextmanager
def _server() -> Iterator[PgServer]:
    """A started server, stopped (by PID) and removed afterwards, also on failure."""
    why = missing()
    if why is not None:
        pytest.skip(why)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (the postgres extra)")
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_module() -> Iterator[PgServer]:
    """One server for a module's tests (each test gets its own database)."""
    with _server() as server:
        yield server


@pytest.fixture
def pg(pg_module: PgServer) -> PgServer:
    return pg_module


@pytest.fixture
def pg_own() -> Iterator[PgServer]:
    """A server of this test's own (tests that stop and restart it)."""
    with _server() as server:
        yield server


@pytest.fixture
def central(pg: PgServer) -> str:
    """A fresh database on the module's server; its URL (with the password)."""
    name = f"central{next(_names)}"
    pg.createdb(name)
    return pg.url(name)
