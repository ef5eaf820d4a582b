"""``ganglion install-service``: the unit it writes, that it never runs systemctl, and
that it refuses (naming why) what would make the node crash-loop under systemd."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ganglion.cli import _service_checks
from ganglion.cli._service_checks import Account, blocked_for
from ganglion.cli.cmd_install_service import render_unit
from ganglion.cli.main import cli

PI = Account("pi", 1000, frozenset({1000, 997}))


@pytest.fixture
def pi_account(monkeypatch: pytest.MonkeyPatch) -> Account:
    """An account "pi" (uid 1000) that can reach this test's Python, on any machine."""
    real_lookup = _service_checks.lookup_account
    monkeypatch.setattr(_service_checks, "lookup_account",
                        lambda name: PI if name == "pi" else real_lookup(name))
    real_blocked = _service_checks.blocked_for
    monkeypatch.setattr(_service_checks, "blocked_for", lambda path, account, want: None
                        if Path(path) == Path(sys.executable) else real_blocked(path, account, want))
    return PI


def install(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, ["install-service", *args], env=env)


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


def test_the_command_writes_the_unit_and_prints_the_systemctl_steps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pi_account: Account,
        open_dir: Path) -> None:
    import subprocess

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("install-service must not run anything")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    target = tmp_path / "units" / "ganglion.service"
    config = open_dir / "node.toml"
    config.write_text('name = "greenhouse"\n')
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


def test_an_existing_unit_is_kept_without_force(tmp_path: Path, pi_account: Account) -> None:
    target = tmp_path / "ganglion.service"
    target.write_text("mine")
    result = install("--path", str(target), "--user", "pi")
    assert result.exit_code != 0 and "--force" in result.output
    assert target.read_text() == "mine"
    again = install("--path", str(target), "--force", "--user", "pi")
    assert again.exit_code == 0
    assert "[Service]" in target.read_text()


def test_an_unwritable_path_says_so(tmp_path: Path, pi_account: Account) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = install("--path", str(blocker / "x.service"), "--user", "pi")
    assert result.exit_code != 0 and "cannot write" in result.output


def test_the_shipped_example_unit_matches_the_template() -> None:
    shipped = Path(__file__).parents[2] / "docs" / "ganglion.service"
    expected = render_unit(user="pi", python="/home/pi/.venv/ganglion/bin/python", node_args=[])
    assert shipped.read_text() == expected


# -- what would make the node crash-loop is refused, naming why ------------------------


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every account can reach (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ganglion-unit-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def refused(result: Result, target: Path, *needles: str) -> None:
    assert result.exit_code != 0, result.output
    assert "the unit would not start" in result.output
    for needle in needles:
        assert needle in result.output
    assert not target.exists()


def test_an_account_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), "--user", "no-such-account-here"), target,
            "no account named 'no-such-account-here'")


def test_root_is_refused_unless_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), "--user", "root"), target, "root", "--allow-root")
    result = install("--path", str(target), "--user", "root", "--allow-root")
    assert result.exit_code == 0, result.output
    assert unit_of(target.read_text())["Service"]["User"] == "root"


@pytest.mark.skipif(os.geteuid() != 0, reason="the default account is root only when run as root")
def test_sudo_from_a_root_shell_defaults_to_root_and_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), env={"SUDO_USER": None}), target, "would run as root")


@pytest.mark.parametrize("node_args, needle", [
    (["--bogus"], "No such option '--bogus'"),
    (["--sim", "temprature"], "'temprature' is not one of"),
    (["--port", "70000"], "70000"),
    (["--help"], "--help"),
])
def test_node_arguments_are_checked_by_the_node_command(tmp_path: Path, pi_account: Account,
                                                        node_args: list[str], needle: str) -> None:
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), "--user", "pi", "--", *node_args), target, needle)


def test_relative_paths_are_refused_as_systemd_runs_the_node_from_the_root(
        tmp_path: Path, pi_account: Account) -> None:
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), "--user", "pi", "--", "--state-dir", "state"), target,
            "--state-dir state", "absolute path")


def test_a_missing_config_file_is_refused(tmp_path: Path, pi_account: Account) -> None:
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), "--user", "pi", "--config", str(tmp_path / "no.toml")),
            target, "does not exist")


@pytest.mark.parametrize("text, needle", [
    ('plugins = ["onewire", "logger"]\n', "no plugin named 'onewire'"),
    ('nmae = "x"\n', "did you mean 'name'"),
    ('plugins = ["log"]\n[plugin.log]\ndatabase = "/x.db"\n', "database"),
])
def test_a_config_the_node_would_refuse_is_refused(open_dir: Path, tmp_path: Path,
                                                   pi_account: Account, text: str,
                                                   needle: str) -> None:
    config = open_dir / "node.toml"
    config.write_text(text)
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), "--user", "pi", "--config", str(config)), target,
            "would refuse its config", needle)


def test_a_config_the_account_cannot_read_is_refused(tmp_path: Path, pi_account: Account) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    config = private / "node.toml"
    config.write_text('name = "x"\n')
    target = tmp_path / "ganglion.service"
    if os.stat(private).st_uid == PI.uid:
        pytest.skip("this test's files belong to uid 1000")
    refused(install("--path", str(target), "--user", "pi", "--config", str(config)), target,
            "pi cannot read the config file")


def test_a_python_the_account_cannot_run_is_refused(tmp_path: Path, open_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    private = open_dir / "venv"
    private.mkdir(mode=0o700)
    python = private / "python"
    python.write_text("")
    python.chmod(0o755)
    monkeypatch.setattr(_service_checks, "lookup_account", lambda name: PI)
    monkeypatch.setattr(sys, "executable", str(python))
    target = tmp_path / "ganglion.service"
    refused(install("--path", str(target), "--user", "pi"), target,
            f"pi cannot run {python} ({private} is not open to it)")


def test_blocked_for_reads_owner_group_and_other_bits(open_dir: Path) -> None:
    inner = open_dir / "f"
    inner.write_text("")
    inner.chmod(0o640)
    if os.geteuid() == 0:  # root passes every check: hand the files to an ordinary owner
        for path in (open_dir, inner):
            os.chown(path, 4141, 4141)
    owner, group = os.stat(open_dir).st_uid, os.stat(open_dir).st_gid
    stranger = Account("x", owner + 4242, frozenset({owner + 4242}))
    member = Account("y", owner + 4343, frozenset({group}))
    the_owner = Account("z", owner, frozenset())
    assert blocked_for(inner, stranger, os.R_OK) == inner
    assert blocked_for(inner, member, os.R_OK) is None
    assert blocked_for(inner, the_owner, os.R_OK) is None
    assert blocked_for(inner, member, os.X_OK) == inner
    open_dir.chmod(0o700)  # nobody but the owner may search it now
    assert blocked_for(inner, member, os.R_OK) == open_dir
    assert blocked_for(open_dir / "missing", the_owner, os.R_OK) == open_dir / "missing"
    assert blocked_for(inner, Account("root", 0, frozenset({0})), os.R_OK) is None
