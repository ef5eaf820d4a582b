#!/usr/bin/env python3
"""Where one-way latency goes between two processes: each side swapped for a raw socket.

    .venv/bin/python bench/latency_split.py [--trials N] [--count N] [--rate R] [--size B] [--quick]

Theory of operation: ``transport.py`` compares ganglion's publish -> subscribe with raw
sockets end to end. This script splits that comparison by side. The same ganglion
datagrams (``bench.Blob``, ``--size`` bytes of application payload, 64 by default) go from a publisher
process to a subscriber process at ``--rate`` msg/s, and every pairing of

* publishers: ``raw`` (a blocking socket sending a pre-built ganglion datagram whose
  sequence number and timestamp are patched in place, then ``sendto``) and
  ``ganglion`` (``Endpoint.publish``);
* subscribers: ``raw`` (a blocking ``recv_into``; the timestamp is taken at once and the
  datagram decoded afterwards), ``loop`` (the same read from a ``loop.add_reader``
  callback on the loop ``ganglion.run`` picks: the event loop's own share) and
  ``ganglion`` (``Endpoint.subscribe`` with a callback)

is run ``--trials`` times, interleaved. It prints each pairing's median p50 and the
differences that isolate one part: the event loop's wake-up (loop - raw subscriber),
ganglion's receive path (ganglion - loop subscriber) and ganglion's publish path
(ganglion - raw publisher, both to a raw subscriber). Multicast leaves through
127.0.0.1 only; as root the script runs in a fresh network namespace with only
loopback, as ``transport.py`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

from _transport_common import HEADER  # noqa: E402
from _transport_ganglion import Blob  # noqa: E402
from _transport_netns import choose_isolation, run_in_namespace  # noqa: E402

import ganglion  # noqa: E402
from consensus.allocator import preferred_group  # noqa: E402
from ganglion.eventloop import loop_name  # noqa: E402
from ganglion.runtime.endpoint import Endpoint  # noqa: E402
from ganglion.types import encode_message, type_of  # noqa: E402
from ganglion.wire import Packer  # noqa: E402

LOOPBACK = "127.0.0.1"
PORT = 47985
PUBLISHERS = ("raw", "ganglion")
SUBSCRIBERS = ("raw", "loop", "ganglion")
#: Seconds a subscriber waits for the first datagram, and then between two.
FIRST_WAIT, GAP_WAIT = 10.0, 1.0
#: The raw publisher's datagram carries these marker values, patched per message.
_SEQ_MARK, _TS_MARK = 2**40, 2**60
_U64 = struct.Struct(">Q")


def _group() -> str:
    return str(preferred_group(type_of(Blob).name))


def _sub_socket(blocking: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", PORT))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    socket.inet_aton(_group()) + socket.inet_aton(LOOPBACK))
    sock.setblocking(blocking)
    return sock


def _t_ns(datagram: bytes) -> int:
    """The Blob's ``t_ns`` in a lone-message ganglion datagram (decoded after timing)."""
    pos = 25 + datagram[24] + 18
    size, start = datagram[pos + 1], pos + 2
    if size >= 0x80:
        size, start = size & 0x7F | datagram[start] << 7, start + 1
    decode = type_of(Blob).decode_fast
    assert decode is not None
    msg: Blob = decode(datagram[start:start + size])
    return msg.t_ns


def _report(latencies_us: list[float]) -> None:
    print(f"p50 {statistics.median(latencies_us):.2f} {len(latencies_us)}", flush=True)


def sub_raw(count: int) -> None:
    sock = _sub_socket(blocking=True)
    sock.settimeout(FIRST_WAIT)
    buf = bytearray(2048)
    now = time.monotonic_ns
    got: list[tuple[int, bytes]] = []
    print("READY", flush=True)
    try:
        while len(got) < count:
            n = sock.recv_into(buf)
            got.append((now(), bytes(buf[:n])))
            sock.settimeout(GAP_WAIT)
    except TimeoutError:
        pass
    sock.close()
    _report([(t - _t_ns(d)) / 1000 for t, d in got])


