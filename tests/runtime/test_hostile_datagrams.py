"""Regression tests for issue 21's data-plane findings, with the bytes the probe sent.

Finding 1: sequence numbers that jump by 2^31 or 2^32 froze receivers (a jump-bit integer
was built per datagram). Finding 4: after a receiver restarted, replays of everything
below its first live datagram were delivered again. Finding 8: a datagram far above the
size budget was accepted. Each test ends with a valid *barrier* datagram: once it is
delivered, everything before it has been processed.
"""

from __future__ import annotations

import os
import time

import pytest
from test_endpoint_security import KEY, TYPE, Inbox, Ping, Raw, endpoint, run

pytestmark = pytest.mark.usefixtures("multicast_loopback", "runtime_path")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_forged_sequence_jumps_cost_neither_time_nor_memory(free_udp_port: int,
                                                            test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group) as rx:
                rx.subscribe(Ping, inbox)
                before = rss_bytes()
                started = time.monotonic()
                ids = [os.urandom(8) for _ in range(10)]
                for node_id in ids:  # seq 0, then 2^32, from 10 ids (the heartbeat probe)
                    raw.send(raw.ping(0, node_id=node_id, seq=0))
                    raw.send(raw.ping(1, node_id=node_id, seq=2**32))
                one = os.urandom(8)
                for i in range(1000):  # 1,000 datagrams with jumps of 2^31
                    raw.send(raw.ping(i, node_id=one, seq=i * 2**31))
                    if i % 100 == 99:
                        await inbox.wait_for(20 + i + 1, timeout=10.0)
                raw.send(raw.ping(-1, seq=0))  # barrier
                await inbox.wait_for(1021, timeout=10.0)
                elapsed = time.monotonic() - started
                grown = rss_bytes() - before
                # Before the fix: ~2.4 s and ~1.1 GB for each jump of 2^32.
                assert grown < 64 << 20, f"RSS grew by {grown} bytes"
                assert elapsed < 10.0
                assert rx.stats().streams[(one, TYPE)].lost == 999 * (2**31 - 1)
        finally:
            raw.close()

    run(main(), timeout=30.0)


def test_replays_after_a_receiver_restart_are_not_delivered(free_udp_port: int,
                                                            test_group: str) -> None:
    async def main() -> None:
        raw = Raw(test_group, free_udp_port)
        try:
            recorded = [raw.ping(n, key=KEY) for n in range(150)]
            first = Inbox()
            async with endpoint(free_udp_port, test_group, key=KEY) as rx:
                rx.subscribe(Ping, first)
                for d in recorded:
                    raw.send(d)
                await first.wait_for(150)
            again = Inbox()  # the receiver restarted: no sequence state
            async with endpoint(free_udp_port, test_group, key=KEY) as rx:
                rx.subscribe(Ping, again)
                raw.send(raw.ping(150, key=KEY))  # the first live datagram
                await again.wait_for(1)
                for d in recorded:  # the attacker replays the recording
                    raw.send(d)
                raw.send(raw.ping(151, key=KEY))  # barrier
                await again.wait_for(2)
                assert again.msgs == [Ping(150), Ping(151)]
                assert sum(s.stale for s in rx.stats().streams.values()) == 150
        finally:
            raw.close()

    run(main())


def test_forged_sender_ids_are_bounded_by_the_tracker_table(free_udp_port: int,
                                                            test_group: str) -> None:
    # The resource budget (docs/security.md): 4,096 (sender, type) trackers, least
    # recently used evicted and counted; a flood of ids cannot grow the table.
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group) as rx:
                rx.subscribe(Ping, inbox)
                for i in range(5000):
                    raw.send(raw.ping(i, node_id=os.urandom(8), seq=0))
                    if i % 500 == 499:
                        await inbox.wait_for(i + 1, timeout=10.0)
                await inbox.wait_for(5000, timeout=10.0)
                stats = rx.stats()
                assert len(stats.streams) == 4096
                assert stats.trackers_evicted == 5000 - 4096
        finally:
            raw.close()

    run(main(), timeout=30.0)
