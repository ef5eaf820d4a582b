"""Pure parts of publisher-side matching: peers' interest, sequence rebase.

The networked behaviour is in tests/node/test_matching.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.membership import MEMBER, Membership, PeerInfo
from ganglion.sequence import SequenceTable, SequenceTracker, Verdict

SELF = b"\x00" * 8


def peer(n: int, subscribes: frozenset[str] | None, seen: float = 0.0) -> PeerInfo:
    return PeerInfo(id=bytes([n]) * 8, name=f"p{n}", role=MEMBER, version="1", address="",
                    publishes=(), clock_synced=True, last_seen=seen, subscribes=subscribes)


def test_interest_is_the_union_of_live_peers_lists() -> None:
    m = Membership(SELF, timeout=1.0)
    assert m.interest() == frozenset()
    m.heard(peer(1, frozenset({"a.A"})))
    m.heard(peer(2, frozenset({"b.B", "a.A"}), seen=5.0))
    assert m.interest() == frozenset({"a.A", "b.B"})
    m.expire(now=5.5)  # peer 1 is silent for too long
    assert m.interest() == frozenset({"a.A", "b.B"})
    m.forget(bytes([2]) * 8)
    assert m.interest() == frozenset()


def test_a_peer_that_does_not_say_wants_everything() -> None:
    m = Membership(SELF, timeout=1.0)
    m.heard(peer(1, frozenset()))
    m.heard(peer(2, None))
    assert m.interest() is None
    assert peer(2, None).wants("any.Type")
    assert not peer(1, frozenset()).wants("any.Type")


def test_note_interest_adds_until_the_next_heartbeat() -> None:
    m = Membership(SELF, timeout=1.0)
    assert not m.note_interest(bytes([1]) * 8, "a.A")  # unknown peer: nothing to note
    m.heard(peer(1, frozenset()))
    assert m.note_interest(bytes([1]) * 8, "a.A")
    assert not m.note_interest(bytes([1]) * 8, "a.A")  # already known
    assert m.interest() == frozenset({"a.A"})
    m.heard(peer(1, frozenset()))  # its own word replaces the guess
    assert m.interest() == frozenset()
    m.heard(peer(1, None))
    assert not m.note_interest(bytes([1]) * 8, "a.A")  # wants everything anyway


def test_rebase_does_not_count_a_pause_as_loss() -> None:
    t = SequenceTracker()
    for seq in range(5):
        t.observe(seq, boot=1)
    t.rebase()
    assert t.observe(500, boot=1) is Verdict.NEW
    assert t.observe(501, boot=1) is Verdict.NEW
    assert t.stats().lost == 0 and t.stats().received == 7
    assert t.observe(503, boot=1) is Verdict.NEW  # a real gap after the new baseline
    assert t.stats().lost == 1


def test_rebase_still_drops_duplicates_and_replays() -> None:
    t = SequenceTracker(strict=True, window=16)
    for seq in range(100):
        t.observe(seq, boot=3)
    t.rebase()
    assert t.observe(99, boot=3) is Verdict.DUPLICATE
    assert t.observe(10, boot=3) is Verdict.STALE
    assert t.observe(5, boot=2) is Verdict.STALE  # an older boot, strict
    assert t.observe(120, boot=3) is Verdict.NEW
    assert t.stats().lost == 0


def test_rebase_then_restart_counts_no_loss() -> None:
    t = SequenceTracker()
    t.observe(0, boot=1)
    t.rebase()
    assert t.observe(40, boot=2) is Verdict.RESTART
    assert t.stats().lost == 0
    assert t.observe(42, boot=2) is Verdict.NEW
    assert t.stats().lost == 1


def test_table_rebase_touches_one_type_only() -> None:
    table = SequenceTable()
    for node in (b"a" * 8, b"b" * 8):
        table.observe(node, "x.X", 0)
        table.observe(node, "y.Y", 0)
    assert table.rebase("x.X") == 2
    table.observe(b"a" * 8, "x.X", 10)
    table.observe(b"a" * 8, "y.Y", 10)
    stats = table.stats()
    assert stats[(b"a" * 8, "x.X")].lost == 0
    assert stats[(b"a" * 8, "y.Y")].lost == 9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_pauses_with_rebase_never_count_loss(pauses: list[int]) -> None:
    t = SequenceTracker()
    seq = 0
    for pause in pauses:
        for _ in range(3):
            assert t.observe(seq, boot=1).deliver
            seq += 1
        t.rebase()
        seq += pause  # numbered while nobody listened
    assert t.stats().lost == 0
