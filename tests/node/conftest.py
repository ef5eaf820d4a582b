"""Fixtures for node tests: port pairs, a process spawner and a namespace lab.

Every node in these tests sends multicast out of 127.0.0.1 or out of a veth inside
a namespace the test created; every process started is killed by PID at teardown,
and every namespace is deleted, however the test ends.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from node_fixtures import port, spawn
from node_support import NetnsLab, netns_problem
from packet_loss import loss_problem

__all__ = ["port", "spawn"]  # fixtures of this directory, shared with logger/ and forward/

_labs = itertools.count(1)


@pytest.fixture(scope="session")
def netns_available() -> None:
    """Skip (with the reason) unless network namespaces can be created here."""
    problem = netns_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture
def lab(netns_available: None) -> Iterator[NetnsLab]:
    """A bridge namespace; hosts are added by the test. Removed at teardown."""
    counter = next(_labs)
    net = NetnsLab(f"g{os.getpid() % 100000}x{counter}", net=counter % 250)
    try:
        net.start()
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session")
def loss_available(netns_available: None) -> None:
    """Skip (a failure under CI=true) unless packet loss can be injected (nft or iptables)."""
    problem = loss_problem()
    if problem is not None:
        pytest.skip(problem)
