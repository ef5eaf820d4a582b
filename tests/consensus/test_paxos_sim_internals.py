"""Internals the verification relies on: explorer durable state, keys, scenario helpers."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.allocator import preferred_group
from consensus.journal import (
    AcceptedRecord,
    DurableState,
    JournalRecord,
    Learned,
    Promised,
    RoundUsed,
    replay,
)
from consensus.messages import Ballot
from consensus.node import Config, PaxosNode
from consensus.sim import explore
from consensus.sim.scenario import colliding_names, replay_command, sim_config

records = st.lists(
    st.one_of(
        st.builds(lambda s, r, n: Promised(slot=s, ballot=Ballot(r, n)), st.integers(0, 3), st.integers(0, 5), st.integers(1, 3)),
        st.builds(
            lambda s, r, n, v: AcceptedRecord(slot=s, ballot=Ballot(r, n), value=v),
            st.integers(0, 3), st.integers(0, 5), st.integers(1, 3), st.sampled_from([b"x", b"y"]),
        ),
        st.builds(lambda s, v: Learned(slot=s, value=v), st.integers(0, 3), st.sampled_from([b"x", b"y"])),
        st.builds(lambda r: RoundUsed(round=r), st.integers(0, 9)),
    ),
    max_size=15,
)


@given(records)
@settings(max_examples=200, deadline=None)
def test_explorer_durable_state_restarts_like_the_journal(journal: list[JournalRecord]) -> None:
    # The explorer keeps a folded DurableState instead of the journal; a node restarted
    # from it must equal a node restarted from the real journal.
    state = DurableState()
    explore._apply(state, journal)
    cfg = Config(node_id=1, heartbeat_ticks=0, backoff_ticks=0)
    from_journal = PaxosNode(cfg, rng=random.Random(0), records=journal)
    from_state = PaxosNode(cfg, rng=random.Random(0), records=explore._records(state))
    assert from_state.state_key() == from_journal.state_key()
    assert replay(explore._records(state)).max_round == replay(journal).max_round


def test_equal_worlds_have_equal_keys_and_a_step_changes_the_key() -> None:
    a = explore._initial({1: ("a.A",), 2: (), 3: ()}, 0, 0, 0)
    b = explore._initial({1: ("a.A",), 2: (), 3: ()}, 0, 0, 0)
    assert explore._key(a) == explore._key(b)
    label, nxt = next(explore._successors(a))
    assert label.startswith("deliver") and explore._key(nxt) != explore._key(a)
    assert explore._key(a) == explore._key(b)  # successors never mutate their parent


def test_clones_share_untouched_nodes_and_copy_touched_ones() -> None:
    world = explore._initial({1: ("a.A",), 2: (), 3: ()}, 0, 0, 0)
    clone = explore._clone(world, 2)
    assert clone.nodes[1] is world.nodes[1] and clone.nodes[2] is not world.nodes[2]
    assert clone.nodes[2].state_key() == world.nodes[2].state_key()  # type: ignore[union-attr]


def test_colliding_names_share_a_preferred_group() -> None:
    pairs = colliding_names(3)
    assert len({p for pair in pairs for p in pair}) == 6
    for a, b in pairs:
        assert preferred_group(a) == preferred_group(b)


def test_sim_config_lets_an_attempt_outlive_two_round_trips() -> None:
    for delay in (1, 3, 6):
        cfg = sim_config(1, False, delay)
        assert cfg.retry_ticks > 4 * delay


def test_replay_command_names_the_seed_and_size() -> None:
    assert replay_command(42, 7) == "python -m consensus.sim --seeds 1 --start 42 --nodes 7 --trace"
