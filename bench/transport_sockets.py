"""Micro-measurements of ganglion's socket layer on loopback multicast.

Usage::

    .venv/bin/python bench/transport_sockets.py [--count 200000] [--repeat 3]

Measures, in one run (medians over ``--repeat``):

* receive: a blaster *process* sends ``--count`` datagrams (64 B and 1 KiB) as
  fast as it can; the receiver counts what arrives and what was lost, for
  (a) ``MulticastReceiver`` (add_reader + drain loop, one callback per datagram),
  (b) the same drain handing each drain's datagrams to one batch callback, and
  (c) asyncio's stock ``create_datagram_endpoint``;
* send: the cost of one ``sendto`` vs one ``send`` on a connected socket, and
  of ``MulticastSender.send``.

Everything goes out of 127.0.0.1 only (IP_MULTICAST_IF), to a group in the test
block; nothing reaches the real network.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ganglion.runtime import _sockets
from ganglion.runtime.transport import MulticastReceiver, MulticastSender

LO = "127.0.0.1"
GROUP = "239.255.201.17"
RCVBUF = 4 * 1024 * 1024


def blast(port: int, count: int, size: int, start: float) -> None:
    """Child process: send ``count`` datagrams of ``size`` bytes as fast as possible."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LO))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    while time.time() < start:
        time.sleep(0.001)
    payload = bytes(size)
    addr = (GROUP, port)
    for _ in range(count):
        sock.sendto(payload, addr)  # blocking: the kernel paces us
    sock.close()


class BatchReceiver(MulticastReceiver):
    """Variant for measurement only: one callback per drain with a list."""

    on_batch: Callable[[list[bytes], float], None]

    def _drain(self, slot: object) -> None:
        sock: socket.socket = slot.sock  # type: ignore[attr-defined]
        recvfrom = sock.recvfrom
        now = self._loop.time()
        batch: list[bytes] = []
        append = batch.append
        while len(batch) < self._max_batch:
            try:
                data, _ = recvfrom(65536)
            except BlockingIOError:
                break
            append(data)
        if batch:
            self.on_batch(batch, now)


async def measure_receive(kind: str, count: int, size: int, port: int) -> tuple[float, float]:
    """Returns (delivered datagrams per second, loss fraction)."""
    loop = asyncio.get_running_loop()
    received = 0
    first = last = 0.0

    def on_datagram(data: bytes, source: tuple[str, int], now: float) -> None:
        nonlocal received, first, last
        if not received:
            first = time.perf_counter()
        received += 1
        last = time.perf_counter()

    def on_batch(batch: list[bytes], now: float) -> None:
        nonlocal received, first, last
        if not received:
            first = time.perf_counter()
        received += len(batch)
        last = time.perf_counter()

    closers: list[Callable[[], None]] = []
    if kind == "stock":

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
                on_datagram(data, (str(addr[0]), addr[1]), 0.0)

        sock = _sockets.open_receive_socket(port, RCVBUF)
        _sockets.add_membership(sock, GROUP, LO)
        transport, _ = await loop.create_datagram_endpoint(Proto, sock=sock)
        closers.append(transport.close)
    elif kind == "batch":
        brx = BatchReceiver(LO, port, on_datagram, rcvbuf=RCVBUF, reannounce_seconds=None)
        brx.on_batch = on_batch
        brx.join(GROUP)
        closers.append(brx.close)
    else:
        rx = MulticastReceiver(LO, port, on_datagram, rcvbuf=RCVBUF, reannounce_seconds=None)
        rx.join(GROUP)
        closers.append(rx.close)

    start = time.time() + 0.3
    child = multiprocessing.get_context("spawn").Process(
        target=blast, args=(port, count, size, start)
    )
    child.start()
    try:
        deadline = time.monotonic() + 60
        while child.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # let the tail drain
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
        for close in closers:
            close()
    elapsed = max(last - first, 1e-9)
    return received / elapsed, 1 - received / count


def measure_send(count: int) -> dict[str, float]:
    """Nanoseconds per send for sendto, connected send and MulticastSender.send."""
    port = 47999
    results: dict[str, float] = {}
    payload = bytes(64)
    sock = _sockets.open_send_socket(LO, 0)
    addr = (GROUP, port)
    t0 = time.perf_counter()
    for _ in range(count):
        sock.sendto(payload, addr)
    results["sendto"] = (time.perf_counter() - t0) / count * 1e9
    sock.connect(addr)
    t0 = time.perf_counter()
    for _ in range(count):
        sock.send(payload)
    results["connected send"] = (time.perf_counter() - t0) / count * 1e9
    sock.close()
    with MulticastSender(LO, ttl=0) as tx:
        send = tx.send
        t0 = time.perf_counter()
        for _ in range(count):
            send(payload, GROUP, port)
        results["MulticastSender.send"] = (time.perf_counter() - t0) / count * 1e9
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"receive: blaster process -> {GROUP} via {LO}, {args.count} datagrams, median of {args.repeat}"
    )
    port = 47990
    for size in (64, 1024):
        for kind in ("drain", "batch", "stock"):
            rates, losses = [], []
            for _ in range(args.repeat):
                port += 1
                rate, loss = asyncio.run(measure_receive(kind, args.count, size, port))
                rates.append(rate)
                losses.append(loss)
            print(
                f"  {size:5d} B  {kind:6s}  {statistics.median(rates) / 1e3:8.1f} k/s"
                f"  loss {statistics.median(losses) * 100:5.1f}%"
            )
    print("send: ns per call (64 B, same process, loopback)")
    for name, cost in measure_send(100_000).items():
        print(f"  {name:22s} {cost:8.0f} ns")


if __name__ == "__main__":
    main()
