"""``PaxosNode.next_deadline``: never late, and every tick before it has no effect.

The runtime (``ganglion/runtime/control.py``) sleeps until the deadline instead of
waking every tick, then calls ``tick()`` for each tick that passed. That is only
equivalent to ticking on time if no tick before the deadline puts anything in a
``Ready``; these tests check it at every tick of random simulated runs (faults,
crashes, partitions, forged input) and in hand-made situations.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from paxos_helpers import drain

from consensus.messages import Nack, ProposeRequest
from consensus.node import Config, PaxosNode
from consensus.sim.scenario import run_seed

_ORIGINAL_TICK = PaxosNode.tick


def make_node(node_id: int, view: tuple[int, ...], **config: int) -> PaxosNode:
    """A member with quick timers (as paxos_helpers') whose heartbeat can be changed."""
    settings = {"retry_ticks": 5, "backoff_ticks": 0, "heartbeat_ticks": 5, **config}
    node = PaxosNode(Config(node_id=node_id, **settings), rng=random.Random(node_id))
    node.set_view(view)
    return node


class _Checked:
    """Counts the ticks checked and the ticks a deadline let a runtime skip."""

    ticks = 0
    skippable = 0


@pytest.fixture
def checked_ticks(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Checked]]:
    """Make every ``PaxosNode.tick`` check the deadline it was given before it."""
    _Checked.ticks = _Checked.skippable = 0

    def tick(self: PaxosNode) -> None:
        ahead = self.next_deadline()
        was_ready = self.has_ready()
        _ORIGINAL_TICK(self)
        _Checked.ticks += 1
        if ahead is None or ahead > 1:
            _Checked.skippable += 1
            assert was_ready or not self.has_ready(), (
                f"node {self.node_id}: a tick {ahead} ticks before its deadline acted")
            after = self.next_deadline()
            assert after == (None if ahead is None else ahead - 1), (
                f"node {self.node_id}: deadline {ahead} became {after} with no input")

    monkeypatch.setattr(PaxosNode, "tick", tick)
    yield _Checked


@pytest.mark.parametrize("seed", range(12))
def test_ticks_before_the_deadline_do_nothing_in_random_runs(
        checked_ticks: type[_Checked], seed: int) -> None:
    result = run_seed(seed, nodes=4)
    assert result.ok, result.failure
    # Most ticks of a run are skippable: the deadline is what lets a runtime sleep.
    assert checked_ticks.skippable > checked_ticks.ticks // 2


@pytest.mark.parametrize("seed", range(4))
def test_ticks_before_the_deadline_do_nothing_under_forged_input(
        checked_ticks: type[_Checked], seed: int) -> None:
    result = run_seed(seed, nodes=4, byzantine=True)
    assert result.ok, result.failure
    assert checked_ticks.ticks > 0


def test_an_idle_member_wakes_only_for_its_status() -> None:
    node = make_node(1, (1, 2, 3))  # heartbeat_ticks=5
    drain(node)
    node.tick()  # the first Status
    drain(node)
    assert node.next_deadline() == 5
    for _ in range(4):
        node.tick()
        assert not node.has_ready()
    node.tick()
    assert node.has_ready()  # the Status


def test_without_heartbeats_an_idle_node_has_no_deadline() -> None:
    node = make_node(1, (1, 2, 3), heartbeat_ticks=0)
    assert node.next_deadline() is None


def test_an_attempt_brings_its_retry_deadline() -> None:
    node = make_node(1, (1, 2, 3), heartbeat_ticks=0)  # the leader (lowest id)
    node.propose("a.Type")
    drain(node)
    assert node.next_deadline() == 5  # retry_ticks: the attempt is abandoned then


def test_a_backoff_brings_the_next_attempt() -> None:
    node = make_node(1, (1, 2, 3), heartbeat_ticks=0, backoff_ticks=4)
    node.propose("a.Type")
    prepare = drain(node)[0].msg
    node.step(Nack(sender=2, slot=prepare.slot, ballot=prepare.ballot, promised=prepare.ballot))
    drain(node)
    ahead = node.next_deadline()
    assert ahead is not None
    for _ in range(ahead - 1):
        node.tick()
        assert not node.has_ready()
    node.tick()
    assert node.has_ready()  # a new Prepare once the backoff is over


def test_a_follower_asks_the_leader_again_at_its_deadline() -> None:
    node = make_node(2, (1, 2, 3), heartbeat_ticks=0)  # 1 leads
    node.propose("a.Type")
    assert [type(env.msg) for env in drain(node)] == [ProposeRequest]
    assert node.next_deadline() == 5  # retry_ticks
    for _ in range(4):
        node.tick()
    assert not node.has_ready()
    node.tick()
    assert [type(env.msg) for env in drain(node)] == [ProposeRequest]
