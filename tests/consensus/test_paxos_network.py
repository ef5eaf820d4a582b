"""SimNetwork operations, the script runner's commands, Ready helpers, proposer details."""

from __future__ import annotations

import pytest
from paxos_helpers import Cluster, drain, make_node, messages

from consensus.messages import Accept, Ballot, Nack, Prepare, Promise, ProposeRequest
from consensus.proposer import Attempt
from consensus.ready import Outbound, Ready
from consensus.sim.network import SimNetwork
from consensus.sim.script import run_script


def test_deliver_next_and_stabilize_deliver_in_send_order() -> None:
    net = SimNetwork([1, 2, 3], seed=0, auto_deliver=False)
    net.propose(1, "a.B")
    assert len(net.in_flight) == 2
    net.tick()
    assert len(net.in_flight) == 2 + 3 * 2  # ticking does not deliver; each node's status adds 2
    assert net.deliver_next()
    assert net.stabilize() > 0 and not net.in_flight
    assert not net.deliver_next()
    assert all("a.B" in n.groups for n in net.nodes.values())


def test_drop_removes_a_datagram_and_traces_it() -> None:
    net = SimNetwork([1, 2], seed=0, auto_deliver=False)
    net.propose(1, "a.B")
    net.deliver_next(drop=True)
    assert net.trace[-1].what == "drop" and not net.in_flight


def test_cut_stops_one_link_only() -> None:
    net = SimNetwork([1, 2, 3], seed=0)
    net.cut(1, 2)
    assert not net.connected(1, 2) and not net.connected(2, 1) and net.connected(1, 3)
    assert net.nodes[1].view == frozenset({1, 3})


def test_msg_hook_can_filter_deliveries() -> None:
    net = SimNetwork([1, 2, 3], seed=0)
    net.msg_hook = lambda src, dst, msg: not isinstance(msg, Promise)
    net.propose(1, "a.B")
    for _ in range(5):
        net.tick()
    assert "a.B" not in net.nodes[1].groups
    assert any(line.what == "hooked" for line in net.trace)


def test_join_and_leave_change_views() -> None:
    net = SimNetwork([1, 2], seed=0)
    net.join(3)
    assert net.nodes[1].view == frozenset({1, 2, 3})
    net.leave(2)
    assert net.nodes[1].view == frozenset({1, 3}) and 2 not in net.up()


def test_a_joiner_catches_up_without_running_the_protocol_per_type() -> None:
    net = SimNetwork([1, 2, 3], seed=0)
    for k in range(20):
        net.propose(1, f"a.T{k}")
    for _ in range(200):
        net.tick()
    net.join(4)
    mark = len(net.trace)
    for _ in range(30):
        net.tick()
    assert dict(net.nodes[4].groups) == dict(net.nodes[1].groups)
    sent_to_4 = [t.msg for t in net.trace[mark:] if t.dst == 4 and t.what == "deliver"]
    assert not any(isinstance(m, Prepare) and m.slot < 20 for m in sent_to_4)


def test_observers_are_never_in_a_view() -> None:
    net = SimNetwork([1, 2], seed=0, observers=[50])
    assert all(50 not in net.nodes[i].view for i in (1, 2, 50))
    net.propose(50, "a.B")
    for _ in range(20):
        net.tick()
    assert "a.B" in net.nodes[50].groups


def test_the_script_runner_supports_every_command() -> None:
    script = "\n\n".join(
        f"{cmd}\n----"
        for cmd in [
            "add-observer 9", "add-nodes 3 static", "propose 1 a.B", "deliver n=2", "drop n=1",
            "stabilize", "tick n=2", "crash 2 lose-outbox", "restart 2", "join 4", "leave 4",
            "partition 1 2,3", "heal", "maps", "log 1",
        ]
    )
    out = run_script(script)
    assert "crash 2 (after persist, before send)" in out and "partition 1 | 2,3" in out
    assert "node 9:" in out and "slot 0: assign a.B" in out


def test_ready_describe_and_is_empty() -> None:
    rd = Ready(to_persist=(), outbox=(Outbound(None, ProposeRequest(sender=1, type_name="a")),),
               changes=(), decided=())
    assert not rd.is_empty() and rd.persisted
    assert rd.describe() == "send 1 propose-request a -> *"
    assert Ready(to_persist=(), outbox=(), changes=(), decided=()).is_empty()


def test_an_attempt_counts_only_members_of_the_view() -> None:
    a = Attempt(slot=0, ballot=Ballot(1, 1), own=b"v", deadline=5)
    for sender in (1, 99, 98):
        a.promises[sender] = Promise(sender=sender, slot=0, ballot=Ballot(1, 1))
    assert not a.promise_quorum({1, 2, 3})  # strangers (observers) do not count
    a.promises[2] = Promise(sender=2, slot=0, ballot=Ballot(1, 1))
    assert a.promise_quorum({1, 2, 3})
    assert not a.accept_quorum({1, 2, 3})  # not in phase 2 yet


def test_a_nack_abandons_the_attempt_and_backs_off() -> None:
    node = make_node(1, (1, 2, 3))
    node.propose("a.B")
    prepare = next(m for m in messages(drain(node)) if isinstance(m, Prepare))
    node.step(Nack(sender=2, slot=0, ballot=prepare.ballot, promised=Ballot(9, 2)))
    assert not [m for m in messages(drain(node)) if isinstance(m, Prepare)]
    for _ in range(8):
        node.tick()
    retry = [m for m in messages(drain(node)) if isinstance(m, Prepare)]
    assert retry and retry[0].ballot == Ballot(10, 1)


def test_a_higher_accept_for_our_slot_makes_us_yield() -> None:
    node = make_node(1, (1, 2, 3))
    node.propose("a.B")
    drain(node)
    node.step(Accept(sender=2, slot=0, ballot=Ballot(5, 2), value=b"assign a.C 239.255.1.1"))
    out = messages(drain(node))
    assert not any(isinstance(m, Accept) and m.sender == 1 for m in out)


def test_a_follower_steps_in_when_the_leader_is_silent() -> None:
    c = Cluster((1, 2, 3))
    c.crash(1)  # the leader is down but still in everyone's view
    c.propose(2, "a.B")
    for _ in range(40):
        c.tick()
        c.pump()
    assert "a.B" in c.nodes[2].groups and "a.B" in c.nodes[3].groups


@pytest.mark.parametrize("view", [(1,), (1, 2), (1, 2, 3, 4, 5)])
def test_decisions_need_only_the_view_majority(view: tuple[int, ...]) -> None:
    c = Cluster(view)
    c.propose(view[-1], "a.B")
    c.pump()
    assert all("a.B" in n.groups for n in c.nodes.values())
