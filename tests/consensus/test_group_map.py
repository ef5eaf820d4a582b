"""The group map: a deterministic fold of decided entries, and the merge rule."""

from __future__ import annotations

import itertools
import random
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.allocator import allocate, preferred_group
from consensus.commands import Assign, Move, Retire
from consensus.groupmap import GroupMap, MapChange
from consensus.sim.invariants import reference_fold
from consensus.sim.scenario import colliding_names

G1 = IPv4Address("239.255.1.1")
G2 = IPv4Address("239.255.1.2")
G3 = IPv4Address("239.255.1.3")
A, B = colliding_names(1)[0]


def assign(name: str, group: IPv4Address) -> bytes:
    return Assign(type_name=name, group=group).encode()


def move(name: str, old: IPv4Address, new: IPv4Address) -> bytes:
    return Move(type_name=name, old=old, new=new).encode()


def retire(name: str, group: IPv4Address) -> bytes:
    return Retire(type_name=name, group=group).encode()


def test_an_assign_places_a_type() -> None:
    gm = GroupMap()
    assert gm.add((0, assign("a", G1))) == [MapChange(type_name="a", old=None, new=G1)]
    assert gm.groups == {"a": G1}


def test_a_second_assign_of_the_same_type_is_a_no_op() -> None:
    gm = GroupMap([(0, assign("a", G1))])
    assert gm.add((1, assign("a", G2))) == []
    assert gm.groups == {"a": G1}


def test_an_assign_to_a_taken_group_reallocates_deterministically() -> None:
    gm = GroupMap([(0, assign(A, preferred_group(A)))])
    changes = gm.add((1, assign(B, preferred_group(B))))
    assert preferred_group(A) == preferred_group(B)
    expected = allocate(B, {preferred_group(A)})
    assert changes == [MapChange(type_name=B, old=None, new=expected)]


def test_adding_a_known_entry_changes_nothing() -> None:
    gm = GroupMap([(0, assign("a", G1))])
    digest = gm.digest
    assert gm.add((0, assign("a", G1))) == []
    assert gm.count == 1 and gm.digest == digest


def test_an_entry_sorting_earlier_refolds_and_reports_the_move() -> None:
    gm = GroupMap([(5, assign("x", G1))])
    changes = gm.add((2, assign("y", G1)))
    assert gm.groups["y"] == G1
    assert gm.groups["x"] == allocate("x", {G1})
    assert changes == [
        MapChange(type_name="x", old=G1, new=gm.groups["x"]),
        MapChange(type_name="y", old=None, new=G1),
    ]


def test_a_move_entry_never_moves_a_type_by_itself() -> None:
    # A Move announces a re-placement the Assign entries already made; on its own (a
    # forged Commit, issue 21) it must not carry a type off its group.
    gm = GroupMap([(0, assign("a", G1))])
    assert gm.add((1, move("a", G1, G2))) == []
    assert gm.groups == {"a": G1} and gm.moved_from == {}


def test_replaces_tells_whether_an_entry_would_move_a_placed_type() -> None:
    gm = GroupMap([(5, assign("x", G1))])
    assert gm.replaces((2, assign("y", G1)))  # sorts earlier and takes x's group
    assert not gm.replaces((2, assign("y", G2)))  # sorts earlier, moves nobody
    assert not gm.replaces((6, assign("x", G2)))  # sorts later: x keeps G1
    assert not gm.replaces((6, move("x", G1, G2)))  # a Move never moves
    assert gm.groups == {"x": G1} and gm.count == 1  # asking changed nothing


def test_a_move_entry_for_a_type_already_moved_only_records_the_old_group() -> None:
    gm = GroupMap([(0, assign("a", G2))])
    assert gm.add((1, move("a", G1, G2))) == []
    assert gm.moved_from == {"a": G1}


def test_a_move_to_a_taken_group_is_a_no_op() -> None:
    gm = GroupMap([(0, assign("a", G1)), (1, assign("b", G2))])
    assert gm.add((2, move("a", G1, G2))) == []
    assert gm.groups == {"a": G1, "b": G2}


def test_values_that_are_not_commands_decide_nothing() -> None:
    gm = GroupMap([(0, b"garbage")])
    assert gm.groups == {} and gm.count == 1


def test_slot_queries() -> None:
    gm = GroupMap([(0, assign("a", G1)), (0, assign("b", G2)), (2, assign("c", G3))])
    assert gm.has_slot(0) and not gm.has_slot(1) and gm.has_slot(2)
    assert gm.values_at(0) == sorted([assign("a", G1), assign("b", G2)])
    assert gm.first_free_slot() == 1
    assert GroupMap().first_free_slot() == 0


entry = st.tuples(
    st.integers(0, 6),
    st.builds(
        lambda n, g: assign(n, g), st.sampled_from(["a", "b", "c", A, B]), st.sampled_from([G1, G2, G3])
    )
    | st.builds(
        lambda n, o, g: move(n, o, g) if o != g else assign(n, g),
        st.sampled_from(["a", "b", A]), st.sampled_from([G1, G2]), st.sampled_from([G2, G3]),
    )
    | st.builds(
        lambda n, g: retire(n, g), st.sampled_from(["a", "b", A, B]),
        st.sampled_from([G1, G2, G3, preferred_group(A)]),
    ),
)


@given(st.lists(entry, max_size=12), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_the_map_depends_only_on_the_entry_set(entries: list[tuple[int, bytes]], rnd: random.Random) -> None:
    forward = GroupMap(entries)
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    other = GroupMap(shuffled)
    assert dict(forward.groups) == dict(other.groups)
    assert dict(forward.moved_from) == dict(other.moved_from)
    assert dict(forward.reserved) == dict(other.reserved)
    assert forward.digest == other.digest


@given(st.lists(entry, max_size=14))
@settings(max_examples=300, deadline=None)
def test_incremental_fold_matches_the_plain_reference(entries: list[tuple[int, bytes]]) -> None:
    # Added one by one (incremental appends and re-folds mixed), the map always equals
    # the simulator's plain statement of the rules, which also checks the retire grace.
    gm = GroupMap()
    for e in entries:
        gm.add(e)
        expected, problems = reference_fold(gm.entries())
        assert dict(gm.groups) == expected and problems == []


@given(st.lists(entry, max_size=12))
@settings(max_examples=300, deadline=None)
def test_no_two_types_ever_share_a_group(entries: list[tuple[int, bytes]]) -> None:
    gm = GroupMap()
    for e in entries:
        gm.add(e)
        assert len(set(gm.groups.values())) == len(gm.groups)


@given(st.lists(entry, max_size=10))
@settings(max_examples=200, deadline=None)
def test_changes_replayed_on_the_old_map_give_the_new_map(entries: list[tuple[int, bytes]]) -> None:
    gm = GroupMap()
    shadow: dict[str, IPv4Address] = {}
    for e in entries:
        for change in gm.add(e):
            assert shadow.get(change.type_name) == change.old
            if change.new is None:
                del shadow[change.type_name]
            else:
                shadow[change.type_name] = change.new
        assert shadow == dict(gm.groups)


def test_merging_two_halves_in_any_order_gives_one_map() -> None:
    left = [(0, assign(A, preferred_group(A))), (1, assign("x", G1))]
    right = [(0, assign(B, preferred_group(B))), (1, assign(A, G2)), (2, assign("x", G3))]
    maps = {
        tuple(sorted(GroupMap(list(order)).groups.items()))
        for order in itertools.permutations(left + right)
    }
    assert len(maps) == 1
