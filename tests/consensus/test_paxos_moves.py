"""Moves after a merge: owed Move decisions, their durability, and listening on both groups."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from paxos_helpers import catch_up, drain, make_node, messages

from consensus.allocator import allocate, preferred_group
from consensus.commands import Assign, Move
from consensus.journal import JournalRecord, MoveIntent
from consensus.messages import Accept, Commit, Prepare
from consensus.node import PaxosNode
from consensus.sim.scenario import colliding_names

A, B = colliding_names(1)[0]
G = preferred_group(A)


def _assign(name: str, group: IPv4Address) -> bytes:
    return Assign(type_name=name, group=group).encode()


def test_a_node_whose_type_is_re_placed_by_a_merge_owes_a_move() -> None:
    node = make_node(3, (3,))
    node.propose(B)  # alone on its side: B gets the shared preferred group
    drain(node)
    assert node.groups[B] == G
    # The other side decided A on that group in an earlier slot; the union re-places B.
    catch_up(node, 1, ((0, _assign(A, G)),))
    rd = node.ready()
    moved = [c for c in rd.changes if c.type_name == B]
    new = allocate(B, {G})
    assert moved and moved[0].old == G and moved[0].new == new
    assert MoveIntent(move=Move(type_name=B, old=G, new=new)) in rd.to_persist


def test_the_owed_move_is_proposed_and_decided() -> None:
    node = make_node(3, (3,))
    node.propose(B)
    drain(node)
    catch_up(node, 1, ((0, _assign(A, G)),))
    drain(node)
    move = Move(type_name=B, old=G, new=allocate(B, {G})).encode()
    assert move in [v for _, v in node.entries()]
    assert node.pending_moves() == []
    assert node.moved_from[B] == G


def test_an_owed_move_survives_a_crash_before_it_is_decided() -> None:
    journal: list[JournalRecord] = []
    node = make_node(3, (1, 2, 3))
    node.step(Commit(sender=1, slot=5, value=_assign(B, G)))
    drain(node, journal)
    catch_up(node, 1, ((0, _assign(A, G)),), journal)
    out = messages(drain(node, journal))
    assert any(isinstance(m, Prepare) for m in out)  # it starts proposing the move...
    again = PaxosNode(node.config, rng=random.Random(3), records=journal)  # ...and crashes
    assert again.pending_moves() == node.pending_moves() != []
    again.set_view((1, 2, 3))
    again.tick()
    prepares = [m for m in messages(drain(again)) if isinstance(m, Prepare)]
    assert prepares, "the restarted node proposes the move it still owes"


def test_moves_are_proposed_before_new_types() -> None:
    node = make_node(3, (1, 2, 3))
    node.step(Commit(sender=1, slot=5, value=_assign(B, G)))
    drain(node)
    node.propose("z.New")
    catch_up(node, 1, ((0, _assign(A, G)),))
    drain(node)
    node.tick()
    for _ in range(12):
        node.tick()
    prepare = [m for m in messages(drain(node)) if isinstance(m, Prepare)]
    assert prepare
    from consensus.messages import Promise

    node.step(Promise(sender=1, slot=prepare[-1].slot, ballot=prepare[-1].ballot))
    accepts = [m for m in messages(drain(node)) if isinstance(m, Accept)]
    assert accepts and accepts[0].value.startswith(b"move ")


def test_a_decided_move_is_not_owed_again() -> None:
    node = make_node(3, (1, 3))
    node.step(Commit(sender=1, slot=5, value=_assign(B, G)))
    new = allocate(B, {G})
    node.step(Commit(sender=1, slot=6, value=Move(type_name=B, old=G, new=new).encode()))
    drain(node)
    catch_up(node, 1, ((0, _assign(A, G)),))
    rd = node.ready()
    assert not any(isinstance(r, MoveIntent) for r in rd.to_persist)
    assert node.pending_moves() == []


def test_a_node_that_never_held_the_type_learns_old_and_new_from_the_move() -> None:
    node = make_node(1, (1, 2, 3))
    node.step(Commit(sender=2, slot=0, value=_assign(A, G)))
    node.step(Commit(sender=2, slot=1, value=_assign(B, G)))
    new = node.groups[B]
    node.step(Commit(sender=3, slot=2, value=Move(type_name=B, old=G, new=new).encode()))
    assert node.moved_from == {B: G}  # subscribers of B listen on G and on new
