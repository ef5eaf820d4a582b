"""Receive or send on one multicast group, for the cross-interface tests in namespaces.

Usage:
    ``iface_probe_child.py listen PORT GROUP SECONDS ADDRESS [ADDRESS...]``
    ``iface_probe_child.py receive PORT GROUP SECONDS ADDRESS [ADDRESS...]``
    ``iface_probe_child.py send PORT GROUP COUNT ADDRESS``
    ``iface_probe_child.py unicast PORT TARGET COUNT``

``listen`` opens one receive socket per ADDRESS with ganglion's own
``open_receive_socket`` (the options every node uses), joins GROUP on that
address's interface, prints ``ready``, and after SECONDS prints one JSON line: per
address, how many datagrams it read and the payloads. ``send`` sends COUNT
datagrams to GROUP out of ADDRESS, each from a fresh socket (so from a fresh source
port: the kernel's choice of socket hashed the source port), 20 ms apart.
``receive`` is ``listen`` with a :class:`MulticastReceiver` per ADDRESS (opened in
that order) and also prints each one's ``wrong_interface`` count. ``unicast`` sends
COUNT datagrams to TARGET:PORT.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

from ganglion.runtime import _sockets
from ganglion.runtime.transport import MulticastReceiver


def listen(port: int, group: str, seconds: float, addresses: list[str]) -> None:
    socks = {}
    for address in addresses:
        sock = _sockets.open_receive_socket(port, 1 << 20)
        _sockets.add_membership(sock, group, address)
        socks[address] = sock
    print("ready", flush=True)
    time.sleep(seconds)
    result: dict[str, list[str]] = {}
    for address, sock in socks.items():
        got: list[str] = []
        while True:
            try:
                got.append(sock.recv(2048).decode())
            except BlockingIOError:
                break
        result[address] = got
    print(json.dumps(result), flush=True)


async def receive(port: int, group: str, seconds: float, addresses: list[str]) -> None:
    got: dict[str, list[str]] = {address: [] for address in addresses}
    receivers = []
    for address in addresses:
        def collect(data: bytes, source: object, now: float, into: list[str] = got[address]) -> None:
            into.append(data.decode())

        rx = MulticastReceiver(address, port, collect, reannounce_seconds=None)
        rx.join(group)
        receivers.append(rx)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    result: dict[str, Any] = {
        rx.interface: {"got": got[rx.interface], "wrong_interface": rx.stats().wrong_interface}
        for rx in receivers}
    for rx in receivers:
        rx.close()
    print(json.dumps(result), flush=True)


def unicast(port: int, target: str, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index in range(count):
            sock.sendto(f"u{index}".encode(), (target, port))
            time.sleep(0.02)


def send(port: int, group: str, count: int, address: str) -> None:
    for index in range(count):
        sock = _sockets.open_send_socket(address, 1)
        try:
            sock.sendto(f"d{index}".encode(), (group, port))
        finally:
            sock.close()
        time.sleep(0.02)


def main(argv: list[str]) -> None:
    mode, port, group = argv[0], int(argv[1]), argv[2]
    if mode == "listen":
        listen(port, group, float(argv[3]), argv[4:])
    elif mode == "receive":
        asyncio.run(receive(port, group, float(argv[3]), argv[4:]))
    elif mode == "unicast":
        unicast(port, argv[2], int(argv[3]))
    else:
        send(port, group, int(argv[3]), argv[4])


if __name__ == "__main__":
    main(sys.argv[1:])
