#!/usr/bin/env python3
"""Where one-way latency goes at 1,000 msg/s: each stage's cost warm and after a 1 ms pause.

    .venv/bin/python bench/cold_path.py [--runs N] [--gap SECONDS]

Theory of operation: at 1,000 msg/s paced (``transport.py``'s latency run) both
processes sleep about 1 ms between messages. On a shared virtual machine the CPU
caches are largely refilled by other work during that pause, so code runs several
times slower than in a tight loop, and the cost grows with how much code and data a
message touches. This script times each stage of a message's path in one process,
twice: back to back (*warm*) and right after ``time.sleep(gap)`` (*cold*, the 1 kHz
case), and prints the medians:

* raw: ``recv_into`` of a waiting datagram plus the header ``unpack``, what the raw
  subscriber of ``transport.py`` does per message, and ``sendto`` (the publisher);
* ganglion publish: ``Endpoint.publish`` of a 64-byte ``Blob`` while idle, ``sendto``
  included (to a group nobody on this host joined, so no receiver is woken), without
  the ``sched_yield`` that follows a lone send (``yield_on_send=False``);
* ganglion receive: ``recvmsg`` plus the endpoint's receive path on a known stream
  (``Incoming.on_datagram``: the lone message's header unpack, sequence check, payload decode, delivery
  to a callback), and each of its parts alone; and, where ``ganglion._speedups`` is
  built, its compiled drain doing the same (the path a receiver then runs).

The last lines add them up: the Python a ganglion message runs cold (publish +
receive) against raw's, which is the gap that ``transport.py``'s p50 latency shows
on top of the kernel's wake-up path, which both pay. Sockets are on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

# The repository first and bench/ last, as _transport_ganglion does (a script here named
# like a package must not shadow it).
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

from _transport_ganglion import Blob  # noqa: E402  (transport.py's message, 64 B here)

from ganglion.runtime._accel import speedups  # noqa: E402
from ganglion.runtime._incoming import _LONE  # noqa: E402  (the header read a lone message takes)
from ganglion.runtime.endpoint import Endpoint  # noqa: E402
from ganglion.types import encode_message, type_of  # noqa: E402
from ganglion.wire import Packer  # noqa: E402

#: The benchmark message of transport.py: seq, timestamp, 48 bytes of padding (64 B).
HEADER = struct.Struct("<QQ")
#: A group no socket here joins: publishes leave through loopback and are dropped.
NOBODY_GROUP = "239.255.222.1"
PORT = 47996
COMPILED = "ganglion: compiled drain (read + lane)"


async def timed(stage: Callable[[], object], setup: Callable[[], object] | None = None, *,
                runs: int, gap: float) -> float:
    """Median microseconds of ``stage()``, each run after ``setup()``, a few passes of the
    event loop (a sender's flush runs and it goes idle) and ``time.sleep(gap)``."""
    now = time.perf_counter_ns
    samples = []
    for _ in range(runs):
        if setup is not None:
            setup()
        for _ in range(3):
            await asyncio.sleep(0)
        if gap:
            time.sleep(gap)
        start = now()
        stage()
        samples.append(now() - start)
    return statistics.median(samples) / 1000


def _drain(sock: socket.socket) -> None:
    """Read whatever waits on a non-blocking socket (bounded)."""
    for _ in range(1000):
        try:
            sock.recv(2048)
        except BlockingIOError:
            return


def _udp_pair() -> tuple[socket.socket, socket.socket, tuple[str, int]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)  # a stage never waits: its setup put the datagram there
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return rx, tx, rx.getsockname()


async def measure(runs: int, gap: float) -> list[tuple[str, float, float]]:
    """Time every stage warm and cold; returns (name, warm us, cold us) rows."""
    rows: list[tuple[str, float, float]] = []

    async def row(name: str, stage: Callable[[], object],
                  setup: Callable[[], object] | None = None) -> None:
        # The setup (untimed) refills what the stage consumes, e.g. a datagram to read.
        rows.append((name, await timed(stage, setup, runs=runs, gap=0.0),
                     await timed(stage, setup, runs=runs, gap=gap)))

    rx, tx, addr = _udp_pair()
    raw = bytearray(64)
    buf = bytearray(2048)
    HEADER.pack_into(raw, 0, 1, 2)
    await row("raw: sendto 64 B", lambda: tx.sendto(raw, addr), setup=lambda: _drain(rx))
    await row("raw: recv_into + unpack", lambda: (rx.recv_into(buf), HEADER.unpack_from(buf)),
        setup=lambda: tx.sendto(raw, addr))

    pad = bytes(48)
    # Without the yield after a lone send: on a busy machine it hands the CPU to other
    # work, which is scheduling, not the cost of the path this script measures.
    async with Endpoint(interface="127.0.0.1", port=PORT, yield_on_send=False,
                        group_for=lambda name: NOBODY_GROUP) as ep:
        seq = iter(range(10**9))

        def publish() -> None:
            ep.publish(Blob(next(seq), time.monotonic_ns(), pad))

        await row("ganglion: publish (idle, sendto included)", publish)

        got: list[object] = []
        receiver = Endpoint(interface="127.0.0.1", port=PORT + 1)
        await receiver.start()
        receiver.subscribe(Blob, callback=lambda msg, info: got.append(msg))
        mtype = type_of(Blob)
        packer = Packer(node_id=bytes(range(8)), type_name="bench.Blob",
                        fingerprint=mtype.fingerprint, boot=1)
        on_datagram = receiver._in.on_datagram
        source = ("127.0.0.1", 1)

        def next_datagram() -> bytes:
            return packer.build_one(encode_message(Blob(0, 1, pad), mtype), time.time_ns())

        on_datagram(next_datagram(), source, 0.0)  # the stream is known from here on
        _drain(rx)  # the raw stages' last datagram
        await row("ganglion: recvmsg + receive path", lambda: on_datagram(rx.recvmsg(2048)[0], source, 0.0),
            setup=lambda: tx.sendto(next_datagram(), addr))
        if speedups is not None:
            # The compiled drain and lane (what a receiver runs where ganglion._speedups is
            # built): the read, the EAGAIN that ends the drain, and the delivery.
            lane, buf = receiver._in.lane(), bytearray(speedups.RECV_SIZE)
            slot, counts = SimpleNamespace(closed=False), [0] * 6

            def compiled() -> None:
                speedups.drain(rx.fileno(), slot, 64, buf, lane, on_datagram, None,
                               time.monotonic, lambda kind, detail: None, counts,
                               speedups.RECV_SIZE, 0)

            await row(COMPILED, compiled, setup=lambda: tx.sendto(next_datagram(), addr))
            assert len(got) > 2 * runs, "the lane did not deliver"
        one = next_datagram()
        pos = 25 + one[24]
        payload = encode_message(Blob(7, 8, pad), mtype)
        decode = mtype.decode_fast
        assert decode is not None
        await row("  of which: header unpack", lambda: _LONE(one, pos))
        await row("  of which: payload decode", lambda: decode(payload))
        await receiver.close()
    rx.close()
    tx.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per stage (default 1000)")
    parser.add_argument("--gap", type=float, default=0.001,
                        help="pause before each cold run, s (default 0.001: 1 kHz)")
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.runs, args.gap))
    print(f"{'stage':<44} {'warm us':>8} {'cold us':>8} {'cold/warm':>9}")
    for name, warm, cold in rows:
        print(f"{name:<44} {warm:>8.2f} {cold:>8.2f} {cold / warm:>8.1f}x")
    by_name = {name: (warm, cold) for name, warm, cold in rows}
    raw = by_name["raw: sendto 64 B"][1] + by_name["raw: recv_into + unpack"][1]
    receive = COMPILED if COMPILED in by_name else "ganglion: recvmsg + receive path"
    ours = by_name["ganglion: publish (idle, sendto included)"][1] + by_name[receive][1]
    print(f"\nganglion's receive path here: {receive.split(': ', 1)[1]}")
    print(f"cold, per message: raw sendto + recv {raw:.1f} us; ganglion publish + receive "
          f"{ours:.1f} us; ganglion adds {ours - raw:.1f} us to the kernel's wake-up path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
