"""Runs one fuzz run in a child process, so that a node frozen inside one call is
caught, killed and reported instead of hanging the caller.

Theory of operation: some inputs freeze a node inside a single C-level call (an
exponential ``repr``, a gigabyte integer shift). No Python code in that process runs
again until the call returns: not the run's own deadline, not pytest-timeout's alarm
handler, not another thread. So :func:`run_isolated` starts ``python -m
tests.fuzz.child`` with the run's settings and waits with a deadline. The child
writes the inputs it sent last to a progress file after every chunk, arms
``faulthandler`` (a C thread, which dumps every thread's stack and exits even while
the interpreter is stuck) shortly before the deadline, and writes its verdict as JSON
when it finishes. Without a verdict, the run is reported as a freeze: the stack
faulthandler printed says where, the progress file says after which inputs. The
child is killed by its own PID if it is still there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .drive import RUN_GRACE, Settings

REPO = Path(__file__).resolve().parents[2]
#: Seconds beyond the child's own deadline before it is killed.
KILL_GRACE = 10.0
#: Seconds without a turn of the child's event loop after which it counts as frozen
#: (fifty times the stall limit: long past a stall, short enough for ``make test``).
FROZEN_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A run's result as the supervising process sees it.

    Attributes:
        ok: every property held and the run finished.
        report: the child's report, or the freeze report.
        frozen: the child gave no verdict in time (a freeze or a crash).
    """

    ok: bool
    report: str
    frozen: bool = False


def child_command(settings: Settings, workdir: Path, deadline: float) -> list[str]:
    """The command line of the child that runs ``settings`` in ``workdir``."""
    cmd = [sys.executable, "-m", "tests.fuzz.child", "--path", settings.path,
           "--seconds", repr(settings.seconds), "--seed", str(settings.seed),
           "--max-inputs", str(settings.max_inputs), "--stall-ms", repr(settings.stall_ms),
           "--rss-mb", repr(settings.rss_mb), "--chunk", str(settings.chunk),
           "--json", str(workdir / "verdict.json"), "--progress", str(workdir / "progress.txt"),
           "--workdir", str(workdir / "nodes"), "--freeze-seconds", repr(deadline)]
    if not settings.fail_fast:
        cmd.append("--keep-going")
    if not settings.directed:
        cmd.append("--no-directed")
    return cmd


def run_isolated(settings: Settings, workdir: Path, *, speedups: str | None = None) -> Verdict:
    """Run ``settings`` in a child process and return its verdict, or a freeze report.

    Args:
        settings: the run.
        workdir: an empty directory (the nodes' state, the child's output files).
        speedups: ``GANGLION_SPEEDUPS`` for the child (``off`` for the Python path,
            ``require`` for the compiled one); None keeps the environment's.

    Returns:
        The :class:`Verdict`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = settings.seconds + RUN_GRACE + 5.0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    if speedups is not None:
        env["GANGLION_SPEEDUPS"] = speedups
    out_path, err_path = workdir / "child.out", workdir / "child.err"
    verdict = workdir / "verdict.json"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(child_command(settings, workdir, deadline), cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        code, stuck = _wait(proc, workdir / "progress.alive", verdict, deadline + KILL_GRACE)
    if stuck is not None:
        return _frozen(settings, workdir, f"its event loop did not turn for {stuck:.0f} s")
    if verdict.exists():
        data = json.loads(verdict.read_text())
        return Verdict(bool(data["ok"]), str(data["report"]))
    what = f"was killed after {deadline + KILL_GRACE:g} s" if code is None \
        else f"exited with {code} without a verdict"
    return _frozen(settings, workdir, what)


def _wait(proc: subprocess.Popen[bytes], alive: Path, verdict: Path,
          timeout: float) -> tuple[int | None, float | None]:
    """Wait for the child; kill it when it froze or overran.

    Returns:
        (exit code or None if killed, seconds its loop had not turned if it froze).
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            return proc.wait(timeout=0.2), None
        except subprocess.TimeoutExpired:
            pass
        try:
            idle = time.time() - alive.stat().st_mtime
        except FileNotFoundError:
            continue  # not fuzzing yet
        if idle > FROZEN_SECONDS and not verdict.exists():
            proc.send_signal(signal.SIGUSR1)  # faulthandler prints every stack
            time.sleep(1.0)
            _kill(proc)
            return None, idle
    _kill(proc)
    return None, None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()  # by its own PID only
    proc.wait(timeout=10)


def _frozen(settings: Settings, workdir: Path, what: str) -> Verdict:
    progress = workdir / "progress.txt"
    sent = progress.read_text(errors="replace") if progress.exists() else "(none recorded)"
    stderr = (workdir / "child.err").read_text(errors="replace")[-6000:]
    report = (f"fuzz path={settings.path} seed={settings.seed}: the node froze: {what}.\n"
              f"  replay: python -m tests.fuzz --path {settings.path} --seed {settings.seed} "
              f"--chunk 1\n"
              f"  VIOLATION: frozen; inputs sent last:\n    "
              + sent.strip().replace("\n", "\n    ")
              + f"\n  child stderr (faulthandler's stacks show where it was):\n{stderr}")
    return Verdict(False, report, frozen=True)
