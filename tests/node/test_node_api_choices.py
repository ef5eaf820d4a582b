"""A program's ``Node`` chooses its interface as the CLI does, and its own state directory.

Theory of operation: ``Node(interface=...)`` goes through the very function the
CLI's ``--iface`` does (:func:`ganglion.netif.resolve_interface`): a name or an
address, else ``GANGLION_IFACE``, else the default route's interface, with the
same errors (only the words that say how to choose differ). The proof that a
program's node really leaves loopback runs in network namespaces with a default
route (``netns``): two hosts on a bridge, each a ``Node(name=...)`` with nothing
else chosen, hear each other. A program's node keeps its state in
``<user state dir>/nodes/<name>``, so it starts beside the system's ``ganglion
node`` of the same user (one temporary HOME), and an error that remains names
``name=`` / ``state_dir=``, while ``ganglion node`` keeps its ``--state-dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from node_support import LOOPBACK, REPO, NetnsLab, Spawner, clean_env, run, sh, wait_sync

from ganglion import netif
from ganglion.cli.main import cli
from ganglion.errors import InterfaceError, StateLockedError
from ganglion.node import Node

CHILD = Path(__file__).with_name("program_node_child.py")


def _cli_error(*args: str, env: dict[str, str] | None = None) -> str:
    """The one-line error ``ganglion <args>`` prints, without its ``Error: `` prefix."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GANGLION_")}
    clean.update(env or {})
    result = CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert line.startswith("Error: "), line
    return line.removeprefix("Error: ")


