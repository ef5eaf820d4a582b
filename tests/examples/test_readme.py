"""README.md's Python example runs exactly as written, next to a running ``ganglion node``.

Theory of operation: the fenced ``python`` block is cut out of README.md and run
unchanged, as a user would paste it, with ``GANGLION_IFACE=lo`` and a temporary
HOME, while the user's system node (``ganglion node --iface lo``, all defaults
otherwise) runs in the same HOME: a program's node must get a state directory of
its own and not crash on the system node's lock. The example keeps its defaults
(ports 47800/47801, mDNS on), so both run in a private network namespace with only
``lo`` up, made and deleted by the test: nothing reaches a real interface, and no
other test's nodes on this machine's loopback are heard.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(markdown: str) -> list[str]:
    """The contents of every fenced ``python`` block, in order."""
    return [m.group(1) for m in FENCE.finditer(markdown)]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


@pytest.fixture
def private_lo() -> Iterator[list[str]]:
    """A network namespace with only ``lo`` up; yields the prefix that runs a command in it.

    Every process left in it is killed and the namespace deleted at teardown."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a private network namespace")
    ns = f"greadme{os.getpid()}"
    if _ip("netns", "add", ns, check=False).returncode != 0:
        pytest.skip("`ip netns add` is not allowed here")
    try:
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ["ip", "netns", "exec", ns]
    finally:
        for pid in _ip("netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                continue
        _ip("netns", "del", ns, check=False)


@pytest.fixture
def home() -> Iterator[Path]:
    """A temporary HOME with a short path (the node's ipc socket lives under it)."""
    path = Path(tempfile.mkdtemp(prefix="gr-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_readme_has_one_python_example() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1, "extend test_the_readme_python_example_runs_as_written"
    assert "Node(" in blocks[0]


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_the_readme_python_example_runs_as_written_beside_a_running_node(
        private_lo: list[str], home: Path, tmp_path: Path) -> None:
    script = tmp_path / "readme_example.py"
    script.write_text(python_blocks(README.read_text(encoding="utf-8"))[0], encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GANGLION_") and not k.startswith("XDG_")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    log = tmp_path / "node.err"
    with log.open("wb") as err:
        system = subprocess.Popen([*private_lo, sys.executable, "-m", "ganglion", "node",
                                   "--name", "cellar", "--iface", "lo"], cwd=ROOT, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=err)
    try:
        deadline = time.monotonic() + 20
        while "node cellar (" not in log.read_text(errors="replace"):
            assert system.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        example = subprocess.run([*private_lo, sys.executable, str(script)], cwd=tmp_path,
                                 env={**env, "GANGLION_IFACE": "lo"}, capture_output=True,
                                 text=True, timeout=40)
        assert system.poll() is None, log.read_text()  # the system's node still runs
    finally:
        if system.poll() is None:
            system.kill()
        system.wait(timeout=10)
    assert example.returncode == 0, example.stderr
    assert re.search(r"^[0-9a-f]{16} Temperature\(sensor='mash-tun', celsius=66\.5\)$",
                     example.stdout, re.MULTILINE), (example.stdout, example.stderr)
    state = home / ".local" / "state" / "ganglion"
    assert (state / "node_id").is_file()  # the system node's, where it always was
    assert (state / "nodes" / "mash-tun" / "node_id").is_file()  # the program's own
