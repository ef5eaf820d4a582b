"""One side of the two-process test: ``python _two_process_peer.py pub|sub PORT COUNT [KEYHEX]``.

The subscriber prints ``ready`` once subscribed and, at the end, one JSON line
with what it received; the publisher waits for a ``go`` line on stdin, publishes,
and prints one JSON line with its counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
import sys
from dataclasses import dataclass, field

from ganglion import message
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo


class Health(enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


@dataclass
class Location:
    site: str
    rack: int


@message("test.Reading")
@dataclass
class Reading:
    index: int
    value: float
    ok: bool
    label: str
    raw: bytes
    taken: dt.datetime
    health: Health
    note: str | None
    where: Location
    history: list[float] = field(default_factory=list)


BASE = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def expected(i: int) -> Reading:
    """The message with index ``i``: every field kind, values that vary with i."""
    return Reading(
        index=i,
        value=i * 0.25 - 17.5,
        ok=i % 3 != 0,
        label=f"sensor-{i % 7}-é",
        raw=bytes([i % 256, (i * 7) % 256]) * (i % 5),
        taken=BASE + dt.timedelta(microseconds=i * 1001),
        health=list(Health)[i % 3],
        note=None if i % 2 else f"note {i}",
        where=Location(site="brewery" if i % 2 else "cellar", rack=i % 11),
        history=[i / 8, -i / 16][: i % 3],
    )


async def publish(port: int, count: int, key: bytes | None) -> None:
    async with Endpoint(interface="127.0.0.1", port=port, key=key) as ep:
        line = await asyncio.to_thread(sys.stdin.readline)
        assert line.strip() == "go", line
        for i in range(count):
            ep.publish(expected(i))
            if i % 50 == 49:
                # yield so the burst is flushed, and pace gently so a loaded CI
                # machine's receiver keeps up: this test checks correctness, not speed
                await asyncio.sleep(0.001)
        await ep.flush()
        s = ep.stats()
        print(json.dumps({"published": s.published, "datagrams": s.datagrams_sent,
                          "sender_dropped": s.sender.dropped, "node": ep.node_id.hex()}), flush=True)


async def subscribe(port: int, count: int, key: bytes | None) -> None:
    got: dict[int, tuple[Reading, MessageInfo]] = {}
    mismatches: list[str] = []
    done = asyncio.Event()

    def on_reading(msg: Reading, info: MessageInfo) -> None:
        if msg != expected(msg.index):
            mismatches.append(repr(msg)[:300])
        got[msg.index] = (msg, info)
        if len(got) >= count:
            done.set()

    async with Endpoint(interface="127.0.0.1", port=port, key=key) as ep:
        ep.subscribe(Reading, callback=on_reading)
        print("ready", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=30)
        await asyncio.sleep(0.2)  # anything late would show up as a duplicate
        s = ep.stats()
        infos = [info for _, info in got.values()]
        print(json.dumps({
            "count": len(got),
            "mismatches": mismatches[:5],
            "seq_equals_index": all(info.seq == msg.index for msg, info in got.values()),
            "senders": sorted({info.sender.hex() for info in infos}),
            "received": s.received, "lost": s.lost, "duplicates": s.duplicates,
            "reordered": s.reordered, "stale": s.stale, "decode_errors": s.decode_errors,
            "bad_mac": s.bad_mac, "schema_mismatches": s.schema_mismatches,
            "streams": [[n.hex(), t, st.received, st.lost] for (n, t), st in s.streams.items()],
            "rcvbuf": s.receiver.rcvbuf,
            "sent_ns_ok": all(info.sent_ns <= info.received_ns for info in infos),
        }), flush=True)


def main() -> None:
    role, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    key = bytes.fromhex(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run((publish if role == "pub" else subscribe)(port, count, key))


if __name__ == "__main__":
    main()
