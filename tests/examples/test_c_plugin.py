"""The C external plugin (examples/c_plugin) built with cc and run against a real PluginBus.

Skipped, with the reason, where there is no C compiler, no make, or no libzmq
headers (Debian: ``apt-get install libzmq3-dev``). The plugin is built from a
copy of the example directory, so the repository stays clean.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bus_helpers import Recorder, run, short_dir, wait_until

from ganglion.client import PluginMeta
from ganglion.runtime.bus import PluginBus
from ganglion.types import Record, decode_payload, encode_payload
from hardware.readings import Temperature

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "c_plugin"
NODE_ID = bytes.fromhex("c0c1c2c3c4c5c6c7")

__all__ = ["short_dir"]  # the fixture, imported for these tests


def _missing_toolchain() -> str | None:
    """Say what is missing to build the plugin, or None if it can be built."""
    cc = shutil.which("cc")
    if cc is None:
        return "no C compiler (cc) on PATH"
    if shutil.which("make") is None:
        return "no make on PATH"
    probe = subprocess.run([cc, "-E", "-x", "c", "-"], input="#include <zmq.h>\n",
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "libzmq headers (zmq.h) not found; install libzmq3-dev"
    return None


@pytest.fixture(scope="module")
def plugin_binary() -> Iterator[Path]:
    """Build the example with its Makefile in a temp copy; skip without a toolchain."""
    missing = _missing_toolchain()
    if missing:
        pytest.skip(missing)
    build = Path(tempfile.mkdtemp(prefix="gzc", dir="/tmp"))
    try:
        for name in ("ganglion_plugin.c", "Makefile"):
            shutil.copy(EXAMPLE / name, build / name)
        result = subprocess.run(["make", "-C", str(build), "CFLAGS=-O2 -Wall -Wextra -Werror "
                                 "-std=c11 -D_POSIX_C_SOURCE=200809L"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
        yield build / "ganglion_plugin"
    finally:
        shutil.rmtree(build, ignore_errors=True)


async def exchange(binary: Path, where: str, bus: PluginBus, calls: Recorder,
                   count: int) -> tuple[int, str]:
    """Run the plugin for ``count`` 40 ms intervals, sending it three temperatures."""
    proc = await asyncio.create_subprocess_exec(
        str(binary), where, str(count), "40",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until(lambda: calls.subscribed == ["sensors.Temperature"])
        for seq, celsius in enumerate((21.5, -3.25, 100.0), start=1):
            meta = PluginMeta(sender=NODE_ID, seq=seq, sent_ns=1_700_000_000_000_000_000 + seq,
                              local=False)
            reading = encode_payload(Temperature(sensor=f"probe{seq}", celsius=celsius))
            assert bus.deliver("sensors.Temperature", reading, meta)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_c_plugin_publishes_counters_and_prints_temperatures(
    plugin_binary: Path, short_dir: Path, transport: str
) -> None:
    async def main() -> None:
        calls = Recorder()
        async with calls.bus(ipc_path=short_dir / "bus", tcp_port=0, node_id=NODE_ID) as bus:
            where = str(short_dir) if transport == "ipc" else f"tcp://127.0.0.1:{bus.tcp_port}"
            # 30 readings: counts 24..29 take the one-byte CBOR integer head.
            code, output = await exchange(plugin_binary, where, bus, calls, count=30)
            assert code == 0, output
            await wait_until(lambda: len(calls.published) == 30)
            await wait_until(lambda: calls.unsubscribed == ["sensors.Temperature"])
        assert {name for name, _ in calls.published} == {"examples.CCounter"}
        decoded = [decode_payload(name, payload) for name, payload in calls.published]
        assert decoded == [Record("examples.CCounter", {"count": n, "source": "c"})
                           for n in range(30)]
        received = [line for line in output.splitlines() if line.startswith("recv ")]
        assert len(received) == 3, output
        assert received[0] == (
            'recv sensors.Temperature {"sensor": "probe1", "celsius": 21.5} meta '
            '{"sender": <8 bytes>, "seq": 1, "sent_ns": 1700000000000000001, "local": false}'
        )
        assert re.search(r'"celsius": -3.25\}.*"seq": 2,', received[1])
        assert re.search(r'"celsius": 100\}.*"seq": 3,', received[2])
        assert output.splitlines()[-1] == "done"

    run(main())


def test_c_plugin_rejects_bad_arguments(plugin_binary: Path) -> None:
    for args in ([], ["tcp://127.0.0.1"], ["tcp://127.0.0.1:0"], ["/tmp/x", "-1"]):
        result = subprocess.run([str(plugin_binary), *args], capture_output=True, text=True,
                                timeout=10)
        assert result.returncode == 1, args
        assert result.stderr, args


def test_a_missing_toolchain_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert _missing_toolchain() == "no C compiler (cc) on PATH"
