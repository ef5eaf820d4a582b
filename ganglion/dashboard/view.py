"""What the dashboard shows of a node, as JSON: the map, the nodes, the counters, the types.

Built only on the node's public API (``types()``, ``heard()``, ``peers()``,
``stats()``, ``name``, ``node_id``); no I/O of its own. :class:`NodeBook` remembers
every node ever heard (with when it was last heard, on the wall clock), so a node
that went silent stays on the page marked *gone* instead of vanishing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ganglion import __version__
from ganglion.dashboard.live import LiveState
from ganglion.dashboard.units import field_unit
from ganglion.types import TypeSchema

__all__ = ["NodeBook", "stats_json", "types_json"]

#: A published type's repair counters (what this node answered for it), 0 when absent.
_TYPE_REPAIR = ("repair_requests_received", "repaired_sent", "gone_sent", "repair_rate_limited")

#: Nodes remembered at most (the oldest-heard are forgotten first).
MAX_NODES = 1000


class NodeBook:
    """Every node heard: live peers, gone ones, and this node itself."""

    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, Any]] = {}

    def update(self, node: Any, *, loop_now: float, wall_now: float | None = None) -> None:
        """Take the node's current peers (``heard()``: also those not yet proven live)."""
        wall = time.time() if wall_now is None else wall_now
        live = {p.id for p in node.peers()}
        for entry in self._nodes.values():
            entry["live"] = False
        for p in node.heard():
            self._nodes[p.id.hex()] = {
                "id": p.id.hex(), "name": p.name, "address": p.address, "version": p.version,
                "role": p.role, "publishes": sorted(p.publishes), "clock_synced": p.clock_synced,
                "last_heard": wall - max(0.0, loop_now - p.last_seen), "live": p.id in live,
                "self": False}
        me = node.node_id.hex()
        published = sorted(name for name, s in node.stats().types.items() if s.sent)
        self._nodes[me] = {"id": me, "name": node.name, "address": getattr(node, "interface", ""),
                           "version": __version__,
                           "role": "observer" if getattr(node, "observer", False) else "member",
                           "publishes": published, "clock_synced": True, "last_heard": wall,
                           "live": True, "self": True}
        if len(self._nodes) > MAX_NODES:
            for key in sorted(self._nodes, key=lambda k: self._nodes[k]["last_heard"])[
                    :len(self._nodes) - MAX_NODES]:
                del self._nodes[key]

    def as_json(self) -> list[dict[str, Any]]:
        """Every node, this one first, then by name."""
        return sorted(self._nodes.values(), key=lambda n: (not n["self"], n["name"], n["id"]))


def stats_json(node: Any) -> dict[str, Any]:
    """Per type and per (type, sender) stream: received, lost, duplicates (``node.stats()``),
    and repair's counters: per stream ``repaired`` (got back by repair or history) and
    ``permanently_lost`` (given up on; also in ``lost``, which counts every number not
    (yet) filled), per published type what this node answered (``repaired_sent``...).
    """
    stats = node.stats()
    types = {name: {"group": s.group, "sent": s.sent, "received": s.received, "lost": s.lost,
                    "duplicates": s.duplicates, "reordered": s.reordered, "stale": s.stale,
                    **{k: int(getattr(s, k, 0) or 0) for k in _TYPE_REPAIR}}
             for name, s in stats.types.items()}
    streams = [{"type": type_name, "node": sender.hex(), "received": s.received, "lost": s.lost,
                "duplicates": s.duplicates, "reordered": s.reordered,
                "repaired": s.repaired, "permanently_lost": s.permanently_lost,
                "repair_requests_sent": s.repair_requests_sent,
                "repair_requests_suppressed": s.repair_requests_suppressed}
               for (sender, type_name), s in sorted(stats.endpoint.streams.items(),
                                                     key=lambda kv: (kv[0][1], kv[0][0]))]
    return {"types": types, "streams": streams, "decode_errors": stats.decode_errors,
            "bad_mac": stats.bad_mac}


def types_json(agreed: Mapping[str, str], live: LiveState,
               logged: Mapping[str, Mapping[str, str | None]],
               schema_of: Callable[[str], TypeSchema | None] | None = None) -> dict[str, Any]:
    """Per type of the map, seen in readings or in the log: group, numeric fields, units.

    Args:
        agreed: the agreed map.
        live: the live state (fields seen in readings).
        logged: type -> numeric field -> unit as the log recorded them (no log: empty).
        schema_of: type name -> its declared schema, when the node knows it.
    """
    out: dict[str, Any] = {}
    for name in sorted(set(agreed) | set(live.fields) | set(logged)):
        in_log = logged.get(name, {})
        fields = [*live.fields.get(name, {}), *(f for f in in_log if f not in live.fields.get(name, {}))]
        units = {f: u for f, u in in_log.items() if u is not None}
        declared = schema_of(name) if schema_of is not None else None
        out[name] = {"group": agreed.get(name),
                     "fields": {f: field_unit(name, f, units, declared) for f in fields}}
    return out
