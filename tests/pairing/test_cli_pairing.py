"""``ganglion invite`` and ``ganglion join`` as two real processes, like two Pis on one LAN.

Each process gets its own XDG_STATE_HOME (its own default key file) and no
GANGLION_* variables; both use 127.0.0.1. Without mDNS, the joiner is given the
inviter's address; the mDNS variant runs only in a private network namespace
(GANGLION_TEST_NETNS, as scripts/test.sh sets it). Every process is killed by PID
at the end, and every read has a deadline.
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pairing_support import key_bytes, mdns_isolation_problem, write_key

from ganglion.cli.main import cli

pytest.importorskip("spake2")
pytest.importorskip("cryptography")

REPO = Path(__file__).resolve().parents[2]
KEY = key_bytes(11)


class Proc:
    """A ``python -m ganglion`` subprocess whose output is read with deadlines."""

    def __init__(self, args: list[str], home: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
        env.update(PYTHONUNBUFFERED="1", XDG_STATE_HOME=str(home))
        self.popen = subprocess.Popen([sys.executable, "-m", "ganglion", *args], cwd=REPO,
                                      env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = self.err = ""

    def _pump(self, timeout: float) -> None:
        streams = [s for s in (self.popen.stdout, self.popen.stderr) if s is not None]
        ready, _, _ = select.select(streams, [], [], timeout)
        for stream in ready:
            chunk = os.read(stream.fileno(), 65536).decode(errors="replace")
            if stream is self.popen.stdout:
                self.out += chunk
            else:
                self.err += chunk

    def expect(self, pattern: str, *, stream: str = "out", timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.out if stream == "out" else self.err)
            if found:
                return found
            if time.monotonic() > deadline or (self.popen.poll() is not None
                                               and not self._readable()):
                raise AssertionError(f"{pattern!r} not seen (exit {self.popen.poll()}):\n"
                                     f"stdout: {self.out}\nstderr: {self.err}")
            self._pump(0.1)

    def _readable(self) -> bool:
        before = len(self.out) + len(self.err)
        self._pump(0.05)
        return len(self.out) + len(self.err) > before

    def finish(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None or self._readable():
            if time.monotonic() > deadline:
                raise AssertionError(f"did not exit in {timeout} s:\n{self.out}\n{self.err}")
            self._pump(0.1)
        return int(self.popen.returncode)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """Start ``python -m ganglion ARGS`` with XDG_STATE_HOME=home; killed by PID at teardown."""
    procs: list[Proc] = []

    def start(home: Path, *args: str) -> Proc:
        proc = Proc(list(args), home)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()


def _invite(spawn: Any, tmp_path: Path, *extra: str) -> tuple[Proc, str, str]:
    """Start an inviter with KEY; return it, its code and its address."""
    key_file = tmp_path / "inviter.key"
    if not key_file.exists():
        write_key(key_file, KEY)
    proc = spawn(tmp_path / "inviter-home", "invite", "--iface", "127.0.0.1",
                 "--key-file", str(key_file), *extra)
    code = proc.expect(r"invite code: (\S+)").group(1)
    address = proc.expect(r"listening on lo (\S+):(\d+)", stream="err")
    return proc, code, f"{address.group(1)}:{address.group(2)}"


def test_a_new_node_joins_with_the_code_and_gets_the_key_0600(spawn: Any, tmp_path: Path) -> None:
    inviter, code, address = _invite(spawn, tmp_path, "--no-mdns", "--ttl", "60")
    assert re.fullmatch(r"\d{1,2}(-[a-z]+){3}", code)
    home = tmp_path / "joiner-home"
    joiner = spawn(home, "join", code, "--iface", "127.0.0.1", "--inviter", address)
    assert joiner.finish() == 0, joiner.err
    written = home / "ganglion" / "network.key"
    assert written.read_bytes() == KEY
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert "start the node with: ganglion node" in joiner.out
    assert inviter.finish() == 0
    assert "the network key was sent; the code is used up" in inviter.err


def test_a_wrong_code_fails_clearly_and_writes_nothing(spawn: Any, tmp_path: Path) -> None:
    inviter, code, address = _invite(spawn, tmp_path, "--no-mdns")
    number, *words = code.split("-")
    wrong = "-".join([number, *(["adroitness"] if words[0] != "adroitness" else ["adviser"]),
                      *words[1:]])
    home = tmp_path / "joiner-home"
    joiner = spawn(home, "join", wrong, "--iface", "127.0.0.1", "--inviter", address)
    assert joiner.finish() == 1
    assert "the code is wrong or expired; nothing was received" in joiner.err
    assert not (home / "ganglion" / "network.key").exists()
    inviter.popen.send_signal(signal.SIGTERM)
    assert inviter.finish() == 130
    assert "the code no longer works" in inviter.err


def test_join_keeps_another_key_unless_forced(spawn: Any, tmp_path: Path) -> None:
    home = tmp_path / "joiner-home"
    (home / "ganglion").mkdir(parents=True)
    existing = write_key(home / "ganglion" / "network.key", key_bytes(12))
    _, code, address = _invite(spawn, tmp_path, "--no-mdns")
    joiner = spawn(home, "join", code, "--iface", "127.0.0.1", "--inviter", address)
    assert joiner.finish() == 1
    assert "already holds another network key; pass --force" in joiner.err
    assert existing.read_bytes() == key_bytes(12)
    _, code, address = _invite(spawn, tmp_path, "--no-mdns")
    joiner = spawn(home, "join", code, "--iface", "127.0.0.1", "--inviter", address, "--force")
    assert joiner.finish() == 0, joiner.err
    assert existing.read_bytes() == KEY


def test_join_writes_where_it_is_told_and_says_how_to_use_it(spawn: Any, tmp_path: Path) -> None:
    _, code, address = _invite(spawn, tmp_path, "--no-mdns")
    target = tmp_path / "etc" / "network.key"
    joiner = spawn(tmp_path / "joiner-home", "join", code, "--iface", "127.0.0.1",
                   "--inviter", address, "--key-file", str(target))
    assert joiner.finish() == 0, joiner.err
    assert target.read_bytes() == KEY
    assert f"ganglion node --key-file {target}" in joiner.out


def test_a_typo_is_reported_before_any_traffic(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["join", "7-guitarst-reindeer-molecule", "--iface",
                                      "127.0.0.1", "--inviter", "127.0.0.1:9"])
    assert result.exit_code == 1
    assert "did you mean 'guitarist'" in result.output


def test_invite_without_a_key_says_how_to_make_one(state_home: Path) -> None:
    result = CliRunner().invoke(cli, ["invite", "--iface", "127.0.0.1", "--no-mdns"])
    assert result.exit_code == 1
    assert "there is no network key to share: make one with 'ganglion keygen" in result.output


def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch,
                                               state_home: Path) -> None:
    real = importlib.util.find_spec

    def hide_spake2(name: str, *args: Any) -> Any:
        return None if name == "spake2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hide_spake2)
    for args in (["invite", "--iface", "127.0.0.1"], ["join", "7-guitarist-reindeer-molecule"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert "need spake2: pip install 'ganglion-net[secure]'" in result.output


def test_join_finds_the_inviter_over_mdns(spawn: Any, tmp_path: Path) -> None:
    problem = mdns_isolation_problem()
    if problem:
        pytest.skip(problem)
    inviter, code, _ = _invite(spawn, tmp_path, "--ttl", "60")
    home = tmp_path / "joiner-home"
    joiner = spawn(home, "join", code, "--iface", "127.0.0.1", "--timeout", "20")
    assert joiner.finish() == 0, joiner.err
    assert (home / "ganglion" / "network.key").read_bytes() == KEY
    assert inviter.finish() == 0

