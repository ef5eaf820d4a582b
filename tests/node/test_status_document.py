"""The status document built from a real node and plugin host, in process, on loopback.

What ``ganglion status`` shows must come from the node's own counters and its
plugins; a plugin whose ``status()`` fails must not spoil the document.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from node_support import LOOPBACK, free_port_pair, run, until

from ganglion.node import Node
from ganglion.plugins import PluginHost
from ganglion.status import build_status
from ganglion.types import Record

pytestmark = pytest.mark.usefixtures("multicast_loopback")


class Probes:
    """A plugin that reports two sensors, one of them failing."""

    name = "probes"
    publishes = ("test.Level",)
    subscribes = ()

    async def run(self, node: Any) -> None:
        await asyncio.Event().wait()

    def status(self) -> dict[str, Any]:
        return {"sensors": [{"id": "a", "running": True, "failing": False},
                            {"id": "b", "running": True, "failing": True,
                             "last_error": "CRC mismatch"}], "scans": 3}


class Broken:
    """A plugin whose status() raises."""

    name = "broken"
    publishes = ()
    subscribes = ()

    async def run(self, node: Any) -> None:
        await asyncio.Event().wait()

    def status(self) -> dict[str, Any]:
        raise RuntimeError("bug in status")


def test_the_document_holds_the_nodes_counters_peers_plugins_and_sensors(tmp_path: Path) -> None:
    port = free_port_pair()
    kw: dict[str, Any] = dict(interface=LOOPBACK, port=port, control_port=port + 1,
                              discovery=False, heartbeat_seconds=0.2)

    async def scenario() -> dict[str, Any]:
        async with Node(name="tank", state_dir=tmp_path / "a", **kw) as a, \
                Node(name="pump", state_dir=tmp_path / "b", **kw) as b:
            got: list[Any] = []
            a.subscribe("test.Level", callback=lambda m, i: got.append(m))
            host = PluginHost(a, [Probes(), Broken()])
            await host.start()
            try:
                await until(lambda: any(p.name == "pump" for p in a.peers()), "a peer")
                for i in range(5):
                    await b.publish(Record("test.Level", {"litres": float(i)}))
                    await asyncio.sleep(0.05)
                await until(lambda: len(got) >= 3, "readings from pump")
                return build_status(a, host, started=0.0)
            finally:
                await host.stop()

    doc = run(scenario())
    json.dumps(doc)  # plain JSON data throughout
    assert doc["node"]["name"] == "tank" and doc["node"]["interface"] == LOOPBACK
    assert [p["name"] for p in doc["peers"]] == ["pump"]
    assert doc["types"]["test.Level"]["received"] >= 3
    [stream] = [s for s in doc["streams"] if s["type"] == "test.Level"]
    assert stream["node_name"] == "pump" and stream["received"] >= 3
    assert doc["streams_omitted"] == 0 and doc["bus"] is None
    assert set(doc["plugins"]) == {"probes", "broken"}
    assert doc["plugins"]["probes"]["detail"] == {"scans": 3}
    assert "detail" not in doc["plugins"]["broken"]
    assert doc["sensors"] == [
        {"plugin": "probes", "id": "a", "running": True, "failing": False},
        {"plugin": "probes", "id": "b", "running": True, "failing": True,
         "last_error": "CRC mismatch"}]
