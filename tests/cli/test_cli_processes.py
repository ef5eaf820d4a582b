"""The CLI end to end in real subprocesses: sim -> tail, network keys, and the demo.

Every process runs ``python -m ganglion`` with ``--iface 127.0.0.1`` (the demo
always uses loopback) on a port no other test uses, and is killed by its PID
when the test ends (the ``spawn`` fixture). Each wait has a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_procs import Proc

pytestmark = pytest.mark.usefixtures("multicast_loopback")

Spawn = Callable[..., Proc]
LO = ["--iface", "127.0.0.1"]
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  (\S+)\s+(sensors\.\w+)(?: #(\d+))?  (.*)$")


def readings(output: str) -> list[tuple[str, str, int | None, str]]:
    """(sender, type, seq, fields) of every reading line in ``output``."""
    found = []
    for line in output.splitlines():
        m = LINE.match(line)
        if m:
            seq = int(m.group(3)) if m.group(3) is not None else None
            found.append((m.group(1), m.group(2), seq, m.group(4)))
    return found


def _same_netns(proc: Path) -> bool:
    """Whether a process shares this one's network namespace (another test run on the
    machine, in its own namespace, may use the same port number)."""
    try:
        return os.readlink(proc / "ns" / "net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def sims_on_port(port: int) -> list[int]:
    """PIDs of live ``ganglion node --sim`` processes on ``port`` (the demo's children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if state == "Z":
            continue
        if b"ganglion" in args and b"--sim" in args and str(port).encode() in args \
                and _same_netns(entry):
            pids.append(int(entry.name))
    return pids


def reap_sims(port: int, grace: float = 0.0) -> list[int]:
    """Wait up to ``grace`` seconds for the demo's sensor processes on ``port`` to end,
    then kill (SIGKILL) any left; return the PIDs that were left."""
    deadline = time.monotonic() + grace
    while sims_on_port(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = sims_on_port(port)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    return leftovers


def test_tail_prints_what_sim_publishes(spawn: Spawn, free_udp_port: int) -> None:
    port = str(free_udp_port)
    tail = spawn("tail", "--no-last", "sensors.Temperature", "sensors.Humidity", *LO, "--port", port,
                 "--count", "6", "--timeout", "20")
    tail.wait_for_output("listening for sensors.Temperature, sensors.Humidity")
    sim = spawn("sim", "--kind", "temperature", "--kind", "humidity", "--name", "attic",
                "--count", "3", "--interval", "0.05", "--seed", "1", *LO, "--port", port)
    assert sim.finish() == 0, sim.err
    assert "ready: attic publishing temperature, humidity via lo (127.0.0.1)" in sim.err
    published = readings(sim.out)
    assert len(published) == 6

    assert tail.finish() == 0, tail.err
    got = readings(tail.out)
    assert len(got) == 6
    by_type = {t: [(seq, fields) for _s, typ, seq, fields in got if typ == t]
               for t in ("sensors.Temperature", "sensors.Humidity")}
    assert [seq for seq, _ in by_type["sensors.Temperature"]] == [0, 1, 2]
    assert [seq for seq, _ in by_type["sensors.Humidity"]] == [0, 1, 2]
    # tail names the sender by its name (the id is what sim reports at start).
    node = re.search(r"as node ([0-9a-f]{16})", sim.err)
    assert node is not None
    assert {sender for sender, *_ in got} == {"attic"}
    # Every field tail printed is one sim published.
    assert sorted(fields for *_, fields in got) == sorted(f for *_, f in published)
    assert all("sensor=sim:attic/" in fields for *_, fields in got)


def test_tail_ignores_types_it_was_not_asked_for(spawn: Spawn, free_udp_port: int) -> None:
    port = str(free_udp_port)
    tail = spawn("tail", "--no-last", "sensors.Pressure", *LO, "--port", port, "--count", "2",
                 "--timeout", "20")
    tail.wait_for_output("listening for sensors.Pressure")
    sim = spawn("sim", "--kind", "flow", "--kind", "pressure", "--count", "2",
                "--interval", "0.05", "--quiet", *LO, "--port", port)
    assert sim.finish() == 0, sim.err
    assert sim.out == ""  # --quiet
    assert tail.finish() == 0, tail.err
    assert {typ for _s, typ, _q, _f in readings(tail.out)} == {"sensors.Pressure"}


def test_sim_with_the_same_seed_publishes_the_same_readings(spawn: Spawn,
                                                            free_udp_port: int) -> None:
    def values(seed: str) -> list[str]:
        sim = spawn("sim", "--kind", "temperature", "--kind", "flow", "--count", "4",
                    "--interval", "0.01", "--seed", seed, *LO, "--port", str(free_udp_port))
        assert sim.finish() == 0, sim.err
        return [fields for *_, fields in readings(sim.out)]

    first = values("42")
    assert len(first) == 8
    assert values("42") == first
    assert values("43") != first


def test_network_key_admits_keyed_tails_only(spawn: Spawn, free_udp_port: int,
                                             tmp_path: Path) -> None:
    port = str(free_udp_port)
    key = tmp_path / "net.key"
    keygen = spawn("keygen", str(key))
    assert keygen.finish() == 0, keygen.err
    keyed = spawn("tail", "--no-last", "sensors.Flow", *LO, "--port", port, "--key-file", str(key),
                  "--count", "3", "--timeout", "20")
    open_tail = spawn("tail", "--no-last", "sensors.Flow", *LO, "--port", port, "--count", "1",
                      "--timeout", "20")
    keyed.wait_for_output("listening")
    open_tail.wait_for_output("listening")
    sim = spawn("sim", "--kind", "flow", "--count", "3", "--interval", "0.05", "--quiet",
                "--key-file", str(key), *LO, "--port", port)
    assert sim.finish() == 0, sim.err
    assert keyed.finish() == 0, keyed.err
    assert len(readings(keyed.out)) == 3
    # The keyed tail got all three, so the open one has seen them too by now.
    # Without the key it dropped them: nothing shown, and stopped, it reports
    # that its count was not reached.
    os.kill(open_tail.pid, signal.SIGTERM)
    assert open_tail.finish() == 1
    assert readings(open_tail.out) == []


def test_sim_stops_cleanly_on_sigterm(spawn: Spawn, free_udp_port: int) -> None:
    sim = spawn("sim", "--kind", "humidity", "--interval", "0.05", *LO,
                "--port", str(free_udp_port))
    sim.wait_for_output("sensors.Humidity", stream="out")
    os.kill(sim.pid, signal.SIGTERM)
    assert sim.finish() == 0
    assert "Traceback" not in sim.err


def test_demo_prints_readings_from_three_nodes_and_exits_0(spawn: Spawn,
                                                          free_udp_port: int) -> None:
    demo = spawn("demo", "--duration", "3", "--interval", "0.2", "--port", str(free_udp_port))
    try:
        assert demo.finish(timeout=30) == 0, demo.err
    finally:
        leftovers = reap_sims(free_udp_port)
    assert leftovers == [], "the demo left sensor processes running"
    got = readings(demo.out)
    assert {sender for sender, *_ in got} == {"brewery", "cellar", "roof"}
    assert {typ for _s, typ, _q, _f in got} == {
        "sensors.Temperature", "sensors.Humidity", "sensors.Pressure", "sensors.Flow"}
    summary = re.search(r"received (\d+) readings from (\d+) nodes, lost (\d+), "
                        r"decode errors (\d+)", demo.out)
    assert summary is not None, demo.out
    assert int(summary.group(1)) == len(got)
    assert summary.group(2) == "3"
    assert summary.group(4) == "0"
    assert f":{free_udp_port}" in demo.out  # the type -> group table names the port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stopped_by_a_signal_ends_its_sensor_processes(
        spawn: Spawn, free_udp_port: int, sig: signal.Signals) -> None:
    demo = spawn("demo", "--interval", "0.1", "--port", str(free_udp_port))
    try:
        demo.wait_for_output(r"(brewery|cellar|roof) .*sensors\.", stream="out", timeout=20)
        children = sims_on_port(free_udp_port)
        assert len(children) == 3
        os.kill(demo.pid, sig)
        assert demo.finish(timeout=20) == 0, demo.err
    finally:
        leftovers = reap_sims(free_udp_port, grace=5)
    assert leftovers == []
    assert "received" in demo.out


def test_demo_killed_outright_takes_its_sensor_processes_with_it(
        spawn: Spawn, free_udp_port: int) -> None:
    demo = spawn("demo", "--interval", "0.1", "--port", str(free_udp_port))
    try:
        demo.wait_for_output(r"(brewery|cellar|roof) .*sensors\.", stream="out", timeout=20)
        assert len(sims_on_port(free_udp_port)) == 3
        os.kill(demo.pid, signal.SIGKILL)  # no chance to stop its children itself
        demo.finish(timeout=20)
    finally:
        leftovers = reap_sims(free_udp_port, grace=10)
    assert leftovers == []
