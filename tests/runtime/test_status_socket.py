"""The status socket's bounds: who is answered, what is refused, and that nothing stalls it.

A real :class:`StatusServer` on a Unix socket in a temporary 0700 directory; the
clients are :func:`request_status` (run in a worker thread, since it blocks) and
raw sockets that misbehave.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from ganglion.errors import NodeNotRunningError, StatusError
from ganglion.runtime import status as status_mod
from ganglion.runtime.status import StatusServer, request_status, status_socket_path


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop, within 15 s (fixtures pass through)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 15.0))

    return run


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    return status_socket_path(tmp_path)


async def _raw(path: Path, send: bytes, *, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_unix_connection(os.fspath(path))
    try:
        writer.write(send)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


@in_loop
async def test_the_answer_is_the_document_and_the_socket_is_0600(sock_path: Path) -> None:
    calls = 0

    def document() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"format": 1, "n": calls, "name": "brewpi °C"}

    server = StatusServer(sock_path, document)
    await server.start()
    try:
        assert sock_path.stat().st_mode & 0o777 == 0o600
        first = await asyncio.to_thread(request_status, sock_path)
        second = await asyncio.to_thread(request_status, sock_path)
        assert first == {"format": 1, "n": 1, "name": "brewpi °C"}
        assert second["n"] == 2
    finally:
        await server.close()
    assert not sock_path.exists()


@in_loop
async def test_an_unknown_or_oversized_request_is_refused(sock_path: Path) -> None:
    server = StatusServer(sock_path, lambda: {"secret": "not for you"})
    await server.start()
    try:
        for request in (b"stats\n", b"status" + b" " * 100 + b"\n", b"x" * 10_000):
            answer = json.loads(await _raw(sock_path, request))
            assert answer == {"error": "unknown request; send 'status' and a newline"}
        assert server.refused == 3 and server.answered == 0
    finally:
        await server.close()


@in_loop
async def test_a_silent_client_is_dropped_and_does_not_hold_up_the_next(sock_path: Path) -> None:
    server = StatusServer(sock_path, lambda: {"ok": True}, timeout=0.3)
    await server.start()
    try:
        _reader, silent = await asyncio.open_unix_connection(os.fspath(sock_path))
        answer = await asyncio.to_thread(request_status, sock_path, timeout=3.0)
        assert answer == {"ok": True}
        # The silent one is closed by the server once its time is up.
        assert await asyncio.wait_for(_reader.read(), 3.0) == b""
        silent.close()
    finally:
        await server.close()


@in_loop
async def test_connections_beyond_the_waiting_bound_are_closed_at_once(sock_path: Path) -> None:
    server = StatusServer(sock_path, lambda: {"ok": True}, timeout=2.0, max_waiting=1)
    await server.start()
    try:
        held = [await asyncio.open_unix_connection(os.fspath(sock_path)) for _ in range(2)]
        await asyncio.sleep(0.1)  # both are being served: one answered, one waiting
        reader, writer = await asyncio.open_unix_connection(os.fspath(sock_path))
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # closed, no answer
        writer.close()
        assert server.refused == 1
        for _, w in held:
            w.close()
    finally:
        await server.close()


@in_loop
async def test_a_failing_document_is_an_error_answer_not_a_dead_server(sock_path: Path) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("bug")

    server = StatusServer(sock_path, broken)
    await server.start()
    try:
        with pytest.raises(StatusError, match="could not build its status"):
            await asyncio.to_thread(request_status, sock_path)
    finally:
        await server.close()


@in_loop
async def test_a_document_over_the_size_bound_is_replaced_by_an_error(
        sock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_mod, "MAX_RESPONSE", 1000)
    server = StatusServer(sock_path, lambda: {"big": "x" * 5000})
    await server.start()
    try:
        answer = json.loads(await _raw(sock_path, b"status\n"))
        assert answer == {"error": "the status document is larger than 1000 bytes"}
    finally:
        await server.close()


def test_no_socket_means_not_running(sock_path: Path) -> None:
    with pytest.raises(NodeNotRunningError, match="no node is running with state directory"):
        request_status(sock_path)


def test_a_stale_socket_means_not_running_and_a_new_server_takes_it_over(
        sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(sock_path))
    stale.close()  # the file stays, nobody listens: a node killed with SIGKILL
    with pytest.raises(NodeNotRunningError):
        request_status(sock_path)

    async def serve_once() -> dict[str, Any]:
        server = StatusServer(sock_path, lambda: {"ok": True})
        await server.start()
        try:
            return await asyncio.to_thread(request_status, sock_path)
        finally:
            await server.close()

    assert asyncio.run(serve_once()) == {"ok": True}


def test_a_node_that_never_answers_is_a_timeout(sock_path: Path) -> None:
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(os.fspath(sock_path))
    mute.listen(1)
    try:
        with pytest.raises(StatusError, match=r"did not answer within 0\.3 s"):
            request_status(sock_path, timeout=0.3)
    finally:
        mute.close()


def test_a_path_too_long_for_a_unix_socket_is_refused_with_the_reason(tmp_path: Path) -> None:
    from ganglion.errors import ConfigError

    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    server = StatusServer(status_socket_path(deep), lambda: {})
    with pytest.raises(ConfigError, match="use a shorter state directory"):
        asyncio.run(server.start())
