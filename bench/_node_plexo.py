"""pyplexo, the seed, for comparison: install it aside and measure its in-process rate.

Theory of operation: pyplexo (``plexo==1.0.0``) is never installed into the
project's venv. :func:`prepare_venv` makes a separate venv under /tmp and
``pip install``s it there; it runs *before* the benchmark enters its network
namespace (which has no route to a package index). :func:`measure_plexo` then
runs ``_node_plexo_probe.py`` with that venv's interpreter, once per trial.

What is comparable: only the in-process path. pyplexo's node-to-node transport
(``GanglionPlexoMulticast``) uses zmq's ``epgm://``, and the pyzmq wheels here
have no PGM (the probe reports ``zmq.has("pgm")``), so its multicast cannot run
at all; its TCP ganglia are point-to-point, not the same job. Every failure
becomes a reason string; the caller then falls back to the 41k msg/s figure
quoted in issue 4.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

VENV = Path("/tmp/ganglion-bench-plexo-venv")
PACKAGE = "plexo==1.0.0"
PROBE = Path(__file__).resolve().parent / "_node_plexo_probe.py"
#: pyplexo's in-process figure quoted in issue 4 (msg/s), the fallback reference.
QUOTED_MSG_S = 41_000.0


@dataclass(slots=True)
class PlexoResult:
    """pyplexo's in-process rates per trial, or why there are none."""

    inproc: list[float] = field(default_factory=list)
    plexus: list[float] = field(default_factory=list)
    pgm: bool | None = None
    version: str = ""
    reason: str = ""

    @property
    def reference(self) -> float:
        """The reference rate: the measured GanglionInproc median, else the quoted figure."""
        return float(statistics.median(self.inproc)) if self.inproc else QUOTED_MSG_S


def venv_python(venv: Path = VENV) -> Path:
    """The interpreter of the pyplexo venv."""
    return venv / "bin" / "python"


def prepare_venv(venv: Path = VENV, *, timeout: float = 600.0) -> str:
    """Make sure ``venv`` has pyplexo; return "" when it does, else why not.

    Args:
        venv: where the venv lives (created if missing).
        timeout: seconds each step may take.

    Returns:
        An empty string on success, else a one-line reason.
    """
    python = venv_python(venv)
    try:
        if _has_plexo(python):
            return ""
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           capture_output=True, timeout=timeout)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", PACKAGE],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot make a venv for pyplexo at {venv}: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"pip install {PACKAGE} failed: {last}"
    return "" if _has_plexo(python) else f"{PACKAGE} installed but does not import"


def measure_plexo(count: int, trials: int, venv: Path = VENV) -> PlexoResult:
    """Run the probe ``trials`` times with ``count`` messages; never raises.

    Returns:
        The rates, or an empty result whose ``reason`` says what went wrong.
    """
    python = venv_python(venv)
    result = PlexoResult()
    if not _has_plexo(python):
        result.reason = f"pyplexo is not installed in {venv}"
        return result
    for _ in range(trials):
        try:
            done = subprocess.run([str(python), str(PROBE), str(count)], capture_output=True,
                                  text=True, timeout=60 + count / 1000, check=False)
        except subprocess.TimeoutExpired:
            result.reason = "the pyplexo probe timed out"
            return result
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            result.reason = f"the pyplexo probe failed: {last}"
            return result
        obj = json.loads(done.stdout.strip().splitlines()[-1])
        result.inproc.append(float(obj["ganglion_inproc"]))
        result.plexus.append(float(obj["plexus"]))
        result.pgm, result.version = bool(obj["pgm"]), str(obj["version"])
    return result


def _has_plexo(python: Path) -> bool:
    if not python.exists():
        return False
    done = subprocess.run([str(python), "-c", "import plexo.plexus"], capture_output=True,
                          timeout=120, check=False)
    return done.returncode == 0
