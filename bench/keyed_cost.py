#!/usr/bin/env python3
"""What a network key costs per message: CPU time of receive and publish, keyless, MAC, AEAD.

    .venv/bin/python bench/keyed_cost.py [--rounds N] [--quick]

Theory of operation: ``transport.py``'s keyed rows measure delivered msg/s between two
processes, which on a shared 2-core machine swings by 2x from one run to the next.
This script measures the same work in one process as CPU time (``time.process_time``),
which other jobs disturb far less, for each keying (none, MAC-only, encrypted) and two
payload sizes (``transport.py``'s ``Blob`` of 64 B, 16 to a datagram, and of 1 KiB,
one per datagram):

* receive: datagrams built by a :class:`~ganglion.wire.Packer` are sent to a loopback
  socket 100 at a time, and the receive path drains them into a callback: the compiled
  ``drain`` with the endpoint's lane where ``ganglion._speedups`` is built, else
  ``Incoming.on_datagram`` per datagram (the pure-Python path). Only the draining is
  timed.
* publish: ``Endpoint.publish`` in a blast that yields to the event loop every 32
  messages, as ``transport.py``'s publisher does, to a group nobody on this host
  joined (the datagrams leave through loopback and are dropped).

It prints microseconds per message (the median over rounds) and each keyed figure's
ratio to keyless. Sockets are on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

# The repository first and bench/ last, as _transport_ganglion does (a script here named
# like a package must not shadow it).
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

from _transport_ganglion import Blob  # noqa: E402  (transport.py's message)

from ganglion.runtime._accel import speedups  # noqa: E402
from ganglion.runtime._incoming import Incoming  # noqa: E402
from ganglion.runtime.endpoint import Endpoint  # noqa: E402
from ganglion.runtime.subscription import Subscription  # noqa: E402
from ganglion.sequence import SequenceTable  # noqa: E402
from ganglion.types import encode_message, type_of  # noqa: E402
from ganglion.wire import KeyRing, Packer  # noqa: E402

#: The network key of the keyed rows (a benchmark constant, as in transport.py).
KEY = bytes(range(32))
KEYINGS = ("none", "mac", "aead")
#: A group no socket here joins.
NOBODY_GROUP = "239.255.222.2"
PORT = 47997
SENDER = b"\x01" * 8


def ring(keying: str) -> KeyRing | None:
    """The key ring of a keying: none, MAC-only or encrypting."""
    return None if keying == "none" else KeyRing([KEY], encrypt=keying == "aead")


def datagrams(keying: str, count: int, per: int, size: int) -> list[bytes]:
    """``count`` datagrams of ``per`` Blobs of ``size`` bytes each, one sender's stream."""
    mtype = type_of(Blob)
    keys = ring(keying)
    sealer = None if keys is None or keying != "aead" else \
        keys.sealer(SENDER, b"\x02" * 8, mtype.name)
    packer = Packer(node_id=SENDER, type_name=mtype.name, fingerprint=mtype.fingerprint,
                    boot=1, key=KEY if keying == "mac" else None, sealer=sealer)
    out = []
    ts = time.time_ns()
    seq = 0
    for _ in range(count):
        for _ in range(per):
            packer.add(encode_message(Blob(seq, ts, bytes(size - 16)), mtype), ts)
            seq += 1
            ts += 3
        out.append(packer.build())
    return out


def receive(keying: str, per: int, size: int, *, count: int, rounds: int) -> float:
    """Median CPU microseconds per message of draining ``count`` datagrams."""
    data = datagrams(keying, count, per, size)
    name = type_of(Blob).name
    got = [0]

    def callback(msg: object, info: object) -> None:
        got[0] += 1

    samples = []
    for _ in range(rounds):
        subs = {name: [Subscription(name, callback=callback, maxsize=16,
                                    on_close=lambda s: None)]}
        incoming = Incoming(node_id=b"\x00" * 8, key=ring(keying), subs=subs,
                            sequences=SequenceTable(strict=keying != "none"),
                            count_bad=lambda kind, detail, source: None)
        lane = incoming.lane()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rx.bind(("127.0.0.1", 0))
            rx.setblocking(False)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            buffer, counts = bytearray(65536), [0] * 6
            slot = SimpleNamespace(closed=False)
            got[0] = 0
            spent = 0.0
            for at in range(0, count, 100):
                for datagram in data[at:at + 100]:
                    tx.sendto(datagram, rx.getsockname())
                start = time.process_time()
                if speedups is not None:
                    speedups.drain(rx.fileno(), slot, 100_000, buffer, lane,
                                   incoming.on_datagram, incoming.on_run, lambda: 0.0,
                                   lambda kind, detail: None, counts, 65535, 0)
                else:
                    while True:
                        try:
                            datagram, source = rx.recvfrom(65536)
                        except BlockingIOError:
                            break
                        incoming.on_datagram(datagram, source, 0.0)
                spent += time.process_time() - start
        finally:
            rx.close()
            tx.close()
        if got[0] != count * per:
            raise RuntimeError(f"{keying}: delivered {got[0]} of {count * per}")
        samples.append(spent / (count * per) * 1e6)
    return statistics.median(samples)


async def publish(keying: str, size: int, *, count: int, rounds: int, every: int = 32) -> float:
    """Median CPU microseconds per ``Endpoint.publish`` in a blast."""
    samples = []
    for _ in range(rounds):
        async with Endpoint(interface="127.0.0.1", port=PORT, key=ring(keying),
                            group_for=lambda name: NOBODY_GROUP) as endpoint:
            padding = bytes(size - 16)
            endpoint.publish(Blob(0, 0, padding))  # the route, made once
            await asyncio.sleep(0.01)
            start = time.process_time()
            for i in range(count):
                endpoint.publish(Blob(i, 0, padding))
                if i % every == every - 1:
                    await asyncio.sleep(0)
            samples.append((time.process_time() - start) / count * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per figure (default 7)")
    parser.add_argument("--quick", action="store_true", help="1 round of small counts")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    datagram_count, publish_count = (200, 2_000) if args.quick else (3_000, 30_000)
    print(f"CPU us per message (median of {rounds}); compiled paths: {speedups is not None}")
    print(f"{'':<26}" + "".join(f"{k:>9}" for k in KEYINGS) + "   throughput mac/none, aead/none")
    rows: list[tuple[str, dict[str, float]]] = []
    for label, per, size in (("receive 64 B (16/datagram)", 16, 64),
                             ("receive 1 KiB", 1, 1024)):
        rows.append((label, {k: receive(k, per, size, count=datagram_count, rounds=rounds)
                             for k in KEYINGS}))
    for size in (64, 1024):
        label = f"publish {size} B" if size == 64 else "publish 1 KiB"
        rows.append((label, {k: asyncio.run(publish(k, size, count=publish_count,
                                                    rounds=rounds)) for k in KEYINGS}))
    for label, row in rows:
        print(f"{label:<26}" + "".join(f"{row[k]:>9.3f}" for k in KEYINGS)
              + f"   {row['none'] / row['mac']:>7.2f}x {row['none'] / row['aead']:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
