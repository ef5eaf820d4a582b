"""PaxosNode facade: the Ready contract, roles, views, restart and error handling."""

from __future__ import annotations

import random

import pytest
from paxos_helpers import Cluster, drain, make_node, messages

from consensus.errors import ConsensusError, InvalidCommand, InvalidConfig, PersistOrderError
from consensus.journal import JournalRecord, Learned, Promised, RoundUsed
from consensus.messages import (
    Accept,
    Ballot,
    CatchUpReply,
    CatchUpRequest,
    Commit,
    Prepare,
    Promise,
    ProposeRequest,
    Status,
)
from consensus.node import Config, NodeFailed, PaxosNode
from consensus.ready import Outbound


def test_a_lone_node_assigns_a_type_by_itself() -> None:
    node = make_node(1, (1,))
    node.propose("brewery.Temperature")
    rd = node.ready()
    assert [c.type_name for c in rd.changes] == ["brewery.Temperature"]
    assert rd.decided and isinstance(rd.to_persist[0], RoundUsed)
    assert any(isinstance(r, Learned) for r in rd.to_persist)


def test_outbox_is_locked_until_the_state_is_persisted() -> None:
    node = make_node(1, (1, 2, 3))
    node.propose("a.B")
    rd = node.ready()
    assert rd.to_persist and not rd.persisted
    with pytest.raises(PersistOrderError):
        _ = rd.outbox
    with pytest.raises(PersistOrderError):
        node.advance(rd)
    rd.mark_persisted()
    assert messages(list(rd.outbox)) == [Prepare(sender=1, slot=0, ballot=Ballot(1, 1))]
    node.advance(rd)


def test_a_ready_with_nothing_to_persist_is_unlocked() -> None:
    node = make_node(2, (1, 2, 3))
    node.tick()
    rd = node.ready()
    assert not rd.to_persist and rd.persisted
    assert isinstance(rd.outbox[0].msg, Status)


def test_ready_twice_without_advance_is_refused() -> None:
    node = make_node(1, (1,))
    rd = node.ready()
    with pytest.raises(ConsensusError):
        node.ready()
    with pytest.raises(ConsensusError):
        node.advance(make_node(2).ready())
    node.advance(rd)
    assert node.ready().is_empty()


def test_an_acceptor_promise_leaves_with_its_record() -> None:
    node = make_node(2, (1, 2, 3))
    node.step(Prepare(sender=1, slot=0, ballot=Ballot(4, 1)))
    rd = node.ready()
    assert rd.to_persist == (Promised(slot=0, ballot=Ballot(4, 1)),)
    rd.mark_persisted()
    assert rd.outbox == (Outbound(1, Promise(sender=2, slot=0, ballot=Ballot(4, 1))),)


def test_a_duplicate_prepare_is_answered_without_a_new_record() -> None:
    node = make_node(2, (1, 2, 3))
    node.step(Prepare(sender=1, slot=0, ballot=Ballot(4, 1)))
    drain(node)
    node.step(Prepare(sender=1, slot=0, ballot=Ballot(4, 1)))
    rd = node.ready()
    assert rd.to_persist == ()
    assert messages(list(rd.outbox)) == [Promise(sender=2, slot=0, ballot=Ballot(4, 1))]


def test_requests_for_a_decided_slot_are_answered_with_the_decision() -> None:
    node = make_node(2, (1, 2, 3))
    node.step(Commit(sender=1, slot=0, value=b"assign a 239.255.1.1"))
    drain(node)
    node.step(Prepare(sender=3, slot=0, ballot=Ballot(9, 3)))
    assert messages(drain(node)) == [Commit(sender=2, slot=0, value=b"assign a 239.255.1.1")]
    node.step(Accept(sender=3, slot=0, ballot=Ballot(9, 3), value=b"other"))
    assert messages(drain(node)) == [Commit(sender=2, slot=0, value=b"assign a 239.255.1.1")]


def test_three_nodes_agree_and_the_follower_forwards_to_the_leader() -> None:
    c = Cluster((1, 2, 3))
    c.propose(3, "a.B")
    assert c.sent[0] == (3, 1, ProposeRequest(sender=3, type_name="a.B"))
    c.pump()
    maps = [dict(n.groups) for n in c.nodes.values()]
    assert maps[0] == maps[1] == maps[2] and "a.B" in maps[0]


def test_proposing_an_assigned_type_does_nothing() -> None:
    node = make_node(1, (1,))
    node.propose("a.B")
    drain(node)
    node.propose("a.B")
    assert not node.has_ready()


def test_invalid_type_names_are_refused_at_propose() -> None:
    with pytest.raises(InvalidCommand):
        make_node(1, (1,)).propose("has space")


