"""The adaptive batching policy of ``Outgoing``, with a fake send function and a real loop.

No sockets: the send function decodes every datagram it is given, so each test
sees exactly which messages went out together, in which order, and whether a
message left inside the ``add`` call (at once) or later (batched).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ganglion.runtime import _outgoing
from ganglion.runtime._outgoing import Outgoing
from ganglion.wire import Envelope, KeyRing, decode_datagram

NODE = bytes(range(8))
FP = bytes(8)
KEY = bytes(range(32))
TS = 1_700_000_000_000_000_000


def run(coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    """Run a test coroutine on a fresh loop, failing it after ``timeout`` seconds."""
    asyncio.run(asyncio.wait_for(coro, timeout))


async def next_iteration() -> None:
    """Let the loop run the callbacks scheduled so far (at least one full iteration)."""
    for _ in range(3):
        await asyncio.sleep(0)


class FakeSend:
    """A send function that decodes and records every datagram."""

    def __init__(self, key: bytes | None = None, result: bool = True) -> None:
        self.key = key
        self.result = result
        self.sent: list[Envelope] = []
        self.sizes: list[int] = []

    def __call__(self, datagram: bytes, type_name: str) -> bool:
        env = decode_datagram(datagram, key=self.key)
        assert env.type_name == type_name
        self.sent.append(env)
        self.sizes.append(len(datagram))
        return self.result

    @property
    def counts(self) -> list[int]:
        """Messages per datagram, in send order."""
        return [env.count for env in self.sent]

    def payloads(self, type_name: str | None = None) -> list[bytes]:
        return [p for env in self.sent if type_name in (None, env.type_name) for p in env.payloads]

    def seqs(self, type_name: str) -> list[int]:
        return [seq for env in self.sent if env.type_name == type_name
                for seq, _ts, _p in env.messages()]


def make(send: FakeSend, *, key: bytes | KeyRing | None = None,
         max_datagram: int = 1400) -> Outgoing:
    return Outgoing(node_id=NODE, boot=7, key=key, max_datagram=max_datagram, send=send,
                    loop=asyncio.get_running_loop())


def adder(out: Outgoing, type_name: str = "t.A") -> Callable[[bytes], None]:
    packer = out.packer(type_name, FP)
    counter = iter(range(1_000_000))

    def add(payload: bytes) -> None:
        out.add(packer, payload, TS + next(counter))

    return add


def test_idle_sender_sends_a_message_at_once_and_alone() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add = adder(out)
        add(b"\xa0")
        # Sent inside add(): no loop iteration has passed.
        assert send.counts == [1]
        await next_iteration()
        assert send.counts == [1]
        assert (out.messages, out.datagrams) == (1, 1)

    run(main())


def test_burst_in_one_iteration_shares_datagrams() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add = adder(out)
        for i in range(20):
            add(bytes([0x61, i]))  # tiny payloads
        # The first went alone at once; the other 19 wait for the iteration's end.
        assert send.counts == [1]
        await next_iteration()
        assert send.counts == [1, 19]
        assert send.payloads() == [bytes([0x61, i]) for i in range(20)]
        assert send.seqs("t.A") == list(range(20))
        assert (out.messages, out.datagrams) == (20, 2)

    run(main())


def test_burst_larger_than_a_datagram_sends_full_datagrams_within_budget() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send, max_datagram=200)
        add = adder(out)
        payload = b"\x58\x28" + bytes(40)  # 42-byte CBOR byte string
        for _ in range(30):
            add(payload)
        sent_during_burst = len(send.sent)
        await next_iteration()
        assert sent_during_burst > 2, "full datagrams must leave during the burst"
        assert sum(send.counts) == 30
        assert all(size <= 200 for size in send.sizes)
        assert max(send.counts) > 1
        assert send.seqs("t.A") == list(range(30))

    run(main())


def test_sustained_bursts_keep_batching_after_the_first_message() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add = adder(out)
        for _ in range(10):  # ten iterations with ten messages each
            for _ in range(10):
                add(b"\x01")
            await asyncio.sleep(0)
        await next_iteration()
        await next_iteration()
        assert sum(send.counts) == 100
        # Only the very first message went alone; every later burst was batched,
        # including its first message (the flush kept the endpoint busy).
        assert send.counts[0] == 1
        assert all(c > 1 for c in send.counts[1:]), send.counts
        assert len(send.sent) <= 12
        assert send.seqs("t.A") == list(range(100))

    run(main())


def test_light_traffic_sends_every_message_at_once_and_alone() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add = adder(out)
        for i in range(8):
            add(bytes([i]))
            assert len(send.sent) == i + 1, "a message on an idle endpoint leaves inside add()"
            await asyncio.sleep(0.002)
        assert send.counts == [1] * 8
        assert send.seqs("t.A") == list(range(8))

    run(main())


def test_sender_goes_idle_again_after_an_iteration_with_nothing_to_flush() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add = adder(out)
        for _ in range(5):
            add(b"\x02")
        await next_iteration()
        await next_iteration()
        assert send.counts == [1, 4]
        add(b"\x03")  # after a quiet iteration: idle again, so sent at once
        assert send.counts == [1, 4, 1]

    run(main())


def test_types_in_one_burst_go_in_separate_datagrams_each_numbered_from_zero() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add_a, add_b = adder(out, "t.A"), adder(out, "t.B")
        for i in range(5):
            add_a(bytes([i]))
            add_b(bytes([0x20 + i]))
        await next_iteration()
        assert {env.type_name for env in send.sent} == {"t.A", "t.B"}
        assert all(len({p[0] >= 0x20 for p in env.payloads}) == 1 for env in send.sent)
        assert send.seqs("t.A") == list(range(5))
        assert send.seqs("t.B") == list(range(5))
        assert send.payloads("t.B") == [bytes([0x20 + i]) for i in range(5)]
        assert len(send.sent) == 3  # A alone, then one datagram per type

    run(main())


def test_flush_sends_queued_messages_without_waiting_for_the_loop() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add = adder(out)
        for _ in range(4):
            add(b"\x04")
        out.flush()
        assert send.counts == [1, 3]
        out.flush()  # nothing left: no empty datagram
        await next_iteration()
        assert send.counts == [1, 3]

    run(main())


def test_close_flushes_and_cancels_the_scheduled_flush() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        add = adder(out)
        for _ in range(3):
            add(b"\x05")
        out.close()
        assert send.counts == [1, 2]
        await next_iteration()
        assert send.counts == [1, 2]

    run(main())


@pytest.mark.parametrize("encrypt", [False, True], ids=["mac-only", "encrypted"])
def test_signed_datagrams_verify_under_the_key(encrypt: bool) -> None:
    async def main() -> None:
        send = FakeSend(key=KEY)
        out = make(send, key=KeyRing([KEY], encrypt=encrypt))
        add = adder(out)
        for _ in range(3):
            add(b"\x06")
        await next_iteration()
        assert all(env.encrypted if encrypt else env.signed for env in send.sent)
        assert sum(send.counts) == 3

    run(main())


def test_a_refused_send_does_not_stop_batching() -> None:
    async def main() -> None:
        send = FakeSend(result=False)
        out = make(send)
        add = adder(out)
        for _ in range(3):
            add(b"\x07")
        await next_iteration()
        await next_iteration()
        add(b"\x08")
        assert send.counts == [1, 2, 1]

    run(main())


def test_timestamps_survive_batching() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send)
        packer = out.packer("t.A", FP)
        stamps = [TS, TS + 5, TS + 3, TS + 1_000_000_000]
        for ts in stamps:
            out.add(packer, b"\x09", ts)
        await next_iteration()
        assert [ts for env in send.sent for _s, ts, _p in env.messages()] == stamps

    run(main())


def test_packer_is_created_once_per_type() -> None:
    async def main() -> None:
        out = make(FakeSend())
        assert out.packer("t.A", FP) is out.packer("t.A", FP)
        assert out.packer("t.A", FP) is not out.packer("t.B", FP)

    run(main())


@pytest.mark.parametrize("burst", [1, 2, 7, 64])
def test_every_message_is_sent_exactly_once_in_order(burst: int) -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send, max_datagram=120)
        add = adder(out)
        expected = []
        for round_ in range(6):
            for i in range(burst):
                payload = bytes([round_, i % 256, 0x30])
                expected.append(payload)
                add(payload)
            await asyncio.sleep(0)
        await next_iteration()
        await next_iteration()
        assert send.payloads() == expected
        assert send.seqs("t.A") == list(range(len(expected)))
        assert all(size <= 120 for size in send.sizes)

    run(main())


def test_a_message_larger_than_half_the_room_never_waits_under_load() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send, max_datagram=400)
        add = adder(out)
        big = b"\x59\x00\xc8" + bytes(200)  # a 203-byte CBOR byte string: two cannot share
        add(b"\x01")  # idle: alone, and the endpoint is busy for this iteration
        for _ in range(3):
            add(big)
        # Each big one left inside add(), alone, although the endpoint is busy.
        assert send.counts == [1, 1, 1, 1]
        await next_iteration()
        assert send.counts == [1, 1, 1, 1]
        assert send.seqs("t.A") == [0, 1, 2, 3]

    run(main())


def test_a_datagram_leaves_once_the_next_message_as_large_would_not_fit() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send, max_datagram=200)
        add = adder(out)
        payload = b"\x58\x28" + bytes(40)  # 42 bytes; three fit beside the header, not four
        add(payload)  # idle: alone
        for _ in range(3):
            add(payload)
        # The third filled the datagram for a fourth like it: sent without waiting.
        assert send.counts == [1, 3]
        await next_iteration()
        assert send.counts == [1, 3]
        assert all(size <= 200 for size in send.sizes)

    run(main())


def test_an_iteration_whose_datagrams_all_filled_up_keeps_the_endpoint_busy() -> None:
    async def main() -> None:
        send = FakeSend()
        out = make(send, max_datagram=200)
        add = adder(out)
        payload = b"\x58\x28" + bytes(40)
        add(payload)
        for _ in range(3):
            add(payload)  # leaves full: the flush finds nothing to send
        await asyncio.sleep(0)
        # Still under load: the next message waits to be batched, not sent alone.
        add(payload)
        assert send.counts == [1, 3]
        await next_iteration()
        assert send.counts == [1, 3, 1]
        await next_iteration()
        add(payload)  # an iteration passed with nothing published: idle again
        assert send.counts == [1, 3, 1, 1]

    run(main())


def test_the_sender_yields_the_cpu_after_each_lone_send_only() -> None:
    async def main() -> None:
        send = FakeSend()
        yields: list[int] = []
        out = Outgoing(node_id=NODE, boot=7, key=None, send=send,
                       loop=asyncio.get_running_loop(),
                       after_idle_send=lambda: yields.append(len(send.sent)))
        add = adder(out)
        add(b"\x01")
        assert yields == [1]  # right after the datagram was handed over
        for _ in range(5):
            add(b"\x02")  # busy: batched, no yield
        await next_iteration()
        assert yields == [1] and send.counts == [1, 5]
        await next_iteration()
        add(b"\x03")  # idle again
        assert yields == [1, 3]

    run(main())


def test_a_lone_send_made_elsewhere_yields_unless_its_sender_already_did(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        yields: list[str] = []
        out = Outgoing(node_id=NODE, boot=7, key=None, send=FakeSend(),
                       loop=asyncio.get_running_loop(), after_idle_send=lambda: yields.append("y"))
        assert not out.yields_cpu  # a hook of its own: the compiled lane cannot run it
        out.lane_done(out.packer("t.A", FP), 30, False)
        assert yields == ["y"] and (out.messages, out.datagrams) == (1, 1) and out.busy
        # The scheduler's yield: the compiled lane did it right after its send.
        monkeypatch.setattr(_outgoing, "YIELD_CPU", lambda: yields.append("sched"))
        yielding = Outgoing(node_id=NODE, boot=7, key=None, send=FakeSend(),
                            loop=asyncio.get_running_loop(), after_idle_send=_outgoing.YIELD_CPU)
        assert yielding.yields_cpu
        yielding.lane_done(yielding.packer("t.A", FP), 30, False)
        assert yields == ["y"] and (yielding.messages, yielding.datagrams) == (1, 1)

    run(main())


def test_the_default_yield_is_the_schedulers() -> None:
    import os

    from ganglion.runtime import _outgoing

    assert _outgoing.YIELD_CPU is getattr(os, "sched_yield", None)


class FakeSendMany:
    """A ``send_many`` that records each call's datagrams (and decodes them through ``send``)."""

    def __init__(self, send: FakeSend) -> None:
        self.send = send
        self.calls: list[list[int]] = []  # datagram sizes per call

    def __call__(self, datagrams: list[bytes], type_name: str) -> None:
        self.calls.append([len(d) for d in datagrams])
        for datagram in datagrams:
            self.send(datagram, type_name)