async def _sub_loop(count: int) -> None:
    sock = _sub_socket(blocking=False)
    buf = bytearray(2048)
    now = time.monotonic_ns
    got: list[tuple[int, bytes]] = []
    done = asyncio.Event()

    def on_readable() -> None:
        for _ in range(64):
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                return
            got.append((now(), bytes(buf[:n])))
            if len(got) >= count:
                done.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), on_readable)
    print("READY", flush=True)
    await _until(done, lambda: len(got))
    loop.remove_reader(sock.fileno())
    sock.close()
    _report([(t - _t_ns(d)) / 1000 for t, d in got])


async def _sub_ganglion(count: int) -> None:
    now = time.monotonic_ns
    latencies: list[float] = []
    done = asyncio.Event()

    def on_blob(msg: Blob, _info: object) -> None:
        latencies.append((now() - msg.t_ns) / 1000)
        if len(latencies) >= count:
            done.set()

    async with Endpoint(interface=LOOPBACK, port=PORT) as ep:
        ep.subscribe(Blob, callback=on_blob)
        print("READY", flush=True)
        await _until(done, lambda: len(latencies))
    _report(latencies)


async def _until(done: asyncio.Event, progress: Any) -> None:
    """Wait for ``done``: at most FIRST_WAIT for a first message, GAP_WAIT without one."""
    last, deadline = 0, time.monotonic() + FIRST_WAIT
    while not done.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if progress() != last:
            last, deadline = progress(), time.monotonic() + GAP_WAIT


def _pace(seq: int, start_ns: int, period_ns: int) -> None:
    delay = start_ns + seq * period_ns - time.monotonic_ns()
    if delay > 0:
        time.sleep(delay / 1e9)


def pub_raw(count: int, rate: float, size: int) -> None:
    mtype = type_of(Blob)
    packer = Packer(node_id=os.urandom(8), type_name=mtype.name, fingerprint=mtype.fingerprint,
                    boot=1)
    datagram = bytearray(packer.build_one(
        encode_message(Blob(_SEQ_MARK, _TS_MARK, bytes(size - HEADER.size)), mtype),
        time.time_ns()))
    at_seq = bytes(datagram).index(_U64.pack(_SEQ_MARK))
    at_ts = bytes(datagram).index(_U64.pack(_TS_MARK))
    at_first = 25 + datagram[24]  # the envelope's first sequence number
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
    addr = (_group(), PORT)
    now, period, start = time.monotonic_ns, int(1e9 / rate), time.monotonic_ns()
    for seq in range(count):
        _pace(seq, start, period)
        _U64.pack_into(datagram, at_first, seq + 1)
        _U64.pack_into(datagram, at_seq, _SEQ_MARK + seq)
        _U64.pack_into(datagram, at_ts, now())
        sock.sendto(datagram, addr)
    sock.close()


async def _pub_ganglion(count: int, rate: float, size: int) -> None:
    padding = bytes(size - HEADER.size)
    now = time.monotonic_ns
    async with Endpoint(interface=LOOPBACK, port=PORT) as ep:
        period, start = int(1e9 / rate), now()
        for seq in range(count):
            _pace(seq, start, period)  # the kernel's timer, as the raw publisher's
            ep.publish(Blob(seq=seq, t_ns=now(), data=padding))
            await asyncio.sleep(0)  # the endpoint's end-of-iteration work
        await asyncio.sleep(0.1)


def run_role(role: str, count: int, rate: float, size: int) -> None:
    """Run one process's part (the script re-executes itself with ``--role``)."""
    if role == "sub-raw":
        sub_raw(count)
    elif role == "sub-loop":
        ganglion.run(_sub_loop(count))
    elif role == "sub-ganglion":
        ganglion.run(_sub_ganglion(count))
    elif role == "pub-raw":
        pub_raw(count, rate, size)
    elif role == "pub-ganglion":
        ganglion.run(_pub_ganglion(count, rate, size))
    else:
        raise SystemExit(f"unknown role {role!r}")


