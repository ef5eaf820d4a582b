"""System (c): LCM's Python binding, default settings, explicit loopback-only URL.

Theory of operation: LCM's ``udpm`` provider is multicast UDP with its own
fragmenting header; the Python binding wraps the C library. The publisher calls
``LCM.publish(channel, bytes)`` (flat out, or paced); the subscriber registers a
handler with ``LCM.subscribe`` and dispatches with ``handle_timeout`` in 50 ms
slices so the stop rule is checked even when nothing arrives. The URL always names
a group, a port and ``ttl=0`` so LCM never uses its default group
(239.255.76.67) and its packets never leave the host; the orchestrator only runs
this system inside a network namespace that has nothing but loopback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from _transport_common import HEADER, make_payload
from _transport_role import RoleConfig, StopRule, sleep_until

CHANNEL = "BENCH_BLOB"
#: handle_timeout slice in milliseconds.
WAKE_MILLIS = 50


def run_subscriber(cfg: RoleConfig, ready: Callable[[], None]) -> dict[str, Any]:
    """Receive one trial's messages through LCM and return the tally summary.

    Args:
        cfg: the trial's configuration (``lcm_url`` is the provider).
        ready: called once the subscription is in place.

    Returns:
        :meth:`Tally.summary`.

    Raises:
        ImportError: if the ``lcm`` module is not installed.
        OSError: if LCM cannot open its sockets (e.g. no multicast route).
    """
    import lcm

    tally = cfg.new_tally()
    unpack = HEADER.unpack_from
    now = time.monotonic_ns
    on_message = tally.on_message

    def handler(_channel: str, data: bytes) -> None:
        seq, t_ns = unpack(data)
        on_message(seq, t_ns, now())

    lc = lcm.LCM(cfg.lcm_url)
    sub = lc.subscribe(CHANNEL, handler)
    try:
        ready()
        stop = StopRule(cfg, now())
        handle_timeout = lc.handle_timeout
        while not stop.done(tally, now()):
            handle_timeout(WAKE_MILLIS)
    finally:
        lc.unsubscribe(sub)
    return tally.summary()


def run_publisher(cfg: RoleConfig) -> dict[str, Any]:
    """Publish ``cfg.count`` messages through LCM, flat out (blast) or paced.

    Returns:
        ``{"sent", "t_start_ns", "t_end_ns"}``.

    Raises:
        ImportError: if the ``lcm`` module is not installed.
        OSError: if LCM cannot open its sockets or a publish fails.
    """
    import lcm

    lc = lcm.LCM(cfg.lcm_url)
    payload = make_payload(cfg.size)
    pack_into = HEADER.pack_into
    now = time.monotonic_ns
    publish = lc.publish
    t_start = now()
    if cfg.mode == "blast":
        for seq in range(cfg.count):
            pack_into(payload, 0, seq, now())
            publish(CHANNEL, bytes(payload))
    else:
        period_ns = int(1e9 / cfg.rate)
        for seq in range(cfg.count):
            sleep_until(t_start + seq * period_ns)
            pack_into(payload, 0, seq, now())
            publish(CHANNEL, bytes(payload))
    t_end = now()
    return {"sent": cfg.count, "t_start_ns": t_start, "t_end_ns": t_end}
