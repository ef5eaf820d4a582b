"""The readable form of a node's status document (``ganglion status``), with rich.

The document is what :func:`ganglion.status.build_status` makes; this module only
reads it, and tolerates keys it does not know or that are missing (a node of
another version may answer).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_status(doc: dict[str, Any], console: Console | None = None) -> None:
    """Print the status document as a heading line and a few tables.

    Args:
        doc: the document a node answered.
        console: where to print; standard output by default.
    """
    out = console or Console()
    out.print(_heading(doc.get("node", {})))
    c = doc.get("counters", {})
    out.print(f"dropped {c.get('dropped', 0)}, bad MAC {c.get('bad_mac', 0)}, "
              f"undecodable {c.get('decode_errors', 0)}", highlight=False)
    for table in (_peers(doc), _types(doc), _streams(doc), _plugins(doc), _sensors(doc)):
        out.print(table)
    bus = doc.get("bus")
    if bus:
        out.print(f"plugin bus: {', '.join(bus.get('endpoints', []))}; received "
                  f"{bus.get('received', 0)}, published {bus.get('published', 0)}, forwarded "
                  f"{bus.get('forwarded', 0)}, delivered {bus.get('delivered', 0)}, dropped "
                  f"{bus.get('dropped', 0)}, malformed {bus.get('malformed', 0)}, refused "
                  f"{bus.get('refused', 0)}; subscriptions: "
                  f"{', '.join(bus.get('subscriptions', [])) or 'none'}", highlight=False)
    else:
        out.print("plugin bus: off", highlight=False)


def _heading(node: dict[str, Any]) -> str:
    uptime = node.get("uptime_s")
    up = f", up {_duration(uptime)}" if isinstance(uptime, int | float) else ""
    return (f"[bold]node {node.get('name', '?')}[/bold] ({node.get('id', '?')}) on "
            f"{node.get('interface_name', '?')} {node.get('interface', '?')}:"
            f"{node.get('port', '?')}, ganglion {node.get('version', '?')}, pid "
            f"{node.get('pid', '?')}{up}\nstate directory {node.get('state_dir')}")


def _peers(doc: dict[str, Any]) -> Table:
    rows = doc.get("peers", [])
    table = Table(title=f"peers ({len(rows)})", title_justify="left")
    for col in ("name", "id", "role", "address", "version", "seen", "publishes"):
        table.add_column(col)
    for p in rows:
        ago = p.get("seen_s_ago")
        table.add_row(p.get("name", ""), p.get("id", "")[:16], p.get("role", ""),
                      p.get("address", ""), p.get("version", ""),
                      "" if ago is None else f"{ago:g} s ago", ", ".join(p.get("publishes", [])))
    return table


def _types(doc: dict[str, Any]) -> Table:
    types = doc.get("types", {})
    table = Table(title=f"types ({len(types)})", title_justify="left")
    table.add_column("type")
    table.add_column("group")
    for col in ("sent", "received", "lost", "duplicates"):
        table.add_column(col, justify="right")
    for name, t in types.items():
        table.add_row(name, t.get("group") or "(agreeing)", str(t.get("sent", 0)),
                      str(t.get("received", 0)), str(t.get("lost", 0)),
                      str(t.get("duplicates", 0)))
    return table


def _streams(doc: dict[str, Any]) -> Table:
    rows = doc.get("streams", [])
    omitted = doc.get("streams_omitted", 0)
    more = f", {omitted} more not listed" if omitted else ""
    table = Table(title=f"streams received ({len(rows)}{more})", title_justify="left")
    for col in ("type", "from", "key"):
        table.add_column(col)
    for col in ("received", "lost", "duplicates", "reordered"):
        table.add_column(col, justify="right")
    for s in rows:
        sender = s.get("node_name") or s.get("node", "")[:8]
        key = s.get("key")
        table.add_row(s.get("type", ""), sender, "" if key is None else str(key),
                      str(s.get("received", 0)), str(s.get("lost", 0)),
                      str(s.get("duplicates", 0)), str(s.get("reordered", 0)))
    return table


def _plugins(doc: dict[str, Any]) -> Table:
    plugins = doc.get("plugins", {})
    table = Table(title=f"plugins ({len(plugins)})", title_justify="left")
    for col in ("plugin", "state", "restarts", "crashes", "last error"):
        table.add_column(col)
    for name, p in plugins.items():
        table.add_row(name, p.get("state", ""), str(p.get("restarts", 0)),
                      str(p.get("crashes", 0)), p.get("last_error") or "")
    return table


def _sensors(doc: dict[str, Any]) -> Table:
    rows = doc.get("sensors", [])
    table = Table(title=f"sensors found ({len(rows)})", title_justify="left")
    for col in ("sensor", "name", "kind", "state", "published", "last error"):
        table.add_column(col)
    for s in rows:
        state = ("failing" if s.get("failing") else "reading") if s.get("running") else "stopped"
        published = s.get("published")
        table.add_row(s.get("id", ""), s.get("name", ""), s.get("kind", ""), state,
                      "" if published is None else str(published), s.get("last_error") or "")
    return table


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"
