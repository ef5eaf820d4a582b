"""The sender's responder (ganglion.repair.Responder): answers, coalescing, budget, sizes."""

from __future__ import annotations

import tracemalloc

from ganglion import defaults
from ganglion.repair import History, HistoryLimits, HistoryRequest, Repair, RepairRequest, Responder
from ganglion.types import encode_payload

ME = b"\x00" * 7 + b"\x0a"
R1 = b"\x00" * 7 + b"\x01"
R2 = b"\x00" * 7 + b"\x02"
FP = b"\x22" * 8


def _history(count: int = 100, size: int = 20, boot: int = 7) -> History:
    h = History(HistoryLimits(max_bytes=1 << 22, max_age=600.0), total_bytes=1 << 24, boot=boot)
    for seq in range(count):
        h.record("t.a", seq, 10_000 + seq, bytes([seq % 256]) * size, now=0.0)
    return h


def _responder(h: History, **kw: object) -> Responder:
    return Responder(h, node_id=ME, fingerprint=lambda name: FP if name == "t.a" else None,
                     **kw)  # type: ignore[arg-type]


def _drain(r: Responder, start: float, until: float) -> list[Repair]:
    out: list[Repair] = []
    t = start
    while t <= until:
        out += r.poll(t)
        t += 0.001
    return out


def _req(ranges: list[list[int]], boot: int = 7, to: int = 10, name: str = "t.a") -> RepairRequest:
    return RepairRequest(to=to, type_name=name, boot=boot, ranges=ranges)


def test_requests_of_several_receivers_within_the_hold_make_one_repair() -> None:
    r = _responder(_history(), hold=0.03)
    r.on_request(R1, _req([[3, 4]]), now=1.0)
    r.on_request(R2, _req([[4, 6]]), now=1.01)
    assert r.poll(1.02) == []  # still holding
    assert r.next_deadline() == 1.03
    (rep,) = r.poll(1.03)
    assert rep.seqs == [3, 4, 5, 6] and rep.sent_ns == [10_003, 10_004, 10_005, 10_006]
    assert rep.payloads == [bytes([s]) * 20 for s in (3, 4, 5, 6)]
    assert (rep.type_name, rep.fingerprint, rep.boot, rep.gone, rep.to) == ("t.a", FP, 7, [],
                                                                           None)
    assert r.stats()["t.a"]["repaired_sent"] == 4
    assert r.stats()["t.a"]["repair_requests_received"] == 2


def test_only_requests_for_this_node_and_its_boot_are_served() -> None:
    r = _responder(_history(boot=7))
    r.on_request(R1, _req([[1, 1]], to=11), now=0.0)  # another node's
    r.on_request(R1, _req([[1, 1]], boot=8), now=0.0)  # a boot not (yet) ours
    assert _drain(r, 0.0, 0.1) == []
    assert r.counts["repair_boot_unknown"] == 1
    r.on_request(R1, _req([[1, 3]], boot=6), now=0.2)  # an older boot: all gone
    (rep,) = _drain(r, 0.2, 0.3)
    assert rep.seqs == [] and rep.gone == [[1, 3]] and rep.boot == 6


def test_numbers_not_held_are_answered_gone() -> None:
    h = History(HistoryLimits(max_bytes=1 << 20, max_age=10.0), boot=7)
    for seq in range(10):
        h.record("t.a", seq, seq, b"p", now=float(seq * 2))  # 0..4 age out by t=19
    r = _responder(h)
    r.on_request(R1, _req([[2, 7]]), now=19.0)
    reps = _drain(r, 19.0, 19.1)
    assert [s for rep in reps for s in rep.seqs] == [5, 6, 7]
    assert [g for rep in reps for g in rep.gone] == [[2, 4]]
    assert r.stats()["t.a"]["gone_sent"] == 3


def test_a_number_just_repaired_is_not_sent_again_within_the_guard() -> None:
    r = _responder(_history(), hold=0.01, guard=0.04)
    r.on_request(R1, _req([[5, 5]]), now=0.0)
    assert len(_drain(r, 0.0, 0.0105)) == 1
    r.on_request(R2, _req([[5, 5]]), now=0.02)  # crossed the repair in flight
    assert _drain(r, 0.02, 0.04) == []
    r.on_request(R2, _req([[5, 5]]), now=0.1)  # its retry, later: answered
    assert len(_drain(r, 0.1, 0.12)) == 1


def test_every_repair_fits_the_size_budget_and_large_answers_are_split() -> None:
    h = _history(count=300, size=200)
    r = _responder(h, max_bytes=1200, per_poll=1000)
    r.on_request(R1, _req([[0, 299]]), now=0.0)
    reps = _drain(r, 0.0, 0.1)
    assert len(reps) > 1
    assert all(len(encode_payload(rep)) <= 1200 for rep in reps)
    assert [s for rep in reps for s in rep.seqs] == list(range(300))


