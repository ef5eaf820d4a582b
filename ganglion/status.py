"""The status document of a running node: what ``ganglion status`` shows.

Theory of operation: :func:`build_status` turns what a node knows of itself
(:meth:`Node.stats`, :meth:`Node.peers`, the agreed map) and what its plugin
host knows (each plugin's supervision state, and what a plugin says of itself
through an optional ``status()`` method, such as the hardware plugin's sensors)
into plain JSON data. It reads, never changes, and is bounded: per-stream rows
are capped at :data:`MAX_STREAMS` (the rest are counted in
``streams_omitted``), so the answer stays small on a busy network.

The document (``"format": 1``; keys are only ever added)::

    node      name, id, version, interface, interface_name, port, state_dir, pid, uptime_s
    peers     [{id, name, role, version, address, clock_synced, seen_s_ago, publishes}]
    types     {type name: {group, sent, received, lost, duplicates, reordered, stale,
               sent_per_key: [{key: [field values], sent}] for a keyed type,
               repaired, repair_requests_sent, repair_requests_suppressed, permanently_lost,
               repair_requests_received, repaired_sent, gone_sent, repair_rate_limited,
               history_messages, history_bytes}}
    streams   [{type, node, node_name, received, lost, duplicates, reordered, stale,
               repaired, repair_requests_sent, repair_requests_suppressed, permanently_lost}]
    counters  {dropped, bad_mac, decode_errors}
    repair    {repaired, permanently_lost, repairs_dropped, history_dropped,
               history: {history_bytes, history_messages, history_types, evictions...}}
    bus       null, or {endpoints, received, published, delivered, dropped, ..., subscriptions}
    plugins   {name: {state, restarts, crashes, last_error}} (+ ``detail`` a plugin gives)
    sensors   [{plugin, id, ...}] from plugins whose ``status()`` lists ``sensors``
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import Any

from ganglion import __version__

__all__ = ["FORMAT", "MAX_STREAMS", "build_status"]

#: The document's format number; raised only if a key changes meaning.
FORMAT = 1

#: Per-stream rows in one document; the rest are counted, not listed.
MAX_STREAMS = 500


def build_status(node: Any, host: Any = None, *, started: float | None = None) -> dict[str, Any]:
    """Build the status document of a started node.

    Args:
        node: the started :class:`~ganglion.node.Node`.
        host: its :class:`~ganglion.plugins.PluginHost`, if it runs plugins.
        started: ``time.monotonic()`` when the node started, for ``uptime_s``.

    Returns:
        The document (JSON-able: str, int, float, bool, None, lists and dicts).
    """
    stats = node.stats()
    peers = node.peers()
    names = {p.id: p.name for p in peers}
    streams = _streams(stats.endpoint.streams, names)
    plugins, sensors = _plugins(host)
    return {
        "format": FORMAT,
        "node": {
            "name": node.name, "id": node.node_id.hex(), "version": __version__,
            "interface": node.interface, "interface_name": node.interface_name,
            "port": node.port, "state_dir": None if node.state_dir is None else str(node.state_dir),
            "pid": os.getpid(),
            "uptime_s": None if started is None else round(time.monotonic() - started, 1),
        },
        "peers": [_peer(p) for p in sorted(peers, key=lambda p: (p.name, p.id))],
        "types": {name: _type(t) for name, t in stats.types.items()},
        "streams": streams[:MAX_STREAMS],
        "streams_omitted": max(0, len(streams) - MAX_STREAMS),
        "counters": {"dropped": stats.dropped, "bad_mac": stats.bad_mac,
                     "decode_errors": stats.decode_errors},
        "repair": _repair(stats.endpoint),
        "bus": _bus(stats.bus, node.bus_endpoints()),
        "plugins": plugins,
        "sensors": sensors,
    }


def _peer(peer: Any) -> dict[str, Any]:
    try:
        ago: float | None = round(asyncio.get_running_loop().time() - peer.last_seen, 1)
    except RuntimeError:  # no loop: the heartbeat times mean nothing here
        ago = None
    return {"id": peer.id.hex(), "name": peer.name, "role": peer.role, "version": peer.version,
            "address": peer.address, "clock_synced": peer.clock_synced, "seen_s_ago": ago,
            "publishes": list(peer.publishes)}


def _streams(streams: dict[Any, Any], names: dict[bytes, str]) -> list[dict[str, Any]]:
    rows = []
    for key, s in streams.items():
        sender, type_name = key[0], key[1]
        row: dict[str, Any] = {"type": type_name, "node": sender.hex(),
                               "node_name": names.get(sender)}
        if len(key) > 2:  # a keyed stream (per sensor): say which key
            row["key"] = key[2:] if len(key) > 3 else key[2]
        row.update(received=s.received, lost=s.lost, duplicates=s.duplicates,
                   reordered=s.reordered, stale=s.stale)
        row.update({name: getattr(s, name, 0) for name in _STREAM_REPAIR})
        rows.append(row)
    rows.sort(key=lambda r: (r["type"], r["node_name"] or "", r["node"], str(r.get("key", ""))))
    return rows


#: A stream's repair counters (``SequenceStats``), shown next to its sequence counters.
_STREAM_REPAIR = ("repaired", "repair_requests_sent", "repair_requests_suppressed",
                  "permanently_lost")


def _repair(endpoint: Any) -> dict[str, Any]:
    """The node's repair totals and its history's counters."""
    return {"repaired": endpoint.repaired, "permanently_lost": endpoint.permanently_lost,
            "repairs_dropped": endpoint.repairs_dropped,
            "history_dropped": endpoint.history_dropped, "history": dict(endpoint.history)}


def _bus(bus: Any, endpoints: list[str]) -> dict[str, Any] | None:
    if bus is None:
        return None
    doc: dict[str, Any] = {"endpoints": endpoints}
    doc.update(dataclasses.asdict(bus))
    doc["subscriptions"] = list(bus.subscriptions)
    doc["malformed"], doc["refused"] = bus.malformed, bus.refused  # issue 18's names
    return doc


def _plugins(host: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if host is None:
        return {}, []
    plugins: dict[str, Any] = {}
    for name, s in host.stats().items():
        plugins[name] = {"state": s.state.value, "restarts": s.restarts, "crashes": s.crashes,
                         "last_error": s.last_error}
    sensors: list[dict[str, Any]] = []
    for name, detail in host.details().items():
        found = detail.pop("sensors", None)
        if isinstance(found, list):
            sensors.extend({"plugin": name, **row} for row in found if isinstance(row, dict))
        if detail and name in plugins:
            plugins[name]["detail"] = detail
    return plugins, sensors


def _type(stats: Any) -> dict[str, Any]:
    """A type's counters; a keyed type's ``sent_per_key`` as a list (JSON keys are text)."""
    doc = dataclasses.asdict(stats)
    doc["sent_per_key"] = [{"key": list(key), "sent": count}
                           for key, count in sorted(stats.sent_per_key.items(), key=repr)]
    return doc
