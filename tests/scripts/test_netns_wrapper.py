"""scripts/netns.sh, the one namespace wrapper of scripts/test.sh, fuzz.sh and leakcheck.sh:
the command runs in a fresh namespace with only loopback, sees GANGLION_TEST_NETNS, its
exit status comes back, and the namespace is gone afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "netns.sh"

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("bash") is None,
    reason="needs root, bash and iproute2 (ip netns)")


def _wrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10, check=False).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_a_call_without_the_separator_is_a_usage_error() -> None:
    done = _wrap("name", "checking", "true")
    assert done.returncode == 2
    assert "usage: scripts/netns.sh" in done.stderr


@needs_netns
def test_the_command_runs_alone_with_loopback_and_its_status_comes_back() -> None:
    before = _namespaces()
    done = _wrap("--multicast-route", "ganglion-wraptest", "probing", "--", "sh", "-c",
                 'echo "ns=$GANGLION_TEST_NETNS"; ip -o link show | wc -l; '
                 'ip route show table all | grep -c "^224.0.0.0/4 dev lo" ; exit 3')
    if "could not create a network namespace" in done.stderr:
        pytest.skip("ip netns add is refused here")
    assert done.returncode == 3, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("probing inside network namespace ganglion-wraptest-")
    name = out[0].split()[4]
    assert out[1:] == [f"ns={name}", "1", "1"]  # only lo; the multicast route through it
    assert _namespaces() <= before  # removed again


@needs_netns
def test_without_the_route_option_no_route_is_added() -> None:
    done = _wrap("ganglion-wraptest", "probing", "--", "sh", "-c",
                 'ip route show table all | grep -c "^224.0.0.0/4" || true')
    if "could not create a network namespace" in done.stderr:
        pytest.skip("ip netns add is refused here")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == ["0"]
