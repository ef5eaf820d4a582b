"""Run one trial: a subscriber process, then a publisher process, with timeouts.

Theory of operation: the subscriber starts first and must print ``READY`` (it has
joined) within ``startup_timeout`` before the publisher is started, so no message
is sent to nobody. The publisher runs to completion within ``deadline_s``; the
subscriber then reports when its own stop rule fires. Every wait is bounded, the
pipes are read with ``select`` so a silent child cannot hang the orchestrator, and
both children are killed by PID in a ``finally`` whatever happened. A child that
reports ``{"error": ...}`` raises :class:`SystemUnavailable` (the system cannot run
here, e.g. no ``lcm`` module or no multicast route); anything else that goes wrong
raises :class:`TrialError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from _transport_common import TrialResult
from _transport_role import RoleConfig

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "_transport_worker.py"
REPO_ROOT = BENCH_DIR.parent


class TrialError(RuntimeError):
    """A trial failed (timeout, crash, garbled output); the system may still work."""


class SystemUnavailable(TrialError):
    """The system under test cannot run here; further trials of it are pointless."""


def run_trial(
    sub_cfg: RoleConfig,
    pub_cfg: RoleConfig,
    *,
    startup_timeout: float = 20.0,
    python: str = sys.executable,
) -> TrialResult:
    """Run one subscriber/publisher pair and return what they measured.

    Args:
        sub_cfg: the subscriber's config (role "sub").
        pub_cfg: the publisher's config (role "pub"), same system/mode/size/count.
        startup_timeout: seconds the subscriber has to print ``READY``.
        python: the interpreter to run the workers with.

    Returns:
        The trial's :class:`TrialResult`.

    Raises:
        SystemUnavailable: if a worker reports that its system cannot run.
        TrialError: on a timeout, a crash or unreadable output.
    """
    if sub_cfg.role != "sub" or pub_cfg.role != "pub":
        raise ValueError("run_trial needs a 'sub' config and a 'pub' config")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryFile() as sub_err, tempfile.TemporaryFile() as pub_err:
        try:
            sub = _spawn(sub_cfg, python, sub_err)
            procs.append(sub)
            lines = _LineReader(sub)
            _expect_ready(lines.readline(startup_timeout), sub_err)
            pub = _spawn(pub_cfg, python, pub_err)
            procs.append(pub)
            pub_lines = _LineReader(pub)
            pub_out = _result(pub_lines.readline(pub_cfg.deadline_s + startup_timeout), pub_err)
            sub_out = _result(lines.readline(sub_cfg.deadline_s + 5.0), sub_err)
        finally:
            for proc in procs:
                _kill(proc)
    return _combine(sub_cfg, pub_out, sub_out)


def worker_env() -> dict[str, str]:
    """Return the environment for workers: the repo root on PYTHONPATH, output unbuffered."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT), str(BENCH_DIR)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(cfg: RoleConfig, python: str, err: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start one worker process with its stdout piped and stderr to ``err``."""
    return subprocess.Popen(
        [python, str(WORKER), cfg.to_arg()],
        stdout=subprocess.PIPE,
        stderr=err,
        stdin=subprocess.DEVNULL,
        env=worker_env(),
        cwd=str(REPO_ROOT),
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` by PID if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)
    if proc.stdout is not None:
        proc.stdout.close()


def _expect_ready(line: str | None, err: IO[bytes]) -> None:
    """Check the subscriber's first line is READY; otherwise explain why not."""
    if line == "READY":
        return
    _result(line, err)  # raises with the worker's error if it sent one
    raise TrialError(f"subscriber sent {line!r} instead of READY")


def _result(line: str | None, err: IO[bytes]) -> dict[str, Any]:
    """Parse a worker's result line, raising with its reason or stderr on failure."""
    if line is None:
        raise TrialError(f"worker timed out or exited without a result; stderr: {_tail(err)}")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrialError(f"worker printed {line[:200]!r}: {exc}") from exc
    if not isinstance(obj, dict):
        raise TrialError(f"worker printed {line[:200]!r}, not an object")
    if "error" in obj:
        raise SystemUnavailable(str(obj["error"]))
    result = obj.get("result")
    if not isinstance(result, dict):
        raise TrialError(f"worker result has no 'result' object: {line[:200]!r}")
    return result


def _tail(err: IO[bytes], limit: int = 800) -> str:
    """Return the last ``limit`` characters a worker wrote to stderr."""
    err.seek(0)
    text = err.read().decode("utf-8", "replace").strip()
    return text[-limit:] or "(empty)"


def _combine(cfg: RoleConfig, pub: dict[str, Any], sub: dict[str, Any]) -> TrialResult:
    """Merge the publisher's and subscriber's reports into one :class:`TrialResult`."""
    try:
        extra: dict[str, Any] = {
            k: sub[k] for k in ("out_of_range", "rcvbuf", "endpoint_stats", "loop") if k in sub
        }
        extra.update({k: pub[k] for k in ("published", "datagrams_sent") if k in pub})
        return TrialResult(
            system=cfg.system,
            mode=cfg.mode,
            size=cfg.size,
            sent=int(pub["sent"]),
            received=int(sub["received"]),
            duplicates=int(sub["duplicates"]),
            send_seconds=(int(pub["t_end_ns"]) - int(pub["t_start_ns"])) / 1e9,
            rx_seconds=(int(sub["last_rx_ns"]) - int(sub["first_rx_ns"])) / 1e9,
            p50_us=_opt_float(sub.get("p50_us")),
            p99_us=_opt_float(sub.get("p99_us")),
            extra=extra,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TrialError(f"worker results are incomplete: {exc}") from exc


def _opt_float(value: object) -> float | None:
    """Return ``value`` as a float, or None when absent."""
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


class _LineReader:
    """Reads whole lines from a child's stdout with a timeout, without blocking on it."""

    __slots__ = ("_buf", "_eof", "_fd")

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._buf = b""
        self._eof = False

    def readline(self, timeout: float) -> str | None:
        """Return the next line without its newline, or None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if self._eof or remaining <= 0:
                return None
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self._eof = True
                continue
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace").strip()