def make_trains(max_datagram: int = 400) -> tuple[Outgoing, FakeSend, FakeSendMany]:
    send = FakeSend()
    many = FakeSendMany(send)
    out = Outgoing(node_id=NODE, boot=7, key=None, max_datagram=max_datagram, send=send,
                   loop=asyncio.get_running_loop(), send_many=many, after_idle_send=None)
    return out, send, many


def test_with_send_many_large_messages_under_load_leave_together_at_the_iteration_end() -> None:
    async def main() -> None:
        out, send, many = make_trains()
        add = adder(out)
        big = b"\x59\x00\xc8" + bytes(200)
        add(b"\x01")  # idle: at once, alone, through the plain send
        assert send.counts == [1] and many.calls == []
        for _ in range(5):
            add(big)
        assert send.counts == [1]  # on the train, not sent yet
        await next_iteration()
        assert len(many.calls) == 1 and len(many.calls[0]) == 5
        assert len(set(many.calls[0])) == 1  # equal sizes: one segmented send
        assert send.seqs("t.A") == list(range(6))

    run(main())


def test_a_train_as_long_as_one_send_carries_leaves_at_once() -> None:
    async def main() -> None:
        out, send, many = make_trains(max_datagram=1400)
        cap = 65507 // 1400  # 46: what one segmented send of 1,400-byte datagrams can hold
        add = adder(out)
        big = b"\x59\x03\x00" + bytes(1200)
        add(b"\x01")
        for _ in range(cap + 3):
            add(big)
        assert [len(call) for call in many.calls] == [cap]  # left inside add()
        await next_iteration()
        assert [len(call) for call in many.calls] == [cap, 3]
        assert send.seqs("t.A") == list(range(cap + 4))

    run(main())