@pytest.fixture
def home() -> Iterator[Path]:
    """A temporary HOME with a short path: the plugin bus's ipc socket lives in the state
    directory under it, and a socket path is limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gh-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _home_env(home: Path) -> dict[str, str]:
    """A clean environment whose user state directory is under ``home``."""
    env = clean_env()
    env.pop("XDG_STATE_HOME", None)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# -- the interface -------------------------------------------------------------------------


def test_an_interface_name_is_accepted_and_the_node_runs_on_it(port: int,
                                                               tmp_path: Path) -> None:
    async def scenario() -> tuple[str, str, bool]:
        got: list[Any] = []
        async with Node(name="by-name", interface="lo", port=port, control_port=port + 1,
                        state_dir=tmp_path / "s", discovery=False) as node:
            node.subscribe("apitest.Named", callback=lambda msg, info: got.append(msg))
            from ganglion.types import Record

            await node.publish(Record("apitest.Named", {"x": 1}))
            return node.interface, node.interface_name, bool(got)

    assert run(scenario(), timeout=20) == (LOOPBACK, "lo", True)


def test_ganglion_iface_chooses_when_no_interface_is_given(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setenv(netif.ENV_VAR, "lo")
    node = Node(name="env", state_dir=tmp_path)
    assert (node.interface, node.interface_name) == (LOOPBACK, "lo")
    # an explicit argument wins over the environment, as --iface does
    monkeypatch.setenv(netif.ENV_VAR, "nosuchif1")
    assert Node(name="env", interface="127.0.0.1", state_dir=tmp_path).interface_name == "lo"


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_bad_interface_gives_the_clis_error(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "argument":
        cli_message = _cli_error("tail", "sensors.Temperature", "--iface", "nosuchif1")
        with pytest.raises(InterfaceError) as info:
            Node(name="bad", interface="nosuchif1", observer=True)
    else:
        cli_message = _cli_error("tail", "sensors.Temperature",
                                 env={netif.ENV_VAR: "nosuchif1"})
        monkeypatch.setenv(netif.ENV_VAR, "nosuchif1")
        with pytest.raises(InterfaceError) as info:
            Node(name="bad", observer=True)
    assert str(info.value) == cli_message
    assert "does not exist" in cli_message and "127.0.0.1" in cli_message


class _NoDefaultRoute:
    """netifaces as on a host with loopback and one LAN address but no default route."""

    AF_INET = socket.AF_INET

    @staticmethod
    def interfaces() -> list[str]:
        return ["lo", "lan0"]

    @staticmethod
    def ifaddresses(name: str) -> dict[int, list[dict[str, str]]]:
        address = {"lo": "127.0.0.1", "lan0": "192.0.2.2"}[name]
        return {socket.AF_INET: [{"addr": address, "netmask": "255.255.255.0"}]}

    @staticmethod
    def gateways() -> dict[Any, Any]:
        return {}


def test_no_default_route_is_the_clis_error_in_the_apis_words(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netif, "_import_netifaces", lambda: _NoDefaultRoute)
    monkeypatch.delenv(netif.ENV_VAR, raising=False)
    cli_message = _cli_error("tail", "sensors.Temperature")
    with pytest.raises(InterfaceError) as info:
        Node(name="routeless", observer=True)
    api_message = str(info.value)
    assert "--iface" in cli_message
    assert "--iface" not in api_message and 'interface="lo"' in api_message
    assert api_message == cli_message.replace(netif.CLI_CHOICE_HINT, netif.API_CHOICE_HINT)
    assert "lan0 (192.0.2.2)" in api_message  # the same list of interfaces that would work


def _add_default_route(lab: NetnsLab, index: int) -> None:
    """A default route out of host ``index``'s eth0, via an address nobody has (no traffic
    can leave: the bridge is in a namespace of its own and has no uplink)."""
    sh(*lab.prefix(index), "ip", "route", "add", "default", "via",
       f"10.77.{lab.net}.254", "dev", "eth0")


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.netns
@pytest.mark.timeout(90)
def test_a_program_node_uses_the_default_route_and_reaches_another_host(
        lab: NetnsLab, tmp_path: Path) -> None:
    hosts = [lab.add_host(), lab.add_host()]
    for index in (1, 2):
        _add_default_route(lab, index)
    procs: list[subprocess.Popen[str]] = []
    try:
        for index, _ns in enumerate(hosts, start=1):
            env = _home_env(tmp_path / f"home{index}")  # no GANGLION_IFACE: the default route
            procs.append(subprocess.Popen(
                [*lab.prefix(index), sys.executable, str(CHILD), f"prog{index}", "30"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    ids = {}
    for index, (out, err) in enumerate(outputs, start=1):
        lines = _json_lines(out)
        assert len(lines) == 2, f"host {index}: {out}\n{err}"
        chose, ended = lines
        assert chose["interface_name"] == "eth0", chose
        assert chose["interface"] == lab.address(index)
        assert chose["state_dir"] == str(
            tmp_path / f"home{index}" / ".local" / "state" / "ganglion" / "nodes" / f"prog{index}")
        ids[index] = (chose["id"], ended)
    (id1, ended1), (id2, ended2) = ids[1], ids[2]
    assert id2 in ended1["heard"] and "prog2" in ended1["peers"], ended1
    assert id1 in ended2["heard"] and "prog1" in ended2["peers"], ended2


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_on_a_host_with_a_default_route_a_name_and_the_environment_still_choose(
        lab: NetnsLab) -> None:
    lab.add_host()
    _add_default_route(lab, 1)
    code = ("import json; from ganglion import Node; "
            "print(json.dumps([(n.interface_name, n.interface) for n in "
            "(Node(observer=True), Node(interface='eth0', observer=True), "
            "Node(interface='lo', observer=True))]))")
    base = _home_env(Path("/nonexistent"))
    done = subprocess.run([*lab.prefix(1), sys.executable, "-c", code], cwd=REPO, env=base,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    address = lab.address(1)
    assert json.loads(done.stdout) == [["eth0", address], ["eth0", address], ["lo", LOOPBACK]]
    done = subprocess.run([*lab.prefix(1), sys.executable, "-c", code], cwd=REPO,
                          env={**base, netif.ENV_VAR: "lo"}, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0] == ["lo", LOOPBACK]


# -- the state directory ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_program_node_starts_beside_ganglion_node_of_the_same_user(
        port: int, spawn: Spawner, home: Path) -> None:
    env = _home_env(home)
    system = spawn("node", "--name", "cellar", "--iface", "lo", "--port", str(port),
                   "--no-mdns", label="system-node", env=env)
    system.wait_for_err("node cellar (")
    program = subprocess.run(
        [sys.executable, str(CHILD), "mash-tun", "20", "--interface", "lo", "--port", str(port),
         "--until-peer", "cellar", "--no-mdns"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=40)
    assert program.returncode == 0, program.stderr
    chose, ended = _json_lines(program.stdout)
    assert "cellar" in ended["peers"], (ended, program.stderr)  # both on one network
    state = home / ".local" / "state" / "ganglion"
    assert chose["state_dir"] == str(state / "nodes" / "mash-tun")
    assert (state / "node_id").read_text().strip() != chose["id"]  # two nodes, two ids
    assert system.popen.poll() is None, system.describe()  # and the system's node still runs


def test_two_programs_with_one_name_are_told_in_the_apis_words(
        port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))

    async def scenario() -> str:
        async with Node(name="mash tun", interface="lo", discovery=False, port=port,
                        control_port=port + 1) as first:
            assert first.state_dir == tmp_path / "ganglion" / "nodes" / "mash%20tun"
            with pytest.raises(StateLockedError) as info:
                await Node(name="mash tun", interface="lo", discovery=False, port=port,
                           control_port=port + 1).start()
            # a directory chosen by hand: only another state_dir= helps
            with pytest.raises(StateLockedError) as by_hand:
                await Node(name="other", interface="lo", state_dir=first.state_dir,
                           discovery=False, port=port, control_port=port + 1).start()
            assert str(by_hand.value).endswith("give this Node another state_dir=")
            # another name is another directory: it starts
            async with Node(name="mash-tun", interface="lo", discovery=False, port=port,
                            control_port=port + 1):
                pass
            return str(info.value)

    message = run(scenario(), timeout=20)
    assert f"process {os.getpid()}" in message
    assert "name=" in message and "state_dir=" in message
    assert "--state-dir" not in message


@pytest.mark.timeout(60)
def test_ganglion_node_keeps_its_directory_and_its_flag(port: int, spawn: Spawner,
                                                        home: Path) -> None:
    env = _home_env(home)
    first = spawn("node", "--name", "a", "--iface", "lo", "--port", str(port), "--no-mdns",
                  label="first", env=env)
    first.wait_for_err("node a (")
    # the default layout of ganglion node is unchanged: the top of the user's state directory
    state = home / ".local" / "state" / "ganglion"
    wait_sync(lambda: (state / "node_id").exists(), "the system node's id file")
    second = spawn("node", "--name", "b", "--iface", "lo", "--port", str(port), "--no-mdns",
                   label="second", env=env)
    assert second.finish() == 1, second.describe()
    assert f"in use by process {first.pid}" in second.err, second.describe()
    assert "another --state-dir" in second.err and "state_dir=" not in second.err
