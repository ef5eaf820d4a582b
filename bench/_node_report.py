"""Turn the node benchmark's trials into a table of medians, targets and ratios.

Theory of operation: a :class:`Row` is one figure: the per-trial values of one
quantity, its unit, and optionally a target (``<`` or ``>=`` a value).
:func:`build_rows` picks the figures out of the raw results dict that
``bench/node.py`` collects (measurement name -> list of per-trial dicts);
:func:`format_table` prints them with the median, the spread, the ratio to the
target and whether it was met. Nothing here measures or does I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Row:
    """One reported figure.

    Attributes:
        label: what it is.
        values: one value per trial (NaN-free).
        unit: its unit.
        op: ``<`` or ``>=`` when it has a target, else "".
        target: the target value (same unit).
        note: shown when there are no values (why it did not run).
    """

    label: str
    values: tuple[float, ...]
    unit: str
    op: str = ""
    target: float = math.nan
    note: str = ""

    @property
    def median(self) -> float:
        """The median over trials, NaN without values."""
        return float(statistics.median(self.values)) if self.values else math.nan

    @property
    def ratio(self) -> float:
        """median / target (NaN without a target or values)."""
        return self.median / self.target if self.op and self.values else math.nan

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without a target or values."""
        if not self.op or not self.values:
            return None
        return self.median < self.target if self.op == "<" else self.median >= self.target


def _vals(results: Mapping[str, Sequence[Mapping[str, Any]]], name: str, key: str,
          scale: float = 1.0) -> tuple[float, ...]:
    return tuple(float(t[key]) * scale for t in results.get(name, ())
                 if t.get(key) is not None)