def test_trains_keep_each_types_order_across_batched_and_large_messages() -> None:
    async def main() -> None:
        out, send, many = make_trains()
        add_a, add_b = adder(out, "t.A"), adder(out, "t.B")
        big = b"\x59\x00\xc8" + bytes(200)
        add_a(b"\x01")
        for i in range(40):
            (add_a if i % 3 else add_b)(big if i % 2 else b"\x02" * 20)
        await next_iteration()
        await next_iteration()
        assert send.seqs("t.A") == list(range(len(send.seqs("t.A"))))
        assert send.seqs("t.B") == list(range(len(send.seqs("t.B"))))
        assert len(send.payloads()) == 41
        assert {len(call) for call in many.calls} != {1}  # several datagrams per call

    run(main())


def test_close_sends_what_waits_on_a_train() -> None:
    async def main() -> None:
        out, send, many = make_trains()
        add = adder(out)
        add(b"\x01")
        add(b"\x59\x00\xc8" + bytes(200))
        add(b"\x59\x00\xc8" + bytes(200))
        out.close()
        assert send.seqs("t.A") == [0, 1, 2] and many.calls == [[send.sizes[1]] * 2]


def test_a_train_of_one_leaves_at_the_iteration_end_as_a_call_of_one() -> None:
    async def main() -> None:
        out, send, many = make_trains()
        add = adder(out)
        add(b"\x01")
        add(b"\x59\x00\xc8" + bytes(200))
        assert send.seqs("t.A") == [0] and many.calls == []  # waiting on its train
        await next_iteration()
        assert send.seqs("t.A") == [0, 1] and many.calls == [[send.sizes[1]]]

    run(main())


def test_held_messages_leave_together_at_the_end_of_the_iteration_without_a_yield() -> None:
    """``hold`` (the control channel's heartbeat tick): what follows in this loop
    iteration waits for its end, even the first message, which would otherwise leave at
    once and give up the CPU before the next one is made."""
    async def main() -> None:
        send = FakeSend()
        yields: list[int] = []
        out = Outgoing(node_id=NODE, boot=7, key=None, send=send,
                       loop=asyncio.get_running_loop(),
                       after_idle_send=lambda: yields.append(len(send.sent)))
        beat, status = adder(out, "t.Beat"), adder(out, "t.Status")
        out.hold()
        beat(b"hb")
        status(b"st")
        assert send.sent == []  # nothing left inside the calls
        await asyncio.sleep(0)  # the end of this iteration (its flush was queued first)
        assert [env.type_name for env in send.sent] == ["t.Beat", "t.Status"]
        assert yields == []
        # Held only for that iteration, and a burst is no sign of load: idle at once
        # (no further iteration spent batching), so the next message leaves at once.
        assert not out.busy
        await next_iteration()
        beat(b"hb2")
        assert [env.type_name for env in send.sent][-1] == "t.Beat" and yields == [3]

    run(main())
