"""The socket helpers: validation, kernel limits, options, the /proc drop table."""

from __future__ import annotations

import errno
import os
import select
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.errors import ConfigError, InterfaceError, TransportError
from ganglion.runtime import _sockets

LO = "127.0.0.1"


# -- validation ----------------------------------------------------------------------


@given(st.ip_addresses(v=4))
@settings(max_examples=200, deadline=None)
def test_validate_group_accepts_exactly_the_multicast_block(address: object) -> None:
    text = str(address)
    if address.is_multicast:  # type: ignore[attr-defined]
        assert _sockets.validate_group(text) == text
    else:
        with pytest.raises(ConfigError, match="not a multicast group"):
            _sockets.validate_group(text)


@pytest.mark.parametrize("bad", ["", "239.255.1", "239.255.1.256", "ff02::1", "type.Name", " "])
def test_validate_group_refuses_non_addresses(bad: str) -> None:
    with pytest.raises(ConfigError):
        _sockets.validate_group(bad)


@pytest.mark.parametrize("port", [1, 47800, 65535])
def test_validate_port_accepts_real_ports(port: int) -> None:
    assert _sockets.validate_port(port) == port


@pytest.mark.parametrize("port", [0, -1, 65536, True, 47800.0, "47800"])
def test_validate_port_refuses_the_rest(port: object) -> None:
    with pytest.raises(ConfigError, match=r"not in 1\.\.65535"):
        _sockets.validate_port(port)  # type: ignore[arg-type]


def test_validate_interface_address() -> None:
    assert _sockets.validate_interface_address("127.0.0.1") == "127.0.0.1"
    for bad, message in [
        ("lo", "not an IPv4 address"),
        ("::1", "not an IPv4 address"),
        ("224.0.0.1", "unicast"),
        ("0.0.0.0", "unicast"),
    ]:
        with pytest.raises(InterfaceError, match=message):
            _sockets.validate_interface_address(bad)


def test_check_local_address() -> None:
    _sockets.check_local_address(LO)
    with pytest.raises(InterfaceError, match="--iface"):
        _sockets.check_local_address("10.255.254.253")


# -- kernel limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [("20\n", 20), ("64", 64), ("0\n", 20), ("-3", 20), ("lots", 20), ("", 20)],
)
def test_read_max_memberships(tmp_path: Path, content: str, expected: int) -> None:
    path = tmp_path / "igmp_max_memberships"
    path.write_text(content)
    assert _sockets.read_max_memberships(path) == expected


def test_read_max_memberships_without_the_file(tmp_path: Path) -> None:
    assert _sockets.read_max_memberships(tmp_path / "absent") == 20


def test_read_max_memberships_reads_this_kernel() -> None:
    proc = Path("/proc/sys/net/ipv4/igmp_max_memberships")
    if not proc.exists():
        pytest.skip("not Linux")
    assert _sockets.read_max_memberships() == int(proc.read_text())


# -- sockets ---------------------------------------------------------------------------


def test_receive_socket_options(free_udp_port: int) -> None:
    sock = _sockets.open_receive_socket(free_udp_port, 1 << 20)
    try:
        assert sock.getsockname() == ("0.0.0.0", free_udp_port)
        assert sock.getsockopt(socket.IPPROTO_IP, _sockets.IP_MULTICAST_ALL) == 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 1 << 20
        assert not sock.getblocking()
    finally:
        sock.close()


def test_two_receive_sockets_share_a_port(free_udp_port: int, test_group: str) -> None:
    """Both bind the one port (SO_REUSEADDR) and both get a datagram sent to the group."""
    first = _sockets.open_receive_socket(free_udp_port, 65536)
    second = _sockets.open_receive_socket(free_udp_port, 65536)
    sender = _sockets.open_send_socket(LO, 1)
    try:
        for sock in (first, second):
            assert sock.getsockname() == ("0.0.0.0", free_udp_port)
            _sockets.add_membership(sock, test_group, LO)
        sender.sendto(b"to both", (test_group, free_udp_port))
        for sock in (first, second):
            ready, _, _ = select.select([sock], [], [], 5.0)
            assert ready, "a socket sharing the port did not get the datagram within 5 s"
            assert sock.recv(64) == b"to both"
    finally:
        for sock in (first, second, sender):
            sock.close()


def test_set_rcvbuf_reports_the_effective_size() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        effective = _sockets.set_rcvbuf(sock, 200_000)
        assert effective == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert effective >= 200_000


def test_membership_add_and_drop(free_udp_port: int, test_group: str) -> None:
    sock = _sockets.open_receive_socket(free_udp_port, 65536)
    try:
        _sockets.add_membership(sock, test_group, LO)
        with pytest.raises(TransportError) as info:
            _sockets.add_membership(sock, test_group, LO)  # already a member
        assert info.value.errno == errno.EADDRINUSE
        assert _sockets.drop_membership(sock, test_group, LO) is True
        assert _sockets.drop_membership(sock, test_group, LO) is False
    finally:
        sock.close()


def test_membership_on_a_foreign_address_is_an_interface_error(
    free_udp_port: int, test_group: str
) -> None:
    sock = _sockets.open_receive_socket(free_udp_port, 65536)
    try:
        with pytest.raises(InterfaceError, match=r"10\.255\.254\.253"):
            _sockets.add_membership(sock, test_group, "10.255.254.253")
    finally:
        sock.close()


def test_send_socket_on_a_foreign_address_is_an_interface_error() -> None:
    with pytest.raises(InterfaceError, match=r"10\.255\.254\.253"):
        _sockets.open_send_socket("10.255.254.253", 1)


# -- /proc/net/udp ---------------------------------------------------------------------

_TABLE_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    "   uid  timeout inode ref pointer drops\n"
)


def _row(slot: int, inode: int, drops: int) -> str:
    return (
        f"  {slot}: 00000000:BA78 00000000:0000 07 00000000:00000000 00:00000000 00000000"
        f"     0        0 {inode} 2 0000000000000000 {drops}\n"
    )


def test_kernel_drops_sums_this_sockets_rows(tmp_path: Path) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two,
    ):
        ino_one = os.fstat(one.fileno()).st_ino
        ino_two = os.fstat(two.fileno()).st_ino
        table = tmp_path / "udp"
        table.write_text(
            _TABLE_HEADER + _row(1, ino_one, 7) + _row(2, 999_999_999, 1000) + _row(3, ino_two, 5)
        )
        assert _sockets.kernel_drops([one, two], table) == 12
        assert _sockets.kernel_drops([one], table) == 7
        assert _sockets.kernel_drops([], table) == 0
        assert _sockets.kernel_drops([one], tmp_path / "absent") is None


def test_kernel_drops_reads_the_real_table(free_udp_port: int) -> None:
    sock = _sockets.open_receive_socket(free_udp_port, 65536)
    try:
        assert _sockets.kernel_drops([sock]) == 0
    finally:
        sock.close()