def build_rows(results: Mapping[str, Sequence[Mapping[str, Any]]],
               failures: Mapping[str, str], *, reference: float,
               reference_label: str) -> list[Row]:
    """Pick every reported figure out of the raw results.

    Args:
        results: measurement name -> per-trial dicts (see bench/node.py).
        failures: measurement name -> why it failed or was skipped.
        reference: pyplexo's in-process msg/s that the in-process target is 10x of.
        reference_label: where ``reference`` comes from.

    Returns:
        The rows, in print order.
    """
    def row(label: str, name: str, key: str, unit: str, op: str = "",
            target: float = math.nan, scale: float = 1.0) -> Row:
        return Row(label, _vals(results, name, key, scale), unit, op, target,
                   failures.get(name, ""))

    return [
        row("start -> first reading on another node", "startup", "first_reading_ms", "ms",
            "<", 1000.0),
        row("  start -> node up (its start line)", "startup", "started_ms", "ms"),
        row("new type, 3 nodes: publisher decided", "agree3", "publisher_ms", "ms"),
        row("new type, 3 nodes: all maps have it", "agree3", "all_ms", "ms"),
        row("new type, 10 nodes: publisher decided", "agree10", "publisher_ms", "ms"),
        row("new type, 10 nodes: all maps have it", "agree10", "all_ms", "ms", "<", 50.0),
        row("node->node (internal) blast delivered", "e2e_internal_blast", "delivered_per_s",
            "msg/s"),
        row("node->node (internal) blast loss", "e2e_internal_blast", "loss", "%", scale=100),
        row("node->node (internal) paced p50", "e2e_internal_paced", "p50_us", "us"),
        row("node->node (internal) paced p99", "e2e_internal_paced", "p99_us", "us"),
        row("plugin->node->node->plugin blast delivered", "e2e_bus_blast", "delivered_per_s",
            "msg/s", ">=", 100_000.0),
        row("plugin->node->node->plugin blast loss", "e2e_bus_blast", "loss", "%", scale=100),
        row("plugin->node->node->plugin paced p50", "e2e_bus_paced", "p50_us", "us", "<",
            100.0),
        row("plugin->node->node->plugin paced p99", "e2e_bus_paced", "p99_us", "us"),
        row("  bare zmq hop p50, same trial (the path has 2)", "e2e_bus_paced", "hop_p50_us",
            "us"),
        row("  plugin->node->node->plugin p50 / bare hop", "e2e_bus_paced", "p50_per_hop", "x"),
        row("  bare relay chain p50, same trial (its floor)", "e2e_bus_paced", "chain_p50_us",
            "us"),
        row("  plugin->node->node->plugin p50 / bare chain", "e2e_bus_paced", "p50_per_chain",
            "x"),
        row("plugin->plugin, bare zmq.proxy delivered", "bus_local", "proxy_msg_s", "msg/s"),
        row("plugin->plugin, ganglion bus delivered", "bus_local", "bus_msg_s", "msg/s"),
        row("  ganglion bus / bare proxy (same trial)", "bus_local", "ratio", "x", ">=", 0.5),
        row("  ganglion bus: publishes refused (retried)", "bus_local", "bus_refused", "msgs"),
        row("  bare proxy: lost at the subscriber", "bus_local", "proxy_loss", "%", scale=100),
        row("  ganglion bus: lost", "bus_local", "bus_loss", "%", scale=100),
        row("plugin->plugin paced p50, bare zmq.proxy", "bus_local", "proxy_p50_us", "us"),
        row("plugin->plugin paced p50, ganglion bus", "bus_local", "bus_p50_us", "us"),
        row("external->internal plugin, one node p50", "bus_ext_to_int", "p50_us", "us", "<",
            60.0),
        row("  bare zmq hop p50, same trial", "bus_ext_to_int", "hop_p50_us", "us"),
        row("  external->internal p50 / bare hop", "bus_ext_to_int", "p50_per_hop", "x"),
        row("  publishes refused below capacity (paced)", "bus_ext_to_int", "refused", "msgs",
            "<", 1.0),
        row("internal->external plugin, one node p50", "bus_int_to_ext", "p50_us", "us", "<",
            60.0),
        row("  bare zmq hop p50, same trial", "bus_int_to_ext", "hop_p50_us", "us"),
        row("  internal->external p50 / bare hop", "bus_int_to_ext", "p50_per_hop", "x"),
        row("RSS idle ganglion node (mDNS on)", "rss_idle", "rss_mb", "MB", "<", 40.0),
        row("RSS idle ganglion node (--no-mdns)", "rss_idle_nomdns", "rss_mb", "MB"),
        row("RSS idle ganglion node on uvloop (mDNS on)", "rss_idle_uvloop", "rss_mb", "MB",
            "<", 40.0),
        row("idle node alone: CPU", "idle", "cpu_pct", "%core", "<", 0.2),
        row("idle node alone: wake-ups", "idle", "wakeups_s", "/s", "<", 5.0),
        row("idle node, 3 idle peers: CPU", "idle_peers", "cpu_pct", "%core", "<", 0.2),
        row("idle node, 3 idle peers: wake-ups", "idle_peers", "wakeups_s", "/s", "<", 5.0),
        row("idle node alone on uvloop: CPU", "idle_uvloop", "cpu_pct", "%core", "<", 0.2),
        row("idle node alone on uvloop: wake-ups", "idle_uvloop", "wakeups_s", "/s", "<", 5.0),
        row("RSS ganglion node publishing 100 types", "rss_types", "rss_mb", "MB"),
        row("  100 types agreed after node start", "rss_types", "agreed_all_s", "s"),
        row("in-process publish->callback", "inprocess", "rate", "msg/s", ">=",
            10 * reference),
        row("pyplexo in-process (GanglionInproc)", "plexo", "inproc", "msg/s"),
        row("pyplexo in-process (Plexus)", "plexo", "plexus", "msg/s"),
        Row(f"  (in-process target: 10x {reference_label})", (), ""),
    ]


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    """Render the rows as a fixed-width text table.

    Returns:
        The table, one line per row, with a header.
    """
    head = f"{'measurement':<44} {'median':>10} {'min..max':>21} {'n':>3} {'unit':<6}" \
           f" {'target':>12} {'ratio':>7}  verdict"
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r.values and not r.unit:
            lines.append(r.label)
            continue
        spread = f"{_num(min(r.values))}..{_num(max(r.values))}" if r.values else "-"
        target = f"{r.op} {_num(r.target)}" if r.op else ""
        ratio = f"{r.ratio:.2f}x" if not math.isnan(r.ratio) else ""
        verdict = {True: "met", False: "MISSED", None: ""}[r.met]
        if not r.values:
            verdict = f"not run: {r.note[:40]}..." if r.note else "not run"
        lines.append(f"{r.label:<44} {_num(r.median):>10} {spread:>21} {len(r.values):>3} "
                     f"{r.unit:<6} {target:>12} {ratio:>7}  {verdict}".rstrip())
    return "\n".join(lines)
