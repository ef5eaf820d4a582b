"""Interface selection: fake netifaces tables, plus one look at the real machine."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from ganglion import netif
from ganglion.errors import ConfigError, InterfaceError
from ganglion.netif import (
    Interface,
    choose_interface,
    default_route_interface,
    list_interfaces,
    normalize_choice,
    resolve_interface,
)

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
AF_LINK = 17

LO = Interface("lo", "127.0.0.1", "255.0.0.0", is_loopback=True, is_up=True, multicast=False)
ETH0 = Interface("eth0", "192.0.2.2", "255.255.255.0", is_up=True, multicast=True)
ETH0_ALIAS = Interface("eth0", "192.0.2.77", "255.255.255.0", is_up=True, multicast=True)
WLAN0 = Interface("wlan0", "10.1.2.3", "255.255.0.0", is_up=True, multicast=True)
TUN0 = Interface("tun0", "10.8.0.1", "255.255.255.255", is_up=True, multicast=False)
ALL = [LO, ETH0, ETH0_ALIAS, WLAN0]


class FakeNetifaces:
    """Stands in for the netifaces module: fixed addresses and gateways."""

    def __init__(self, table: dict[str, dict[int, list[dict[str, str]]]], gateways: Any) -> None:
        self._table = table
        self._gateways = gateways

    def interfaces(self) -> list[str]:
        return list(self._table)

    def ifaddresses(self, name: str) -> dict[int, list[dict[str, str]]]:
        return self._table[name]

    def gateways(self) -> Any:
        return self._gateways


LAPTOP_TABLE: dict[str, dict[int, list[dict[str, str]]]] = {
    "lo": {
        AF_LINK: [{"addr": "00:00:00:00:00:00"}],
        AF_INET: [{"addr": "127.0.0.1", "netmask": "255.0.0.0", "peer": "127.0.0.1"}],
        AF_INET6: [{"addr": "::1", "netmask": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}],
    },
    "docker0": {AF_LINK: [{"addr": "02:42:00:00:00:01"}]},
    "eth0": {
        AF_LINK: [{"addr": "02:fc:00:00:00:01"}],
        AF_INET: [
            {"addr": "192.0.2.2", "netmask": "255.255.255.0", "broadcast": "192.0.2.255"},
            {"addr": "192.0.2.77", "netmask": "255.255.255.0"},
        ],
        AF_INET6: [{"addr": "fd00::2", "netmask": "ffff:ffff:ffff:ffff::/64"}],
    },
    "v6only": {AF_INET6: [{"addr": "fd00::9", "netmask": "ffff:ffff:ffff:ffff::/64"}]},
}
LAPTOP_GATEWAYS = {
    "default": {AF_INET: ("192.0.2.1", "eth0"), AF_INET6: ("fd00::1", "eth0")},
    AF_INET: [("192.0.2.1", "eth0", True)],
    AF_INET6: [("fd00::1", "eth0", True)],
}
FLAGS = {"lo": 0x9, "eth0": 0x1003, "docker0": 0x1003, "v6only": 0x1003}


# -- list_interfaces ---------------------------------------------------------


def test_list_interfaces_gives_one_entry_per_ipv4_address_in_order() -> None:
    fake = FakeNetifaces(LAPTOP_TABLE, LAPTOP_GATEWAYS)
    found = list_interfaces(fake, read_flags=FLAGS.get)
    assert found == [
        Interface("lo", "127.0.0.1", "255.0.0.0", is_loopback=True, is_up=True, multicast=False),
        Interface("eth0", "192.0.2.2", "255.255.255.0", is_up=True, multicast=True),
        Interface("eth0", "192.0.2.77", "255.255.255.0", is_up=True, multicast=True),
    ]


def test_list_interfaces_without_flags_marks_them_unknown() -> None:
    fake = FakeNetifaces(LAPTOP_TABLE, LAPTOP_GATEWAYS)
    found = list_interfaces(fake, read_flags=lambda name: None)
    assert [(i.name, i.is_up, i.multicast) for i in found] == [
        ("lo", None, None),
        ("eth0", None, None),
        ("eth0", None, None),
    ]
    # Loopback is still recognised by its address when flags are unknown.
    assert found[0].is_loopback
    assert not found[1].is_loopback


def test_list_interfaces_skips_malformed_addresses() -> None:
    table: dict[str, dict[int, list[dict[str, str]]]] = {
        "odd0": {AF_INET: [{"addr": "not-an-ip"}, {"netmask": "255.0.0.0"}, {"addr": "10.0.0.5"}]}
    }
    found = list_interfaces(FakeNetifaces(table, {}), read_flags=lambda name: None)
    assert found == [Interface("odd0", "10.0.0.5", None)]


def test_list_interfaces_reads_loopback_flag_for_non_127_address() -> None:
    table: dict[str, dict[int, list[dict[str, str]]]] = {"lo": {AF_INET: [{"addr": "10.255.0.1"}]}}
    found = list_interfaces(FakeNetifaces(table, {}), read_flags=lambda name: 0x9)
    assert found[0].is_loopback


# -- default_route_interface -------------------------------------------------


def test_default_route_interface_reads_the_default_entry() -> None:
    assert default_route_interface(LAPTOP_GATEWAYS) == "eth0"


def test_default_route_interface_falls_back_to_flagged_route() -> None:
    gateways = {AF_INET: [("10.0.0.1", "wlan1", False), ("192.168.1.1", "wlan0", True)]}
    assert default_route_interface(gateways) == "wlan0"


@pytest.mark.parametrize(
    "gateways",
    [
        {},
        {"default": {}},
        {"default": {AF_INET6: ("fd00::1", "eth0")}, AF_INET6: [("fd00::1", "eth0", True)]},
        {AF_INET: [("10.0.0.1", "eth1", False)]},
    ],
    ids=["empty", "empty-default", "ipv6-only", "no-default-flag"],
)
def test_default_route_interface_is_none_without_an_ipv4_default(gateways: Any) -> None:
    assert default_route_interface(gateways) is None


# -- normalize_choice --------------------------------------------------------


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_normalize_choice_blank_means_default(blank: str | None) -> None:
    assert normalize_choice(blank) is None


def test_normalize_choice_separates_names_from_addresses() -> None:
    assert normalize_choice(" eth0 ") == "eth0"
    assert normalize_choice("127.0.0.1") == ipaddress.IPv4Address("127.0.0.1")


def test_normalize_choice_refuses_ipv6_addresses() -> None:
    with pytest.raises(InterfaceError, match="not IPv4"):
        normalize_choice("fe80::1")


# -- choose_interface --------------------------------------------------------


def test_choose_by_name_takes_the_first_address() -> None:
    assert choose_interface("eth0", interfaces=ALL, default_iface="wlan0") == ETH0


def test_choose_by_address_takes_that_address() -> None:
    chosen = choose_interface("192.0.2.77", interfaces=ALL, default_iface="wlan0")
    assert chosen == ETH0_ALIAS


def test_choose_loopback_by_name_and_by_address() -> None:
    assert choose_interface("lo", interfaces=ALL, default_iface="eth0") == LO
    assert choose_interface("127.0.0.1", interfaces=ALL, default_iface="eth0") == LO


def test_choose_none_takes_the_default_route_interface() -> None:
    assert choose_interface(None, interfaces=ALL, default_iface="wlan0") == WLAN0
    assert choose_interface("", interfaces=ALL, default_iface="wlan0") == WLAN0


def test_unknown_name_lists_the_interfaces_that_would_work() -> None:
    with pytest.raises(InterfaceError) as info:
        choose_interface("wlan9", interfaces=[LO, ETH0, TUN0], default_iface="eth0")
    message = str(info.value)
    assert "'wlan9' does not exist or has no IPv4 address" in message
    assert "lo (127.0.0.1, loopback, this host only)" in message
    assert "eth0 (192.0.2.2)" in message
    # A point-to-point interface without multicast would not work, so it is not offered.
    assert "tun0" not in message


def test_name_without_ipv4_is_refused() -> None:
    fake = FakeNetifaces(LAPTOP_TABLE, LAPTOP_GATEWAYS)
    found = list_interfaces(fake, read_flags=FLAGS.get)
    with pytest.raises(InterfaceError, match=r"'docker0' does not exist or has no IPv4"):
        choose_interface("docker0", interfaces=found, default_iface="eth0")


def test_unknown_address_is_refused_with_alternatives() -> None:
    with pytest.raises(
        InterfaceError, match=r"no interface has the IPv4 address 10\.9\.9\.9"
    ) as info:
        choose_interface("10.9.9.9", interfaces=ALL, default_iface="eth0")
    assert "wlan0 (10.1.2.3)" in str(info.value)


def test_no_default_route_and_no_choice_suggests_iface_lo() -> None:
    with pytest.raises(InterfaceError, match="no default IPv4 route") as info:
        choose_interface(None, interfaces=[LO], default_iface=None)
    assert "--iface lo" in str(info.value)
    assert "lo (127.0.0.1" in str(info.value)


def test_default_route_interface_without_ipv4_is_refused() -> None:
    with pytest.raises(InterfaceError, match="default-route interface 'ppp0'"):
        choose_interface(None, interfaces=[LO, ETH0], default_iface="ppp0")


def test_no_interfaces_at_all_says_so() -> None:
    with pytest.raises(InterfaceError, match="No interface has an IPv4 address"):
        choose_interface("eth0", interfaces=[], default_iface=None)


def test_interface_error_is_a_config_and_value_error() -> None:
    with pytest.raises(ConfigError):
        choose_interface("nope", interfaces=ALL, default_iface=None)
    with pytest.raises(ValueError):
        choose_interface("nope", interfaces=ALL, default_iface=None)


def test_describe_notes_down_and_no_multicast() -> None:
    down = Interface("eth1", "10.0.0.2", is_up=False, multicast=False)
    assert down.describe() == "eth1 (10.0.0.2, down, no multicast)"
    assert not down.can_multicast
    assert Interface("x", "10.0.0.3").can_multicast  # unknown flags: assume it can


# -- resolve_interface -------------------------------------------------------


def test_resolve_uses_env_var_when_no_choice() -> None:
    fake = FakeNetifaces(LAPTOP_TABLE, LAPTOP_GATEWAYS)
    chosen = resolve_interface(None, env={netif.ENV_VAR: "lo"}, netifaces_module=fake)
    assert chosen.name == "lo"
    assert chosen.address == "127.0.0.1"


def test_resolve_explicit_choice_beats_env_var() -> None:
    fake = FakeNetifaces(LAPTOP_TABLE, LAPTOP_GATEWAYS)
    chosen = resolve_interface("192.0.2.77", env={netif.ENV_VAR: "lo"}, netifaces_module=fake)
    assert chosen.address == "192.0.2.77"


def test_resolve_blank_env_var_falls_back_to_default_route() -> None:
    fake = FakeNetifaces(LAPTOP_TABLE, LAPTOP_GATEWAYS)
    chosen = resolve_interface(None, env={netif.ENV_VAR: ""}, netifaces_module=fake)
    assert chosen.address == "192.0.2.2"


def test_resolve_without_default_route_errors() -> None:
    fake = FakeNetifaces(LAPTOP_TABLE, {})
    with pytest.raises(InterfaceError, match="--iface lo"):
        resolve_interface(None, env={}, netifaces_module=fake)


def test_real_netifaces_finds_loopback() -> None:
    """Tests run in a namespace with only lo up; lo/127.0.0.1 must be listed."""
    found = list_interfaces()
    loopbacks = [i for i in found if i.name == "lo"]
    assert loopbacks, f"lo not found in {found}"
    assert loopbacks[0].address == "127.0.0.1"
    assert loopbacks[0].is_loopback
    assert resolve_interface("lo", env={}).address == "127.0.0.1"
