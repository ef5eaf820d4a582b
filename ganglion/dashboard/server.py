"""The dashboard's HTTP server (aiohttp): the page, the JSON API and the event stream.

Theory of operation: :class:`Dashboard` subscribes its node to every type of the
agreed map (and to types agreed later, looking every ``status_interval``), as the
logger does, with ``last_value=True`` so the page has every sensor's value at
once. Readings go into :class:`~ganglion.dashboard.live.LiveState`; every
``flush_interval`` the readings taken become one ``readings`` event, encoded once
and queued to every connected browser. Each browser has a bounded queue
(``client_queue`` events): one that stops reading (a sleeping laptop, a slow link)
fills it and is dropped (counted), never buffered without limit; its
``EventSource`` reconnects with ``Last-Event-ID`` and gets what it missed or a
fresh snapshot. A ``status`` event (map, nodes, counters, types) follows every
``status_interval``; a comment line keeps idle connections open.

With a token, every request needs it: ``Authorization: Bearer``, the
``ganglion_dashboard`` cookie, or ``?token=`` (which sets the cookie, so a link
with the token opens the page). Requests without it get 401.

This module imports aiohttp; it is imported only when a dashboard is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ganglion import __version__
from ganglion.dashboard.history import Rollup, logged_types, query_history, type_units
from ganglion.dashboard.live import DEFAULT_RING, LiveReading, LiveState, encode_event
from ganglion.dashboard.params import BadRequest, history_query
from ganglion.dashboard.units import field_unit
from ganglion.dashboard.view import NodeBook, stats_json, types_json
from ganglion.errors import LogDatabaseError
from ganglion.logger.schema import read_only_uri
from ganglion.types import as_dict

__all__ = ["COOKIE", "Dashboard"]

_log = logging.getLogger(__name__)

#: The cookie a ``?token=`` link sets.
COOKIE = "ganglion_dashboard"
_STATIC = resources.files("ganglion.dashboard") / "static"
_KEEPALIVE = b": keep-alive\n\n"


class _Client:
    """One connected browser's event queue (bounded; overflowing drops the browser)."""

    __slots__ = ("dropped", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=size)
        self.dropped = False

    def offer(self, payload: bytes) -> bool:
        """Queue one event; False (and the browser is dropped) when the queue is full."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(payload)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class Dashboard:
    """A web dashboard of one node's readings (see the module doc).

    Args:
        node: a started :class:`ganglion.Node` (an observer is fine).
        host: the address to listen on.
        port: the TCP port (0: any free one; see :attr:`port` once started).
        db: the SQLite log to read history from; None for live values only.
        cache: the rollup cache file for ``db``; None for the user's cache directory;
            a failure to create it leaves history slower, not off.
        token: required on every request when set.
        ring: readings kept per series for the live plot.
        flush_interval: seconds between ``readings`` events.
        status_interval: seconds between ``status`` events (and looks for new types).
        keepalive: seconds of silence before a keep-alive comment.
        client_queue: events queued per browser before it is dropped.
    """

    def __init__(self, node: Any, *, host: str = "127.0.0.1", port: int = 8080,
                 db: Path | None = None, cache: Path | None = None, token: str | None = None,
                 ring: int = DEFAULT_RING, flush_interval: float = 0.1,
                 status_interval: float = 1.0, keepalive: float = 15.0,
                 client_queue: int = 256) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.db = db
        self._cache_path = cache
        self.token = token
        self.live = LiveState(secrets.token_hex(4), ring=ring)
        self.flush_interval = flush_interval
        self.status_interval = status_interval
        self.keepalive = keepalive
        self.client_queue = client_queue
        self.rollup: Rollup | None = None
        self.nodes = NodeBook()
        self.dropped_clients = 0
        self._clients: set[_Client] = set()
        self._subs: dict[str, Any] = {}
        self._logged: dict[str, dict[str, str | None]] = {}
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, open the log (if any) and listen.

        Raises:
            LogDatabaseError: ``db`` is not a readable ganglion log.
            OSError: the address cannot be listened on.
        """
        if self.db is not None:
            await asyncio.to_thread(self._open_history)
        self.subscribe_new()
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/map", self._api_map)
        app.router.add_get("/api/nodes", self._api_nodes)
        app.router.add_get("/api/latest", self._api_latest)
        app.router.add_get("/api/stats", self._api_stats)
        app.router.add_get("/api/types", self._api_types)
        app.router.add_get("/api/history", self._api_history)
        app.router.add_get("/api/events", self._api_events)
        app.router.add_get("/api/{rest:.*}", self._api_unknown)
        app.router.add_static("/static/", Path(str(_STATIC)), follow_symlinks=False)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            for sub in self._subs.values():
                sub.close()
            self._subs.clear()
            raise
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self._tasks = [asyncio.create_task(self._flush_loop()),
                       asyncio.create_task(self._status_loop())]
        if self.rollup is not None:
            self._tasks.append(asyncio.create_task(self._rollup_loop()))

    async def close(self) -> None:
        """Stop serving, end every event stream and unsubscribe."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for client in list(self._clients):
            client.dropped = True
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for sub in self._subs.values():
            sub.close()
        self._subs.clear()

    @property
    def url(self) -> str:
        """The page's address (``http://host:port/``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _open_history(self) -> None:
        assert self.db is not None
        from ganglion.dashboard.history import default_cache_path

        cache = self._cache_path or default_cache_path(self.db)
        try:
            self.rollup = Rollup(self.db, cache)
        except (OSError, sqlite3.Error) as exc:
            _log.warning("dashboard: no rollup cache at %s (%s); long history ranges will be "
                         "slow", cache, exc)
            self._check_log()
        self._read_logged_types()

    def _read_logged_types(self) -> None:
        """What the log knows of each type (numeric fields, units), for the page's plots."""
        conn, _ = self._history_conn()
        try:
            self._logged = logged_types(conn, schema="log")
        finally:
            conn.close()

    def _check_log(self) -> None:
        from ganglion.logger.schema import open_log

        assert self.db is not None
        open_log(self.db, write=False).close()

    def _history_conn(self) -> tuple[sqlite3.Connection, int | None]:
        if self.rollup is not None:
            return self.rollup.connect(), self.rollup.rolled_up_to
        assert self.db is not None
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute("ATTACH DATABASE ? AS log", (read_only_uri(self.db),))
        return conn, None

    # -- readings in ---------------------------------------------------------------------

    def subscribe_new(self) -> list[str]:
        """Subscribe to every type of the agreed map not yet shown; returns the new ones."""
        new = [name for name in self.node.types() if name not in self._subs]
        for name in new:
            self._subs[name] = self.node.subscribe(name, callback=self._on_reading,
                                                   propose=False, last_value=True)
        return new

    def _on_reading(self, msg: Any, info: Any) -> None:
        self.live.add(LiveReading.build(
            info.type_name, info.sender.hex(), as_dict(msg), seq=info.seq, sent_ns=info.sent_ns,
            received_ns=info.received_ns, clock_synced=info.clock_synced,
            replayed=info.replayed, last_value=info.last_value))

    # -- events out ----------------------------------------------------------------------

    def _broadcast(self, payload: bytes) -> None:
        for client in list(self._clients):
            if not client.offer(payload):
                self._clients.discard(client)
                self.dropped_clients += 1
                _log.info("dashboard: dropped a browser that stopped reading")

    def _flush(self) -> None:
        event = self.live.flush()
        if event is not None:
            self._broadcast(event.payload)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self._flush()

    async def _status_loop(self) -> None:
        while True:
            try:
                self.subscribe_new()
                self._broadcast(encode_event("status", self.status()))
            except Exception:  # a bug here must not end the page's updates
                _log.exception("dashboard: status update failed")
            await asyncio.sleep(self.status_interval)

    async def _rollup_loop(self) -> None:
        assert self.rollup is not None
        while True:
            try:
                done = await asyncio.to_thread(self.rollup.refresh, max_rows=200_000)
                if not done:
                    await asyncio.to_thread(self._read_logged_types)
            except (LogDatabaseError, sqlite3.Error) as exc:
                _log.warning("dashboard: %s", exc)
                done = 0
            await asyncio.sleep(0.05 if done else 5.0)

    def status(self) -> dict[str, Any]:
        """The ``status`` event's data: map, nodes, counters, types with units."""
        self.nodes.update(self.node, loop_now=asyncio.get_running_loop().time())
        return {"map": self.node.types(), "nodes": self.nodes.as_json(), "now_ns": time.time_ns(),
                "stats": stats_json(self.node),
                "types": types_json(self.node.types(), self.live, self._logged),
                "server": {"clients": len(self._clients), "dropped_clients": self.dropped_clients,
                           "received": self.live.received, "refused": self.live.refused}}

    def snapshot(self) -> dict[str, Any]:
        """The ``snapshot`` event's data: everything a new browser starts from."""
        return {"epoch": self.live.epoch, "last_id": self.live.last_id, "ring": self.live.ring,
                "history": self.db is not None, "node": self.node.name, "version": __version__,
                "latest": [r.as_json() for r in self.live.latest()],
                "window": self.live.window(), **self.status()}

    # -- HTTP ----------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if self.token is None:
            return await handler(request)
        given = request.query.get("token")
        offered = [given, request.cookies.get(COOKIE)]
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered.append(auth[7:])
        if not any(t is not None and hmac.compare_digest(t.encode(), self.token.encode())
                   for t in offered):
            return _error(401, "a token is required: open the link with ?token=... or send "
                          "'Authorization: Bearer <token>'")
        response = await handler(request)
        if given is not None and not response.prepared:
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        page = (_STATIC / "index.html").read_bytes()
        response = web.Response(body=page, content_type="text/html", charset="utf-8")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _api_map(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"types": self.node.types()})

    async def _api_nodes(self, request: web.Request) -> web.StreamResponse:
        self.nodes.update(self.node, loop_now=asyncio.get_running_loop().time())
        return web.json_response(self.nodes.as_json())

    async def _api_latest(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([r.as_json() for r in self.live.latest()])

    async def _api_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(stats_json(self.node))

    async def _api_types(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(types_json(self.node.types(), self.live, self._logged))

    async def _api_unknown(self, request: web.Request) -> web.StreamResponse:
        return _error(404, f"no such API endpoint: {request.path}; see docs/dashboard.md")

    async def _api_history(self, request: web.Request) -> web.StreamResponse:
        try:
            q = history_query(request.query, now_s=time.time())
            if self.db is None:
                raise BadRequest("no history: this dashboard has no log (start it with --db, "
                                 "or run the node's log plugin)", 404)
            body = await asyncio.to_thread(self._history, q)
        except BadRequest as exc:
            return _error(exc.status, str(exc))
        except (sqlite3.Error, LogDatabaseError) as exc:
            return _error(503, f"the log cannot be read now: {exc}")
        return web.json_response(body)

    def _history(self, q: Any) -> dict[str, Any]:
        conn, rolled = self._history_conn()
        try:
            known = conn.execute("SELECT fields FROM log.types WHERE name = ?", (q.type,)).fetchall()
            if not known:
                raise BadRequest(f"type {q.type!r} is not in the log", 404)
            if not any(f.get("name") == q.field for row in known for f in json.loads(row[0])):
                raise BadRequest(f"type {q.type!r} has no field {q.field!r} in the log", 404)
            series = query_history(conn, q, schema="log", rolled_up_to=rolled)
            units = type_units(conn, q.type, schema="log")
        finally:
            conn.close()
        since, until, width, _level = q.buckets()
        return {"type": q.type, "field": q.field, "unit": field_unit(q.type, q.field, units),
                "since": since / 1e9, "until": until / 1e9, "bucket_s": width / 1e9,
                "series": [s.as_json() for s in series]}

    async def _api_events(self, request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id", "")
        self._flush()  # readings taken so far go to the browsers already connected
        missed = self.live.since(last) if last else None
        first = (b"".join(e.payload for e in missed) if missed is not None else
                 encode_event("snapshot", self.snapshot(), self.live.last_id))
        client = _Client(self.client_queue)
        self._clients.add(client)  # no await since the snapshot: nothing is missed
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n" + first)
            while True:
                try:
                    item = await asyncio.wait_for(client.queue.get(), self.keepalive)
                except TimeoutError:
                    item = _KEEPALIVE
                if item is None:
                    break
                parts = [item]
                while not client.queue.empty():
                    more = client.queue.get_nowait()
                    if more is None:
                        parts = []
                        break
                    parts.append(more)
                if not parts:
                    break
                await response.write(b"".join(parts))
        except ConnectionError:
            pass  # the browser went away (reset, broken pipe, "connection lost")
        finally:
            self._clients.discard(client)
        return response


def _error(status: int, reason: str) -> web.Response:
    """A JSON error with a one-line reason (also in the status line's text)."""
    return web.json_response({"error": reason}, status=status)
