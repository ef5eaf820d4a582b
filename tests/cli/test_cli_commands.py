"""The ``ganglion`` commands in-process with click's CliRunner: keygen and argument errors.

Nothing here sends a datagram; the one networked run (``tail`` timing out) only
listens, on loopback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ganglion.cli._format import format_reading
from ganglion.cli._run import run_until_signalled, wait_or_stop
from ganglion.cli.main import cli
from ganglion.types import Record
from ganglion.wire import read_key_file
from hardware.readings import Flow, Temperature


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``ganglion <args>`` in-process with no GANGLION_* variables set."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GANGLION_")}
    clean.update(env or {})
    return CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)


# -- the group -----------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("keygen", "sim", "tail", "demo"):
        assert command in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert "No such command" in result.output


# -- keygen ----------------------------------------------------------------------------


def test_keygen_writes_a_32_byte_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "net.key"
    result = invoke("keygen", str(path))
    assert result.exit_code == 0, result.output
    assert str(path) in result.output
    assert len(path.read_bytes()) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == path.read_bytes()


def test_keygen_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "net.key"
    assert invoke("keygen", str(path)).exit_code == 0
    first = path.read_bytes()
    result = invoke("keygen", str(path))
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "--force" in result.output
    assert path.read_bytes() == first


def test_keygen_force_replaces_the_key(tmp_path: Path) -> None:
    path = tmp_path / "net.key"
    assert invoke("keygen", str(path)).exit_code == 0
    first = path.read_bytes()
    result = invoke("keygen", "--force", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_bytes() != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "ganglion" / "net.key"
    assert invoke("keygen", str(path)).exit_code == 0
    assert len(path.read_bytes()) == 32


def test_keygen_into_a_path_under_a_file_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("keygen", str(blocker / "net.key"))
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "Traceback" not in result.output


def test_keygen_needs_a_path() -> None:
    result = invoke("keygen")
    assert result.exit_code == 2
    assert "PATH" in result.output


# -- network option errors ----------------------------------------------------------------


@pytest.mark.parametrize("command", [["tail", "sensors.Temperature"], ["sim", "--kind", "flow"]])
def test_unknown_interface_lists_the_usable_ones(command: list[str]) -> None:
    result = invoke(*command, "--iface", "nosuchif0", "--port", "40001")
    assert result.exit_code == 1
    assert "nosuchif0" in result.output
    assert "Interfaces that would work" in result.output
    assert "lo (127.0.0.1" in result.output


def test_address_not_on_this_host_lists_the_usable_interfaces() -> None:
    result = invoke("tail", "sensors.Temperature", "--iface", "192.0.2.254")
    assert result.exit_code == 1
    assert "192.0.2.254" in result.output
    assert "127.0.0.1" in result.output


def test_bad_interface_from_the_environment_is_reported() -> None:
    result = invoke("tail", "sensors.Temperature", env={"GANGLION_IFACE": "nosuchif1"})
    assert result.exit_code == 1
    assert "nosuchif1" in result.output


def test_missing_key_file_is_reported(tmp_path: Path) -> None:
    result = invoke("tail", "sensors.Temperature", "--iface", "127.0.0.1",
                    "--key-file", str(tmp_path / "absent.key"))
    assert result.exit_code == 1
    assert "absent.key" in result.output


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "net.key"
    assert invoke("keygen", str(path)).exit_code == 0
    path.chmod(0o644)
    result = invoke("sim", "--kind", "flow", "--iface", "127.0.0.1", "--key-file", str(path))
    assert result.exit_code == 1
    assert "chmod" in result.output


def test_both_key_variables_set_is_refused(tmp_path: Path) -> None:
    result = invoke("tail", "sensors.Temperature", "--iface", "127.0.0.1",
                    env={"GANGLION_KEY": "00" * 32, "GANGLION_KEY_FILE": str(tmp_path / "k")})
    assert result.exit_code == 1
    assert "GANGLION_KEY" in result.output


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_port_out_of_range_is_a_usage_error(port: str) -> None:
    result = invoke("tail", "sensors.Temperature", "--iface", "127.0.0.1", "--port", port)
    assert result.exit_code == 2
    assert "--port" in result.output


# -- tail and sim arguments ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Temperature", "sensors.", "sensors..Temp", "a b.c", "1x.Y"])
def test_tail_rejects_a_bad_type_name_before_touching_the_network(name: str) -> None:
    # The interface is bad too: the type name must be reported first.
    result = invoke("tail", "sensors.Temperature", name, "--iface", "nosuchif2")
    assert result.exit_code == 2
    assert "Invalid value for TYPES" in result.output
    assert "nosuchif2" not in result.output


def test_tail_needs_at_least_one_type() -> None:
    result = invoke("tail", "--iface", "127.0.0.1")
    assert result.exit_code == 2
    assert "TYPES" in result.output


def test_sim_needs_a_kind() -> None:
    result = invoke("sim", "--iface", "127.0.0.1")
    assert result.exit_code == 2
    assert "--kind" in result.output


def test_sim_rejects_an_unknown_kind_listing_the_choices() -> None:
    result = invoke("sim", "--kind", "wind", "--iface", "127.0.0.1")
    assert result.exit_code == 2
    for kind in ("temperature", "humidity", "pressure", "flow"):
        assert kind in result.output


@pytest.mark.parametrize(("option", "value"), [("--interval", "0"), ("--count", "-1")])
def test_sim_rejects_out_of_range_numbers(option: str, value: str) -> None:
    result = invoke("sim", "--kind", "flow", "--iface", "127.0.0.1", option, value)
    assert result.exit_code == 2
    assert option in result.output


@pytest.mark.parametrize(("option", "value"), [("--interval", "0"), ("--duration", "-1")])
def test_demo_rejects_out_of_range_numbers(option: str, value: str) -> None:
    result = invoke("demo", option, value)
    assert result.exit_code == 2
    assert option in result.output


@pytest.mark.usefixtures("multicast_loopback")
def test_tail_that_times_out_before_its_count_exits_1(free_udp_port: int) -> None:
    result = invoke("tail", "test_cli.Nothing", "--iface", "127.0.0.1",
                    "--port", str(free_udp_port), "--count", "1", "--timeout", "0.2")
    assert result.exit_code == 1
    assert "listening for test_cli.Nothing on lo" in result.output


@pytest.mark.usefixtures("multicast_loopback")
def test_tail_with_only_a_timeout_exits_0(free_udp_port: int) -> None:
    result = invoke("tail", "test_cli.Nothing", "--iface", "lo",
                    "--port", str(free_udp_port), "--timeout", "0.2")
    assert result.exit_code == 0


# -- helpers: formatting and signal handling -------------------------------------------------


def test_format_reading_shows_time_sender_type_seq_and_fields() -> None:
    sent = dt.datetime(2024, 5, 6, 7, 8, 9, 123000)
    line = format_reading(Temperature("probe", 21.5), sender="cellar", seq=7,
                          sent_ns=int(sent.timestamp() * 1e9))
    assert line.startswith("07:08:09.123  cellar")
    assert "sensors.Temperature #7" in line
    assert line.endswith("sensor=probe celsius=21.5")
    assert "\n" not in line


def test_format_reading_of_a_record_and_awkward_values() -> None:
    rec = Record("x.Y", {"b": b"\x01\x02", "big": bytes(40), "n": math.nan, "m": {"k": [1, 2]},
                         "f": 2.0, "g": 0.1234567})
    line = format_reading(rec, sender="s")
    assert "x.Y  " in line and "#" not in line
    assert "b=0102" in line
    assert "big=<40 bytes>" in line
    assert "n=nan" in line
    assert 'm={"k":[1,2]}' in line
    assert "f=2 " in line
    assert "g=0.123" in line


def test_format_reading_rounds_floats_to_milli_units() -> None:
    line = format_reading(Flow("f", 6.0, 1234.5678), sender="s")
    assert "litres_per_minute=6 " in line
    assert line.endswith("total_litres=1234.568")


def test_wait_or_stop_reports_whether_it_was_stopped() -> None:
    async def main() -> tuple[bool, bool]:
        stop = asyncio.Event()
        timed_out = await wait_or_stop(stop, 0.01)
        asyncio.get_running_loop().call_soon(stop.set)
        stopped = await wait_or_stop(stop, 10.0)
        return timed_out, stopped

    assert asyncio.run(asyncio.wait_for(main(), 10)) == (False, True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_until_signalled_turns_a_signal_into_stop_and_restores_handlers(
        sig: signal.Signals) -> None:
    before = signal.getsignal(sig)

    async def main(stop: asyncio.Event) -> int:
        os.kill(os.getpid(), sig)
        await asyncio.wait_for(stop.wait(), 5.0)
        return 3

    assert run_until_signalled(main) == 3
    assert signal.getsignal(sig) == before


@pytest.mark.usefixtures("multicast_loopback")
def test_tail_stops_asking_for_last_values_before_its_node_closes(
        free_udp_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The type never appears, so the asking task would poll for 10 s; tail's --timeout ends
    # first. Whatever of that task still ran when the node closed could ask a closed node
    # (a race seen under load): it must be finished before close() begins.
    from ganglion.cli import cmd_tail
    from ganglion.node import Node

    asking_at_close: list[asyncio.Task[Any]] = []
    real_close = Node.close

    async def close_and_look(self: Node) -> None:
        asking_at_close.extend(
            t for t in asyncio.all_tasks()
            if not t.done() and getattr(t.get_coro(), "cr_code", None) is cmd_tail._ask_last.__code__)
        await real_close(self)

    monkeypatch.setattr(Node, "close", close_and_look)
    result = invoke("tail", "test_cli.Nothing", "--iface", "127.0.0.1",
                    "--port", str(free_udp_port), "--timeout", "0.3")
    assert result.exit_code == 0
    assert asking_at_close == []
