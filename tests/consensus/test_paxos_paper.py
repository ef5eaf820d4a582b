"""One test per claim of Lamport's "Paxos Made Simple" (2001), citing its section.

Init, act, check, as raft's ``raft_paper_test.go`` does for the Raft paper.
"""

from __future__ import annotations

import random

from paxos_helpers import Cluster, catch_up, drain, make_node, messages

from consensus.journal import JournalRecord
from consensus.messages import Accept, Accepted, Ballot, Commit, Nack, Prepare, Promise
from consensus.node import PaxosNode
from consensus.proposer import Attempt, quorum_size

V1 = b"assign a.A 239.255.1.1"
V2 = b"assign a.B 239.255.1.2"


def test_p1_an_acceptor_accepts_the_first_proposal_it_receives() -> None:
    # Reference: section 2.2, P1.
    node = make_node(2, (1, 2, 3))
    node.step(Accept(sender=1, slot=0, ballot=Ballot(1, 1), value=V1))
    assert messages(drain(node)) == [Accepted(sender=2, slot=0, ballot=Ballot(1, 1))]


def test_p1a_no_accept_below_a_promise() -> None:
    # Reference: section 2.2, P1a: accept n iff no prepare greater than n was answered.
    node = make_node(2, (1, 2, 3))
    node.step(Prepare(sender=3, slot=0, ballot=Ballot(5, 3)))
    drain(node)
    node.step(Accept(sender=1, slot=0, ballot=Ballot(4, 1), value=V1))
    assert messages(drain(node)) == [Nack(sender=2, slot=0, ballot=Ballot(4, 1), promised=Ballot(5, 3))]


def test_a_prepare_below_a_promise_is_refused_with_a_courtesy_nack() -> None:
    # Reference: section 2.2, "the acceptor should inform the proposer".
    node = make_node(2, (1, 2, 3))
    node.step(Prepare(sender=3, slot=0, ballot=Ballot(5, 3)))
    drain(node)
    node.step(Prepare(sender=1, slot=0, ballot=Ballot(2, 1)))
    assert messages(drain(node)) == [Nack(sender=2, slot=0, ballot=Ballot(2, 1), promised=Ballot(5, 3))]


def test_a_promise_reports_the_highest_numbered_accepted_proposal() -> None:
    # Reference: section 2.2, phase 1(b).
    node = make_node(2, (1, 2, 3))
    node.step(Accept(sender=1, slot=0, ballot=Ballot(1, 1), value=V1))
    drain(node)
    node.step(Prepare(sender=3, slot=0, ballot=Ballot(2, 3)))
    assert messages(drain(node)) == [
        Promise(sender=2, slot=0, ballot=Ballot(2, 3), accepted_ballot=Ballot(1, 1), accepted_value=V1)
    ]


def test_p2c_the_proposer_adopts_the_value_of_the_highest_numbered_promise() -> None:
    # Reference: section 2.2, P2c and phase 2(a).
    a = Attempt(slot=0, ballot=Ballot(9, 1), own=b"mine", deadline=10)
    a.promises[2] = Promise(sender=2, slot=0, ballot=Ballot(9, 1), accepted_ballot=Ballot(3, 2), accepted_value=V1)
    a.promises[3] = Promise(sender=3, slot=0, ballot=Ballot(9, 1), accepted_ballot=Ballot(7, 3), accepted_value=V2)
    assert a.choose_value() == V2
    a.promises = {1: Promise(sender=1, slot=0, ballot=Ballot(9, 1))}
    assert a.choose_value() == b"mine"


def test_a_proposer_that_finds_an_accepted_value_proposes_it_not_its_own() -> None:
    # Reference: section 2.2, the proposer "must" propose v of the highest-numbered proposal.
    node = make_node(1, (1, 2, 3))
    node.propose("a.Mine")
    prepare = messages(drain(node))[0]
    assert isinstance(prepare, Prepare)
    node.step(Promise(sender=2, slot=0, ballot=prepare.ballot, accepted_ballot=Ballot(0, 2), accepted_value=V1))
    accept = [m for m in messages(drain(node)) if isinstance(m, Accept)]
    assert accept and accept[0].value == V1


