"""The dashboard's JSON API and event stream, over real sockets with real nodes on loopback.

A member node publishes simulated readings; the dashboard runs on an observer
node and serves HTTP on 127.0.0.1; the client is aiohttp's, over TCP.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dash_support import LOOPBACK, dashboard, make_log, parse_events, run, until

from ganglion import message
from ganglion.dashboard.history import HistoryQuery, query_history
from ganglion.dashboard.live import LiveReading
from hardware.readings import Humidity, Temperature

N = 20


async def get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(url, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def publish_series(pub: Any, count: int) -> dict[str, Any]:
    """Publish ``count`` readings of two temperature sensors and one humidity sensor."""
    last: dict[str, Any] = {}
    for i in range(count):
        for msg in (Temperature("sim:a", 20.0 + i / 8), Temperature("sim:b", 10.0 - i / 4),
                    Humidity("sim:h", 40.0 + i)):
            await pub.publish(msg)
            last[msg.sensor] = msg
        await asyncio.sleep(0.01)
    return last


def test_every_endpoint_shows_what_was_published(port: int, tmp_path: Path) -> None:
    async def main() -> None:
        async with dashboard(port, tmp_path) as (pub, board), aiohttp.ClientSession() as http:
            base = board.url
            # Published before the dashboard knew the types: last values bring them in.
            await pub.publish(Temperature("sim:a", 1.5))
            await pub.wait_for_group("sensors.Temperature")
            await pub.publish(Humidity("sim:h", 2.5))
            await pub.wait_for_group("sensors.Humidity")
            await until(lambda: len(board.live.latest()) >= 2, "the last values")
            last = await publish_series(pub, N)

            async def all_latest() -> bool:
                _status, body = await get(http, base + "api/latest")
                got = {r["sensor"]: r["data"] for r in body}
                return all(got.get(s) == {"sensor": s, **_fields(m)} for s, m in last.items())

            await until(all_latest, "/api/latest to hold the last published readings")
            status, latest = await get(http, base + "api/latest")
            assert status == 200
            assert {(r["type"], r["sensor"]) for r in latest} == {
                ("sensors.Temperature", "sim:a"), ("sensors.Temperature", "sim:b"),
                ("sensors.Humidity", "sim:h")}
            for r in latest:
                assert r["node"] == pub.node_id.hex()
                assert set(r) >= {"type", "node", "sensor", "sent_ns", "data", "seq",
                                  "received_ns", "clock_synced", "replayed"}

            status, body = await get(http, base + "api/map")
            assert status == 200 and body["types"] == pub.types()

            await until(lambda: pub.node_id.hex() in {n["id"] for n in board.nodes.as_json()},
                        "the publisher in the node list")
            status, nodes = await get(http, base + "api/nodes")
            by_id = {n["id"]: n for n in nodes}
            assert by_id[pub.node_id.hex()]["name"] == "publisher"
            assert by_id[pub.node_id.hex()]["live"] is True
            assert "sensors.Temperature" in by_id[pub.node_id.hex()]["publishes"]
            assert by_id[board.node.node_id.hex()]["self"] is True

            status, stats = await get(http, base + "api/stats")
            assert stats["types"]["sensors.Temperature"]["received"] >= 2 * N
            assert stats["types"]["sensors.Temperature"]["lost"] == 0
            [stream] = [s for s in stats["streams"] if s["type"] == "sensors.Temperature"]
            assert stream["node"] == pub.node_id.hex() and stream["received"] >= 2 * N
            # nothing lost on loopback: repair had nothing to do, and says so per stream
            assert (stream["repaired"], stream["permanently_lost"]) == (0, 0)

            status, types = await get(http, base + "api/types")
            assert types["sensors.Temperature"]["fields"] == {"celsius": "°C"}
            assert types["sensors.Humidity"]["fields"] == {"percent": "%"}

            status, page = await get(http, base)
            assert status == 200 and "uPlot.iife.min.js" in page and "app.js" in page
            for path in ("static/app.js", "static/style.css",
                         "static/vendor/uplot/uPlot.iife.min.js",
                         "static/vendor/uplot/uPlot.min.css", "static/vendor/uplot/LICENSE"):
                async with http.get(base + path) as resp:
                    assert resp.status == 200, path
                    assert len(await resp.read()) > 100, path

            status, body = await get(http, base + "api/history?type=sensors.Temperature&field=celsius")
            assert status == 404 and "no history" in body["error"]
            status, body = await get(http, base + "api/nope")
            assert status == 404 and "no such API endpoint" in body["error"]

    run(main())


def _fields(msg: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(msg).items() if k != "sensor"}


def test_history_endpoint_and_its_bad_requests(port: int, tmp_path: Path) -> None:
    now_ns = time.time_ns()
    node = "ab" * 8
    readings = [("sensors.Temperature", node, now_ns - (600 - i) * 10**9,
                 {"sensor": "s1" if i % 2 else "s2", "celsius": float(i % 37)})
                for i in range(600)]
    db = tmp_path / "log.db"
    make_log(db, readings)

    async def main() -> None:
        async with dashboard(port, tmp_path, db=db) as (_pub, board), \
                aiohttp.ClientSession() as http:
            base = board.url + "api/history"
            since, until_s = (now_ns - 700 * 10**9) / 1e9, now_ns / 1e9
            status, body = await get(http, base, params={
                "type": "sensors.Temperature", "field": "celsius", "since": str(since),
                "until": str(until_s), "points": "30"})
            assert status == 200, body
            assert body["unit"] == "°C" and body["type"] == "sensors.Temperature"
            import sqlite3
            conn = sqlite3.connect(":memory:")
            conn.execute("ATTACH DATABASE ? AS log", (f"{db.as_uri()}?mode=ro",))
            want = query_history(conn, HistoryQuery("sensors.Temperature", "celsius",
                                                    int(since * 1e9), int(until_s * 1e9), 30),
                                 schema="log")
            conn.close()
            assert body["series"] == [s.as_json() for s in want]
            assert sum(sum(s["count"]) for s in body["series"]) == 600
            assert {s["sensor"] for s in body["series"]} == {"s1", "s2"}
            assert all(len(s["t"]) <= 30 for s in body["series"])

            bad = [
                ({"type": "sensors.Nope", "field": "celsius"}, 404, "not in the log"),
                ({"type": "sensors.Temperature", "field": "kelvin"}, 404, "has no field"),
                ({"type": "sensors.Temperature", "field": "celsius", "since": "20",
                  "until": "10"}, 400, "must be before"),
                ({"type": "sensors.Temperature", "field": "celsius", "points": "99999999"},
                 400, "out of range"),
                ({"type": "sensors.Temperature"}, 400, "field is required"),
                ({"type": "sensors.Temperature", "field": "celsius", "since": "x"}, 400,
                 "not a time"),
            ]
            for params, code, words in bad:
                status, body = await get(http, base, params=params)
                assert status == code, (params, body)
                assert words in body["error"] and "\n" not in body["error"], body

    run(main())


async def read_events(resp: aiohttp.ClientResponse, want: Any, timeout: float = 10.0
                      ) -> list[tuple[str, str, Any]]:
    """Read the stream until ``want(events)`` holds."""
    text = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        events = parse_events(text.rsplit("\n\n", 1)[0] if "\n\n" in text else "")
        if want(events):
            return events
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"stream never had what was wanted; got {events[-3:]}")
        chunk = await asyncio.wait_for(resp.content.readany(), left)
        if not chunk:
            raise AssertionError("the stream ended")
        text += chunk.decode()


def _seqs(events: list[tuple[str, str, Any]], sensor: str) -> list[int]:
    return [r["seq"] for _, name, data in events if name == "readings" for r in data
            if r["sensor"] == sensor]


def test_event_stream_snapshot_deltas_and_last_event_id(port: int, tmp_path: Path) -> None:
    async def main() -> None:
        async with dashboard(port, tmp_path) as (pub, board), aiohttp.ClientSession() as http:
            await pub.publish(Temperature("sim:a", 1.0))
            await pub.wait_for_group("sensors.Temperature")
            await until(lambda: board.live.latest(), "a first reading")
            url = board.url + "api/events"
            async with http.get(url) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                events = await read_events(resp, lambda ev: any(n == "snapshot" for _, n, _ in ev))
                snap_id, _, snap = next(e for e in events if e[1] == "snapshot")
                assert snap["latest"][0]["data"] == {"sensor": "sim:a", "celsius": 1.0}
                assert snap["map"] == pub.types() and snap_id == snap["last_id"]
                assert [w[2] for w in snap["window"]] == ["sim:a"]
                for i in range(5):
                    await pub.publish(Temperature("sim:a", 2.0 + i))
                events = await read_events(resp, lambda ev: len(_seqs(ev, "sim:a")) >= 5
                                           and any(n == "status" for _, n, _ in ev))
                seen = _seqs(events, "sim:a")
                assert seen == sorted(seen) and len(seen) == 5
                last_id = [eid for eid, n, _ in events if n == "readings"][-1]
            # Away for a while: these five are missed, then asked for by Last-Event-ID.
            for i in range(5):
                await pub.publish(Temperature("sim:a", 10.0 + i))
            await until(lambda: board.live.latest()[0].data["celsius"] == 14.0, "the five")
            async with http.get(url, headers={"Last-Event-ID": last_id}) as resp:
                events = await read_events(resp, lambda ev: len(_seqs(ev, "sim:a")) >= 5)
                assert not any(n == "snapshot" for _, n, _ in events)
                values = [r["data"]["celsius"] for _, n, d in events if n == "readings" for r in d]
                assert values == [10.0, 11.0, 12.0, 13.0, 14.0]
            # An id from another server run (or too old): a fresh snapshot.
            async with http.get(url, headers={"Last-Event-ID": "feedface-3"}) as resp:
                events = await read_events(resp, lambda ev: any(n == "snapshot" for _, n, _ in ev))
                snap = next(d for _, n, d in events if n == "snapshot")
                assert snap["latest"][0]["data"]["celsius"] == 14.0

    run(main())


def test_a_browser_that_stops_reading_is_dropped(port: int, tmp_path: Path) -> None:
    async def main() -> None:
        async with dashboard(port, tmp_path, client_queue=4) as (_pub, board):
            _reader, writer = await _tiny_connection(board.port)
            writer.write(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await until(lambda: len(board._clients) == 1, "the stream to open")
            big = "x" * 20_000
            for i in range(2000):  # 40 MB the client never reads
                board.live.add(LiveReading.build("t.Big", "aa" * 8, {"sensor": "s", "v": i, "pad": big},
                                             seq=i, sent_ns=i, received_ns=i))
                if i % 5 == 4:
                    board._flush()
                    await asyncio.sleep(0)
                if board.dropped_clients:
                    break
            await until(lambda: board.dropped_clients == 1, "the stalled browser to be dropped")
            assert not board._clients
            writer.close()

    run(main())


async def _tiny_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection with a small receive buffer, so a non-reader stalls soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (LOOPBACK, port))
    return await asyncio.open_connection(sock=sock, limit=1024)


def test_the_token_is_enforced(port: int, tmp_path: Path) -> None:
    async def main() -> None:
        async with dashboard(port, tmp_path, token="s3cret-token") as (_pub, board):
            base = board.url
            # unsafe: keep cookies of an IP-address host (as a browser does)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                for path in ("", "api/map", "api/latest", "api/events", "static/app.js"):
                    status, body = await get(http, base + path)
                    assert status == 401, path
                    assert "token" in body["error"]
                status, _ = await get(http, base + "api/map?token=wrong")
                assert status == 401
                status, _ = await get(http, base + "api/map",
                                      headers={"Authorization": "Bearer s3cret-token"})
                assert status == 200
                async with http.get(base + "?token=s3cret-token") as resp:
                    assert resp.status == 200
                    assert "ganglion_dashboard" in resp.cookies
                status, body = await get(http, base + "api/map")  # the cookie now
                assert status == 200 and "types" in body

    run(main())


def test_the_core_node_does_not_import_aiohttp() -> None:
    import subprocess

    code = ("import sys, ganglion, ganglion.node, ganglion.cli.main, ganglion.dashboard.plugin; "
            "print('aiohttp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("listen", ["0.0.0.0:0"])
def test_exposure_notice_says_who_can_see_and_warns_without_token(listen: str) -> None:
    from ganglion.dashboard.plugin import exposure_notice

    assert exposure_notice("127.0.0.1", 8080, token=False) is None
    assert exposure_notice("::1", 8080, token=False) is None
    line = exposure_notice("0.0.0.0", 8080, token=False)
    assert line is not None and "every machine" in line and "WARNING" in line
    line = exposure_notice("192.168.1.5", 8080, token=True)
    assert line is not None and "192.168.1.5" in line and "WARNING" not in line


@message("dashtest.Air", key="sensor")
@dataclass
class Air:
    """A type whose unit only its declaration says (no field-name convention for co2)."""

    sensor: str
    co2: float = field(metadata={"unit": "ppm", "kind": "carbon_dioxide"})


def test_declared_units_win_over_conventions(port: int, tmp_path: Path) -> None:
    async def main() -> None:
        async with dashboard(port, tmp_path) as (pub, board), aiohttp.ClientSession() as http:
            await pub.publish(Air("air:1", 415.0))
            await pub.wait_for_group("dashtest.Air")
            await until(lambda: any(r.type == "dashtest.Air" for r in board.live.latest()),
                        "the air reading")
            status, types = await get(http, board.url + "api/types")
            assert status == 200
            assert types["dashtest.Air"]["fields"] == {"co2": "ppm"}

    run(main())
