"""The web dashboard: latest values, live plots and history of every reading a node receives.

Served by any node (``ganglion node --dashboard HOST:PORT``) or its own observer
(``ganglion dashboard``); see docs/dashboard.md. The HTTP side needs the
``dashboard`` extra (aiohttp) and is imported only when a dashboard starts
(:mod:`ganglion.dashboard.server`); the rest of this package is plain Python.
"""

from __future__ import annotations

__all__: list[str] = []
