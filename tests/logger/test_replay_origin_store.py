"""The database side of replay provenance (issue 20, defect 9), without a network:
what a logged row replays as, the writer's duplicate check, and a reading too large
to carry its origin."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from log_support import info, rows, run

from ganglion.errors import MessageTooLarge
from ganglion.logger.query import select_readings
from ganglion.logger.replay import replay, replayed_record
from ganglion.logger.schema import open_log
from ganglion.logger.writer import Writer
from ganglion.runtime.replayed import ReplayedRecord
from ganglion.types import Record
from ganglion.wire import Origin

A, B = b"\xaa" * 8, b"\xbb" * 8


def _write(db: Path, readings: list[tuple[Any, Any]]) -> Writer:
    writer = Writer(db)
    writer.start()
    for msg, inf in readings:
        writer.add(msg, inf)
    writer.close()
    return writer


def _replayed(seq: int, sender: bytes = A, **kw: Any) -> Any:
    return info("x.Y", sender=sender, seq=seq, sent_ns=10_000 + seq, boot=3, **kw)._replace(
        replayed=True, fingerprint=bytes.fromhex("0102030405060708"))


def test_a_logged_row_replays_as_its_fields_fingerprint_and_origin(db: Path) -> None:
    _write(db, [(Record("x.Y", {"i": 1}), _replayed(7, last_value=True, clock_synced=False)),
                (Record("x.Y", {"i": 2}), info("x.Y", sender=B, seq=8, sent_ns=99, boot=4))])
    first, second = select_readings(open_log(db, write=False))
    msg = replayed_record(first, {"i": 1})
    assert isinstance(msg, ReplayedRecord) and msg.fields == {"i": 1}
    assert msg.fingerprint == bytes.fromhex("0102030405060708")
    assert msg.origin == Origin(A, 3, 7, 10_007, last_value=True, clock_synced=False)
    other = replayed_record(second, {"i": 2})
    assert other.fingerprint is None  # a Record's version: the log does not know it
    assert other.origin == Origin(B, 4, 8, 99)


def test_the_same_replayed_reading_is_stored_once_and_live_ones_as_before(db: Path) -> None:
    replayed = [(Record("x.Y", {"i": i}), _replayed(i)) for i in range(3)]
    live = [(Record("x.Y", {"i": 0}), info("x.Y", sender=B, seq=0))] * 2
    first = _write(db, replayed + live)
    again = _write(db, [*replayed, (Record("x.Y", {"i": 3}), _replayed(3))])
    assert (first.stats().written, again.stats().written) == (5, 1)
    assert rows(db, "SELECT node, seq, replayed FROM readings ORDER BY id") == [
        (A.hex(), 0, 1), (A.hex(), 1, 1), (A.hex(), 2, 1), (B.hex(), 0, 0), (B.hex(), 0, 0),
        (A.hex(), 3, 1)]
    # A last value and a live reading of one number are two rows of the original log.
    _write(db, [(Record("x.Y", {"i": 1}), _replayed(1, last_value=True))])
    assert rows(db, "SELECT count(*) FROM readings WHERE seq = 1") == [(2,)]


class TooSmallNode:
    """Takes every reading but refuses one carrying an origin, as a node whose size
    budget the origin overflows does."""

    def __init__(self) -> None:
        self.published: list[Record] = []

    def types(self) -> dict[str, str]:
        return {"x.Y": "239.255.1.1"}

    async def wait_for_group(self, name: str, timeout: float) -> str:
        return "239.255.1.1"

    def publish_nowait(self, msg: Record) -> None:
        if isinstance(msg, ReplayedRecord):
            raise MessageTooLarge("x.Y", 1401, 1400)
        self.published.append(msg)


def test_a_reading_too_large_for_its_origin_is_replayed_without_one(db: Path) -> None:
    _write(db, [(Record("x.Y", {"i": i}), info("x.Y", seq=i)) for i in range(2)])
    node = TooSmallNode()
    result = run(replay(node, open_log(db, write=False), speed=0))
    assert (result.published, result.without_origin, result.skipped) == (2, 2, 0)
    assert node.published == [Record("x.Y", {"i": i}) for i in range(2)]


def test_an_endpoint_refuses_a_replayed_reading_its_origin_makes_too_large(
        free_udp_port: int, test_group: str) -> None:
    from ganglion.runtime.endpoint import Endpoint

    async def scenario() -> None:
        async with Endpoint(port=free_udp_port, group_for=lambda _n: test_group,
                            replay=True, max_datagram=200) as ep:
            small = ReplayedRecord("x.Y", {"b": b"x" * 100}, origin=Origin(A, 1, 2, 3))
            ep.publish(small)
            ep.publish(Record("x.Y", {"b": b"x" * 140}))  # fits without an origin...
            try:
                ep.publish(ReplayedRecord("x.Y", {"b": b"x" * 140},
                                          origin=Origin(A, 2**31, 2**63, 2**63)))
            except MessageTooLarge:
                return  # ...and not with one
            raise AssertionError("a replayed reading over the budget was not refused")

    asyncio.run(scenario())
