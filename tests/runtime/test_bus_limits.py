"""A plugin that floods the bus with bad messages gets them counted and a bounded log (issue 21, 7).

The finding: a malformed 1 MB frame was logged with its whole payload, so a
hundred of them made 100 MB of log in a second. These tests send exactly that
(100 frames of 1 MB) from a raw zmq socket and check the counters say 100 and
the log stays a few lines long. The ipc tests check that the bus's socket files
are never open to other users, not even right after the bind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from bus_helpers import Plugin, Recorder, run, short_dir, wait_until

from ganglion.client import BusAddress
from ganglion.errors import MessageTooLarge
from ganglion.runtime.bus import PluginBus

MEGABYTE = 1_000_000
BUS_LOGGER = "ganglion.runtime.bus"

__all__ = ["short_dir"]  # the fixture, imported for these tests


def make_bus(on_publish: Callable[[str, bytes], object], **kwargs: Any) -> PluginBus:
    return Recorder().bus(on_publish=on_publish, **kwargs)


def flooder(bus: PluginBus) -> Plugin:
    """A raw plugin that queues all it sends (100 MB: every frame must arrive)."""
    return Plugin(bus.endpoints[0], sndhwm=0)


def bus_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == BUS_LOGGER)


def test_a_hundred_malformed_megabyte_payloads_are_counted_and_logged_once(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    junk = b"\xff" * MEGABYTE  # not CBOR at all

    async def main() -> None:
        bus = make_bus(lambda _n, _p: None, ipc_path=short_dir / "bus")
        async with bus:
            plugin = flooder(bus)
            try:
                await plugin.wait_listening()
                for _ in range(100):
                    await plugin.send(b"ex.Junk", junk)
                await wait_until(lambda: bus.stats().received == 100)
            finally:
                plugin.close()
            stats = bus.stats()
            assert stats.bad_payloads == 100
            assert stats.published == 0
            assert stats.unlogged == 99
        # close() logs the summary of what was only counted

    run(main())
    text = bus_log(caplog)
    assert len(text) < 2_000, f"{len(text)} characters of log for 100 bad frames"
    assert len(caplog.text) < 10_000
    first = [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(first) == 1
    assert f"{MEGABYTE} bytes: {'ff' * 64}..." in first[0]
    assert f"pid {os.getpid()}" in first[0]  # ipc names the sending process
    assert "99 more bad messages" in text and "bad_payloads 99" in text


def test_a_hundred_megabyte_messages_the_node_refuses_log_an_excerpt_once(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The finding's path: valid CBOR maps that on_publish refuses (too big for a datagram)."""
    caplog.set_level(logging.DEBUG)
    big = cbor2.dumps({"blob": b"\x00" * MEGABYTE})
    refused: list[int] = []

    def on_publish(_name: str, payload: bytes) -> None:
        refused.append(len(payload))
        raise MessageTooLarge(_name, len(payload), 1400)

    async def main() -> None:
        bus = make_bus(on_publish, ipc_path=None, tcp_port=0)
        async with bus:
            plugin = flooder(bus)
            try:
                await plugin.wait_listening()
                for _ in range(100):
                    await plugin.send(b"ex.Big", big)
                await wait_until(lambda: bus.stats().received == 100)
            finally:
                plugin.close()
            stats.append(bus.stats())

    stats: list[Any] = []
    run(main())
    assert refused == [len(big)] * 100
    text = bus_log(caplog)
    assert len(text) < 2_000, f"{len(text)} characters of log for 100 refused messages"
    assert "Traceback" not in caplog.text  # a refusal is the plugin's fault, not a bug
    assert text.count("MessageTooLarge") == 1
    assert "from 127.0.0.1" in text
    (final,) = stats
    assert (final.published, final.rejected, final.callback_errors) == (100, 100, 0)
    assert final.unlogged == 99


