"""Token buckets and the limits' validation (consensus/limits.py)."""

from __future__ import annotations

import re

import pytest

from consensus.errors import InvalidConfig
from consensus.limits import KeyedRateLimiter, Limits, RateLimiter
from consensus.node import Config


def test_a_bucket_admits_its_burst_then_one_per_period() -> None:
    bucket = RateLimiter(burst=3, every=5)
    assert [bucket.admit(0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.admit(4)
    assert bucket.admit(5) and not bucket.admit(5)
    assert [bucket.admit(100) for _ in range(4)] == [True, True, True, False]  # refilled, capped


def test_a_bucket_key_is_its_debt_relative_to_now() -> None:
    a, b = RateLimiter(2, 4), RateLimiter(2, 4)
    a.admit(0)
    b.admit(10)
    assert a.state_key(0) == b.state_key(10) == 4
    assert a.state_key(100) == 0
    c = a.copy()
    c.admit(0)
    assert a.state_key(0) == 4 and c.state_key(0) == 8


def test_keyed_buckets_are_per_key_and_lru_evicted() -> None:
    table = KeyedRateLimiter(burst=1, every=10, size=2)
    assert table.admit(1, 0) and not table.admit(1, 0)
    assert table.admit(2, 0)
    assert not table.admit(1, 1)  # 1 is now the most recently used
    assert table.admit(3, 1)  # evicts 2, the least recently used
    assert table.evicted == 1 and len(table) == 2
    assert table.admit(2, 1)  # an evicted key comes back with a full bucket (hence global limits)
    assert table.state_key(1) == ((2, 10), (3, 10))


@pytest.mark.parametrize("field", ["requesters", "propose_burst", "learn_every", "max_pending"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_limits_are_validated_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidConfig, match=re.escape(f"limits.{field}")):
        Limits(**{field: value})  # type: ignore[arg-type]


def test_config_refuses_something_that_is_not_limits() -> None:
    with pytest.raises(InvalidConfig, match="limits"):
        Config(node_id=1, limits={"enabled": False})  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match=r"limits\.enabled"):
        Limits(enabled=1)  # type: ignore[arg-type]
