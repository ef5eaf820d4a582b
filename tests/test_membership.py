"""Membership (pure): proof of liveness, the bounded table, admission rate, interest.

Every test drives :class:`Membership` with explicit times; nothing here opens a
socket or reads a clock.
"""

from __future__ import annotations

import random

import pytest

from ganglion.membership import (
    MAX_ASK,
    MAX_ECHO,
    MAX_NOTED_INTEREST,
    MEMBER,
    OBSERVER,
    Liveness,
    Membership,
    MembershipLimits,
    PeerInfo,
)

SELF = b"\x00" * 7 + b"\x01"
NONCE = b"our-nonc"


def nid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def beat(n: int, now: float, *, role: str = MEMBER, address: str = "10.0.0.1",
         subscribes: frozenset[str] | None = frozenset()) -> PeerInfo:
    return PeerInfo(id=nid(n), name=f"n{n}", role=role, version="1", address=address,
                    publishes=(), clock_synced=True, last_seen=now, subscribes=subscribes)


def table(**limits: float | None) -> Membership:
    return Membership(SELF, timeout=2.0, nonce=NONCE, limits=MembershipLimits(**limits))  # type: ignore[arg-type]


def fresh(nonce: bytes = b"peer", *, echo: bytes | None = NONCE, ask: bytes = SELF) -> Liveness:
    """A current node's heartbeat: its nonce, asking us, and echoing our nonce."""
    return Liveness(nonce=nonce, ask=[ask], echo=[] if echo is None else [echo])


# -- proof of liveness ------------------------------------------------------------------


def test_a_new_member_is_a_candidate_until_it_echoes_our_nonce() -> None:
    m = table()
    heard = m.heard(beat(2, 0.0), Liveness(nonce=b"peer2"))
    assert heard.new and not heard.view_changed and heard.refused is None
    assert m.view() == {1} and m.peers() == [] and [p.id for p in m.candidates()] == [nid(2)]
    assert m.ask() == [nid(2)]
    heard = m.heard(beat(2, 0.1), Liveness(nonce=b"peer2", echo=[b"someone else"]))
    assert not heard.view_changed and m.view() == {1}
    heard = m.heard(beat(2, 0.2), Liveness(nonce=b"peer2", echo=[b"x", NONCE]))
    assert heard.view_changed and m.view() == {1, 2}
    assert [p.id for p in m.peers()] == [nid(2)] and m.candidates() == [] and m.ask() == []
    assert m.counts["peers_proven"] == 1


def test_a_replayed_recording_echoing_an_earlier_runs_nonce_never_counts() -> None:
    # The recording was made while this node ran with another nonce (before a restart).
    m = table()
    for i in range(100):
        m.heard(beat(2, i * 0.5 % 1.9), Liveness(nonce=b"dead", echo=[b"old-nonc"]))
    assert m.view() == {1} and m.peers() == []
    assert m.get(nid(2)) is None and m.known(nid(2)) is not None


def test_a_peer_that_asks_us_gets_its_nonce_echoed_most_recent_first() -> None:
    m = table()
    assert m.heard(beat(2, 0.0), Liveness(nonce=b"n2", ask=[SELF])).asked
    assert not m.heard(beat(2, 0.1), Liveness(nonce=b"n2", ask=[SELF])).asked  # not new
    assert m.heard(beat(3, 0.2), Liveness(nonce=b"n3", ask=[nid(9), SELF])).asked
    m.heard(beat(4, 0.3), Liveness(nonce=b"n4", ask=[nid(9)]))  # asks someone else
    assert m.echo() == [b"n3", b"n2"]
    m.heard(beat(2, 0.4), Liveness(nonce=b"n2"))  # proven us: stops asking
    assert m.echo() == [b"n3"]
    # 3 restarts (a new nonce) and asks again at once: that is a new ask
    assert m.heard(beat(3, 0.5), Liveness(nonce=b"n3-again", ask=[SELF])).asked
    assert m.echo() == [b"n3-again"]


