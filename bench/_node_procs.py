"""Processes of the node benchmark: start workers and ``ganglion node``, hear them, stop them.

Theory of operation: every process the benchmark starts is a :class:`Proc`
owned by one :class:`ProcGroup` (a context manager). Two daemon threads per
process read its stdout (protocol lines, see :mod:`_node_common`) and stderr
(kept for error messages; ``ganglion node`` prints its start line there), each
line stamped with ``time.monotonic_ns()`` on arrival. :meth:`Proc.wait_event`
blocks, bounded in time, until a matching line arrives. Leaving the group stops
every process still running *by its PID*: ``quit`` on stdin (workers) or SIGTERM
(``ganglion node``), then SIGKILL after a grace period. Temporary state
directories live under one ``tempfile`` directory the group removes.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from _node_common import LOOPBACK, parse_line

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "_node_worker.py"
PROC_STATUS = Path("/proc")

Event = dict[str, Any]
T = TypeVar("T")


class ProcError(RuntimeError):
    """A benchmark process did not do what it should in time (the message says what)."""


def ganglion_command() -> list[str]:
    """The ``ganglion`` console script next to this interpreter, else ``python -m ganglion``."""
    script = Path(sys.executable).parent / "ganglion"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ganglion"]


def rss_kib(pid: int, proc_dir: Path = PROC_STATUS) -> int:
    """Return a process's resident set size (``VmRSS``) in KiB.

    Args:
        pid: the process id.
        proc_dir: the proc file system (a parameter for tests).

    Returns:
        VmRSS in KiB.

    Raises:
        ProcError: the process is gone or its status has no VmRSS.
    """
    try:
        text = (proc_dir / str(pid) / "status").read_text()
    except OSError as exc:
        raise ProcError(f"cannot read the status of pid {pid}: {exc}") from None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ProcError(f"pid {pid} has no VmRSS (a zombie?)")


def cpu_and_wakeups(pid: int, proc_dir: Path = PROC_STATUS) -> tuple[float, int]:
    """Return a process's CPU time so far (seconds, all threads) and its voluntary
    context switches summed over its threads (each one a wake-up from a wait).

    The CPU time is the scheduler's own count in nanoseconds (``schedstat``, the
    first field, per thread) where the kernel keeps it: an idle node uses about
    ten clock ticks (``utime + stime``, 10 ms each) a minute, so the tick count
    alone moves by 10 % with one tick. Without ``schedstat``: ``utime + stime``.

    Raises:
        ProcError: the process is gone.
    """
    base = proc_dir / str(pid)
    try:
        # Fields after the command name (which may hold spaces): utime, stime are 14, 15.
        fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
        switches = 0
        run_ns: int | None = 0
        for task in (base / "task").iterdir():
            try:
                status = (task / "status").read_text()
            except OSError:
                continue  # a thread that just ended
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
            if run_ns is not None:
                try:
                    run_ns += int((task / "schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    run_ns = None  # not kept here: fall back to the ticks
    except OSError as exc:
        raise ProcError(f"cannot read the stat of pid {pid}: {exc}") from None
    if run_ns is not None:
        return run_ns / 1e9, switches
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, switches


class Proc:
    """One started process: its protocol events, stderr lines, and how to stop it.

    Args:
        name: a label for messages.
        argv: the command.
        graceful: ``quit`` (write it to stdin) or ``sigterm`` to ask it to stop.
    """

    def __init__(self, name: str, argv: Sequence[str], *, graceful: str = "quit",
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.graceful = graceful
        self.started_ns = time.monotonic_ns()
        self.popen = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, cwd=str(BENCH_DIR.parent),
            env=None if env is None else {**os.environ, **env})
        self.pid = self.popen.pid
        self._cond = threading.Condition()
        self._events: list[tuple[int, Event]] = []
        self._stderr: list[tuple[int, str]] = []
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._readers = [
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            for stream, sink in ((self.popen.stdout, self._on_stdout),
                                 (self.popen.stderr, self._on_stderr))
        ]
        for reader in self._readers:
            reader.start()

    def send(self, command: str) -> None:
        """Write one command line to the process's stdin (ignored if it has gone)."""
        stdin = self.popen.stdin
        if stdin is None or self.popen.poll() is not None:
            return
        try:
            stdin.write(command + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def wait_event(self, event: str, timeout: float,
                   where: Callable[[Event], bool] | None = None) -> tuple[int, Event]:
        """Wait for (and consume) the next protocol line with this ``event``.

        Args:
            event: the event name.
            timeout: seconds to wait at most.
            where: an extra condition on the line.

        Returns:
            ``(arrival monotonic ns, the JSON object)``.

        Raises:
            ProcError: it did not come in time, or the process exited first.
        """
        def find() -> tuple[int, Event] | None:
            for i, (t, obj) in enumerate(self._events):
                if obj.get("event") == event and (where is None or where(obj)):
                    del self._events[i]
                    return t, obj
            return None

        return self._wait(find, timeout, f"event {event!r}")

    def last_event(self, event: str) -> Event | None:
        """The latest not yet consumed protocol line with this ``event``, without consuming it."""
        with self._cond:
            return next((obj for _t, obj in reversed(self._events)
                         if obj.get("event") == event), None)

    def wait_stderr(self, prefix: str, timeout: float) -> int:
        """Wait for a stderr line starting with ``prefix``; return its arrival time (ns)."""
        def find() -> int | None:
            return next((t for t, line in self._stderr if line.startswith(prefix)), None)

        return self._wait(find, timeout, f"a stderr line starting {prefix!r}")

    def stop(self, grace: float = 3.0) -> int | None:
        """Ask the process to stop, then kill it by PID after ``grace`` seconds.

        Returns:
            Its exit status (negative for a signal).
        """
        if self.popen.poll() is None:
            if self.graceful == "sigterm":
                self.popen.send_signal(signal.SIGTERM)
            else:
                self.send("quit")
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def stderr_lines(self) -> list[str]:
        """Every line the process has written to stderr so far."""
        with self._cond:
            return [line for _t, line in self._stderr]

    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr, for error messages."""
        with self._cond:
            return " | ".join(self._tail)

    # -- internals ---------------------------------------------------------------

    def _wait(self, find: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                # once it has exited and its output is read to the end, nothing more comes
                gone = self.popen.poll() is not None and not any(
                    r.is_alive() for r in self._readers)
                if left <= 0 or gone:
                    status = self.popen.poll()
                    state = "still running" if status is None else f"exited {status}"
                    raise ProcError(f"{self.name} (pid {self.pid}, {state}) gave no {what} "
                                    f"within {timeout:g} s; stderr: {self.stderr_tail()[-600:]}")
                self._cond.wait(min(left, 0.1))

    def _pump(self, stream: IO[str] | None, sink: Callable[[int, str], None]) -> None:
        if stream is None:
            return
        for line in stream:
            sink(time.monotonic_ns(), line.rstrip("\n"))

    def _on_stdout(self, t: int, line: str) -> None:
        obj = parse_line(line)
        with self._cond:
            if obj is not None:
                self._events.append((t, obj))
            else:
                self._tail.append(line)
            self._cond.notify_all()

    def _on_stderr(self, t: int, line: str) -> None:
        with self._cond:
            self._stderr.append((t, line))
            self._tail.append(line)
            self._cond.notify_all()


class ProcGroup:
    """Owns every process of one measurement and a temporary directory; cleans up on exit."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.procs: list[Proc] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ganglion-bench-node-{label}-"))
        self._dirs = 0

    def state_dir(self) -> str:
        """A fresh, empty state directory."""
        self._dirs += 1
        path = self.tmp / f"state{self._dirs}"
        path.mkdir()
        return str(path)

    def worker(self, role: str, cfg: dict[str, Any], name: str | None = None) -> Proc:
        """Start a benchmark worker (``bench/_node_worker.py ROLE CONFIG``)."""
        proc = Proc(name or role, [sys.executable, str(WORKER), role, json.dumps(cfg)])
        self.procs.append(proc)
        return proc

    def node(self, port: int, state_dir: str, *extra: str, name: str = "bench-node",
             env: dict[str, str] | None = None) -> Proc:
        """Start ``ganglion node`` on 127.0.0.1 with this port and state directory
        (``env``: variables to set for it, on top of this process's)."""
        argv = [*ganglion_command(), "node", "--iface", LOOPBACK, "--port", str(port),
                "--state-dir", state_dir, "--name", name, *extra]
        proc = Proc(f"ganglion node {name}", argv, graceful="sigterm", env=env)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> int | None:
        """Stop one process now (it is still stopped again harmlessly at exit)."""
        return proc.stop()

    def close(self) -> None:
        """Stop every process (all asked at once, then each waited for) and remove files."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                if proc.graceful == "sigterm":
                    proc.popen.send_signal(signal.SIGTERM)
                else:
                    proc.send("quit")
        for proc in self.procs:
            proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ProcGroup:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[Proc]:
        return iter(self.procs)