def test_proposers_number_from_disjoint_sets() -> None:
    # Reference: section 2.2, "different proposers choose their numbers from disjoint sets".
    ballots = []
    for node_id in (1, 2, 3):
        node = make_node(node_id, (1, 2, 3), follow_leader=False)
        node.propose("a.B")
        ballots += [m.ballot for m in messages(drain(node)) if isinstance(m, Prepare)]
    assert ballots == [Ballot(1, 1), Ballot(1, 2), Ballot(1, 3)]


def test_a_value_is_chosen_by_a_majority_and_a_tie_is_not_one() -> None:
    # Reference: section 2.1, "a majority of acceptors"; any two majorities intersect.
    assert [quorum_size(n) for n in range(1, 7)] == [1, 2, 2, 3, 3, 4]
    for n in range(1, 12):
        assert 2 * quorum_size(n) > n


def test_learners_learn_a_chosen_value_from_the_commit() -> None:
    # Reference: section 2.3, "have each acceptor ... respond to a distinguished learner ...
    # which in turn informs the other learners".
    c = Cluster((1, 2, 3))
    c.propose(1, "a.B")
    c.pump()
    commits = [m for _, _, m in c.sent if isinstance(m, Commit)]
    assert commits and all("a.B" in n.groups for n in c.nodes.values())


def test_a_learner_that_missed_the_commit_finds_out_later() -> None:
    # Reference: section 2.3, a learner may "find out ... by asking" after messages are lost.
    c = Cluster((1, 2, 3))
    c.propose(1, "a.B")
    c.pump(drop=lambda s, d, m: isinstance(m, Commit) and d == 3)
    assert "a.B" not in c.nodes[3].groups
    c.tick(5)
    c.pump()
    assert "a.B" in c.nodes[3].groups


def test_an_acceptor_remembers_its_promise_across_a_restart() -> None:
    # Reference: section 2.3, "an acceptor must remember this information even if it fails
    # and then restarts".
    journal: list[JournalRecord] = []
    node = make_node(2, (1, 2, 3))
    node.step(Prepare(sender=3, slot=0, ballot=Ballot(5, 3)))
    drain(node, journal)
    again = PaxosNode(node.config, rng=random.Random(2), records=journal)
    again.set_view((1, 2, 3))
    again.step(Accept(sender=1, slot=0, ballot=Ballot(4, 1), value=V1))
    assert messages(drain(again)) == [Nack(sender=2, slot=0, ballot=Ballot(4, 1), promised=Ballot(5, 3))]


def test_a_restarted_proposer_never_reuses_a_ballot() -> None:
    # Reference: section 2.3, a proposer must remember "the highest-numbered proposal it has
    # ever tried to issue"; here it is RoundUsed in the journal.
    journal: list[JournalRecord] = []
    node = make_node(1, (1, 2, 3))
    node.propose("a.B")
    first = next(m for m in messages(drain(node, journal)) if isinstance(m, Prepare))
    again = PaxosNode(node.config, rng=random.Random(1), records=journal)
    again.set_view((1, 2, 3))
    again.propose("a.C")
    second = next(m for m in messages(drain(again)) if isinstance(m, Prepare))
    assert second.ballot > first.ballot


def test_a_distinguished_proposer_makes_progress() -> None:
    # Reference: section 2.4, "a distinguished proposer must be selected as the only one to
    # try issuing proposals".
    c = Cluster((1, 2, 3))
    for i in (1, 2, 3):
        c.propose(i, f"a.T{i}")
    c.pump()
    prepares = {m.sender for _, _, m in c.sent if isinstance(m, Prepare)}
    assert prepares == {1}
    assert all(len(n.groups) == 3 for n in c.nodes.values())


def test_a_proposer_may_abandon_a_proposal_at_any_time() -> None:
    # Reference: section 2.2, "a proposer can abandon a proposal at any time ... correctness
    # is still maintained".
    c = Cluster((1, 2, 3))
    c.propose(1, "a.B")
    c.pump(drop=lambda s, d, m: isinstance(m, Accepted))  # phase 2 never completes
    c.tick(30)
    c.pump()
    groups = {n.groups.get("a.B") for n in c.nodes.values()}
    assert len(groups) == 1 and None not in groups


def test_gaps_in_the_log_are_filled_by_running_phase_1() -> None:
    # Reference: section 3, a new leader runs phase 1 for the instances it has not learned.
    node = make_node(1, (1,))
    catch_up(node, 2, ((1, V2),))  # slot 1 learned from a peer, slot 0 not
    drain(node)
    node.propose("a.C")
    assert [slot for slot, _ in node.entries()] == [0, 1]