def test_two_new_nodes_prove_each_other_through_their_heartbeats() -> None:
    a_id, b_id = nid(10), nid(11)
    a = Membership(a_id, timeout=2.0, nonce=b"nonce-a")
    b = Membership(b_id, timeout=2.0, nonce=b"nonce-b")

    def send(src: Membership, dst: Membership, now: float) -> None:
        assert src.nonce is not None
        dst.heard(PeerInfo(id=src.self_id, name="x", role=MEMBER, version="1", address="",
                           publishes=(), clock_synced=True, last_seen=now),
                  Liveness(nonce=src.nonce, ask=src.ask(), echo=src.echo()))

    send(a, b, 0.0)   # b: a is a candidate, b asks a
    send(b, a, 0.01)  # a: b is a candidate; b asked a, so a will echo b's nonce
    send(a, b, 0.02)  # b: a echoes b's nonce -> a is live at b
    send(b, a, 0.03)  # a: b echoes a's nonce -> b is live at a
    assert a.view() == {10, 11} and b.view() == {10, 11}


def test_without_a_nonce_every_peer_counts_at_once() -> None:
    m = Membership(SELF, timeout=2.0)
    assert m.heard(beat(2, 0.0)).view_changed
    assert m.view() == {1, 2}


# -- older nodes (no nonce) -------------------------------------------------------------


def test_an_older_node_counts_after_the_probation_when_that_is_allowed() -> None:
    m = table(legacy_probation=10.0)
    t = 0.0
    while t < 9.9:
        assert not m.heard(beat(2, t)).view_changed
        t += 0.5
    assert m.ask() == []  # it cannot answer: never asked
    assert m.heard(beat(2, 10.0)).view_changed
    assert m.view() == {1, 2} and m.counts["peers_admitted_on_probation"] == 1


def test_an_older_node_heard_once_long_ago_does_not_pass_probation() -> None:
    m = Membership(SELF, timeout=60.0, nonce=NONCE, limits=MembershipLimits(legacy_probation=10.0))
    m.heard(beat(2, 0.0))
    assert not m.heard(beat(2, 11.0)).view_changed  # only two heartbeats
    assert m.heard(beat(2, 11.5)).view_changed


def test_an_older_node_never_counts_when_probation_is_off() -> None:
    m = table(legacy_probation=None)
    for i in range(100):
        m.heard(beat(2, i * 0.5))
        m.expire(i * 0.5)
    assert m.view() == {1} and [p.id for p in m.candidates()] == [nid(2)]


# -- the budget -------------------------------------------------------------------------


def test_a_flood_of_new_ids_is_admitted_at_the_admission_rate() -> None:
    m = table(admit_rate=5.0, admit_burst=10, max_candidates=1000)
    for i in range(1001):  # 1,000 new ids a second, from 0 to 1 s
        m.heard(beat(100 + i, i / 1000), Liveness(nonce=b"x"))
    assert len(m.candidates()) == 10 + 5  # the burst, then five in the second
    assert m.counts["peers_refused_rate"] == 1001 - 15
    assert m.view() == {1}


def test_the_candidate_table_is_bounded_and_one_shot_ids_make_room() -> None:
    m = table(admit_rate=1000.0, admit_burst=1000, max_candidates=8)
    for n in (2, 3):  # two real newcomers, heard twice each
        m.heard(beat(n, 0.0), Liveness(nonce=b"real"))
        m.heard(beat(n, 0.1), Liveness(nonce=b"real"))
    for i in range(500):  # a flood of ids heard once each
        m.heard(beat(1000 + i, 0.2 + i / 1e4), Liveness(nonce=b"fake"))
    ids = {p.id for p in m.candidates()}
    assert len(ids) == 8 and {nid(2), nid(3)} <= ids
    assert m.counts["candidates_evicted"] == 500 - 6
    assert m.ask()[:2] == [nid(2), nid(3)]  # heard most often: asked first
    # the real ones still prove themselves
    m.heard(beat(2, 0.5), fresh(b"real"))
    assert m.view() == {1, 2}


