"""Fixtures: a real Mosquitto per test (plain, with a password file, with TLS).

Each broker is its own process on 127.0.0.1 with a free port and its config in the
test's temporary directory, ended by its PID when the test ends, also on failure.
Without Mosquitto the tests skip naming the Debian package; with ``CI=true`` the
skip becomes a failure (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_support import Broker, Tls, missing_tools


@pytest.fixture(scope="session")
def mosquitto_available() -> None:
    problem = missing_tools()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture
def broker(tmp_path: Path, mosquitto_available: None) -> Iterator[Broker]:
    """A plain broker (anonymous allowed)."""
    b = Broker(tmp_path / "broker")
    try:
        b.start()
        yield b
    finally:
        b.stop()


@pytest.fixture
def password_broker(tmp_path: Path, mosquitto_available: None) -> Iterator[Broker]:
    """A broker that accepts only user ``ha`` with password ``s3cret``."""
    b = Broker(tmp_path / "pw-broker", users={"ha": "s3cret"})
    try:
        b.start()
        yield b
    finally:
        b.stop()


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    (tmp_path / "tls").mkdir()
    return Tls(tmp_path / "tls")


@pytest.fixture
def tls_broker(tmp_path: Path, tls: Tls, mosquitto_available: None) -> Iterator[Broker]:
    """A TLS broker whose certificate (for 127.0.0.1) is signed by ``tls.ca``."""
    b = Broker(tmp_path / "tls-broker", tls=tls)
    try:
        b.start()
        yield b
    finally:
        b.stop()