def test_a_message_too_large_for_the_budget_goes_alone() -> None:
    h = History(boot=7)
    h.record("t.a", 0, 0, b"x" * 2000, now=0.0)
    h.record("t.a", 1, 1, b"y" * 10, now=0.0)
    r = _responder(h, max_bytes=1200, hard_max_bytes=15_000, per_poll=10)
    r.on_request(R1, _req([[0, 1]]), now=0.0)
    reps = _drain(r, 0.0, 0.1)
    assert [rep.seqs for rep in reps] == [[0], [1]]


def test_repairs_leave_paced() -> None:
    r = _responder(_history(count=300, size=200), per_poll=1, pace=0.002, max_bytes=1200,
                   hold=0.03)
    r.on_request(R1, _req([[0, 299]]), now=0.0)
    first = r.poll(0.03)
    assert len(first) == 1
    assert r.poll(0.031) == []  # the pace
    assert r.next_deadline() == 0.032
    assert len(r.poll(0.032)) == 1


def test_a_flood_of_requests_gets_at_most_the_budget_and_bounded_memory() -> None:
    # One requester, and many made-up ones: what is sent is bounded by the buckets'
    # burst plus their rate times the duration, and memory does not grow with the flood.
    h = _history(count=2000, size=30)
    r = _responder(h, per_poll=10_000, guard=0.0)
    total_rate, total_burst = defaults.REPAIR_TOTAL
    sent = 0
    tracemalloc.start()
    try:
        t = 0.0
        for i in range(5_000):  # 5,000 requests of 512 numbers in 2 s
            t = i / 2_500
            first = (i * 37) % 1400
            requester = R1 if i % 2 else (i % 5000).to_bytes(8, "big")
            r.on_request(requester, _req([[first, first + 511]]), now=t)
            if i % 10 == 0:
                sent += sum(len(rep.seqs) for rep in r.poll(t))
            if i == 1000:
                base = tracemalloc.get_traced_memory()[0]
        sent += sum(len(rep.seqs) for rep in _drain(r, t, t + 0.1))
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert sent <= total_burst + total_rate * 2.1
    assert r.stats()["t.a"]["repair_rate_limited"] > 1_000_000
    assert r.counts["repair_rate_limited"] == 0  # (per type, not node-wide)
    assert r.pending == 0
    assert grown < 2_000_000  # buckets of at most RATE_TABLE_KEYS requesters, no backlog


def test_one_requester_gets_at_most_its_own_budget() -> None:
    per_rate, per_burst = defaults.REPAIR_PER_REQUESTER
    r = _responder(_history(count=2000, size=30), per_poll=10_000, guard=0.0)
    sent = 0
    for i in range(2000):  # 2,000 requests of 512 numbers in 1 s
        r.on_request(R1, _req([[(i * 37) % 1400, (i * 37) % 1400 + 511]]), now=i / 2000)
        sent += sum(len(rep.seqs) for rep in r.poll(i / 2000))
    sent += sum(len(rep.seqs) for rep in _drain(r, 1.0, 1.1))
    assert 0 < sent <= per_burst + per_rate * 1.0


def test_history_requests_are_answered_to_the_requester_with_the_nonce() -> None:
    r = _responder(_history(count=50))
    r.on_history_request(R1, HistoryRequest(type_name="t.a", since_ns=10_040, nonce=b"n" * 8),
                         now=1.0)
    r.on_history_request(R1, HistoryRequest(type_name="t.b", since_ns=0, nonce=b"m" * 8),
                         now=1.0)  # not published here: quiet
    reps = _drain(r, 1.0, 1.1)
    assert [s for rep in reps for s in rep.seqs] == list(range(40, 50))
    assert all(rep.to == 1 and rep.nonce == b"n" * 8 for rep in reps)


def test_malformed_requests_are_counted_and_dropped() -> None:
    r = _responder(_history())
    bad = [_req([[5, 3]]), _req([[1, 2], [2, 3]]), _req([[0, 600]]), _req([[i, i] for i in
                                                                          range(0, 66, 2)]),
           _req([[1, 2]], name="not a name!"), RepairRequest(to=10, type_name="t.a", boot=7,
                                                            ranges=[[1, "x"]])]  # type: ignore[list-item]
    for req in bad:
        r.on_request(R1, req, now=0.0)
    r.on_history_request(R1, HistoryRequest(type_name="t.a", since_ns=-1, nonce=b"x"), now=0.0)
    r.on_history_request(R1, HistoryRequest(type_name="t.a", since_ns=0, nonce=b""), now=0.0)
    assert _drain(r, 0.0, 0.1) == []
    assert r.counts["repair_malformed"] == len(bad)
    assert r.counts["history_malformed"] == 2
