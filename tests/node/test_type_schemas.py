"""Schemas on the control channel: publishers announce, nodes without the class learn.

In-process nodes on 127.0.0.1 (every process has every class, so the network-learned
cache is read directly), and real processes: ``ganglion types --schema`` in a process
that never imported the type learns it from a ``ganglion node --sim`` publisher.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from node_support import Spawner, run, until
from test_node_loopback import connected, make, running
from test_node_processes import LO, start_node

from ganglion import quantity, type_schema
from ganglion.runtime.control_messages import SchemaAnnounce, SchemaField
from ganglion.types import message, type_of

pytestmark = pytest.mark.usefixtures("multicast_loopback")

NAME = "schematest.Chiller"


@message(NAME, key="sensor")
@dataclass
class Chiller:
    """Wort through the chiller."""

    sensor: str
    flow: float = quantity(unit="L/min", kind="volume_flow_rate", state="measurement")
    total_litres: float = quantity(unit="L", kind="volume", state="total_increasing",
                                   description="since the start")


def test_a_publisher_announces_its_schema_and_an_observer_caches_it(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        pub = make(tmp_path, port, "pub")
        obs = make(tmp_path, port, "obs", observer=True)
        async with running(pub, obs):
            await connected(pub, obs)
            await pub.publish(Chiller("a", 1.0, 2.0))
            assert obs._control is not None and pub._control is not None
            wrong = bytes(8)
            assert obs._control.request_schema(NAME, wrong)
            assert obs._control.request_schema(NAME)
            assert not obs._control.request_schema(NAME), "asked twice within a second"
            await until(lambda: obs._control is not None
                        and obs._control.schemas.get(NAME) is not None, "the schema announced")
            learned = obs._control.schemas.get(NAME, type_of(Chiller).fingerprint)
            assert learned is not None and learned.source == "network"
            local = type_schema(Chiller)
            assert (learned.fields, learned.key, learned.description) == \
                (local.fields, local.key, local.description)
            await asyncio.sleep(0.2)
            assert obs._control.schemas.get(NAME, wrong) is None
            stats = pub.stats().control
            assert stats["schema_answered"] == 1, "a request for another version is not answered"
            assert obs.stats().control["schema_learned"] == 1
            # the node API: a local class wins; the fingerprint picks the version
            assert obs.type_schema(NAME) == local
            assert obs.type_schema(NAME, wrong) is None
            assert await obs.fetch_type_schema("schematest.Nobody", timeout=0.3) is None

    run(scenario())


def test_an_announcement_whose_fingerprint_does_not_match_its_fields_is_dropped(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a = make(tmp_path, port, "a")
        b = make(tmp_path, port, "b", observer=True)
        async with running(a, b):
            await connected(a, b)
            assert a._control is not None and b._control is not None
            forged = SchemaAnnounce(type_name=NAME, fingerprint=type_of(Chiller).fingerprint,
                                    fields=[SchemaField(name="flow", wire="int")])
            bogus = SchemaAnnounce(type_name=NAME, fingerprint=b"\x01" * 8,
                                   fields=[SchemaField(name="x", wire="float",
                                                       device_class="not-a-class")])
            a._control.endpoint.publish(forged)
            a._control.endpoint.publish(bogus)
            await until(lambda: b.stats().control.get("schema_malformed", 0) >= 2,
                        "both announcements refused")
            assert len(b._control.schemas) == 0

    run(scenario())


def test_types_schema_prints_what_a_publisher_announced(spawn: Spawner, port: int,
                                                         tmp_path: Path) -> None:
    start_node(spawn, port, "brew", tmp_path / "brew", "flow")
    args = ["types", "--schema", "sensors.Flow", "--json", *LO, "--port", str(port),
            "--timeout", "10"]
    got = spawn(*args, label="schema").json_out()
    assert got["source"] == "network", "the CLI process has no hardware classes"
    fields = {f["name"]: f for f in got["fields"]}
    assert fields["total_litres"]["state_class"] == "total_increasing"
    assert fields["litres_per_minute"]["device_class"] == "volume_flow_rate"
    assert fields["litres_per_minute"]["unit"] == "L/min"
    assert got["key"] == ["sensor"]
    table = spawn(*args[:3], *args[4:], label="schema-table")
    assert table.finish() == 0, table.describe()
    assert "L/min" in table.out and "(network)" in table.out
    missing = spawn("types", "--schema", "nobody.Here", *LO, "--port", str(port),
                    "--timeout", "1", label="missing")
    assert missing.finish() == 1
    assert "no publisher of nobody.Here announced its schema" in missing.err


def test_the_schema_wire_form_is_json_plain() -> None:
    assert json.loads(json.dumps(type_schema(Chiller).to_plain()))["fields"][1]["unit"] == "L/min"


def test_the_logger_stores_the_announced_schema_of_a_type_it_has_no_class_of(
        spawn: Spawner, port: int, tmp_path: Path) -> None:
    import sqlite3

    from node_support import wait_sync

    start_node(spawn, port, "brew", tmp_path / "brew", "flow")
    db = tmp_path / "log.db"
    log = spawn("log", "--db", str(db), "--type", "sensors.Flow", *LO, "--port", str(port),
                label="log")

    def stored() -> bool:
        if not db.exists():
            return False
        try:
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT schema FROM types WHERE name = 'sensors.Flow' "
                                    "AND schema IS NOT NULL").fetchall()
        except sqlite3.Error:
            return False
        return bool(rows)

    wait_sync(stored, "the schema in the types table", timeout=20)
    log.kill(signal.SIGTERM)
    with sqlite3.connect(db) as conn:
        source, schema, units = conn.execute(
            "SELECT source, schema, units FROM types WHERE name = 'sensors.Flow' "
            "AND schema IS NOT NULL").fetchone()
    fields = {f["name"]: f for f in json.loads(schema)["fields"]}
    assert fields["total_litres"]["state_class"] == "total_increasing"
    assert json.loads(units)["litres_per_minute"] == "L/min"
    assert source == "observed", "the log process has no hardware classes: learned from the network"
