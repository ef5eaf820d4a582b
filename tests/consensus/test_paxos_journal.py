"""Commands and journal records: encoding, validation, replay."""

from __future__ import annotations

from ipaddress import IPv4Address

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.commands import Assign, Move, check_type_name, decode_command
from consensus.errors import InvalidCommand, MalformedMessage
from consensus.journal import (
    AcceptedRecord,
    JournalRecord,
    Learned,
    MoveIntent,
    Promised,
    RoundUsed,
    record_from_wire,
    replay,
)
from consensus.messages import Ballot

G1 = IPv4Address("239.255.1.1")
G2 = IPv4Address("239.255.1.2")
type_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=50
)


def test_commands_encode_as_readable_text() -> None:
    assert Assign(type_name="a.B", group=G1).encode() == b"assign a.B 239.255.1.1"
    assert Move(type_name="a.B", old=G1, new=G2).encode() == b"move a.B 239.255.1.1 239.255.1.2"


@given(type_names, st.sampled_from([G1, G2]))
@settings(max_examples=100, deadline=None)
def test_commands_round_trip(name: str, group: IPv4Address) -> None:
    assign = Assign(type_name=name, group=group)
    assert decode_command(assign.encode()) == assign
    move = Move(type_name=name, old=G1 if group == G2 else G2, new=group)
    assert decode_command(move.encode()) == move


@pytest.mark.parametrize(
    "value",
    [
        b"", b"assign", b"assign a", b"assign a 1.2.3.4", b"assign a 239.255.0.5",
        b"assign a  239.255.1.1", b"assign a 239.255.001.1", b"move a 239.255.1.1 239.255.1.1",
        b"\xff\xfe", b"assign a 239.255.1.1 extra", b"delete a",
    ],
)
def test_bad_command_bytes_raise_invalid_command(value: bytes) -> None:
    with pytest.raises(InvalidCommand):
        decode_command(value)


@pytest.mark.parametrize("name", ["", "has space", "tab\there", "é", "x" * 201, 5])
def test_bad_type_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidCommand):
        check_type_name(name)


def test_commands_refuse_unassignable_groups() -> None:
    with pytest.raises(InvalidCommand):
        Assign(type_name="a", group=IPv4Address("239.255.0.9"))
    with pytest.raises(InvalidCommand):
        Move(type_name="a", old=G1, new=G1)


RECORDS: list[JournalRecord] = [
    Promised(slot=3, ballot=Ballot(2, 1)),
    AcceptedRecord(slot=3, ballot=Ballot(2, 1), value=b"v"),
    Learned(slot=0, value=b"assign a 239.255.1.1"),
    RoundUsed(round=9),
    MoveIntent(move=Move(type_name="a", old=G1, new=G2)),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_records_round_trip_through_cbor(record: object) -> None:
    assert record_from_wire(cbor2.loads(cbor2.dumps(record.to_wire()))) == record  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "tree",
    [None, [], ["promised", 1], ["learned", -1, b""], ["round", "9"], ["move", "a", "x", "y"],
     ["move", "a", "239.255.1.1", "239.255.1.1"], ["what", 1], ["accepted", 1, [1, 1], 7]],
)
def test_bad_records_raise_malformed_message(tree: object) -> None:
    with pytest.raises(MalformedMessage):
        record_from_wire(tree)


def test_replay_rebuilds_promises_acceptances_learning_rounds_and_moves() -> None:
    state = replay([*RECORDS, Promised(slot=3, ballot=Ballot(1, 5))])
    assert state.promised == {3: Ballot(2, 1)}  # a lower record never lowers a promise
    assert state.accepted == {3: (Ballot(2, 1), b"v")}
    assert state.learned == [(0, b"assign a 239.255.1.1")]
    assert state.max_round == 9
    assert state.moves == [Move(type_name="a", old=G1, new=G2)]


def test_replay_takes_the_round_from_promises_too() -> None:
    assert replay([Promised(slot=0, ballot=Ballot(12, 3))]).max_round == 12
