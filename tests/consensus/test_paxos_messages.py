"""Messages: self-validation, CBOR round trip, and decode raising only MalformedMessage."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.errors import MalformedMessage
from consensus.messages import (
    MAX_ENTRIES_PER_REPLY,
    MAX_VALUE_BYTES,
    Accept,
    Accepted,
    Ballot,
    CatchUpReply,
    CatchUpRequest,
    Commit,
    Message,
    Nack,
    Prepare,
    Promise,
    ProposeRequest,
    Status,
    message_from_wire,
)

B = Ballot(3, 7)
ids = st.integers(0, 2**64 - 1)
slots = st.integers(0, 2**63 - 1)
ballots = st.builds(Ballot, st.integers(0, 2**63 - 1), ids)
values = st.binary(max_size=MAX_VALUE_BYTES)


def _promise(sender: int, slot: int, ballot: Ballot, prior: tuple[Ballot, bytes] | None) -> Promise:
    if prior is None or prior[0] > ballot:
        return Promise(sender=sender, slot=slot, ballot=ballot)
    return Promise(sender=sender, slot=slot, ballot=ballot, accepted_ballot=prior[0], accepted_value=prior[1])


any_message: st.SearchStrategy[Message] = st.one_of(
    st.builds(lambda s, sl, b: Prepare(sender=s, slot=sl, ballot=b), ids, slots, ballots),
    st.builds(_promise, ids, slots, ballots, st.none() | st.tuples(ballots, values)),
    st.builds(lambda s, sl, b, v: Accept(sender=s, slot=sl, ballot=b, value=v), ids, slots, ballots, values),
    st.builds(lambda s, sl, b: Accepted(sender=s, slot=sl, ballot=b), ids, slots, ballots),
    st.builds(lambda s, sl, b, p: Nack(sender=s, slot=sl, ballot=b, promised=p), ids, slots, ballots, ballots),
    st.builds(lambda s, sl, v: Commit(sender=s, slot=sl, value=v), ids, slots, values),
    st.builds(lambda s, n, d: Status(sender=s, count=n, digest=d), ids, slots, st.binary(min_size=16, max_size=16)),
    st.builds(lambda s: CatchUpRequest(sender=s), ids),
    st.builds(
        lambda s, e: CatchUpReply(sender=s, entries=tuple(e)), ids,
        st.lists(st.tuples(slots, values), max_size=MAX_ENTRIES_PER_REPLY),
    ),
    st.builds(lambda s, t: ProposeRequest(sender=s, type_name=t), ids, st.text(min_size=1, max_size=200)),
)


@given(any_message)
@settings(max_examples=300, deadline=None)
def test_every_message_round_trips_through_cbor(msg: Message) -> None:
    assert message_from_wire(cbor2.loads(cbor2.dumps(msg.to_wire()))) == msg


@given(any_message)
@settings(max_examples=100, deadline=None)
def test_describe_is_one_line(msg: Message) -> None:
    text = msg.describe()
    assert text and "\n" not in text and str(msg.sender) in text


def test_messages_compare_by_value() -> None:
    assert Prepare(sender=1, slot=0, ballot=B) == Prepare(sender=1, slot=0, ballot=B)
    assert Prepare(sender=1, slot=0, ballot=B) != Prepare(sender=2, slot=0, ballot=B)


def test_messages_are_frozen_and_keyword_only() -> None:
    msg = Commit(sender=1, slot=2, value=b"x")
    with pytest.raises(AttributeError):
        msg.slot = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Commit(1, 2, b"x")  # type: ignore[call-arg]


def test_ballots_order_by_round_then_node() -> None:
    assert Ballot(1, 9) < Ballot(2, 0) < Ballot(2, 1)
    assert str(Ballot(4, 2)) == "4.2"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Prepare(sender=-1, slot=0, ballot=B),
        lambda: Prepare(sender=1, slot=True, ballot=B),
        lambda: Commit(sender=1, slot=0, value=b"x" * (MAX_VALUE_BYTES + 1)),
        lambda: Commit(sender=1, slot=0, value="text"),  # type: ignore[arg-type]
        lambda: Promise(sender=1, slot=0, ballot=B, accepted_ballot=B),
        lambda: Promise(sender=1, slot=0, ballot=Ballot(1, 1), accepted_ballot=B, accepted_value=b""),
        lambda: Status(sender=1, count=0, digest=b"short"),
        lambda: CatchUpReply(sender=1, entries=((0, b""),) * (MAX_ENTRIES_PER_REPLY + 1)),
        lambda: CatchUpReply(sender=1, entries=[(0, b"")]),  # type: ignore[arg-type]
        lambda: ProposeRequest(sender=1, type_name=""),
        lambda: Ballot(-1, 0),
        lambda: Ballot(0, 2**64),
    ],
)
def test_invalid_messages_cannot_be_built(build: Any) -> None:
    with pytest.raises(MalformedMessage):
        build()


@pytest.mark.parametrize(
    "tree",
    [
        None, 3, b"bytes", [], ["prepare"], ["nope", 1], ["prepare", 1, 0],
        ["prepare", 1, 0, [1]], ["prepare", 1, 0, [1, 2, 3]], ["prepare", 1, 0, "b"],
        ["prepare", "1", 0, [1, 1]], ["promise", 1, 0, [1, 1], None, b"v"],
        ["catchup", 1, [[1]]], ["catchup", 1, "x"], ["catchup", 1, [[0, "text"]]],
        ["status", 1, 0, "digest"], ["propose", 1, 5], [{"a": 1}, 1],
        ["commit", 1, 0, b"x", "extra"],
    ],
)
def test_malformed_wire_trees_raise_malformed_message(tree: object) -> None:
    with pytest.raises(MalformedMessage):
        message_from_wire(tree)


primitive = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=20,
)


@given(primitive)
@settings(max_examples=500, deadline=None)
def test_decoding_garbage_raises_only_malformed_message(tree: object) -> None:
    with contextlib.suppress(MalformedMessage):
        message_from_wire(tree)


@given(any_message, st.integers(0, 10), primitive)
@settings(max_examples=300, deadline=None)
def test_decoding_a_corrupted_message_raises_only_malformed_message(
    msg: Message, index: int, junk: object
) -> None:
    tree = msg.to_wire()
    tree[index % len(tree)] = junk
    with contextlib.suppress(MalformedMessage):
        message_from_wire(tree)


def test_an_exponential_graph_is_refused_without_building_its_repr() -> None:
    # Found by tests/fuzz: a 280-byte CBOR body of shared references (tags 28/29) made
    # the error message's repr double in size per level (hours at 40 levels).
    tree: list[object] = [1]
    for _ in range(60):
        tree = [tree, tree]
    data = cbor2.dumps(tree, value_sharing=True)
    assert len(data) < 500
    with pytest.raises(MalformedMessage):
        message_from_wire(cbor2.loads(data))


def test_a_huge_integer_in_a_message_is_malformed_not_a_value_error() -> None:
    with pytest.raises(MalformedMessage):
        message_from_wire(["prepare", 10**5000, [1, 2], 0])
