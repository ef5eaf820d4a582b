"""The dashboard page in a real headless Chromium (Debian's), driven by Playwright.

Two publisher nodes run in this process; the dashboard is a real ``ganglion
dashboard`` process (so it can be restarted) listening on 127.0.0.1; Chromium
opens its page. Checked: every type and node is shown; the latest values equal
the last readings published; after N readings each plot holds at least N points;
the console has no errors; the page reconnects and continues after the serving
process restarts; a token is enforced. A screenshot is saved under
``build/test-artefacts/`` (or ``$GANGLION_TEST_ARTEFACTS``).

Without Chromium or Playwright these tests skip, naming what is missing (and fail
under ``CI=true``, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dash_support import BROWSER_ARGS, CHROMIUM, LOOPBACK, make_log, node_kwargs, run, until

from ganglion.node import Node
from hardware.readings import Humidity, Temperature

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_support import REPO, NodeProc, Spawner, clean_env, wait_sync

N = 30
TOKEN = "tok-3f9a1c"


def _browser_problem() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian package chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (the dev extra has it)"
    return None


pytestmark = pytest.mark.skipif(_browser_problem() is not None, reason=str(_browser_problem()))


def artefact_dir() -> Path:
    where = Path(os.environ.get("GANGLION_TEST_ARTEFACTS", REPO / "build" / "test-artefacts"))
    where.mkdir(parents=True, exist_ok=True)
    return where


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path / "logs")
    try:
        yield spawner
    finally:
        spawner.close()


def start_dashboard(spawn: Spawner, port: int, web: int, *, env: dict[str, str] | None = None
                    ) -> NodeProc:
    proc = spawn("dashboard", "--iface", LOOPBACK, "--port", str(port),
                 "--listen", f"{LOOPBACK}:{web}", label="dashboard", env=env)
    wait_sync(lambda: "dashboard: http" in proc.out or proc.popen.poll() is not None,
              "the dashboard to listen", timeout=30)
    assert proc.popen.poll() is None, proc.describe()
    return proc


class Page:
    """A Chromium page that records console errors and page errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    async def js(self, code: str, *args: Any) -> Any:
        return await self.page.evaluate(code, *args)

    async def shown_value(self, type_name: str, node: str, sensor: str, field: str) -> str | None:
        sel = (f'td.value[data-type="{type_name}"][data-node="{node}"]'
               f'[data-sensor="{sensor}"][data-field="{field}"]')
        el = await self.page.query_selector(sel)
        return None if el is None else await el.get_attribute("data-value")

    async def points(self, type_name: str, field: str, node: str, sensor: str) -> int:
        return int(await self.js("([t, f, n, s]) => window.ganglionDashboard.chartPoints(t, f, n, s)",
                                 [type_name, field, node, sensor]))


async def publish_rounds(brewery: Node, cellar: Node, rounds: int, start: int) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for i in range(start, start + rounds):
        for node, msg in ((brewery, Temperature("sim:a", 20 + i / 10)),
                          (brewery, Temperature("sim:b", 5 + i / 3)),
                          (cellar, Humidity("sim:h", 30 + i / 7))):
            await node.publish(msg)
            last[msg.sensor] = msg
        await asyncio.sleep(0.05)
    return last


async def check_latest(page: Page, brewery: Node, cellar: Node, last: dict[str, Any]) -> None:
    want = {("sensors.Temperature", brewery.node_id.hex(), "sim:a", "celsius"): last["sim:a"].celsius,
            ("sensors.Temperature", brewery.node_id.hex(), "sim:b", "celsius"): last["sim:b"].celsius,
            ("sensors.Humidity", cellar.node_id.hex(), "sim:h", "percent"): last["sim:h"].percent}

    async def equal() -> bool:
        for key, value in want.items():
            shown = await page.shown_value(*key)
            if shown is None or float(shown) != value:
                return False
        return True

    await until(equal, "the page to show the last published values", timeout=20)