def test_every_kind_of_bad_message_gets_one_line_per_reason(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name_too_long = b"a." + b"x" * 100_000

    async def main() -> None:
        bus = make_bus(lambda _n, _p: None, ipc_path=short_dir / "bus")
        async with bus:
            plugin = flooder(bus)
            try:
                await plugin.wait_listening()
                for _ in range(20):
                    await plugin.send(b"ex.One")  # one frame
                    await plugin.send(*[b"x" * 1000] * 50)  # fifty frames
                    await plugin.send(name_too_long, cbor2.dumps({"a": 1}))
                    await plugin.send(b"\xff\xfe", cbor2.dumps({"a": 1}))
                    await plugin.send(b"ex.List", cbor2.dumps([1, 2]))
                await wait_until(lambda: bus.stats().received == 100)
            finally:
                plugin.close()
            stats = bus.stats()
            assert (stats.bad_frames, stats.bad_type_names, stats.bad_payloads) == (40, 40, 20)
            assert stats.unlogged == 97  # one line per reason for this one plugin

    run(main())
    lines = [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(lines) == 3
    assert all(len(line) < 600 for line in lines)
    assert any("1 frames, not 2" in line for line in lines)
    assert any(f"{len(name_too_long)} bytes" in line for line in lines)


def test_a_failing_callback_logs_its_traceback_once_without_the_payload(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    payload = cbor2.dumps({"blob": b"\x01" * 100_000})

    def on_publish(_name: str, _payload: bytes) -> None:
        raise RuntimeError("a bug in the node")

    async def main() -> None:
        bus = make_bus(on_publish, ipc_path=short_dir / "bus")
        async with bus:
            plugin = flooder(bus)
            try:
                await plugin.wait_listening()
                for _ in range(50):
                    await plugin.send(b"ex.Bug", payload)
                await wait_until(lambda: bus.stats().received == 50)
            finally:
                plugin.close()
            assert bus.stats().callback_errors == 50

    run(main())
    assert caplog.text.count("Traceback") == 1
    assert caplog.text.count("RuntimeError: a bug in the node") == 1
    assert "callback_errors 49" in bus_log(caplog)
    assert len(caplog.text) < 5_000


def test_summaries_come_periodically_while_a_plugin_keeps_sending(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        bus = make_bus(lambda _n, _p: None, ipc_path=short_dir / "bus", summary_interval=0.2)
        async with bus:
            plugin = flooder(bus)
            try:
                await plugin.wait_listening()
                for _ in range(5):
                    await plugin.send(b"ex.Junk", b"\xff")
                await wait_until(lambda: "4 more bad messages" in bus_log(caplog), 5.0)
                for _ in range(3):
                    await plugin.send(b"ex.Junk", b"\xff")
                await wait_until(lambda: "3 more bad messages" in bus_log(caplog), 5.0)
            finally:
                plugin.close()

    run(main())


def test_a_frame_above_the_size_bound_is_never_taken(short_dir: Path) -> None:
    async def main() -> None:
        bus = make_bus(lambda _n, _p: None, ipc_path=short_dir / "bus", max_message=4096)
        async with bus:
            plugin = flooder(bus)
            try:
                await plugin.wait_listening()
                await plugin.send(b"ex.Big", cbor2.dumps({"b": b"x" * 10_000}))
                await asyncio.sleep(0.3)
                assert bus.stats().received == 0  # zmq dropped the connection mid-frame
            finally:
                plugin.close()

    run(main())


def test_ipc_sockets_are_never_open_to_others_even_right_after_bind(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With umask 0 a freshly bound socket file is 0777; nobody may see it at its final path."""
    final = [short_dir / "bus.pub", short_dir / "bus.sub"]
    seen: list[tuple[str, int | None]] = []
    real_chmod = os.chmod

    def spy_chmod(path: Any, mode: int, **kw: Any) -> None:
        # Record what another user could connect to at the final paths right now.
        for f in final:
            try:
                seen.append((f.name, stat.S_IMODE(f.lstat().st_mode)))
            except FileNotFoundError:
                seen.append((f.name, None))
        real_chmod(path, mode, **kw)

    monkeypatch.setattr(os, "chmod", spy_chmod)
    old_umask = os.umask(0)
    try:
        async def main() -> None:
            async with make_bus(lambda _n, _p: None, ipc_path=short_dir / "bus"):
                for f in final:
                    assert stat.S_IMODE(f.lstat().st_mode) == 0o600
                assert sorted(p.name for p in short_dir.iterdir()) == ["bus.pub", "bus.sub"]

        run(main())
    finally:
        os.umask(old_umask)
    assert seen, "the bus set no mode"
    assert all(mode in (None, 0o600) for _name, mode in seen), seen
    assert list(short_dir.iterdir()) == []  # removed on close, no staging dir left


def test_a_shared_ipc_directory_is_warned_about(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    os.chmod(short_dir, 0o777)  # no sticky bit: anyone could replace the sockets

    async def main() -> None:
        async with make_bus(lambda _n, _p: None, ipc_path=short_dir / "bus"):
            pass

    run(main())
    assert "writable by other users" in bus_log(caplog)


def test_tcp_endpoints_pair(short_dir: Path) -> None:
    """A TCP-only bus still binds only 127.0.0.1 (no regression from the ipc changes)."""
    async def main() -> None:
        async with make_bus(lambda _n, _p: None, ipc_path=None, tcp_port=0) as bus:
            (pair,) = bus.endpoints
            assert isinstance(pair, BusAddress)
            assert pair.publish.startswith("tcp://127.0.0.1:")

    run(main())