def test_a_full_candidate_table_of_repeat_senders_refuses_newcomers() -> None:
    m = table(admit_rate=1000.0, admit_burst=1000, max_candidates=4)
    for n in range(2, 6):
        m.heard(beat(n, 0.0), Liveness(nonce=b"x"))
        m.heard(beat(n, 0.1), Liveness(nonce=b"x"))
    assert m.heard(beat(99, 0.2), Liveness(nonce=b"x")).refused == "full"
    assert m.known(nid(99)) is None and m.counts["peers_refused_full"] == 1


def test_live_members_and_observers_have_separate_caps() -> None:
    m = table(max_members=3, max_observers=2, admit_burst=100)
    for n in range(2, 8):
        m.heard(beat(n, 0.0), fresh())
    for n in range(20, 25):
        m.heard(beat(n, 0.0, role=OBSERVER), fresh())
    assert len(m.view()) == 1 + 3
    assert m.sizes() == {"members": 3, "observers": 2, "candidates": 3 + 3}
    assert m.counts["peers_refused_full"] == 6
    # a slot freed by expiry is taken by the next proof
    m.heard(beat(7, 1.9), fresh())  # 7 refreshed (still a candidate), others go silent
    assert m.expire(2.5) != []
    m.heard(beat(7, 2.6), fresh())
    assert m.view() == {1, 7}


def test_expired_peers_free_their_slots_and_candidates_are_counted() -> None:
    m = table()
    m.heard(beat(2, 0.0), fresh())
    m.heard(beat(3, 0.0), Liveness(nonce=b"x"))
    assert m.expire(1.0) == []
    gone = m.expire(2.5)
    assert [p.id for p in gone] == [nid(2)]  # the live one is reported
    assert m.counts["candidates_expired"] == 1
    assert m.sizes() == {"members": 0, "observers": 0, "candidates": 0}
    assert m.view() == {1}


def test_a_live_peer_changing_to_a_full_role_is_dropped_and_comes_back_as_new() -> None:
    m = table(max_observers=1)
    m.heard(beat(2, 0.0, role=OBSERVER), fresh())
    m.heard(beat(3, 0.0), fresh())
    heard = m.heard(beat(3, 0.1, role=OBSERVER), fresh())
    assert heard.refused == "full" and heard.view_changed
    assert m.known(nid(3)) is None and m.view() == {1}
    assert m.sizes() == {"members": 0, "observers": 1, "candidates": 0}


def test_goodbye_forgets_a_peer() -> None:
    m = table()
    m.heard(beat(2, 0.0), fresh())
    assert m.forget(nid(2)) is not None
    assert m.forget(nid(2)) is None
    assert m.view() == {1} and m.sizes()["members"] == 0


def test_our_own_heartbeat_is_ignored() -> None:
    m = table()
    assert m.heard(PeerInfo(id=SELF, name="me", role=MEMBER, version="1", address="",
                            publishes=(), clock_synced=True, last_seen=0.0)).refused is None
    assert m.known(SELF) is None


def test_an_observer_is_never_in_its_own_view() -> None:
    m = Membership(SELF, timeout=2.0, self_is_member=False, nonce=NONCE)
    m.heard(beat(2, 0.0), fresh())
    assert m.view() == {2}


# -- matching and addresses -------------------------------------------------------------


def test_interest_kept_incrementally_equals_the_union_over_the_table() -> None:
    rng = random.Random(7)
    names = [f"t.N{i}" for i in range(6)]
    m = table(admit_burst=1000, admit_rate=1000.0)
    now = 0.0
    for _ in range(2000):
        now += 0.01
        n = rng.randrange(2, 12)
        action = rng.random()
        if action < 0.1:
            m.forget(nid(n))
        elif action < 0.15:
            m.note_interest(nid(n), rng.choice(names))
        else:
            subs = None if rng.random() < 0.05 else frozenset(rng.sample(names, rng.randrange(3)))
            m.heard(beat(n, now, subscribes=subs),
                    fresh() if rng.random() < 0.5 else Liveness(nonce=b"x"))
        m.expire(now - 1.0 if rng.random() < 0.9 else now)
        known = [p for p in m.peers() + m.candidates()]
        if any(p.subscribes is None for p in known):
            expected = None
        else:
            expected = frozenset().union(*(p.subscribes or () for p in known))
        assert m.interest() == expected


