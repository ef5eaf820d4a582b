"""Issue 21, findings 2 and 5: what one forged message, or a flood of them, can do.

Each regression sends the values the finding describes (a ballot round of 2**63-1, a
journal holding it, 2,000 ProposeRequests from one requester, a catch-up request
answered with everything, one forged Commit moving a type) and fails on the code before
the fix.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import cbor2
import pytest
from paxos_helpers import Cluster, catch_up, drain, make_node, messages, solicit

from consensus.allocator import allocate, preferred_group
from consensus.commands import Assign, Move
from consensus.journal import AcceptedRecord, Learned, Promised, RoundUsed, record_from_wire
from consensus.limits import MAX_ROUND, ROUND_STEP, SLOT_WINDOW, Limits
from consensus.messages import (
    Accept,
    Ballot,
    CatchUpReply,
    CatchUpRequest,
    Commit,
    Nack,
    Prepare,
    Promise,
    ProposeRequest,
)
from consensus.node import PaxosNode

WIRE_MAX = 2**63 - 1
T = "brewery.Temperature"
G = preferred_group(T)
G2 = allocate(T, {G})


def _assign(name: str, group: IPv4Address) -> bytes:
    return Assign(type_name=name, group=group).encode()


def _restart(node: PaxosNode, journal: list[object], view: tuple[int, ...]) -> PaxosNode:
    # Through CBOR, as the runtime's journal stores records.
    records = [record_from_wire(cbor2.loads(cbor2.dumps(r.to_wire()))) for r in journal]  # type: ignore[attr-defined]
    again = PaxosNode(node.config, rng=random.Random(1), records=records)
    again.set_view(view)
    return again


# -- finding 2: one forged Prepare stopped agreement on every member ---------------


def test_regression_a_prepare_with_round_2_63_minus_1_is_refused_and_not_journaled() -> None:
    journal: list[object] = []
    node = make_node(1, (1, 2, 3))
    node.step(Prepare(sender=2, slot=0, ballot=Ballot(WIRE_MAX, 2)))
    out = drain(node, journal)  # type: ignore[arg-type]
    assert out == [] and journal == []  # no Promise, no Promised record
    assert node.acceptor.promised(0) is None
    assert node.counters["implausible_round"] == 1


def test_regression_after_the_forged_prepare_the_next_round_is_allocated_without_raising() -> None:
    # The finding: the next RoundUsed(2**63) raised MalformedMessage on every tick.
    node = make_node(1, (1, 2, 3))
    node.step(Prepare(sender=2, slot=0, ballot=Ballot(WIRE_MAX, 2)))
    node.propose(T)
    for _ in range(50):
        node.tick()
    prepares = [m for m in messages(drain(node)) if isinstance(m, Prepare)]
    assert prepares and all(p.ballot.round <= ROUND_STEP for p in prepares)


def test_regression_a_forged_prepare_does_not_stop_a_cluster_from_deciding() -> None:
    cluster = Cluster((1, 2, 3))
    for i in (1, 2, 3):
        cluster.nodes[i].step(Prepare(sender=9, slot=0, ballot=Ballot(WIRE_MAX, 9)))
        cluster.collect(i)
    cluster.pump()
    cluster.propose(2, T)
    for _ in range(40):
        cluster.tick()
        cluster.pump()
    assert all(cluster.nodes[i].groups.get(T) == G for i in (1, 2, 3))


def test_regression_a_journal_with_the_forged_round_loads_and_the_node_proposes() -> None:
    # What the old version journaled: the promise to the forged ballot, and a round.
    journal: list[object] = [
        Promised(slot=0, ballot=Ballot(WIRE_MAX, 2)),
        AcceptedRecord(slot=0, ballot=Ballot(WIRE_MAX, 2), value=_assign("evil.T", G2)),
        RoundUsed(round=WIRE_MAX),
        Learned(slot=1, value=_assign("a.Kept", G2)),
    ]
    node = _restart(make_node(1), journal, (1,))
    assert node.counters["journal_implausible"] == 3
    assert node.acceptor.promised(0) is None and node.groups == {"a.Kept": G2}
    node.propose(T)
    for _ in range(5):
        node.tick()
    assert node.groups[T] == G  # slot 0 is free again: the node alone decides it
    assert all(r.round <= ROUND_STEP for r in node.durable_records() if isinstance(r, RoundUsed))


def test_a_node_at_max_round_refuses_to_propose_and_never_raises() -> None:
    node = _restart(make_node(1), [RoundUsed(round=MAX_ROUND)], (1,))
    node.propose(T)
    for _ in range(100):
        node.tick()
    assert T not in node.groups
    assert not [m for m in messages(drain(node)) if isinstance(m, Prepare)]
    assert node.counters["rounds_exhausted"] >= 100
    node.step(Commit(sender=1, slot=0, value=_assign("other.T", G2)))  # forged self: dropped
    assert node.counters["forged_self"] == 1


@pytest.mark.parametrize("round_", [WIRE_MAX, MAX_ROUND + 1, MAX_ROUND, 3 * ROUND_STEP])
def test_implausible_rounds_are_refused_in_accept_and_nack(round_: int) -> None:
    node = make_node(1, (1, 2, 3))
    node.step(Accept(sender=2, slot=0, ballot=Ballot(round_, 2), value=_assign(T, G)))
    assert drain(node) == [] and node.acceptor.accepted(0) is None
    node.propose(T)
    prepare = next(m for m in messages(drain(node)) if isinstance(m, Prepare))
    node.step(Nack(sender=2, slot=prepare.slot, ballot=prepare.ballot, promised=Ballot(round_, 2)))
    node.step(Promise(sender=2, slot=prepare.slot, ballot=prepare.ballot))
    assert any(isinstance(m, Accept) for m in messages(drain(node)))  # the Nack did not abandon it
    assert node.counters["implausible_round"] == 2


def test_a_round_within_the_step_is_adopted() -> None:
    node = make_node(1, (1, 2, 3))
    node.step(Prepare(sender=2, slot=0, ballot=Ballot(ROUND_STEP, 2)))
    assert [type(m) for m in messages(drain(node))] == [Promise]
    node.step(Promise(sender=2, slot=0, ballot=Ballot(ROUND_STEP, 2)))  # not ours: ignored
    node.propose(T)
    prepare = next(m for m in messages(drain(node)) if isinstance(m, Prepare))
    assert prepare.ballot.round == ROUND_STEP + 1


def test_a_node_far_behind_catches_up_by_one_step_per_refused_message() -> None:
    # An honest network at round 3 * ROUND_STEP: the newcomer refuses twice, then promises.
    node = make_node(1, (1, 2))
    high = Ballot(3 * ROUND_STEP, 2)
    replies = []
    for _ in range(4):
        node.step(Prepare(sender=2, slot=0, ballot=high))
        replies.append([type(m) for m in messages(drain(node))])
    assert replies == [[], [], [Promise], [Promise]]
    assert node.counters["implausible_round"] == 2


@pytest.mark.parametrize("slot", [WIRE_MAX, 2**32, SLOT_WINDOW])
def test_slots_far_beyond_the_first_free_one_get_no_acceptor_state(slot: int) -> None:
    node = make_node(1, (1, 2, 3))
    node.step(Prepare(sender=2, slot=slot, ballot=Ballot(1, 2)))
    node.step(Accept(sender=2, slot=slot, ballot=Ballot(1, 2), value=_assign(T, G)))
    node.step(Commit(sender=2, slot=slot, value=_assign(T, G)))
    assert drain(node) == [] and node.acceptor.slots() == [] and node.groups == {}
    assert node.counters["implausible_slot"] == 3
    node.step(Prepare(sender=2, slot=SLOT_WINDOW - 1, ballot=Ballot(1, 2)))
    assert node.acceptor.slots() == [SLOT_WINDOW - 1]  # the last slot of the window is fine


# -- finding 5: ProposeRequest floods ----------------------------------------------


def test_regression_2000_propose_requests_from_one_requester_queue_a_handful() -> None:
    lim = Limits()
    cluster = Cluster((1, 2, 3))
    for i in range(2000):
        cluster.nodes[1].step(ProposeRequest(sender=7, type_name=f"junk.T{i}"))
    cluster.collect(1)
    counters = cluster.nodes[1].counters
    assert counters["propose_rate_limited"] == 2000 - lim.propose_burst
    ticks = 40
    for _ in range(ticks):
        cluster.tick()
        cluster.pump()
    junk = [t for t in cluster.nodes[1].groups if t.startswith("junk.")]
    # The 2,000 were all sent at tick 0: only the burst got in, none later.
    assert len(junk) == lim.propose_burst
    assert cluster.nodes[2].groups == cluster.nodes[1].groups


def test_a_flood_from_2000_ids_is_held_by_the_global_limit_and_the_queue_cap() -> None:
    lim = Limits()
    node = make_node(1, (1, 2, 3))
    for i in range(2000):
        node.step(ProposeRequest(sender=10_000 + i, type_name=f"junk.T{i}"))
    c = node.counters
    admitted = 2000 - c["propose_queue_full"] - c["propose_total_rate_limited"]
    assert admitted == lim.max_pending
    assert c["requesters_evicted"] == 0  # the queue cap refuses before the table grows


def test_the_per_requester_table_is_bounded_and_evictions_are_counted() -> None:
    limits = Limits(requesters=4, max_pending=100, propose_total_burst=100)
    node = make_node(1, (1, 2, 3), limits=limits)
    for i in range(10):
        node.step(ProposeRequest(sender=100 + i, type_name=f"junk.T{i}"))
    assert node.counters["requesters_evicted"] == 6


def test_the_nodes_own_types_go_before_a_flood_of_peers_requests() -> None:
    node = make_node(1, (1, 2, 3))
    for i in range(20):
        node.step(ProposeRequest(sender=7, type_name=f"junk.T{i}"))
    drain(node)
    node.propose(T)  # while the first junk attempt runs
    for _ in range(12):  # that attempt times out: the next one is for the node's own type
        node.tick()
    out = messages(drain(node))
    prepare = [m for m in out if isinstance(m, Prepare)][-1]
    node.step(Promise(sender=2, slot=prepare.slot, ballot=prepare.ballot))
    accept = next(m for m in messages(drain(node)) if isinstance(m, Accept))
    assert accept.value == _assign(T, G)


def test_peers_requests_are_served_round_robin_by_requester() -> None:
    node = make_node(1, (1, 2, 3))
    for i in range(5):
        node.step(ProposeRequest(sender=7, type_name=f"junk.T{i}"))
    node.step(ProposeRequest(sender=8, type_name="honest.T"))
    order = [name for name, _ in node._work_order()]
    assert order.index("honest.T") == 1  # after the flood's first, not its last


def test_a_follower_relays_a_peers_request_to_the_leader_and_keeps_nothing() -> None:
    node = make_node(2, (1, 2, 3))
    node.step(ProposeRequest(sender=1000, type_name=T))
    out = drain(node)
    assert [(e.to, e.msg) for e in out] == [(1, ProposeRequest(sender=2, type_name=T))]
    for _ in range(40):
        node.tick()
    assert not [e for e in drain(node) if isinstance(e.msg, (ProposeRequest, Prepare))]


# -- finding 5: catch-up amplification ---------------------------------------------


def _node_with_entries(count: int) -> PaxosNode:
    node = make_node(1, (1,))
    for i in range(count):
        node.propose(f"app.T{i}")
    drain(node)
    assert node.summary[0] == count
    return node


def test_regression_a_requester_is_answered_once_per_catchup_period_and_by_unicast() -> None:
    node = _node_with_entries(40)
    for _ in range(100):
        node.step(CatchUpRequest(sender=7))
    out = drain(node)
    assert len(out) == 3 and all(e.to == 7 and isinstance(e.msg, CatchUpReply) for e in out)
    assert node.counters["catchup_rate_limited"] == 99
    for _ in range(node.config.catchup_ticks):
        node.tick()
    drain(node)
    node.step(CatchUpRequest(sender=7))
    assert len(drain(node)) == 3  # the next period: answered again


def test_catch_up_requests_from_many_ids_are_held_by_the_global_limit() -> None:
    node = _node_with_entries(40)
    for i in range(1000):
        node.step(CatchUpRequest(sender=10_000 + i))
    answered = {e.to for e in drain(node)}
    assert len(answered) == Limits().catchup_total_burst
    assert node.counters["catchup_total_rate_limited"] == 1000 - len(answered)


# -- finding 5: one forged Commit moved a type's group -----------------------------


def _placed() -> PaxosNode:
    node = make_node(1, (1, 2, 3))
    node.step(Commit(sender=2, slot=0, value=_assign(T, G)))
    drain(node)
    assert node.groups[T] == G
    return node


def test_regression_a_forged_commit_of_a_move_does_not_move_the_type() -> None:
    node = _placed()
    node.step(Commit(sender=2, slot=1, value=Move(type_name=T, old=G, new=G2).encode()))
    rd = node.ready()
    assert node.groups[T] == G and rd.changes == ()


def test_a_forged_commit_overwriting_a_decided_slot_is_refused() -> None:
    node = _placed()
    node.step(Commit(sender=2, slot=0, value=_assign("other.T", G)))
    assert node.counters["commit_conflict"] == 1 and node.groups == {T: G}


def test_a_forged_commit_filling_a_hole_to_re_place_a_type_is_refused() -> None:
    node = make_node(1, (1, 2, 3))
    node.step(Commit(sender=2, slot=3, value=_assign(T, G)))  # slots 0..2 not known yet
    node.step(Commit(sender=2, slot=1, value=_assign("evil.T", G)))  # sorts first, takes G
    assert node.counters["commit_replaces"] == 1 and node.groups == {T: G}
    node.step(Commit(sender=2, slot=1, value=_assign("fine.T", G2)))  # moves nobody: learned
    assert node.groups["fine.T"] == G2


def test_a_commit_from_outside_the_view_is_refused() -> None:
    node = make_node(1, (1, 2, 3))
    node.step(Commit(sender=99, slot=0, value=_assign(T, G)))
    assert node.groups == {} and node.counters["commit_stranger"] == 1


def test_an_unsolicited_catch_up_reply_is_refused_and_a_solicited_one_learned() -> None:
    node = make_node(1, (1, 2, 3))
    node.step(CatchUpReply(sender=2, entries=((0, _assign(T, G)),)))
    assert node.groups == {} and node.counters["catchup_unsolicited"] == 1
    catch_up(node, 2, ((0, _assign(T, G)),))
    assert node.groups == {T: G}


def test_a_catch_up_reply_is_welcome_only_for_a_while() -> None:
    node = make_node(1, (1, 2, 3))
    solicit(node, 2)
    for _ in range(3 * node.config.catchup_ticks + 1):
        node.tick()
    node.step(CatchUpReply(sender=2, entries=((0, _assign(T, G)),)))
    assert node.groups == {} and node.counters["catchup_unsolicited"] == 1


def test_entries_learned_from_peers_are_rate_limited() -> None:
    node = make_node(1, (1, 2, 3), limits=Limits(learn_burst=3, learn_every=10))
    for slot in range(5):
        node.step(Commit(sender=2, slot=slot, value=_assign(f"a.T{slot}", allocate(f"a.T{slot}", ()))))
    assert len(node.groups) == 3 and node.counters["learn_rate_limited"] == 2
    for _ in range(10):
        node.tick()
    node.step(Commit(sender=2, slot=3, value=_assign("a.T3", allocate("a.T3", ()))))
    assert len(node.groups) == 4


def test_limits_off_admit_everything() -> None:
    node = make_node(1, (1, 2, 3), limits=Limits(enabled=False))
    for i in range(100):
        node.step(ProposeRequest(sender=7, type_name=f"junk.T{i}"))
        node.step(CatchUpRequest(sender=7))
    assert not any("rate_limited" in k or "full" in k for k in node.counters)
