"""Real ``ganglion node`` processes on loopback, inspected with the other CLI commands.

Every process is ``python -m ganglion ... --iface 127.0.0.1 --port P`` with a port
pair no other test uses, so its multicast never leaves this machine's loopback and
no two tests hear each other. The ``spawn`` fixture kills every process by its PID
when the test ends; the nodes log to files, read only after or between waits
that all have deadlines.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from node_support import NodeProc, Spawner, wait_sync

from ganglion import __version__

pytestmark = pytest.mark.usefixtures("multicast_loopback")

LO = ["--iface", "127.0.0.1"]
TEMPERATURE = "sensors.Temperature"
HUMIDITY = "sensors.Humidity"
STARTED = re.compile(r"node (\S+) \(([0-9a-f]{16})\) on ")


def start_node(spawn: Spawner, port: int, name: str, state_dir: Path, *sims: str,
               interval: str = "0.1") -> tuple[NodeProc, str]:
    """Start ``ganglion node`` with simulated sensors; wait for it; return it and its id."""
    args = ["node", "--name", name, "--state-dir", str(state_dir), *LO, "--port", str(port),
            "--no-mdns", "-v"]
    for kind in sims:
        args += ["--sim", kind]
    if sims:
        args += ["--interval", interval]
    proc = spawn(*args, label=f"node-{name}")
    proc.wait_for_err(f"node {name} (")
    found = STARTED.search(proc.err)
    assert found is not None and found.group(1) == name, proc.describe()
    return proc, found.group(2)


def types_json(spawn: Spawner, port: int, label: str = "types") -> dict[str, str]:
    """What ``ganglion types --json`` prints (exit 0 required)."""
    proc = spawn("types", "--json", *LO, "--port", str(port), "--timeout", "5", label=label)
    result: dict[str, str] = proc.json_out()
    return result


def wait_types(spawn: Spawner, port: int, names: set[str], timeout: float = 20.0) -> dict[str, str]:
    """Run ``ganglion types --json`` until the map holds ``names``; return that map."""
    last: dict[str, str] = {}

    def complete() -> bool:
        nonlocal last
        last = types_json(spawn, port)
        return names <= set(last)

    wait_sync(complete, f"{sorted(names)} in the agreed map (last: {last})", timeout, 0.2)
    return last


def test_tail_receives_from_two_sim_nodes(spawn: Spawner, port: int, tmp_path: Path) -> None:
    _a, id_a = start_node(spawn, port, "alpha", tmp_path / "alpha", "temperature")
    _b, id_b = start_node(spawn, port, "beta", tmp_path / "beta", "temperature")
    wait_types(spawn, port, {TEMPERATURE})
    tail = spawn("tail", TEMPERATURE, "--json", "--no-last", "--count", "16", "--timeout", "20",
                 *LO, "--port", str(port), label="tail")
    assert tail.finish(30) == 0, tail.describe()
    lines = tail.json_lines()
    assert len(lines) == 16
    by_node: dict[str, list[int]] = {}
    for line in lines:
        assert line["type"] == TEMPERATURE
        assert set(line["data"]) == {"sensor", "celsius"}
        by_node.setdefault(line["node"], []).append(line["seq"])
    assert set(by_node) == {id_a, id_b}
    for node_id, seqs in by_node.items():
        # each sender's readings arrive in order, with no gap in between
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (node_id, seqs)
    names = {line["data"]["sensor"] for line in lines}
    assert names == {"sim:alpha/temperature", "sim:beta/temperature"}


def test_two_observers_print_the_same_map(spawn: Spawner, port: int, tmp_path: Path) -> None:
    start_node(spawn, port, "alpha", tmp_path / "alpha", "temperature")
    start_node(spawn, port, "beta", tmp_path / "beta", "humidity")
    agreed = wait_types(spawn, port, {TEMPERATURE, HUMIDITY})
    first = spawn("types", "--json", *LO, "--port", str(port), "--timeout", "5", label="t1")
    second = spawn("types", "--json", *LO, "--port", str(port), "--timeout", "5", label="t2")
    one, two = first.json_out(), second.json_out()
    assert one == two == agreed
    assert set(one) == {TEMPERATURE, HUMIDITY}
    assert one[TEMPERATURE] != one[HUMIDITY]
    assert all(group.startswith("239.255.") for group in one.values())


def test_nodes_lists_both_members(spawn: Spawner, port: int, tmp_path: Path) -> None:
    _a, id_a = start_node(spawn, port, "alpha", tmp_path / "alpha", "temperature")
    _b, id_b = start_node(spawn, port, "beta", tmp_path / "beta", "humidity", "pressure")
    wait_types(spawn, port, {TEMPERATURE, HUMIDITY, "sensors.Pressure"})
    proc = spawn("nodes", "--json", "--no-mdns", *LO, "--port", str(port), "--timeout", "1.5",
                 label="nodes")
    rows: list[dict[str, Any]] = proc.json_out()
    assert [r["name"] for r in rows] == ["alpha", "beta"]
    alpha, beta = rows
    assert (alpha["id"], beta["id"]) == (id_a, id_b)
    for row in rows:
        assert row["address"] == "127.0.0.1"
        assert row["version"] == __version__
        assert row["role"] == "member"
    assert alpha["types"] == [TEMPERATURE]
    assert sorted(beta["types"]) == [HUMIDITY, "sensors.Pressure"]


def test_publish_of_a_new_type_is_agreed_and_tailed(spawn: Spawner, port: int,
                                                    tmp_path: Path) -> None:
    start_node(spawn, port, "alpha", tmp_path / "alpha")
    start_node(spawn, port, "beta", tmp_path / "beta")
    custom = "nodetest.cli.Custom"
    tail = spawn("tail", custom, "--json", "--count", "1", "--timeout", "20", *LO,
                 "--port", str(port), label="tail")
    tail.wait_for_err(f"listening for {custom}")
    publisher = spawn("publish", custom, "--json", json.dumps({"x": 5, "label": "hi"}), *LO,
                      "--port", str(port), "--timeout", "10", label="publish")
    assert publisher.finish() == 0, publisher.describe()
    assert tail.finish() == 0, tail.describe()
    (line,) = tail.json_lines()
    assert line["type"] == custom and line["data"] == {"x": 5, "label": "hi"}
    assert line["seq"] == 0
    group = re.search(r"published \S+ to (\S+):", publisher.err)
    assert group is not None, publisher.describe()
    assert types_json(spawn, port) == {custom: group.group(1)}


def test_sigkilled_node_restarts_with_same_id_and_map(spawn: Spawner, port: int,
                                                      tmp_path: Path) -> None:
    state = tmp_path / "alpha"
    first, node_id = start_node(spawn, port, "alpha", state, "temperature", "humidity")
    before = wait_types(spawn, port, {TEMPERATURE, HUMIDITY})
    first.kill(signal.SIGKILL)
    assert first.popen.returncode == -signal.SIGKILL
    # alone and without sensors: only its journal can give it the map back
    _again, again_id = start_node(spawn, port, "alpha", state)
    assert again_id == node_id
    after = wait_types(spawn, port, set(before))
    assert after == before


def test_tail_stops_at_its_count_even_inside_one_datagram(spawn: Spawner, port: int,
                                                           tmp_path: Path) -> None:
    # Ten readings batched into one datagram: tail --count 3 prints three, not ten. The
    # node only gets the type agreed (its own readings come once a minute).
    import socket
    import time

    from ganglion.types import encode_message, type_of
    from ganglion.wire import Packer
    from hardware.readings import Temperature

    start_node(spawn, port, "solo", tmp_path / "solo", "temperature", interval="60")
    group = wait_types(spawn, port, {TEMPERATURE})[TEMPERATURE]
    tail = spawn("tail", TEMPERATURE, "--json", "--no-last", "--count", "3", "--timeout", "20",
                 *LO, "--port", str(port), label="tail")
    mtype = type_of(Temperature)
    packer = Packer(node_id=b"\x07" * 8, type_name=mtype.name, fingerprint=mtype.fingerprint,
                    boot=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        deadline = time.monotonic() + 15
        # Until tail has joined the group (it learns the group by catch-up), and is done.
        while tail.popen.poll() is None and time.monotonic() < deadline:
            for i in range(10):
                packer.add(encode_message(Temperature("batch", float(i)), mtype),
                           time.time_ns() + i)
            sock.sendto(packer.build(), (group, port))
            time.sleep(0.2)
    finally:
        sock.close()
    assert tail.finish(30) == 0, tail.describe()
    lines = [line for line in tail.json_lines() if line["node"] == "07" * 8]
    assert len(tail.json_lines()) == 3 and len(lines) == 3, tail.describe()
    first = lines[0]["seq"]
    assert first % 10 == 0 and [line["seq"] for line in lines] == [first, first + 1, first + 2]


@pytest.mark.skipif(not os.environ.get("GANGLION_TEST_NETNS"),
                    reason="mDNS sends to 224.0.0.251:5353; runs only in a private namespace "
                    "(GANGLION_TEST_NETNS set by the test command)")
def test_nodes_shows_a_node_with_another_key_as_not_reachable(spawn: Spawner, port: int,
                                                             tmp_path: Path) -> None:
    # Issue 20 defect 10: `nodes --key-file` listed nodes that use another key as
    # reachable (they are seen over mDNS, but nothing they send verifies).
    ours, theirs = tmp_path / "ours.key", tmp_path / "theirs.key"
    for key in (ours, theirs):
        assert spawn("keygen", str(key), label=f"keygen-{key.stem}").finish() == 0
    node = spawn("node", "--name", "elsewhere", "--state-dir", str(tmp_path / "n"), *LO,
                 "--port", str(port), "--key-file", str(theirs), "-v", label="node")
    node.wait_for_err("node elsewhere (")
    found = STARTED.search(node.err)
    assert found is not None
    rows: list[dict[str, Any]] = []
    for _ in range(5):  # mDNS announcements take a moment; bounded
        proc = spawn("nodes", "--json", *LO, "--port", str(port), "--timeout", "2",
                     "--key-file", str(ours), label="nodes")
        rows = proc.json_out()
        if rows:
            break
    assert [(r["id"], r["reachable"]) for r in rows] == [(found.group(2), False)]
    same = spawn("nodes", "--json", *LO, "--port", str(port), "--timeout", "2",
                 "--key-file", str(theirs), label="nodes-same-key").json_out()
    assert [(r["id"], r["reachable"]) for r in same] == [(found.group(2), True)]