def test_interest_change_is_reported_only_when_the_union_changes() -> None:
    m = table()
    assert m.heard(beat(2, 0.0, subscribes=frozenset({"a.A"}))).interest_changed
    assert m.interest() == frozenset({"a.A"})
    assert not m.heard(beat(3, 0.0, subscribes=frozenset({"a.A"}))).interest_changed
    assert not m.heard(beat(2, 0.1, subscribes=frozenset({"a.A"}))).interest_changed
    assert m.heard(beat(4, 0.1, subscribes=None)).interest_changed
    assert m.interest() is None
    assert not m.heard(beat(5, 0.1, subscribes=None)).interest_changed
    assert not m.heard(beat(3, 0.2, subscribes=frozenset({"a.A", "b.B"}))).interest_changed
    epoch = m.interest_epoch
    m.forget(nid(4))
    assert m.interest() is None and m.interest_epoch == epoch  # 5 still says None
    m.heard(beat(5, 0.2, subscribes=frozenset()))
    assert m.interest() == frozenset({"a.A", "b.B"}) and m.interest_epoch == epoch + 1
    m.expire(2.25)  # everyone is silent past the timeout now
    assert m.interest() == frozenset() and m.interest_epoch == epoch + 2


def test_note_interest_adds_a_type_a_peer_asked_about() -> None:
    m = table()
    m.heard(beat(2, 0.0, subscribes=frozenset()))
    assert m.note_interest(nid(2), "a.B")
    assert not m.note_interest(nid(2), "a.B")
    assert not m.note_interest(nid(77), "a.B")
    assert m.interest() == frozenset({"a.B"})


def test_note_interest_stops_growing_a_peers_list_at_its_cap() -> None:
    m = table()
    m.heard(beat(2, 0.0, subscribes=frozenset()))
    for i in range(MAX_NOTED_INTEREST + 100):  # a flood of last-value requests
        m.note_interest(nid(2), f"flood.T{i}")
    known = m.known(nid(2))
    assert known is not None and known.subscribes is not None
    assert len(known.subscribes) == MAX_NOTED_INTEREST
    assert m.counts["interest_notes_refused"] == 100
    m.heard(beat(2, 0.1, subscribes=frozenset({"a.A"})))  # its heartbeat replaces the guesses
    assert m.interest() == frozenset({"a.A"})


def test_address_of_is_given_only_when_no_other_peer_shares_it() -> None:
    m = table()
    m.heard(beat(2, 0.0, address="10.0.0.2"), Liveness(nonce=b"x"))
    m.heard(beat(3, 0.0, address="10.0.0.3"), Liveness(nonce=b"x"))
    m.heard(beat(4, 0.0, address="10.0.0.3"), Liveness(nonce=b"x"))
    assert m.address_of(2) == "10.0.0.2"
    assert m.address_of(3) is None and m.address_of(4) is None
    assert m.address_of(99) is None and m.address_of(-1) is None and m.address_of(2**64) is None


def test_ask_and_echo_lists_are_bounded() -> None:
    m = table(admit_burst=1000, admit_rate=1000.0)
    for n in range(2, 102):
        m.heard(beat(n, 0.0), Liveness(nonce=nid(n), ask=[SELF]))
    assert len(m.ask()) == MAX_ASK
    assert len(m.echo()) == MAX_ECHO


@pytest.mark.parametrize("bad", [{"max_members": 0}, {"max_candidates": 0},
                                 {"admit_rate": 0.0}, {"admit_burst": 0},
                                 {"legacy_probation": -1.0}])
def test_limits_refuse_impossible_budgets(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MembershipLimits(**bad)  # type: ignore[arg-type]


def test_membership_refuses_an_empty_nonce_and_a_bad_timeout() -> None:
    with pytest.raises(ValueError):
        Membership(SELF, timeout=1.0, nonce=b"")
    with pytest.raises(ValueError):
        Membership(SELF, timeout=0.0)