def test_the_page_shows_everything_plots_and_survives_a_restart(
        port: int, tmp_path: Path, spawn: Spawner) -> None:
    from playwright.async_api import async_playwright

    web = free_tcp_port()
    proc = start_dashboard(spawn, port, web)

    async def main() -> None:
        async with Node(**node_kwargs(port, tmp_path / "b", name="brewery")) as brewery, \
                Node(**node_kwargs(port, tmp_path / "c", name="cellar")) as cellar, \
                async_playwright() as pw:
            await publish_rounds(brewery, cellar, 1, 0)  # agree the types first
            for t in ("sensors.Temperature", "sensors.Humidity"):
                await brewery.wait_for_group(t)
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = Page(await browser.new_page(viewport={"width": 1400, "height": 1000}))
                await page.page.goto(f"http://{LOOPBACK}:{web}/")
                await until(lambda: page.js("document.querySelector('#conn').textContent === 'live'"),
                            "the page to connect")
                await until(lambda: page.js(
                    "document.querySelectorAll('#map tbody tr').length >= 2"), "the map")
                # The publishers send a type only once they hear (from the dashboard's
                # heartbeats) that it is wanted; until then readings stay local. Warm up
                # until every series is plotting live readings, then count N more.
                series = (("sensors.Temperature", "celsius", brewery, "sim:a"),
                          ("sensors.Temperature", "celsius", brewery, "sim:b"),
                          ("sensors.Humidity", "percent", cellar, "sim:h"))
                warm = 1

                async def flowing() -> bool:
                    nonlocal warm
                    await publish_rounds(brewery, cellar, 1, warm)
                    warm += 1
                    return all([await _at_least(page, t, f, n, s, 2) for t, f, n, s in series])

                await until(flowing, "live readings in every plot", timeout=30)
                last = await publish_rounds(brewery, cellar, N, warm)
                await check_latest(page, brewery, cellar, last)
                for t, f, n, s in (("sensors.Temperature", "celsius", brewery, "sim:a"),
                                   ("sensors.Temperature", "celsius", brewery, "sim:b"),
                                   ("sensors.Humidity", "percent", cellar, "sim:h")):
                    # Generous: under a loaded suite the headless page redraws late.
                    await until(lambda t=t, f=f, n=n, s=s: _at_least(page, t, f, n, s, N),
                                f"{N} points of {t} {s} in its plot", timeout=45)
                # Every type and every node of the network is on the page.
                types = await page.js("[...document.querySelectorAll('#map tbody tr')]"
                                      ".map(r => r.dataset.type)")
                assert sorted(types) == ["sensors.Humidity", "sensors.Temperature"]
                blocks = await page.js("[...document.querySelectorAll('#latest .type-block')]"
                                       ".map(b => b.dataset.type)")
                assert sorted(blocks) == ["sensors.Humidity", "sensors.Temperature"]
                await until(lambda: _names_shown(page, {"brewery", "cellar"}), "both nodes")
                units = await page.js("document.querySelector('#latest').textContent")
                assert "°C" in units and "%" in units
                shot = artefact_dir() / "dashboard.png"
                await page.page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                assert page.errors == [], page.errors

                # The serving process restarts; the page reconnects and goes on.
                proc.popen.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.popen.wait, 20)
                await until(lambda: page.js(
                    "document.querySelector('#conn').textContent !== 'live'"), "the page to notice")
                start_dashboard(spawn, port, web)
                await until(lambda: page.js("document.querySelector('#conn').textContent === 'live'"),
                            "the page to reconnect", timeout=30)
                last = await publish_rounds(brewery, cellar, 10, 100)
                await check_latest(page, brewery, cellar, last)
                # While the server was down, only the failed reconnects may have been logged.
                assert [e for e in page.errors if "api/events" not in e
                        and "ERR_CONNECTION_REFUSED" not in e] == [], page.errors
            finally:
                await browser.close()

    run(main(), timeout=150)


async def _at_least(page: Page, t: str, f: str, n: Node, s: str, count: int) -> bool:
    return await page.points(t, f, n.node_id.hex(), s) >= count


async def _names_shown(page: Page, names: set[str]) -> bool:
    shown = await page.js("[...document.querySelectorAll('#nodes tbody tr td:first-child')]"
                          ".map(td => td.textContent)")
    return names <= {s.split(" ")[0] for s in shown}


