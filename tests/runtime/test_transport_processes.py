"""Two processes on one host receive the same group on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from multiprocessing.connection import Connection

import pytest

from ganglion.runtime.transport import MulticastReceiver, MulticastSender

pytestmark = pytest.mark.usefixtures("multicast_loopback")

LO = "127.0.0.1"
COUNT = 3000


def child_receiver(port: int, group: str, count: int, conn: Connection) -> None:
    """In a child process: join, say ready, count datagrams, report the sum of their ids."""

    async def body() -> None:
        ids: list[int] = []
        done = asyncio.Event()

        def on_datagram(data: bytes, source: tuple[str, int], now: float) -> None:
            ids.append(int.from_bytes(data[:4], "big"))
            if len(ids) >= count:
                done.set()

        async with MulticastReceiver(LO, port, on_datagram, reannounce_seconds=None) as rx:
            rx.join(group)
            conn.send("ready")
            with contextlib.suppress(TimeoutError):  # the parent reports the shortfall
                await asyncio.wait_for(done.wait(), 15)
            await asyncio.sleep(0.1)  # anything extra would show up as a mismatch
            conn.send((len(ids), sum(ids), rx.stats().kernel_drops))

    asyncio.run(body())
    conn.close()


def test_a_receiver_in_another_process_gets_every_datagram_too(
    free_udp_port: int, test_group: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(
        target=child_receiver, args=(free_udp_port, test_group, COUNT, child_end), daemon=True
    )
    child.start()
    try:
        assert parent_end.poll(20), "child receiver did not start"
        assert parent_end.recv() == "ready"

        async def body() -> tuple[int, int]:
            ids: list[int] = []
            async with (
                MulticastReceiver(
                    LO,
                    free_udp_port,
                    lambda d, s, n: ids.append(int.from_bytes(d[:4], "big")),
                    reannounce_seconds=None,
                ) as rx,
                MulticastSender(LO) as tx,
            ):
                rx.join(test_group)
                for i in range(COUNT):
                    assert tx.send(i.to_bytes(4, "big") + bytes(60), test_group, free_udp_port)
                    if i % 500 == 499:
                        await asyncio.sleep(0.005)  # stay within both receive buffers
                for _ in range(1000):
                    if len(ids) >= COUNT:
                        break
                    await asyncio.sleep(0.01)
            return len(ids), sum(ids)

        expected = (COUNT, COUNT * (COUNT - 1) // 2)
        assert asyncio.run(asyncio.wait_for(body(), 20)) == expected
        assert parent_end.poll(20), "child receiver did not report"
        assert parent_end.recv() == (*expected, 0)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join(5)
        parent_end.close()
