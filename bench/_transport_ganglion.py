"""System (b): ganglion's typed publish -> subscribe through ``Endpoint``.

Theory of operation: both processes open an ``Endpoint`` on loopback with the
trial's port; the type ``bench.Blob`` lands on its default group (a hash of the
type name), so no agreement round is involved. A ``Blob`` carries the same two
numbers as the raw header, as typed fields (``seq``, ``t_ns``), plus
``size - 16`` bytes of padding, so the application payload is the same ``size``
for every system; CBOR and the envelope are ganglion's own overhead and count
against it. ``Endpoint.publish`` is synchronous and batches what is published in
one loop iteration, so the blast publisher yields to the loop every
``yield_every`` publishes to let it flush; the paced publisher yields between
every message (pacing itself with ``time.sleep``, as the raw publisher does), which is
the light-traffic path that must not add latency.
Both run on the loop ``ganglion.run`` picks, as the ``ganglion`` commands do: uvloop
where it is installed (the ``fast`` extra), asyncio's otherwise; the subscriber
reports which (``GANGLION_EVENT_LOOP=asyncio`` measures asyncio's loop instead).
The subscriber's callback feeds the shared :class:`Tally`.

``ganglion+hist`` is keyless ganglion whose endpoints keep a history (what a node does
by default, for repair): every message published is also appended to its type's keep
list, which the history takes in once per loop iteration.

The same module runs the keyed rows: ``ganglion+key`` gives both endpoints a network
key with encryption off (every datagram carries a BLAKE2b MAC, ``--no-encrypt``), and
``ganglion+aead`` the same key with encryption on (ChaCha20-Poly1305); both take the
compiled lanes where they are built, which sign, verify, encrypt or decrypt once per
datagram.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _transport_common import HEADER
from _transport_role import LOOPBACK, RoleConfig, StopRule

# bench/ holds scripts named like packages (a script named like a package would shadow the
# consensus package that ganglion imports): the repository first, bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

import ganglion  # noqa: E402
from ganglion import message  # noqa: E402
from ganglion.eventloop import loop_name  # noqa: E402
from ganglion.runtime.endpoint import Endpoint  # noqa: E402
from ganglion.wire import KeyRing  # noqa: E402

#: How often the subscriber's idle loop checks the stop rule.
WAKE_SECONDS = 0.05
#: Time the publisher keeps its endpoint open after the last publish so the final
#: batch is flushed before the socket closes (not counted in the send time).
FLUSH_SECONDS = 0.2
#: Endpoint counters worth keeping: the subscriber's view of the stream, and the
#: publisher's batching (published / datagrams_sent = messages per datagram).
SUB_COUNTERS = ("received", "lost", "duplicates", "reordered", "decode_errors", "queue_dropped",
                "bad_mac")
#: The network key of the keyed rows (a benchmark constant, not a secret).
BENCH_KEY = bytes(range(32))
PUB_COUNTERS = ("published", "datagrams_sent")


@message("bench.Blob")
@dataclass
class Blob:
    """The benchmark message: sequence number, sender timestamp, padding."""

    seq: int
    t_ns: int
    data: bytes


def run_subscriber(cfg: RoleConfig, ready: Callable[[], None]) -> dict[str, Any]:
    """Receive one trial's messages through a ganglion ``Endpoint``.

    Args:
        cfg: the trial's configuration.
        ready: called once the subscription is in place.

    Returns:
        :meth:`Tally.summary` plus the endpoint's own counters (``endpoint_stats``).

    Raises:
        ganglion.errors.GanglionError: if the endpoint cannot be opened.
    """
    return ganglion.run(_subscribe(cfg, ready))


def run_publisher(cfg: RoleConfig) -> dict[str, Any]:
    """Publish ``cfg.count`` ``Blob`` messages, flat out (blast) or paced.

    Returns:
        ``{"sent", "t_start_ns", "t_end_ns"}`` plus the endpoint's ``published`` and
        ``datagrams_sent`` counters.

    Raises:
        ganglion.errors.GanglionError: if the endpoint cannot be opened or a publish fails.
    """
    return ganglion.run(_publish(cfg))


async def _subscribe(cfg: RoleConfig, ready: Callable[[], None]) -> dict[str, Any]:
    """The subscriber's event-loop body."""
    tally = cfg.new_tally()
    now = time.monotonic_ns
    on_message = tally.on_message

    def on_blob(msg: Blob, _info: object) -> None:
        on_message(msg.seq, msg.t_ns, now())

    async with Endpoint(interface=LOOPBACK, port=cfg.port, **_keyed(cfg.system)) as ep:
        subscription = ep.subscribe(Blob, callback=on_blob)
        ready()
        stop = StopRule(cfg, now())
        while not stop.done(tally, now()):
            await asyncio.sleep(WAKE_SECONDS)
        stats = ep.stats()
        counters = _counters(stats, SUB_COUNTERS)
        # Datagrams the kernel dropped because the socket buffer was full (the receiver
        # fell behind), as opposed to losses anywhere else.
        counters.update(_counters(getattr(stats, "receiver", None), ("kernel_drops",)))
        del subscription
    summary = tally.summary()
    summary["endpoint_stats"] = counters
    summary["loop"] = loop_name()
    return summary


