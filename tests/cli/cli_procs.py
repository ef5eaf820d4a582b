"""Running ``python -m ganglion`` in a subprocess and reading its output with deadlines."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    """This process's environment without any GANGLION_* setting, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANGLION_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A running ``python -m ganglion`` subprocess and the output read from it so far."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "ganglion", *args], cwd=REPO, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.out = ""
        self.err = ""
        self._drained = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self, timeout: float) -> None:
        """Read whatever either pipe has within ``timeout`` seconds."""
        streams = [s for s in (self.popen.stdout, self.popen.stderr) if s is not None]
        ready, _, _ = select.select(streams, [], [], timeout)
        for stream in ready:
            chunk = os.read(stream.fileno(), 65536).decode(errors="replace")
            if stream is self.popen.stdout:
                self.out += chunk
            else:
                self.err += chunk

    def wait_for_output(self, pattern: str, *, stream: str = "err", timeout: float = 15.0) -> None:
        """Wait until ``pattern`` (a regex) shows up on stdout ("out") or stderr ("err")."""
        deadline = time.monotonic() + timeout

        def seen() -> bool:
            return re.search(pattern, self.out if stream == "out" else self.err) is not None

        while not seen():
            left = deadline - time.monotonic()
            if self.popen.poll() is not None:
                self.finish()  # read the rest of what it wrote before it exited
                if seen():
                    return
            if left <= 0 or self.popen.poll() is not None:
                raise AssertionError(
                    f"{pattern!r} not seen from {self.args} (exit {self.popen.poll()}):\n"
                    f"stdout: {self.out}\nstderr: {self.err}")
            self._pump(min(left, 0.2))

    def finish(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit (reading all its output); return its exit code."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.args} did not exit within {timeout} s:\n"
                                     f"stdout: {self.out}\nstderr: {self.err}")
            if self.popen.poll() is not None:
                if not self._drained:
                    out, err = self.popen.communicate(timeout=max(left, 1.0))
                    self.out += out.decode(errors="replace")
                    self.err += err.decode(errors="replace")
                    self._drained = True
                return self.popen.returncode
            self._pump(min(left, 0.2))

    def kill(self) -> None:
        """End the process by its PID if it still runs (SIGKILL), and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(timeout=5)
        finally:
            for stream in (self.popen.stdout, self.popen.stderr):
                if stream is not None and not stream.closed:
                    stream.close()
