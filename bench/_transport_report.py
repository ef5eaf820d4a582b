"""Turn trial results into the benchmark's table, ratios and JSON.

Theory of operation: trials are grouped by (payload size, system). Blast trials
give the throughput columns: sent and received are summed over trials, loss is
pooled (total lost / total sent), delivered msg/s is the *median* over trials of
each trial's received / (last arrival - first arrival); for a system that reports
its datagrams (ganglion) the row also carries the median messages per datagram.
Paced trials give the latency columns: the median over trials of each trial's p50 and p99. Ratios are
taken between those medians: b/a and b/c for delivered msg/s (higher is better
for ganglion) and for p50 latency (lower is better). A system that could not run
has no numbers and its reason is shown instead. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from _transport_common import TrialResult, median_or_nan

#: Letters the issue uses for the systems (the keyed ganglion rows: b+k MAC-only, b+e
#: encrypted).
LABELS = {"raw": "a", "ganglion": "b", "ganglion+key": "b+k", "ganglion+aead": "b+e",
          "lcm": "c", "ganglion+hist": "b+h"}
#: The rows compared with keyless ganglion in the same run (the keyed ones, and the one
#: with a history).
KEYED = ("ganglion+key", "ganglion+aead", "ganglion+hist")

#: The issue's targets for ganglion, shown next to the ratios (see bench/README.md).
TARGETS = {
    "throughput b/a": "> 1 where batching applies (64 B)",
    "throughput b/c": ">= 2",
    "p50 latency b/a": "<= 1.5",
    "p50 latency b/c": "(no target)",
}
#: Targets of the keyed rows against keyless ganglion (issue 21: encryption costs at most
#: 25 % of keyless 64 B throughput).
KEYED_TARGETS = {
    "throughput b+k/b": "(no target)",
    "throughput b+e/b": ">= 0.75 (64 B)",
    "throughput b+h/b": ">= 0.9 (issue 16: keeping the history)",
}
#: The publisher's own rate with a history against without (what keeping costs it).
SEND_TARGET = ">= 0.9 (issue 16)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One system's line in the table for one payload size (see module doc)."""

    system: str
    blast_trials: int
    paced_trials: int
    sent: int
    received: int
    loss: float
    delivered_per_s: float
    sent_per_s: float
    p50_us: float
    p99_us: float
    paced_loss: float
    per_datagram: float = math.nan
    note: str = ""
    loop: str = ""  # the event loop a system's processes ran on, where it reports one

    def to_json(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict (NaN becomes null)."""
        return {k: _json_num(v) for k, v in asdict(self).items()}


def summarize(system: str, trials: Iterable[TrialResult], note: str = "") -> Row:
    """Aggregate one system's trials at one payload size into a :class:`Row`.

    Args:
        system: the system's name.
        trials: its trials (blast and paced, any order).
        note: a reason to show when the system could not run or some trials failed.

    Returns:
        The row; columns without any trial are NaN.
    """
    items = list(trials)
    blast = [t for t in items if t.mode == "blast"]
    paced = [t for t in items if t.mode == "paced"]
    sent = sum(t.sent for t in blast)
    received = sum(t.received for t in blast)
    paced_sent = sum(t.sent for t in paced)
    paced_received = sum(t.received for t in paced)
    return Row(
        system=system,
        blast_trials=len(blast),
        paced_trials=len(paced),
        sent=sent,
        received=received,
        loss=_pooled_loss(sent, received),
        delivered_per_s=median_or_nan([t.delivered_per_s for t in blast]),
        sent_per_s=median_or_nan([t.sent_per_s for t in blast]),
        p50_us=median_or_nan([t.p50_us for t in paced if t.p50_us is not None]),
        p99_us=median_or_nan([t.p99_us for t in paced if t.p99_us is not None]),
        paced_loss=_pooled_loss(paced_sent, paced_received),
        per_datagram=median_or_nan([_per_datagram(t) for t in blast]),
        note=note,
        loop="/".join(sorted({str(t.extra["loop"]) for t in items if t.extra.get("loop")})),
    )


def ratios(rows: Sequence[Row]) -> dict[str, float]:
    """Return ganglion's ratios to raw (a) and LCM (c): throughput and p50 latency.

    Args:
        rows: the rows of one payload size.

    Returns:
        ``{"throughput b/a", "throughput b/c", "p50 latency b/a", "p50 latency b/c"}``,
        NaN where a side is missing.
    """
    by = {r.system: r for r in rows}
    out: dict[str, float] = {}
    for other in ("raw", "lcm"):
        tag = f"b/{LABELS[other]}"
        b, o = by.get("ganglion"), by.get(other)
        out[f"throughput {tag}"] = _ratio(
            b.delivered_per_s if b else math.nan, o.delivered_per_s if o else math.nan
        )
        out[f"p50 latency {tag}"] = _ratio(b.p50_us if b else math.nan, o.p50_us if o else math.nan)
    return out


def keyed_costs(rows: Sequence[Row]) -> dict[str, tuple[float, float]]:
    """Each keyed row against keyless ganglion of the same run.

    Args:
        rows: the rows of one payload size.

    Returns:
        ``{"throughput b+k/b": (ratio, extra us per message), ...}`` for the keyed rows
        present: delivered msg/s over keyless ganglion's, and the extra receive-side
        time per message that implies (``1/keyed - 1/keyless``, in microseconds); NaN
        where a side is missing.
    """
    by = {r.system: r for r in rows}
    base = by.get("ganglion")
    out: dict[str, tuple[float, float]] = {}
    for system in KEYED:
        row = by.get(system)
        if row is None:
            continue
        keyed = row.delivered_per_s
        plain = base.delivered_per_s if base else math.nan
        extra = _ratio(1.0, keyed) - _ratio(1.0, plain)
        out[f"throughput {LABELS[system]}/b"] = (_ratio(keyed, plain), extra * 1e6)
    return out


def format_table(size: int, rows: Sequence[Row]) -> str:
    """Render one payload size's rows and ratios as fixed-width text.

    Args:
        size: the payload size in bytes.
        rows: the rows for that size, in display order.

    Returns:
        The table, ending with a newline.
    """
    head = (
        f"{'system':<13}{'sent':>10}{'received':>10}{'loss %':>8}"
        f"{'deliv msg/s':>13}{'send msg/s':>12}{'p50 us':>9}{'p99 us':>9}{'paced loss %':>14}"
    )
    lines = [
        f"payload {size} B  (blast: loss and delivered msg/s; paced 1 kHz: latency)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        name = f"({LABELS.get(r.system, '?')}) {r.system}"
        if len(name) > 12:  # the keyed rows: the name on its own line
            lines.append(name)
            name = ""
        if r.blast_trials == 0 and r.paced_trials == 0:
            lines.append(f"{name:<13}  skipped: {r.note}")
            continue
        lines.append(
            f"{name:<13}{r.sent:>10}{r.received:>10}{_fmt(r.loss * 100, 2):>8}"
            f"{_fmt(r.delivered_per_s, 0):>13}{_fmt(r.sent_per_s, 0):>12}"
            f"{_fmt(r.p50_us, 1):>9}{_fmt(r.p99_us, 1):>9}{_fmt(r.paced_loss * 100, 2):>14}"
        )
        if not math.isnan(r.per_datagram):
            on = f", event loop: {r.loop}" if r.loop else ""
            lines.append(f"{'':<13}  batching: {r.per_datagram:.1f} messages per datagram "
                         f"(blast){on}")
        if r.note:
            lines.append(f"{'':<13}  note: {r.note}")
    for key, value in ratios(rows).items():
        shown = "n/a" if math.isnan(value) else f"{value:.2f}x"
        lines.append(f"  {key:<16} {shown:>8}   target {TARGETS[key]}")
    for key, (value, extra_us) in keyed_costs(rows).items():
        shown = "n/a" if math.isnan(value) else f"{value:.2f}x"
        cost = "" if math.isnan(extra_us) else f", {extra_us:+.2f} us per message"
        lines.append(f"  {key:<16} {shown:>8}   target {KEYED_TARGETS[key]}{cost}")
    by = {r.system: r for r in rows}
    if "ganglion+hist" in by and "ganglion" in by:
        hist, plain = by["ganglion+hist"].sent_per_s, by["ganglion"].sent_per_s
        value = _ratio(hist, plain)
        shown = "n/a" if math.isnan(value) else f"{value:.2f}x"
        extra = (_ratio(1.0, hist) - _ratio(1.0, plain)) * 1e6
        cost = "" if math.isnan(extra) else f", {extra:+.2f} us per message"
        lines.append(f"  {'send b+h/b':<16} {shown:>8}   target {SEND_TARGET}{cost}")
    return "\n".join(lines) + "\n"


def report_json(
    sizes: Sequence[int],
    rows: Mapping[int, Sequence[Row]],
    trials: Sequence[TrialResult],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """Return every raw trial plus the aggregated rows and ratios as one JSON object."""
    return {
        "meta": dict(meta),
        "sizes": {
            str(size): {
                "rows": [r.to_json() for r in rows[size]],
                "ratios": {k: _json_num(v) for k, v in ratios(rows[size]).items()},
                "keyed": {k: {"ratio": _json_num(v), "extra_us_per_message": _json_num(e)}
                          for k, (v, e) in keyed_costs(rows[size]).items()},
            }
            for size in sizes
        },
        "trials": [t.to_json() for t in trials],
    }


def _per_datagram(trial: TrialResult) -> float:
    """Messages per datagram in a trial, where the system reports its datagrams."""
    published, datagrams = trial.extra.get("published"), trial.extra.get("datagrams_sent")
    if isinstance(published, int) and isinstance(datagrams, int) and datagrams > 0:
        return published / datagrams
    return math.nan


def _pooled_loss(sent: int, received: int) -> float:
    """Total lost over total sent, NaN when nothing was sent."""
    if sent <= 0:
        return math.nan
    return max(0.0, 1.0 - received / sent)


def _ratio(num: float, den: float) -> float:
    """num / den, NaN when either is missing or den is zero."""
    if math.isnan(num) or math.isnan(den) or den == 0:
        return math.nan
    return num / den


def _fmt(value: float, digits: int) -> str:
    """Format a number, or 'n/a' for NaN."""
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _json_num(value: Any) -> Any:
    """Map NaN to None so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
