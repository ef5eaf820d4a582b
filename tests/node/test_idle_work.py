"""What an idle node does at each heartbeat: nothing it can skip (docs/architecture.md,
"Driving the consensus by deadlines")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from node_support import run, until
from test_node_loopback import make, running

from ganglion.membership import Heard, Liveness, Membership, PeerInfo

pytestmark = pytest.mark.usefixtures("multicast_loopback")


def test_a_node_does_not_read_its_own_heartbeats_back(
        tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each heartbeat is handed back to the node as it is published (local delivery):
    the membership would skip its own id anyway, so it is dropped before it is read."""
    heard: list[tuple[bytes, bytes]] = []  # (whose membership, the heartbeat's sender)
    real_heard = Membership.heard

    def recording(self: Membership, peer: PeerInfo, liveness: Liveness | None = None) -> Heard:
        heard.append((self.self_id, peer.id))
        return real_heard(self, peer, liveness)

    monkeypatch.setattr(Membership, "heard", recording)

    async def scenario() -> None:
        async with running(make(tmp_path, port, "a"), make(tmp_path, port, "b")) as (a, b):
            await until(lambda: len(a.peers()) == 1 and len(b.peers()) == 1,
                        "a and b hear each other")
            await asyncio.sleep(0.6)  # three more heartbeats each at 0.2 s
            assert {(a.node_id, b.node_id), (b.node_id, a.node_id)} <= set(heard)
            assert [pair for pair in heard if pair[0] == pair[1]] == [], \
                "a node's own heartbeats never reach its membership"

    run(scenario())
