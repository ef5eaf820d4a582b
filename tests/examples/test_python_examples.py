"""Every example runs as documented (over loopback) and does what it says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _run(args: list[str], *, timeout: float, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)  # the example's own children too
            proc.wait(timeout=5)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.timeout(60)
def test_custom_type_example_delivers_every_field(free_udp_port: int) -> None:
    code = ("import asyncio, runpy; m = runpy.run_path('examples/custom_type.py'); "
            f"print('arrived', asyncio.run(m['main'](port={free_udp_port})))")
    result = _run([sys.executable, "-c", code], timeout=45)
    assert result.returncode == 0, result.stderr
    assert "arrived 3" in result.stdout
    assert "stage=<Stage.PRIMARY: 'primary'>" in result.stdout
    assert "probe=Probe(bus=1, rom='28-00000a1b2c3d')" in result.stdout


@pytest.mark.timeout(60)
def test_internal_plugin_example_raises_alarms(free_udp_port: int) -> None:
    code = ("import asyncio, runpy; m = runpy.run_path('examples/internal_plugin.py'); "
            f"print('alarms', asyncio.run(m['main'](2.0, port={free_udp_port})))")
    result = _run([sys.executable, "-c", code], timeout=45)
    assert result.returncode == 0, result.stderr
    assert "ALARM sim:brewery/temperature" in result.stdout
    alarms = int(result.stdout.split("alarms ")[-1])
    assert alarms >= 5  # a reading every 0.1 s for 2 s, every one over the limit


@pytest.mark.timeout(90)
def test_three_nodes_script_shows_map_nodes_and_readings(free_udp_port: int) -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "ganglion").exists() and shutil.which("ganglion") is None:
        pytest.skip("the ganglion console script is not installed")
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "GANGLION_EXAMPLE_PORT": str(free_udp_port)}
    result = _run(["bash", str(EXAMPLES / "three_nodes.sh"), "4"], timeout=75, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for type_name in ("sensors.Temperature", "sensors.Humidity", "sensors.Pressure",
                      "sensors.Flow"):
        assert type_name in out
    for sensor in ("sim:brewery/temperature", "sim:cellar/humidity", "sim:roof/pressure"):
        assert sensor in out
    for node in ("brewery", "cellar", "roof"):
        assert node in out  # the nodes table
