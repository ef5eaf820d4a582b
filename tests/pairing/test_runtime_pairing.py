"""invite and join over real TCP on 127.0.0.1 (no mDNS): transfer, wrong codes, budgets, bad peers.

Every test runs under ``asyncio.wait_for`` and pytest-timeout; the inviter listens on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from typing import Any

import pytest

pytest.importorskip("spake2")
pytest.importorskip("cryptography")

from pairing_support import key_bytes, other_code, seeded

from ganglion.errors import (
    InviteClosedError,
    PairingError,
    PairingProtocolError,
    WrongCodeError,
)
from ganglion.pairing.codes import InviteCode
from ganglion.pairing.exchange import JoinerSession, refusal
from ganglion.pairing.frames import FrameKind, Refusal, encode_frame
from ganglion.pairing.invitation import MAX_FAILURES, InviteStatus
from ganglion.runtime import pairing as rt
from ganglion.runtime.pairing import InviteServer, join

LO = "127.0.0.1"
CODE = InviteCode(7, ("guitarist", "reindeer", "molecule"))
KEY = key_bytes(1)


def _run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def _server(ttl: float = 60.0) -> InviteServer:
    return InviteServer(code=CODE, key_file=KEY, interface=LO, ttl=ttl, advertise=False,
                        entropy=seeded(1))


async def _raw(address: tuple[str, int], send: bytes, *, wait: float = 5.0) -> bytes:
    """Connect, send ``send``, and read until the inviter hangs up (or ``wait`` passes)."""
    reader, writer = await asyncio.open_connection(*address)
    got = b""
    try:
        if send:
            writer.write(send)
            await writer.drain()
        while chunk := await asyncio.wait_for(reader.read(65536), wait):
            got += chunk
    except ConnectionError:  # it hung up while we were still sending: that is dropping us
        pass
    finally:
        writer.close()
    return got


def test_the_right_code_transfers_the_key_file_and_uses_the_invite() -> None:
    async def main() -> None:
        async with _server() as server:
            got = await join(CODE, interface=LO, timeout=10, inviter=server.address)
            result = await asyncio.wait_for(server.wait(), 5)
        assert got == KEY
        assert result.status is InviteStatus.USED and result.acknowledged
        assert (result.stats.attempts, result.stats.failures) == (1, 0)

    _run(main())


def test_a_wrong_code_fails_clearly_gets_nothing_and_is_counted() -> None:
    async def main() -> None:
        async with _server() as server:
            with pytest.raises(WrongCodeError, match="the code is wrong or expired"):
                await join(other_code(CODE), interface=LO, timeout=10, inviter=server.address)
            await _until(lambda: not server.invitation.busy)
            assert server.invitation.stats.failures == 1
            assert server.invitation.status_at(0) is InviteStatus.OPEN
            # ...and the right code still works afterwards (the wrong one cost one attempt)
            assert await join(CODE, interface=LO, timeout=10, inviter=server.address) == KEY

    _run(main())


def test_the_code_is_single_use() -> None:
    async def main() -> None:
        async with _server() as server:
            address = server.address
            assert await join(CODE, interface=LO, timeout=10, inviter=address) == KEY
            await _until(lambda: not server.invitation.busy)
            await asyncio.sleep(1.0)  # past the rate limit: only "used" can refuse now
            with pytest.raises(InviteClosedError, match="used, expired, or burnt"):
                await join(CODE, interface=LO, timeout=10, inviter=address)
            assert (await server.wait()).status is InviteStatus.USED
        with pytest.raises(PairingError, match="cannot reach the inviter"):
            await join(CODE, interface=LO, timeout=5, inviter=address)

    _run(main())


def test_three_wrong_codes_burn_the_invite_even_for_the_right_code() -> None:
    async def main() -> None:
        async with _server() as server:
            for word in range(MAX_FAILURES):
                with pytest.raises(WrongCodeError):
                    await join(other_code(CODE, word=word), interface=LO, timeout=10,
                               inviter=server.address)
            result = await asyncio.wait_for(server.wait(), 5)
            assert result.status is InviteStatus.BURNT
            assert result.stats.failures == MAX_FAILURES
            with pytest.raises(InviteClosedError):
                await join(CODE, interface=LO, timeout=10, inviter=server.address)

    _run(main())


def test_wrong_codes_get_at_most_one_try_a_second() -> None:
    async def main() -> None:
        async with _server() as server:
            started = time.monotonic()
            for word in range(2):
                with pytest.raises(WrongCodeError):
                    await join(other_code(CODE, word=word), interface=LO, timeout=10,
                               inviter=server.address)
            assert time.monotonic() - started >= 1.0  # the second waited out the limit
            assert server.invitation.stats.refused >= 1

    _run(main())


def test_a_concurrent_joiner_is_told_busy() -> None:
    async def main() -> None:
        async with _server() as server:
            _, writer = await asyncio.open_connection(*server.address)  # holds the slot
            await _until(lambda: server.invitation.busy)
            assert await _raw(server.address, b"") == refusal(Refusal.BUSY)
            writer.close()

    _run(main())


def test_the_invite_expires() -> None:
    async def main() -> None:
        async with _server(ttl=0.5) as server:
            result = await asyncio.wait_for(server.wait(), 5)
            assert result.status is InviteStatus.EXPIRED
            assert await _raw(server.address, b"") == refusal(Refusal.CLOSED)
            with pytest.raises(InviteClosedError, match="expired"):
                await join(CODE, interface=LO, timeout=5, inviter=server.address)

    _run(main())


def test_a_peer_that_sends_garbage_is_dropped_at_once_and_costs_no_attempt() -> None:
    async def main() -> None:
        async with _server() as server:
            garbage = os.urandom(64 * 1024)
            started = time.monotonic()
            reply = await _raw(server.address, b"\x09" + garbage)
            assert time.monotonic() - started < 2.0
            assert reply == b""
            await _until(lambda: not server.invitation.busy)
            assert server.invitation.stats.malformed == 1
            assert server.invitation.stats.failures == 0
            await asyncio.sleep(1.0)
            assert await join(CODE, interface=LO, timeout=10, inviter=server.address) == KEY

    _run(main())


def test_a_huge_frame_length_is_dropped_before_the_body_is_read() -> None:
    async def main() -> None:
        async with _server() as server:
            reply = await _raw(server.address, bytes([FrameKind.HELLO]) + b"\xff\xff")
            assert reply == b""
            await _until(lambda: not server.invitation.busy)
            assert server.invitation.stats.malformed == 1

    _run(main())


def test_a_silent_peer_is_dropped_within_the_session_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "SESSION_SECONDS", 0.5)

    async def main() -> None:
        async with _server() as server:
            started = time.monotonic()
            assert await _raw(server.address, b"") == b""  # the inviter hangs up on us
            assert 0.4 < time.monotonic() - started < 3.0
            await _until(lambda: not server.invitation.busy)
            assert server.invitation.stats.malformed == 1

    _run(main())


def test_a_peer_that_vanishes_after_its_spake2_message_counts_as_a_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "SESSION_SECONDS", 0.5)

    async def main() -> None:
        async with _server() as server:
            joiner = JoinerSession(other_code(CODE))
            reply = await _raw(server.address, joiner.start())
            assert reply[0] == FrameKind.PAKE  # the inviter answered, then gave up on us
            await _until(lambda: not server.invitation.busy)
            assert server.invitation.stats.failures == 1

    _run(main())


def test_a_joiner_facing_an_inviter_that_breaks_the_protocol_fails_in_time() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(encode_frame(FrameKind.PAKE, b"B" + bytes(32)))  # a point that is no point
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)
        writer.close()

    async def main() -> None:
        bad = await asyncio.start_server(serve, LO, 0)
        quiet = await asyncio.start_server(silent, LO, 0)
        try:
            with pytest.raises(PairingProtocolError, match="not a SPAKE2 message"):
                await join(CODE, interface=LO, timeout=5, inviter=bad.sockets[0].getsockname())
            started = time.monotonic()
            with pytest.raises(PairingError, match="in time"):
                await join(CODE, interface=LO, timeout=1,
                           inviter=quiet.sockets[0].getsockname())
            assert time.monotonic() - started < 3
        finally:
            bad.close()
            quiet.close()

    _run(main())


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {check}")
        await asyncio.sleep(0.01)


def test_join_finds_its_invite_by_nameplate_over_mdns_among_others() -> None:
    from pairing_support import mdns_isolation_problem

    problem = mdns_isolation_problem()
    if problem:
        pytest.skip(problem)

    async def main() -> None:
        decoy = InviteServer(code=InviteCode(8, CODE.words), key_file=key_bytes(2),
                             interface=LO, ttl=60)
        ours = InviteServer(code=CODE, key_file=KEY, interface=LO, ttl=60)
        async with decoy, ours:
            assert await join(CODE, interface=LO, timeout=15) == KEY
            assert (await asyncio.wait_for(ours.wait(), 5)).status is InviteStatus.USED
            assert decoy.invitation.stats.attempts == 0  # never even tried

    _run(main())


def test_join_without_an_inviter_on_the_network_gives_up_at_its_deadline() -> None:
    from pairing_support import mdns_isolation_problem

    problem = mdns_isolation_problem()
    if problem:
        pytest.skip(problem)

    async def main() -> None:
        started = time.monotonic()
        with pytest.raises(PairingError, match="no invite with number 7 found"):
            await join(CODE, interface=LO, timeout=1.5)
        assert time.monotonic() - started < 4

    _run(main())


def test_an_invite_server_refuses_a_key_file_it_could_not_send() -> None:
    from ganglion.errors import ConfigError
    from ganglion.pairing.exchange import MAX_KEY_FILE

    for bad in (b"", bytes(MAX_KEY_FILE + 1)):
        with pytest.raises(ConfigError):
            InviteServer(code=CODE, key_file=bad, interface=LO, ttl=5, advertise=False)
