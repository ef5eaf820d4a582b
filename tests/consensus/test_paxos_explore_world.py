"""The explorer's world copies: a cloned node evolves exactly like the original, and a
child world never changes its parent."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.messages import Accept, Ballot, Commit, Message, Nack, Prepare, Promise
from consensus.node import Config, PaxosNode
from consensus.sim import explore_world as ew

NODES = (1, 2, 3)
VALUE = b"assign a.A 239.255.1.1"


def _inputs() -> st.SearchStrategy[list[tuple[str, object]]]:
    ballots = st.builds(Ballot, st.integers(0, 4), st.sampled_from(NODES))
    slots = st.integers(0, 1)
    senders = st.sampled_from((2, 3))
    msgs: st.SearchStrategy[Message] = st.one_of(
        st.builds(lambda s, b, f: Prepare(sender=f, slot=s, ballot=b), slots, ballots, senders),
        st.builds(lambda s, b, f: Accept(sender=f, slot=s, ballot=b, value=VALUE), slots, ballots, senders),
        st.builds(
            lambda s, b, f: Promise(sender=f, slot=s, ballot=b, accepted_ballot=None, accepted_value=None),
            slots, ballots, senders,
        ),
        st.builds(lambda s, b, f: Nack(sender=f, slot=s, ballot=b, promised=b), slots, ballots, senders),
        st.builds(lambda s, f: Commit(sender=f, slot=s, value=VALUE), slots, senders),
    )
    one = st.one_of(
        st.tuples(st.just("step"), msgs),
        st.tuples(st.just("tick"), st.none()),
        st.tuples(st.just("propose"), st.sampled_from(("a.A", "b.B"))),
    )
    return st.lists(one, max_size=12)


def _feed(node: PaxosNode, op: str, arg: object) -> list[object]:
    if op == "step":
        assert isinstance(arg, Message.__args__)
        node.step(arg)
    elif op == "tick":
        node.tick()
    else:
        assert isinstance(arg, str)
        node.propose(arg)
    if not node.has_ready():
        return []
    rd = node.ready()
    persist = list(rd.to_persist)
    rd.mark_persisted()
    out = [persist, [(e.to, e.msg) for e in rd.outbox], list(rd.changes)]
    node.advance(rd)
    return out


def _node(inputs: Sequence[tuple[str, object]] = ()) -> PaxosNode:
    """A fresh node that has been fed ``inputs``."""
    node = PaxosNode(ew.config(1), rng=random.Random(0))
    node.set_view(NODES)
    for op, arg in inputs:
        _feed(node, op, arg)
    return node


@settings(max_examples=150, deadline=None)
@given(prefix=_inputs(), suffix=_inputs())
def test_a_clone_evolves_exactly_like_the_original(
    prefix: list[tuple[str, object]], suffix: list[tuple[str, object]]
) -> None:
    original = _node(prefix)
    before = original.state_key()
    copy = original.clone()
    assert copy.state_key() == before
    for op, arg in suffix:
        assert _feed(copy, op, arg) == _feed(original, op, arg)
        assert copy.state_key() == original.state_key()
        assert copy.entries() == original.entries() and dict(copy.groups) == dict(original.groups)


@settings(max_examples=100, deadline=None)
@given(prefix=_inputs(), suffix=_inputs())
def test_changing_a_clone_leaves_the_original_alone(
    prefix: list[tuple[str, object]], suffix: list[tuple[str, object]]
) -> None:
    original = _node(prefix)
    before = original.state_key()
    entries = original.entries()
    copy = original.clone()
    for op, arg in suffix:
        _feed(copy, op, arg)
    assert original.state_key() == before and original.entries() == entries


def test_clone_refuses_a_node_with_a_ready_handed_out() -> None:
    import pytest

    from consensus.errors import ConsensusError

    node = PaxosNode(Config(node_id=1), rng=random.Random(0))
    node.set_view(NODES)
    node.propose("a.A")
    rd = node.ready()
    with pytest.raises(ConsensusError):
        node.clone()
    rd.mark_persisted()
    node.advance(rd)
    assert node.clone().state_key() == node.state_key()


def test_a_child_world_never_changes_its_parent() -> None:
    world = ew.initial({1: ("a.A", "b.B"), 2: (), 3: ()}, 0, 1, 1)
    keys = {i: n.state_key() for i, n in world.nodes.items() if n is not None}
    durable = {i: ew.records(d) for i, d in world.durable.items()}
    flight = set(world.in_flight)
    for item in sorted(flight, key=repr):
        child, action = ew.deliver(world, item, keep=False)
        assert action.item == item and item not in child.in_flight
        ew.restart(child, item[1])
    assert {i: n.state_key() for i, n in world.nodes.items() if n is not None} == keys
    assert {i: ew.records(d) for i, d in world.durable.items()} == durable
    assert world.in_flight == flight