def test_a_peer_request_with_a_bad_name_is_dropped() -> None:
    node = make_node(1, (1,))
    node.step(ProposeRequest(sender=2, type_name="bad name"))
    assert not node.has_ready()


def test_observers_never_promise_or_propose() -> None:
    obs = make_node(100, (1, 2), observer=True)
    obs.step(Prepare(sender=1, slot=0, ballot=Ballot(1, 1)))
    assert drain(obs) == []
    obs.propose("a.B")
    assert messages(drain(obs)) == [ProposeRequest(sender=100, type_name="a.B")]
    assert 100 not in obs.view


def test_observers_learn_by_catch_up() -> None:
    obs = make_node(100, (1,), observer=True)
    member = make_node(1, (1,))
    member.propose("a.B")
    drain(member)
    member.tick()
    status = next(e.msg for e in drain(member) if isinstance(e.msg, Status))
    obs.step(status)
    assert messages(drain(obs)) == [CatchUpRequest(sender=100)]
    member.step(CatchUpRequest(sender=100))
    for env in drain(member):
        obs.step(env.msg)
    assert dict(obs.groups) == dict(member.groups)


def test_catch_up_is_chunked() -> None:
    node = make_node(1, (1,))
    for i in range(40):
        node.propose(f"t.T{i}")
    drain(node)
    node.step(CatchUpRequest(sender=9))
    replies = [e.msg for e in drain(node)]
    assert len(replies) == 3 and all(isinstance(r, CatchUpReply) for r in replies)
    assert sum(len(r.entries) for r in replies if isinstance(r, CatchUpReply)) == 40


def test_a_restarted_node_rebuilds_its_map_and_promises() -> None:
    journal: list[JournalRecord] = []
    node = make_node(1, (1,))
    node.propose("a.B")
    drain(node, journal)
    node.step(Prepare(sender=2, slot=7, ballot=Ballot(5, 2)))
    drain(node, journal)
    again = PaxosNode(node.config, rng=random.Random(0), records=journal)
    assert dict(again.groups) == dict(node.groups)
    assert again.acceptor.promised(7) == Ballot(5, 2)


def test_durable_records_compact_to_an_equivalent_journal() -> None:
    c = Cluster((1, 2, 3))
    for name in ("a.A", "a.B", "a.C"):
        c.propose(1, name)
        c.pump()
    node = c.nodes[2]
    compact = node.durable_records()
    again = PaxosNode(node.config, rng=random.Random(0), records=compact)
    assert again.entries() == node.entries()
    assert len(compact) <= len(c.journals[2])


def test_a_new_ballot_is_above_every_round_seen() -> None:
    node = make_node(1, (1, 2, 3))
    node.step(Prepare(sender=2, slot=0, ballot=Ballot(41, 2)))
    drain(node)
    node.propose("a.B")
    prepares = [m for m in messages(drain(node)) if isinstance(m, Prepare)]
    assert prepares and prepares[0].ballot == Ballot(42, 1)


def test_a_shrinking_view_can_complete_a_waiting_attempt() -> None:
    node = make_node(1, (1, 2, 3))
    node.propose("a.B")
    drain(node)
    node.set_view((1,))  # 2 and 3 are gone; alone, our own promise is a majority
    assert "a.B" in node.groups


def test_an_internal_error_puts_the_node_in_error_state(monkeypatch: pytest.MonkeyPatch) -> None:
    node = make_node(1, (1,))

    def broken(self: PaxosNode, msg: object) -> None:
        raise KeyError("bug")

    monkeypatch.setitem(PaxosNode._HANDLERS, Status, broken)
    with pytest.raises(KeyError):
        node.step(Status(sender=2, count=0, digest=bytes(16)))
    monkeypatch.undo()
    with pytest.raises(NodeFailed):
        node.tick()


@pytest.mark.parametrize(
    "kwargs",
    [{"node_id": -1}, {"node_id": 2**64}, {"node_id": 1, "retry_ticks": 0},
     {"node_id": 1, "heartbeat_ticks": -1}, {"node_id": 1, "catchup_ticks": 0},
     {"node_id": 1, "backoff_ticks": -2}],
)
def test_config_validation_names_the_field(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidConfig, match=next(k for k in kwargs if k != "node_id" or len(kwargs) == 1)):
        Config(**kwargs)  # type: ignore[arg-type]


def test_same_inputs_give_the_same_outputs() -> None:
    def run() -> list[str]:
        c = Cluster((1, 2, 3))
        c.propose(2, "a.B")
        c.propose(1, "a.C")
        c.pump()
        c.tick(12)
        c.pump()
        return [f"{s} {d} {m.describe()}" for s, d, m in c.sent]

    assert run() == run()
