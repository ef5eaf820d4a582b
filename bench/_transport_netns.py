"""Keep the benchmark off the real network: run it in a namespace with only loopback.

Theory of operation: raw and ganglion sockets always send with
``IP_MULTICAST_IF=127.0.0.1``, so they are safe anywhere. LCM picks its interface
from the routing table, so it is only run where loopback is the *only* interface.
:func:`choose_isolation` decides, once, at start-up:

* ``inside``: this process already runs in such a namespace (ours, re-executed,
  or one with the multicast route LCM needs) -- run every system here;
* ``create``: we are root and ``ip netns`` works -- make a fresh namespace (also
  from inside a loopback-only namespace that lacks the route), bring
  ``lo`` up, add the multicast route LCM needs (``224.0.0.0/4 dev lo``) and re-run
  this same command inside it with :func:`run_in_namespace`, which deletes the
  namespace in a ``finally`` even on failure, Ctrl-C or SIGTERM;
* ``loopback``: neither -- run raw and ganglion on loopback and skip LCM with the
  reason printed (in a loopback-only namespace without the route, LCM is still
  tried: it cannot reach a real interface from there, and reports why it failed).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

#: Set in the re-executed child to the namespace's name.
ENV_NETNS = "GANGLION_BENCH_NETNS"
NET_DIR = Path("/sys/class/net")
ROUTE_FILE = Path("/proc/net/route")
MULTICAST_BLOCK = ipaddress.IPv4Network("224.0.0.0/4")


@dataclass(frozen=True, slots=True)
class Isolation:
    """How the benchmark is isolated: ``mode`` is inside/create/loopback; ``reason`` says why."""

    mode: str
    reason: str

    @property
    def lcm_allowed(self) -> bool:
        """LCM runs only where loopback is the only interface."""
        return self.mode == "inside"


def only_loopback(net_dir: Path = NET_DIR) -> bool:
    """Return True if ``lo`` is the only network interface visible in this namespace.

    Args:
        net_dir: the sysfs directory listing interfaces (a parameter for tests).
    """
    try:
        names = {p.name for p in net_dir.iterdir()}
    except OSError:
        return False
    return names == {"lo"}


def has_multicast_route(route_file: Path = ROUTE_FILE) -> bool:
    """Return True if a route on ``lo`` covers 224.0.0.0/4 (LCM refuses to start without one).

    Args:
        route_file: the kernel's IPv4 route table (a parameter for tests).
    """
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] != "lo":
            continue
        try:
            dest, mask = (_hex_to_addr(fields[1]), _hex_to_addr(fields[7]))
            if MULTICAST_BLOCK.subnet_of(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)):
                return True
        except ValueError:
            continue
    return False


def choose_isolation(
    *,
    allow_create: bool,
    net_dir: Path = NET_DIR,
    route_file: Path = ROUTE_FILE,
    euid: int | None = None,
) -> Isolation:
    """Decide how to isolate this run (see the module docstring).

    Args:
        allow_create: False when the user passed ``--no-netns``.
        net_dir: the sysfs interface directory (a parameter for tests).
        route_file: the kernel's IPv4 route table (a parameter for tests).
        euid: the effective user id (defaults to this process's).

    Returns:
        The chosen :class:`Isolation`.
    """
    lo_only = only_loopback(net_dir)
    ours = os.environ.get(ENV_NETNS)
    if lo_only and (ours or has_multicast_route(route_file)):
        return Isolation(
            "inside", f"running in {f'namespace {ours}' if ours else 'a loopback-only namespace'}"
        )
    uid = os.geteuid() if euid is None else euid
    if allow_create and uid == 0 and shutil.which("ip") is not None:
        return Isolation("create", "creating a network namespace with only loopback")
    if lo_only:
        return Isolation(
            "inside", "loopback-only namespace without a 224.0.0.0/4 route; LCM may not start"
        )
    if not allow_create:
        return Isolation(
            "loopback", "--no-netns given; LCM skipped (it would use a real interface)"
        )
    if uid != 0:
        return Isolation("loopback", "not root, cannot create a network namespace; LCM skipped")
    return Isolation("loopback", "no `ip` command, cannot create a network namespace; LCM skipped")


def run_in_namespace(argv: Sequence[str], *, timeout: float, name: str | None = None) -> int:
    """Create a loopback-only namespace, run ``argv`` inside it, and always delete it.

    Args:
        argv: the command to run inside the namespace.
        timeout: seconds the command may run before it is killed.
        name: the namespace name (default ``ganglion-bench-<pid>``).

    Returns:
        The command's exit status (124 if it timed out, 130 if interrupted).

    Raises:
        subprocess.CalledProcessError: if the namespace cannot be set up (it is
            still deleted).
    """
    ns = name or f"ganglion-bench-{os.getpid()}"
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _ip("netns", "add", ns)
        try:
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "lo")
            return _run_child(["ip", "netns", "exec", ns, *argv], ns, timeout)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    finally:
        signal.signal(signal.SIGTERM, previous)


def namespace_exists(name: str) -> bool:
    """Return True if ``ip netns list`` shows a namespace called ``name``."""
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    return any(line.split()[0] == name for line in out.splitlines() if line.strip())


def _run_child(cmd: list[str], ns: str, timeout: float) -> int:
    """Run ``cmd`` with ``ENV_NETNS`` set; kill it by PID on timeout or interrupt."""
    env = dict(os.environ)
    env[ENV_NETNS] = ns
    child = subprocess.Popen(cmd, env=env)
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"benchmark exceeded {timeout:.0f} s; killing it")
        return 124
    except KeyboardInterrupt:
        print("interrupted; stopping the benchmark and removing the namespace")
        return 130
    finally:
        _stop(child)


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Stop ``child`` by PID: SIGINT first so it kills its own workers, then SIGKILL."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=10)


def _hex_to_addr(text: str) -> str:
    """Turn a /proc/net/route address (hex, host byte order) into dotted form."""
    order = "<" if sys.byteorder == "little" else ">"
    return socket.inet_ntoa(struct.pack(f"{order}I", int(text, 16)))


def _ip(*args: str) -> None:
    """Run one ``ip`` command, raising on failure."""
    subprocess.run(["ip", *args], check=True, timeout=30)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM into the same clean-up path as Ctrl-C."""
    raise KeyboardInterrupt