def run_pair(pub: str, sub: str, count: int, rate: float, size: int,
             timeout: float) -> float | None:
    """One trial of one pairing: the subscriber's p50 in us, None if it failed."""
    me = [sys.executable, str(Path(__file__).resolve())]
    args = ["--count", str(count), "--rate", str(rate), "--size", str(size)]
    subscriber = subprocess.Popen([*me, "--role", f"sub-{sub}", *args], stdout=subprocess.PIPE,
                                  text=True)
    try:
        assert subscriber.stdout is not None
        if subscriber.stdout.readline().strip() != "READY":
            return None
        subprocess.run([*me, "--role", f"pub-{pub}", *args], timeout=timeout, check=True)
        out, _ = subscriber.communicate(timeout=timeout)
    except (subprocess.SubprocessError, OSError):
        return None
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    words = out.split()
    if len(words) < 3 or words[0] != "p50" or int(words[2]) < count * 0.9:
        return None
    return float(words[1])


def measure(trials: int, count: int, rate: float,
            size: int) -> dict[tuple[str, str], list[float]]:
    """Every pairing ``trials`` times, interleaved so machine noise spreads evenly."""
    pairs = [(p, s) for p, s in itertools.product(PUBLISHERS, SUBSCRIBERS)
             if not (p == "ganglion" and s == "loop")]
    results: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    timeout = count / rate + 30
    for trial in range(trials):
        for pub, sub in pairs:
            p50 = run_pair(pub, sub, count, rate, size, timeout)
            print(f"trial {trial + 1}/{trials}  {pub:>8} -> {sub:<8}  "
                  f"p50 {'failed' if p50 is None else f'{p50:.1f} us'}", flush=True)
            if p50 is not None:
                results[(pub, sub)].append(p50)
    return results


def report(results: dict[tuple[str, str], list[float]]) -> str:
    med = {pair: statistics.median(v) for pair, v in results.items() if v}
    lines = ["", f"publisher -> subscriber      median p50 us   (event loop: {loop_name()})"]
    for (pub, sub), value in med.items():
        lines.append(f"{pub:>9} -> {sub:<9}          {value:8.1f}")

    def diff(label: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        if a in med and b in med:
            lines.append(f"  {label:<44} {med[a] - med[b]:+7.1f} us")

    lines.append("")
    diff("event loop wake-up (loop - raw subscriber)", ("raw", "loop"), ("raw", "raw"))
    diff("ganglion receive path (ganglion - loop sub.)", ("raw", "ganglion"), ("raw", "loop"))
    diff("ganglion publish path (to a raw subscriber)", ("ganglion", "raw"), ("raw", "raw"))
    if ("ganglion", "ganglion") in med and ("raw", "raw") in med:
        lines.append(f"  end to end, ganglion / raw: "
                     f"{med[('ganglion', 'ganglion')] / med[('raw', 'raw')]:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--count", type=int, default=2000, help="messages per trial")
    p.add_argument("--rate", type=float, default=1000.0, help="msg/s")
    p.add_argument("--size", type=int, default=64,
                   help=f"payload bytes (at least {HEADER.size}; default 64)")
    p.add_argument("--quick", action="store_true", help="2 trials of 300 messages")
    p.add_argument("--no-netns", action="store_true")
    p.add_argument("--role", help=argparse.SUPPRESS)
    args = p.parse_args(args_list)
    if args.size < HEADER.size:
        p.error(f"--size must be at least {HEADER.size} (the sequence number and timestamp)")
    if args.role:
        run_role(args.role, args.count, args.rate, args.size)
        return 0
    if args.quick:
        args.trials, args.count = 2, 300
    isolation = choose_isolation(allow_create=not args.no_netns)
    if isolation.mode == "create":
        return run_in_namespace([sys.executable, str(Path(__file__).resolve()), *args_list],
                                timeout=3600)
    print(f"isolation: {isolation.reason}", flush=True)
    results = measure(args.trials, args.count, args.rate, args.size)
    print(report(results))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