def test_the_token_is_enforced_in_the_browser(port: int, tmp_path: Path, spawn: Spawner) -> None:
    from playwright.async_api import async_playwright

    web = free_tcp_port()
    env = clean_env()
    env["GANGLION_DASHBOARD_TOKEN"] = TOKEN
    proc = start_dashboard(spawn, port, web, env=env)
    assert f"?token={TOKEN}" in proc.out  # the link to open

    async def main() -> None:
        async with Node(**node_kwargs(port, tmp_path / "b", name="brewery")) as brewery, \
                async_playwright() as pw:
            await brewery.publish(Temperature("sim:a", 21.25))
            await brewery.wait_for_group("sensors.Temperature")
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = Page(await browser.new_page())
                response = await page.page.goto(f"http://{LOOPBACK}:{web}/")
                assert response is not None and response.status == 401
                response = await page.page.goto(f"http://{LOOPBACK}:{web}/api/latest")
                assert response is not None and response.status == 401
                response = await page.page.goto(f"http://{LOOPBACK}:{web}/?token={TOKEN}")
                assert response is not None and response.status == 200
                await until(lambda: page.js("document.querySelector('#conn').textContent === 'live'"),
                            "the page to connect with the cookie")
                for _ in range(3):
                    await brewery.publish(Temperature("sim:a", 21.25))
                await until(lambda: page.shown_value("sensors.Temperature", brewery.node_id.hex(),
                                                     "sim:a", "celsius"), "the reading")
                assert float(await page.shown_value("sensors.Temperature", brewery.node_id.hex(),
                                                    "sim:a", "celsius") or 0) == 21.25
            finally:
                await browser.close()

    run(main(), timeout=90)



def test_history_windows_plot_the_log(port: int, tmp_path: Path, spawn: Spawner) -> None:
    from playwright.async_api import async_playwright

    now_ns = time.time_ns()
    node = "cd" * 8
    readings = [("sensors.Temperature", node, now_ns - (3000 - 10 * i) * 10**9,
                 {"sensor": sensor, "celsius": 15.0 + (i % 20) / 2 + (5 if sensor == "s2" else 0)})
                for i in range(300) for sensor in ("s1", "s2")]
    db = tmp_path / "log.db"
    make_log(db, readings)
    web = free_tcp_port()
    proc = spawn("dashboard", "--iface", LOOPBACK, "--port", str(port), "--listen",
                 f"{LOOPBACK}:{web}", "--db", str(db), "--cache", str(tmp_path / "cache.db"),
                 label="dashboard")
    wait_sync(lambda: "dashboard: http" in proc.out or proc.popen.poll() is not None,
              "the dashboard to listen", timeout=30)
    assert proc.popen.poll() is None, proc.describe()

    async def main() -> None:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = Page(await browser.new_page(viewport={"width": 1400, "height": 900}))
                await page.page.goto(f"http://{LOOPBACK}:{web}/")
                await until(lambda: page.js("document.querySelector('#conn').textContent === 'live'"),
                            "the page to connect")
                # The log's types are known without a live reading; history is offered.
                await until(lambda: page.js("!document.querySelector('button[data-window=\"3600\"]')"
                                            ".disabled && 'sensors.Temperature' in "
                                            "window.ganglionDashboard.state.types"), "the log's types")
                await page.page.click("button[data-window='3600']")
                counts_js = """() => {
                    const c = window.ganglionDashboard.state.charts.get('plot-sensors.Temperature|celsius');
                    if (!c || c.live) return null;
                    return c.u.data.slice(1).filter((_, i) => i % 3 === 0)
                        .map(a => a.filter(v => v !== null && v !== undefined).length);
                }"""
                await until(lambda: page.js(counts_js), "the history plot")
                # 300 readings per sensor, 10 s apart, in buckets of a few seconds: one each.
                assert await page.js(counts_js) == [300, 300]
                legend = await page.js("[...document.querySelectorAll('#plots .u-legend .u-series')]"
                                       ".filter(e => e.style.display !== 'none')"
                                       ".map(e => e.textContent.trim())")
                assert [t for t in legend if "s1" in t or "s2" in t] == [
                    "node-cdcd s1", "node-cdcd s2"], legend
                await page.page.screenshot(path=str(artefact_dir() / "dashboard-history.png"),
                                           full_page=True)
                assert page.errors == [], page.errors
            finally:
                await browser.close()

    run(main(), timeout=90)
