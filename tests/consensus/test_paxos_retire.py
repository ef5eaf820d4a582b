"""Issue 20, defect 7: retiring a type nobody publishes any more.

The command (canonical encoding, validation), the fold (the type leaves the map, its
group is reserved for it for GRACE_ENTRIES entries), the state machine (observers ask
the leader, followers relay, the leader proposes, requests cost proposal tokens), and
what an old node and a forger can do with it.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from paxos_helpers import Cluster, catch_up, drain, make_node, messages

from consensus.allocator import allocate, preferred_group
from consensus.commands import Assign, Retire, decode_command
from consensus.errors import InvalidCommand, MalformedMessage
from consensus.groupmap import GRACE_ENTRIES, GroupMap, MapChange
from consensus.messages import Commit, RetireRequest, message_from_wire
from consensus.sim.scenario import colliding_names

T = "sensors.temprature"
G = preferred_group(T)
A, B = colliding_names(1)[0]  # B's preferred group is A's


def assign(name: str, group: IPv4Address) -> bytes:
    return Assign(type_name=name, group=group).encode()


def retire(name: str, group: IPv4Address) -> bytes:
    return Retire(type_name=name, group=group).encode()


def fillers(start_slot: int, count: int) -> list[tuple[int, bytes]]:
    return [(start_slot + i, assign(f"fill.T{i}", allocate(f"fill.T{i}", ()))) for i in range(count)]


# -- the command ---------------------------------------------------------------------


def test_retire_round_trips_through_its_canonical_encoding() -> None:
    cmd = Retire(type_name=T, group=G)
    assert cmd.encode() == f"retire {T} {G}".encode()
    assert decode_command(cmd.encode()) == cmd


@pytest.mark.parametrize("value", [
    b"retire a.B 239.255.001.002",  # non-canonical address
    b"retire a.B 239.255.0.7",  # the control block
    b"retire a.B 10.0.0.1",
    b"retire a.B",
    b"retire  a.B 239.255.1.2",
    b"retire a.B 239.255.1.2 extra",
])
def test_retire_is_validated_like_assign(value: bytes) -> None:
    with pytest.raises(InvalidCommand):
        decode_command(value)


def test_retire_request_round_trips_and_an_old_node_drops_unknown_kinds() -> None:
    msg = RetireRequest(sender=3, type_name=T)
    assert message_from_wire(msg.to_wire()) == msg
    # An older node has no "retire" builder: the same error as any unknown kind, which
    # the runtime counts (paxos_malformed) and drops.
    with pytest.raises(MalformedMessage):
        message_from_wire(["retire-v2", 3, T])


# -- the fold ------------------------------------------------------------------------


def test_retire_takes_the_type_off_the_map_and_reports_it() -> None:
    gm = GroupMap([(0, assign(T, G))])
    assert gm.add((1, retire(T, G))) == [MapChange(type_name=T, old=G, new=None)]
    assert T not in gm.groups and G not in gm.groups.values()
    assert gm.reserved == {G: T}
    assert MapChange(type_name=T, old=G, new=None).describe() == f"retired {T} from {G}"


def test_retire_of_another_group_or_an_unknown_type_is_a_no_op() -> None:
    gm = GroupMap([(0, assign(T, G))])
    other = allocate("x.Y", {G})
    assert gm.add((1, retire(T, other))) == []
    assert gm.add((2, retire("never.Seen", other))) == []
    assert gm.groups == {T: G} and gm.reserved == {}


def test_retired_group_is_reserved_for_grace_entries_then_free() -> None:
    g = preferred_group(A)
    gm = GroupMap([(0, assign(A, g)), (1, retire(A, g))])
    # B wants the same group while it is reserved: the fold re-places it.
    gm.add((2, assign(B, g)))
    assert gm.groups[B] != g
    # GRACE_ENTRIES entries after the retire the group is free again.
    late = GroupMap([(0, assign(A, g)), (1, retire(A, g)), *fillers(2, GRACE_ENTRIES - 1),
                     (1 + GRACE_ENTRIES, assign(B, g))])
    assert late.groups[B] == g and late.reserved == {}
    early = GroupMap([(0, assign(A, g)), (1, retire(A, g)), *fillers(2, GRACE_ENTRIES - 2),
                      (GRACE_ENTRIES, assign(B, g))])
    assert early.groups[B] != g


def test_a_retired_type_comes_back_on_its_own_group() -> None:
    g = preferred_group(A)
    gm = GroupMap([(0, assign(A, g)), (1, retire(A, g)), (2, assign(B, g))])
    assert gm.choose(A) == g  # the proposer asks for the reserved group back
    assert gm.choose(B) != g and gm.choose("new.Type") not in gm.taken
    gm.add((3, assign(A, gm.choose(A))))
    assert gm.groups[A] == g and gm.reserved == {}


def test_reserved_groups_count_as_taken_for_new_types() -> None:
    gm = GroupMap([(0, assign(T, G)), (1, retire(T, G))])
    assert G in gm.taken and list(gm.taken) == [G] and len(gm.taken) == 1


def test_at_most_grace_entries_groups_are_ever_reserved() -> None:
    # A flood of assign/retire pairs cannot reserve more than GRACE_ENTRIES groups.
    entries: list[tuple[int, bytes]] = []
    for i in range(3 * GRACE_ENTRIES):
        name = f"junk.R{i}"
        group = allocate(name, ())
        entries += [(2 * i, assign(name, group)), (2 * i + 1, retire(name, group))]
    assert len(GroupMap(entries).reserved) <= GRACE_ENTRIES


def test_an_old_node_ignores_a_command_it_does_not_know() -> None:
    # How a node without Retire folds one: decode_command raises InvalidCommand and the
    # value decides nothing. Shown with a kind no version knows.
    gm = GroupMap([(0, assign(T, G)), (1, b"frobnicate " + T.encode() + b" " + str(G).encode())])
    assert gm.groups == {T: G} and gm.count == 2


def test_retire_decided_above_a_hole_is_not_undone_forever() -> None:
    # A forger's Retire far up the slot window: an Assign proposed in the lowest free
    # slot would fold before it and leave the type retired; slot_for puts it after.
    gm = GroupMap([(0, assign(T, G)), (900, retire(T, G))])
    assert T not in gm.groups
    assert gm.first_free_slot() == 1 and gm.slot_for(T) == 901
    assert gm.slot_for("other.Type") == 1


# -- the state machine ---------------------------------------------------------------


def test_observer_asks_the_leader_who_gets_the_retire_decided() -> None:
    c = Cluster((1, 2, 3))
    c.propose(2, T)
    c.pump()
    obs = make_node(100, (1, 2, 3), observer=True)
    obs.step(Commit(sender=2, slot=0, value=assign(T, G)))
    drain(obs)
    obs.retire(T)
    asked = [env for env in drain(obs) if isinstance(env.msg, RetireRequest)]
    assert [(env.to, env.msg.type_name) for env in asked] == [(1, T)]
    c.nodes[1].step(asked[0].msg)
    c.collect(1)
    c.pump()
    for node in c.nodes.values():
        assert T not in node.groups and node.reserved_groups == {G: T}
        assert node.entries()[-1] == (1, retire(T, G))
    assert c.nodes[1].pending_retires() == []


def test_a_follower_relays_a_retire_to_the_leader_and_keeps_nothing() -> None:
    c = Cluster((1, 2, 3))
    c.propose(1, T)
    c.pump()
    c.nodes[2].step(RetireRequest(sender=100, type_name=T))
    out = drain(c.nodes[2])
    assert [(env.to, env.msg) for env in out] == [(1, RetireRequest(sender=2, type_name=T))]
    assert c.nodes[2].pending_retires() == []


def test_a_member_retire_goes_through_the_leader() -> None:
    c = Cluster((1, 2, 3))
    c.propose(1, T)
    c.pump()
    c.nodes[3].retire(T)
    c.collect(3)
    assert [m for _, _, m in c.queue] == [RetireRequest(sender=3, type_name=T)]
    c.pump()
    assert all(T not in node.groups for node in c.nodes.values())
    assert c.nodes[3].pending_retires() == []


def test_retire_requests_cost_proposal_tokens() -> None:
    c = Cluster((1,))
    names = [f"app.T{i}" for i in range(40)]
    for name in names:
        c.propose(1, name)
    c.pump()
    leader = c.nodes[1]
    for name in names:
        leader.step(RetireRequest(sender=666, type_name=name))
    # One requester: the burst of 8, then refused (propose_rate_limited).
    assert leader.counters["propose_rate_limited"] == 40 - 8
    drain(leader)


def test_retire_of_an_unknown_type_does_nothing() -> None:
    node = make_node(1, (1,))
    node.retire("never.Seen")
    assert node.pending_retires() == [] and messages(drain(node)) == []
    with pytest.raises(InvalidCommand):
        node.retire("bad name")


def test_a_decided_retire_is_dropped_even_when_a_later_assign_undoes_it() -> None:
    # Slot 5 holds an Assign of T (a duplicate, or a forger's): the Retire decided in a
    # lower slot folds first and changes nothing. The node must not propose it again
    # and again into every hole below slot 5.
    c = Cluster((1,))
    c.propose(1, T)
    c.pump()
    leader = c.nodes[1]
    catch_up(leader, 2, ((5, assign(T, G)),))
    c.collect(1)
    leader.retire(T)
    c.collect(1)
    c.pump()
    assert (1, retire(T, G)) in leader.entries() and leader.groups == {T: G}
    assert leader.pending_retires() == []
    for _ in range(20):
        c.tick()
        c.pump()
    assert [v for _, v in leader.entries()].count(retire(T, G)) == 1


# -- simulator and exhaustive search ------------------------------------------------


def test_random_scenarios_decide_retires_and_keep_every_invariant() -> None:
    from consensus.sim.network import SimNetwork
    from consensus.sim.scenario import run_seed

    nets: list[SimNetwork] = []
    original = SimNetwork.__init__

    def keep(self: SimNetwork, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        nets.append(self)

    SimNetwork.__init__ = keep  # type: ignore[method-assign]
    try:
        results = [run_seed(seed) for seed in range(60)]
    finally:
        SimNetwork.__init__ = original  # type: ignore[method-assign]
    assert all(r.ok for r in results), [r.violations[:2] for r in results if not r.ok]
    values = [v for net in nets for _, v in net.nodes[net.up()[0]].entries()]
    retires = [v for v in values if v.startswith(b"retire ")]
    names = [v.split()[1] for v in values if v.startswith(b"assign ")]
    assert len(retires) > 20  # the scenarios do retire types
    assert len(names) - len(set(names)) > 10  # and retired types come back


def test_exhaustive_retire_race_keeps_uniqueness_and_the_grace() -> None:
    from consensus.sim import explore

    # Node 1 retires A, then proposes B (same preferred group), with a loss, a
    # duplicate and a crash on every path; and the two at once from two nodes.
    outcomes: set[explore.Outcome] = set()
    result = explore.explore(max_ballots=2, loss=1, dup=1, crashes=1, proposers=1, retire=True,
                             outcomes=outcomes)
    assert result.complete and not result.violations, (result.violations[:3], result.example)
    assert result.states > 1000
    race = explore.explore(max_ballots=2, loss=0, dup=0, crashes=0, proposers=2, retire=True)
    assert race.complete and not race.violations, (race.violations[:3], race.example)
    a, b = colliding_names(1)[0]
    g = preferred_group(a)
    retired_then_b = {
        frozenset(entries) for per_node in outcomes for entries in per_node
        if retire(a, g) in {v for _, v in entries} and any(v.startswith(f"assign {b} ".encode())
                                                        for _, v in entries)
    }
    assert retired_then_b  # the race is explored to the end: retired, and B decided


def test_exhaustive_retire_race_catches_a_broken_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    from consensus import groupmap
    from consensus.sim import explore

    # Reservations ignored: the second type lands on the group just retired.
    monkeypatch.setattr(groupmap._Blocked, "__contains__",
                        lambda self, group: group in self._owner)
    result = explore.explore(max_ballots=2, loss=0, dup=0, crashes=0, proposers=1, retire=True)
    assert any(v.startswith(("fold", "grace")) for v in result.violations)
