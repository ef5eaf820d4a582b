"""The group allocator: which addresses may be handed out, and who gets which."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import allocator
from consensus.allocator import (
    CONTROL_BLOCK,
    DATA_RANGE,
    RESERVED,
    allocate,
    assignable_count,
    is_assignable,
    preferred_group,
)
from consensus.errors import AddressSpaceExhausted

names = st.text(min_size=1, max_size=40)


def test_reserved_addresses_of_other_systems_are_never_assignable() -> None:
    for addr in ("239.255.255.250", "239.255.255.253", "239.255.76.67"):
        assert IPv4Address(addr) in RESERVED
        assert not is_assignable(IPv4Address(addr))


def test_control_block_is_not_assignable() -> None:
    assert DATA_RANGE.subnets(new_prefix=24).__next__() == CONTROL_BLOCK
    assert not any(is_assignable(a) for a in CONTROL_BLOCK)


def test_addresses_outside_the_data_range_are_not_assignable() -> None:
    assert not is_assignable(IPv4Address("239.254.1.1"))
    assert not is_assignable(IPv4Address("224.0.0.251"))
    assert not is_assignable(IPv4Address("10.0.0.1"))


def test_network_and_broadcast_lookalikes_are_not_assignable() -> None:
    assert not is_assignable(IPv4Address("239.255.7.0"))
    assert not is_assignable(IPv4Address("239.255.7.255"))
    assert is_assignable(IPv4Address("239.255.7.1"))
    assert is_assignable(IPv4Address("239.255.7.254"))


def test_assignable_count_is_the_data_range_minus_exclusions() -> None:
    # 255 /24 blocks outside the control block, 254 usable each, minus SSDP/SLP/LCM.
    assert assignable_count() == 255 * 254 - 3


@given(names)
@settings(max_examples=200, deadline=None)
def test_preferred_group_is_assignable_and_stable(name: str) -> None:
    group = preferred_group(name)
    assert is_assignable(group)
    assert preferred_group(name) == group


def test_preferred_group_does_not_depend_on_python_hash_seed() -> None:
    code = "from consensus.allocator import preferred_group as p; print(p('brewery.Temperature'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True,
            text=True, check=True, timeout=30,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {str(preferred_group("brewery.Temperature"))}


def test_preferred_group_is_pinned() -> None:
    # Changing the hash would move every type on a running network: pin the function.
    assert preferred_group("brewery.Temperature") == IPv4Address("239.255.219.200")


def test_allocate_returns_the_preferred_group_when_free() -> None:
    assert allocate("a.B", set()) == preferred_group("a.B")


def test_allocate_probes_past_taken_groups() -> None:
    first = preferred_group("a.B")
    second = allocate("a.B", {first})
    assert second != first and is_assignable(second)
    third = allocate("a.B", {first, second})
    assert third not in (first, second) and is_assignable(third)


def test_allocate_wraps_around_the_end_of_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "preferred_group", lambda name: IPv4Address("239.255.255.254"))
    assert allocate("x", {IPv4Address("239.255.255.254")}) == IPv4Address("239.255.1.1")


@given(names, st.sets(st.integers(0, 65535), max_size=50))
@settings(max_examples=100, deadline=None)
def test_allocate_never_returns_a_taken_or_forbidden_group(name: str, offsets: set[int]) -> None:
    base = int(DATA_RANGE.network_address)
    taken = {IPv4Address(base + o) for o in offsets}
    taken.add(preferred_group(name))
    group = allocate(name, taken)
    assert group not in taken
    assert is_assignable(group)


def test_allocate_raises_when_the_space_is_exhausted() -> None:
    everything = {a for a in DATA_RANGE if is_assignable(a)}
    with pytest.raises(AddressSpaceExhausted, match="no free multicast group"):
        allocate("a.B", everything)
    spare = next(iter(everything))
    assert allocate("a.B", everything - {spare}) == spare
