"""Issue 20, defect 7: typos must not become permanent types, end to end.

A node publishes ``sensors.Temperature`` (``--sim temperature``); then, as a new user
would type them: ``publish sensors.temprature`` is refused with "did you mean",
``--new-type`` creates it anyway, ``tail sensors.Temperatur`` says what is close and
keeps waiting, ``types --retire`` refuses the published type and retires the typo.
Every process runs on 127.0.0.1 on a port no other test uses and is killed by PID.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_procs import Proc

pytestmark = pytest.mark.usefixtures("multicast_loopback")

Spawn = Callable[..., Proc]
LO = ["--iface", "127.0.0.1"]
TYPO = "sensors.temprature"


def agreed(spawn: Spawn, port: str) -> dict[str, str]:
    types = spawn("types", "--json", *LO, "--port", port)
    assert types.finish() == 0, types.err
    result: dict[str, str] = json.loads(types.out)
    return result


def test_typos_are_refused_hinted_and_retired(spawn: Spawn, free_udp_port: int,
                                             tmp_path: Path) -> None:
    port = str(free_udp_port)
    node = spawn("node", "--name", "cellar", "--state-dir", str(tmp_path / "cellar"), "--no-mdns",
                 "--no-hardware", "--sim", "temperature", "--interval", "0.2", *LO, "--port", port)
    node.wait_for_output(r"sensors\.Temperature uses group")

    typo = spawn("publish", TYPO, "--json", '{"celsius": 20.5}', *LO, "--port", port)
    assert typo.finish() == 2, typo.err
    assert f"Error: {TYPO} is not a known type; did you mean sensors.Temperature?" in typo.err
    assert "--new-type" in typo.err
    assert TYPO not in agreed(spawn, port)

    forced = spawn("publish", TYPO, "--json", '{"celsius": 20.5}', "--new-type", *LO, "--port", port)
    assert forced.finish() == 0, forced.err
    assert TYPO in agreed(spawn, port)

    tail = spawn("tail", "sensors.Temperatur", "--timeout", "4", *LO, "--port", port)
    tail.wait_for_output(r"sensors\.Temperatur is not an agreed type yet; did you mean "
                         r"sensors\.Temperature.*; waiting for it")
    assert tail.finish() == 0, tail.err

    busy = spawn("types", "--retire", "sensors.Temperature", *LO, "--port", port)
    assert busy.finish() == 1
    assert "sensors.Temperature is still published by cellar" in busy.err

    unknown = spawn("types", "--retire", "sensors.temprture", *LO, "--port", port)
    assert unknown.finish() == 1
    assert f"not an agreed type; did you mean {TYPO}" in unknown.err

    retire = spawn("types", "--retire", TYPO, *LO, "--port", port)
    assert retire.finish() == 0, retire.err
    assert f"retired {TYPO}" in retire.err
    assert list(agreed(spawn, port)) == ["sensors.Temperature"]
    node.wait_for_output(rf"type {TYPO} retired")


def test_publish_of_a_really_new_name_needs_no_flag(spawn: Spawn, free_udp_port: int,
                                                   tmp_path: Path) -> None:
    port = str(free_udp_port)
    node = spawn("node", "--name", "attic", "--state-dir", str(tmp_path / "attic"), "--no-mdns",
                 "--no-hardware", "--sim", "temperature", *LO, "--port", port)
    node.wait_for_output(r"sensors\.Temperature uses group")
    new = spawn("publish", "brewery.MashTun", "--json", '{"celsius": 66.0}', *LO, "--port", port)
    assert new.finish() == 0, new.err
    assert "published brewery.MashTun" in new.err
