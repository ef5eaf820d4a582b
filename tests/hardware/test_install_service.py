"""``ganglion install-service``: the unit it writes, and that it never runs systemctl."""

from __future__ import annotations

import configparser
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganglion.cli.cmd_install_service import render_unit
from ganglion.cli.main import cli


def unit_of(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_the_unit_waits_for_the_network_and_restarts_on_failure() -> None:
    unit = unit_of(render_unit(user="pi", python="/opt/venv/bin/python", node_args=[]))
    assert unit["Unit"]["After"] == "network-online.target"
    assert unit["Unit"]["Wants"] == "network-online.target"
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Service"]["User"] == "pi"
    assert unit["Service"]["ExecStart"] == "/opt/venv/bin/python -m ganglion node"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_node_arguments_are_quoted_for_systemd() -> None:
    text = render_unit(user="pi", python="/usr/bin/python3",
                       node_args=["--name", "green house", "--gpio", "input:17"])
    exec_start = unit_of(text)["Service"]["ExecStart"]
    assert shlex.split(exec_start) == ["/usr/bin/python3", "-m", "ganglion", "node", "--name",
                                       "green house", "--gpio", "input:17"]


@pytest.mark.parametrize("kwargs, match", [
    ({"user": "pi", "python": "python3"}, "absolute"),
    ({"user": "", "python": "/usr/bin/python3"}, "user"),
    ({"user": "a b", "python": "/usr/bin/python3"}, "user"),
])
def test_bad_inputs_are_refused(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render_unit(node_args=[], **kwargs)


def test_the_command_writes_the_unit_and_prints_the_systemctl_steps(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    import subprocess

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("install-service must not run anything")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    target = tmp_path / "units" / "ganglion.service"
    config = tmp_path / "node.toml"
    result = CliRunner().invoke(cli, ["install-service", "--path", str(target), "--user", "pi",
                                      "--config", str(config), "--", "--name", "greenhouse"])
    assert result.exit_code == 0, result.output
    unit = unit_of(target.read_text())
    assert shlex.split(unit["Service"]["ExecStart"]) == [
        sys.executable, "-m", "ganglion", "node", "--config", str(config.resolve()),
        "--name", "greenhouse"]
    assert "sudo systemctl daemon-reload" in result.output
    assert "sudo systemctl enable --now ganglion.service" in result.output
    assert "usermod -aG gpio,i2c,dialout pi" in result.output


def test_an_existing_unit_is_kept_without_force(tmp_path: Path) -> None:
    target = tmp_path / "ganglion.service"
    target.write_text("mine")
    result = CliRunner().invoke(cli, ["install-service", "--path", str(target)])
    assert result.exit_code != 0 and "--force" in result.output
    assert target.read_text() == "mine"
    again = CliRunner().invoke(cli, ["install-service", "--path", str(target), "--force"])
    assert again.exit_code == 0
    assert "[Service]" in target.read_text()


def test_an_unwritable_path_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["install-service", "--path", str(blocker / "x.service")])
    assert result.exit_code != 0 and "cannot write" in result.output


def test_the_shipped_example_unit_matches_the_template() -> None:
    shipped = Path(__file__).parents[2] / "docs" / "ganglion.service"
    expected = render_unit(user="pi", python="/home/pi/.venv/ganglion/bin/python", node_args=[])
    assert shipped.read_text() == expected