async def _publish(cfg: RoleConfig) -> dict[str, Any]:
    """The publisher's event-loop body."""
    padding = bytes(cfg.size - HEADER.size)
    now = time.monotonic_ns
    async with Endpoint(interface=LOOPBACK, port=cfg.port, **_keyed(cfg.system)) as ep:
        publish = ep.publish
        t_start = now()
        if cfg.mode == "blast":
            every = cfg.yield_every
            for seq in range(cfg.count):
                publish(Blob(seq=seq, t_ns=now(), data=padding))
                if seq % every == every - 1:
                    await asyncio.sleep(0)
            await asyncio.sleep(0)
        else:
            period_ns = int(1e9 / cfg.rate)
            for seq in range(cfg.count):
                delay_ns = t_start + seq * period_ns - now()
                # Paced by the kernel's timer, as the raw publisher is: uvloop's timers
                # have 1 ms resolution, so awaiting a shorter sleep would spin (and keep
                # this process warm, which raw's is not). Between messages the loop runs
                # (the endpoint's end-of-iteration work), then the process sleeps.
                if delay_ns > 0:
                    time.sleep(delay_ns / 1e9)
                publish(Blob(seq=seq, t_ns=now(), data=padding))
                await asyncio.sleep(0)
        t_end = now()
        await asyncio.sleep(FLUSH_SECONDS)
        stats = ep.stats()
        counters = _counters(stats, PUB_COUNTERS)
        # Datagrams the non-blocking send socket could not hand to the kernel at once
        # (queued for a retry) and ones given up on: loss that is the sender's, not the network's.
        sender = _counters(getattr(stats, "sender", None), ("deferred", "dropped"))
        counters.update({f"send_{name}": value for name, value in sender.items()})
    return {"sent": cfg.count, "t_start_ns": t_start, "t_end_ns": t_end, **counters}


def key_for(system: str) -> KeyRing | None:
    """The key ring of a row: none, MAC-only (``ganglion+key``) or encrypting (``+aead``)."""
    if system == "ganglion+key":
        return KeyRing([BENCH_KEY], encrypt=False)
    if system == "ganglion+aead":
        return KeyRing([BENCH_KEY], encrypt=True)
    return None


def _keyed(system: str) -> dict[str, Any]:
    """Endpoint keyword arguments of a row: ``key`` only for the keyed rows, a history
    (the node's default limits) for ``ganglion+hist``."""
    if system == "ganglion+hist":
        from ganglion.repair import History

        return {"history": History()}
    ring = key_for(system)
    return {} if ring is None else {"key": ring}


def _counters(stats: object, names: tuple[str, ...]) -> dict[str, int]:
    """Pick the named integer counters out of ``Endpoint.stats()`` for the JSON report."""
    picked = {name: getattr(stats, name, None) for name in names}
    return {name: value for name, value in picked.items() if isinstance(value, int)}
