"""Subscription on its own: callbacks, the bounded ``async for`` queue, closing.

No sockets: messages are handed to ``deliver`` directly, as the endpoint does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from ganglion.runtime.subscription import DEFAULT_QUEUE_SIZE, MessageInfo, Subscription


def run(coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    """Run a test coroutine on a fresh loop, failing it after ``timeout`` seconds."""
    asyncio.run(asyncio.wait_for(coro, timeout))


def info(seq: int = 0, **kw: Any) -> MessageInfo:
    return MessageInfo(type_name="t.A", sender=b"\x01" * 8, seq=seq, sent_ns=10, received_ns=20,
                       **kw)


class Closed:
    """An ``on_close`` hook that records which subscriptions were closed."""

    def __init__(self) -> None:
        self.calls: list[Subscription] = []

    def __call__(self, sub: Subscription) -> None:
        self.calls.append(sub)


def queue_sub(maxsize: int = DEFAULT_QUEUE_SIZE, on_close: Closed | None = None) -> Subscription:
    return Subscription("t.A", callback=None, maxsize=maxsize, on_close=on_close or Closed())


def test_callback_gets_each_message_with_its_info() -> None:
    got: list[tuple[Any, MessageInfo]] = []
    sub = Subscription("t.A", callback=lambda m, i: got.append((m, i)), maxsize=4,
                       on_close=Closed())
    for n in range(10):  # more than maxsize: callbacks have no queue to overflow
        sub.deliver(n, info(n))
    assert [m for m, _ in got] == list(range(10))
    assert [i.seq for _, i in got] == list(range(10))
    assert (sub.delivered, sub.dropped, sub.callback_errors) == (10, 0, 0)


def test_callback_exception_is_logged_counted_and_isolated(caplog: pytest.LogCaptureFixture) -> None:
    got: list[int] = []

    def flaky(msg: int, _info: MessageInfo) -> None:
        if msg % 2:
            raise RuntimeError(f"boom {msg}")
        got.append(msg)

    sub = Subscription("t.A", callback=flaky, maxsize=1, on_close=Closed())
    with caplog.at_level(logging.ERROR, logger="ganglion.runtime.subscription"):
        for n in range(6):
            sub.deliver(n, info(n))
    assert got == [0, 2, 4]
    assert sub.callback_errors == 3
    assert sub.delivered == 6
    failures = [r for r in caplog.records if "t.A" in r.getMessage()]
    assert len(failures) == 3
    assert all(r.exc_info is not None for r in failures), "the traceback must be logged"


def test_async_for_yields_messages_in_order() -> None:
    async def main() -> None:
        sub = queue_sub()
        for n in range(5):
            sub.deliver(f"m{n}", info(n))
        got = []
        async for msg in sub:
            got.append(msg)
            if len(got) == 5:
                break
        assert got == [f"m{n}" for n in range(5)]

    run(main())


def test_get_returns_message_and_info() -> None:
    async def main() -> None:
        sub = queue_sub()
        sub.deliver("x", info(41, boot=3, local=True))
        msg, meta = await sub.get()
        assert msg == "x"
        assert (meta.seq, meta.boot, meta.local, meta.source) == (41, 3, True, None)
        assert meta.sender_hex == "01" * 8

    run(main())


def test_waiting_reader_wakes_when_a_message_arrives() -> None:
    async def main() -> None:
        sub = queue_sub()
        reader = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        assert not reader.done()
        asyncio.get_running_loop().call_soon(sub.deliver, "late", info(0))
        msg, _ = await asyncio.wait_for(reader, 2.0)
        assert msg == "late"

    run(main())


def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    async def main() -> None:
        sub = queue_sub(maxsize=3)
        for n in range(10):
            sub.deliver(n, info(n))
        assert sub.dropped == 7
        assert sub.delivered == 10
        got = [(await sub.get())[0] for _ in range(3)]
        assert got == [7, 8, 9], "the newest readings survive"
        sub.deliver(10, info(10))
        assert (await sub.get())[0] == 10
        assert sub.dropped == 7

    run(main())


def test_close_ends_async_for_after_the_queued_messages() -> None:
    async def main() -> None:
        closed = Closed()
        sub = queue_sub(on_close=closed)
        sub.deliver("a", info(0))
        sub.deliver("b", info(1))
        sub.close()
        got = [msg async for msg in sub]
        assert got == ["a", "b"]
        assert closed.calls == [sub]
        assert sub.closed

    run(main())


def test_close_wakes_a_waiting_reader() -> None:
    async def main() -> None:
        sub = queue_sub()

        async def consume() -> list[Any]:
            return [msg async for msg in sub]

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        sub.deliver("only", info(0))
        await asyncio.sleep(0)
        sub.close()
        assert await asyncio.wait_for(task, 2.0) == ["only"]

    run(main())


def test_get_after_close_with_empty_queue_stops_iteration() -> None:
    async def main() -> None:
        sub = queue_sub()
        sub.close()
        with pytest.raises(StopAsyncIteration):
            await sub.get()

    run(main())


def test_close_is_idempotent_and_deliveries_after_it_are_ignored() -> None:
    closed = Closed()
    got: list[Any] = []
    sub = Subscription("t.A", callback=lambda m, i: got.append(m), maxsize=1, on_close=closed)
    sub.close()
    sub.close()
    sub.deliver("late", info(0))
    assert closed.calls == [sub]
    assert got == []
    assert sub.delivered == 0


def test_async_with_closes_the_subscription() -> None:
    async def main() -> None:
        closed = Closed()
        sub = queue_sub(on_close=closed)
        async with sub as entered:
            assert entered is sub
            assert not sub.closed
        assert sub.closed
        assert closed.calls == [sub]

    run(main())


def test_callback_subscription_cannot_be_awaited() -> None:
    async def main() -> None:
        sub = Subscription("t.A", callback=lambda m, i: None, maxsize=1, on_close=Closed())
        with pytest.raises(RuntimeError, match="callback"):
            await sub.get()

    run(main())


@pytest.mark.parametrize("maxsize", [0, -1])
def test_maxsize_below_one_is_refused(maxsize: int) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        queue_sub(maxsize=maxsize)


def test_cancelled_get_does_not_break_later_reads() -> None:
    async def main() -> None:
        sub = queue_sub()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.get(), 0.01)
        sub.deliver("after", info(0))
        msg, _ = await asyncio.wait_for(sub.get(), 2.0)
        assert msg == "after"

    run(main())


def test_two_concurrent_readers_both_get_messages() -> None:
    async def main() -> None:
        sub = queue_sub()
        first = asyncio.ensure_future(sub.get())
        second = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        sub.deliver("one", info(0))
        sub.deliver("two", info(1))
        done = await asyncio.wait_for(asyncio.gather(first, second), 2.0)
        assert sorted(msg for msg, _ in done) == ["one", "two"]

    run(main())


def test_close_wakes_every_concurrent_reader() -> None:
    async def main() -> None:
        sub = queue_sub()
        readers = [asyncio.ensure_future(sub.get()) for _ in range(3)]
        await asyncio.sleep(0)
        sub.close()
        results = await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 2.0)
        assert all(isinstance(r, StopAsyncIteration) for r in results)

    run(main())


def test_a_reader_cancelled_while_another_waits_does_not_strand_the_other() -> None:
    async def main() -> None:
        sub = queue_sub()
        first = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        second = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        sub.deliver("for-second", info(0))
        msg, _ = await asyncio.wait_for(second, 2.0)
        assert msg == "for-second"

    run(main())


def test_message_info_is_immutable_with_defaults_and_keyword_construction() -> None:
    i = MessageInfo(type_name="t.A", sender=b"\x01" * 8, seq=3, sent_ns=10, received_ns=20)
    assert (i.boot, i.local, i.source, i.clock_synced, i.last_value) == (0, False, None, True, False)
    assert i.sender_hex == "01" * 8
    with pytest.raises(AttributeError):
        i.seq = 4  # type: ignore[misc]
    assert i == MessageInfo("t.A", b"\x01" * 8, 3, 10, 20) and hash(i) == hash(
        MessageInfo("t.A", b"\x01" * 8, 3, 10, 20))
