"""Replay a log onto the network with its original timing, like lcm-logplayer.

Theory of operation: readings are read in the order the logger received them
and published again as :class:`~ganglion.types.Record` s (type name + fields,
so no class is needed) by the replaying node. Reading *i* is due at
``start + (received_ns[i] - received_ns[0]) / speed`` on the event loop's
clock: the gaps between readings are kept (scaled by ``speed``), and a replay
that falls behind catches up without drifting. ``speed=0`` publishes as fast as
the node sends, yielding to the loop every :data:`YIELD_EVERY` readings. With
``loop=True`` the selection starts over after its last reading.

Before the first reading, the replaying node makes sure every type it will
publish has its agreed group, so no reading waits (and is dropped from a full
queue) while a group is agreed. The replaying node marks its datagrams as
replayed (``Node(replay=True)``), so a logger stores ``replayed = 1``.

Provenance: each reading goes out as a :class:`~ganglion.runtime.replayed.ReplayedRecord`
under the fingerprint it was logged with and with its origin (original sender,
boot, seq, sent time, last-value and clock flags), so a logger stores it as the
original (docs/protocol.md, section 4.4). The replaying node still sends
under its own id and numbers. A reading whose origin would push it over the size
budget is sent without one (counted in ``without_origin``) rather than not at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from ganglion.errors import MessageTooLarge
from ganglion.logger import datajson
from ganglion.logger.query import StoredReading, select_readings
from ganglion.logger.schema import Flags
from ganglion.runtime._lifecycle import wait_or_stop
from ganglion.runtime.replayed import ReplayedRecord
from ganglion.types import Record
from ganglion.wire import Origin

__all__ = ["SETTLE_SECONDS", "YIELD_EVERY", "ReplayResult", "prepare_types", "replay",
           "replayed_record"]

YIELD_EVERY = 200

#: Seconds to wait after getting new types agreed, for subscribers to join.
SETTLE_SECONDS = 1.0

Progress = Callable[[int], None]


class ReplayResult:
    """What a replay did.

    Attributes:
        published: readings published (over every pass).
        skipped: readings that could not be published (they no longer fit their
            type's registered class, or their data is unreadable).
        passes: complete passes over the selection.
        without_origin: readings published without their origin (it would not fit
            the size budget): a logger stores those under the replaying node.
    """

    __slots__ = ("passes", "published", "skipped", "without_origin")

    def __init__(self) -> None:
        self.published = 0
        self.skipped = 0
        self.passes = 0
        self.without_origin = 0


async def prepare_types(node: Any, type_names: Iterable[str], *, timeout: float = 10.0,
                        settle: float = SETTLE_SECONDS) -> None:
    """Make sure each type has its agreed group before replaying (proposing it if needed).

    A type that had no group yet is new to the network's loggers too: they see
    the decision, subscribe, and say so in their next heartbeat. Waiting
    ``settle`` seconds after such a decision lets them, so the first replayed
    readings are not sent before anyone listens.

    Raises:
        TimeoutError: a group was not agreed within ``timeout`` seconds.
    """
    names = list(type_names)
    known = node.types()
    new = [name for name in names if name not in known]
    for name in new:
        sub = node.subscribe(name, propose=True)
        sub.close()  # the proposal stands; the replaying node needs no subscription
    for name in names:
        await node.wait_for_group(name, timeout)
    if new:
        await asyncio.sleep(settle)


async def replay(node: Any, conn: sqlite3.Connection, *, patterns: Iterable[str] = (),
                 since_ns: int | None = None, until_ns: int | None = None, speed: float = 1.0,
                 loop: bool = False, progress: Progress | None = None,
                 stop: asyncio.Event | None = None) -> ReplayResult:
    """Publish the selected readings again through ``node``.

    Args:
        node: a started :class:`ganglion.Node`, made with ``replay=True``.
        conn: the log.
        patterns, since_ns, until_ns: the selection (see :mod:`ganglion.logger.query`).
        speed: 1 for the original timing, 10 for ten times faster, 0 for no waiting.
        loop: start over after the last reading, until ``stop`` is set.
        progress: called with the number of readings published so far in this pass.
        stop: ends the replay early when set.

    Returns:
        The :class:`ReplayResult`.

    Raises:
        ValueError: ``speed`` is negative.
    """
    if speed < 0:
        raise ValueError("speed must be >= 0")
    pats = tuple(patterns)
    stop = stop or asyncio.Event()
    result = ReplayResult()
    names = [name for (name,) in conn.execute("SELECT DISTINCT name FROM types ORDER BY name")]
    from ganglion.logger.recorder import matches

    await prepare_types(node, [n for n in names if matches(n, pats)])
    while not stop.is_set():
        done = await _one_pass(node, conn, pats, since_ns, until_ns, speed, progress, stop, result)
        if stop.is_set():
            break
        result.passes += 1
        if not loop or done == 0:
            break
    return result


async def _one_pass(node: Any, conn: sqlite3.Connection, pats: tuple[str, ...],
                    since_ns: int | None, until_ns: int | None, speed: float,
                    progress: Progress | None, stop: asyncio.Event, result: ReplayResult) -> int:
    """One pass over the selection; returns how many readings it went through."""
    clock = asyncio.get_running_loop()
    start = clock.time()
    first_ns: int | None = None
    done = 0
    readings = select_readings(conn, patterns=pats, since_ns=since_ns, until_ns=until_ns)
    for done, reading in enumerate(readings, 1):
        if first_ns is None:
            first_ns = reading.received_ns
        if speed > 0:
            delay = start + (reading.received_ns - first_ns) / 1e9 / speed - clock.time()
            if delay > 0:
                await wait_or_stop(stop, delay)
        elif done % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if stop.is_set():
            return done - 1
        try:
            fields = datajson.loads(reading.data)
            try:
                node.publish_nowait(replayed_record(reading, fields))
            except MessageTooLarge:
                node.publish_nowait(Record(reading.type, fields))
                result.without_origin += 1
        except (ValueError, TypeError):  # EncodeError and DecodeError are ValueErrors
            result.skipped += 1
        else:
            result.published += 1
        if progress is not None:
            progress(done)
    return done


def replayed_record(reading: StoredReading, fields: dict[str, Any]) -> ReplayedRecord:
    """The message that replays ``reading``: its fields, logged fingerprint and origin.

    Raises:
        ValueError: the row's node id or fingerprint is not hexadecimal.
    """
    origin = Origin(bytes.fromhex(reading.node), reading.boot, reading.seq, reading.sent_ns,
                    last_value=bool(reading.flags & Flags.LAST_VALUE),
                    clock_synced=not reading.flags & Flags.CLOCK_UNSYNCED)
    fingerprint = bytes.fromhex(reading.fingerprint) if reading.fingerprint else None
    return ReplayedRecord(reading.type, fields, origin=origin, fingerprint=fingerprint)
