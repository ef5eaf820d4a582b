"""The receiver's repair requester (ganglion.repair.Requester), as a sans-IO machine."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion.repair import (
    PermanentGap,
    RepairRequest,
    RequestAction,
    Requester,
    RequesterConfig,
    StreamKey,
)
from ganglion.repair.messages import valid_ranges
from ganglion.types import encode_payload

A = b"\x00" * 7 + b"\x0a"
KEY = (A, "t.a", 5)


def _requests(out: list[RequestAction | PermanentGap]) -> list[RepairRequest]:
    return [a.request for a in out if isinstance(a, RequestAction)]


def _gaps(out: list[RequestAction | PermanentGap]) -> list[tuple[int, int, str]]:
    return [(g.first, g.last, g.reason) for g in out if isinstance(g, PermanentGap)]


def _run(r: Requester, until: float, step: float = 0.001) -> list[RequestAction | PermanentGap]:
    out: list[RequestAction | PermanentGap] = []
    t = 0.0
    while t <= until:
        out += r.poll(t)
        t += step
    return out


def test_a_gap_is_asked_for_after_a_random_delay_at_most_the_configured_one() -> None:
    cfg = RequesterConfig(delay=0.04)
    for seed in range(20):
        r = Requester(cfg, rng=random.Random(seed))
        r.on_gap(KEY, 3, 5, now=0.0)
        due = r.next_deadline()
        assert due is not None and 0.0 <= due <= 0.04
        assert r.poll(due - 1e-6) == [] if due > 0 else True
        out = r.poll(due)
        assert _requests(out) == [RepairRequest(to=10, type_name="t.a", boot=5, ranges=[[3, 5]])]


def test_a_number_that_arrives_late_is_not_asked_for() -> None:
    r = Requester(rng=random.Random(1))
    r.on_gap(KEY, 3, 5, now=0.0)
    r.on_filled(KEY, 4, now=0.001)
    out = r.poll(1.0)
    assert [q.ranges for q in _requests(out)] == [[[3, 3], [5, 5]]]
    r.on_filled(KEY, 3, now=1.01)
    r.on_filled(KEY, 5, now=1.01)
    assert r.next_deadline() is None
    s = r.stats()[KEY]
    assert (s.repaired, s.repair_requests_sent, s.missing, s.permanently_lost) == (3, 1, 0, 0)


def test_retries_back_off_then_the_numbers_are_permanently_lost() -> None:
    cfg = RequesterConfig(delay=0.0, retry=0.1, max_retry=0.4, attempts=4)
    r = Requester(cfg, rng=random.Random(0))
    r.on_gap(KEY, 7, 7, now=0.0)
    times = []
    out: list[RequestAction | PermanentGap] = []
    t = 0.0
    while (due := r.next_deadline()) is not None:
        t = max(t, due)
        step = r.poll(t)
        if _requests(step):
            times.append(round(t, 6))
        out += step
    assert times == [0.0, 0.1, 0.3, 0.7]  # waits 0.1, 0.2, 0.4 (capped)
    assert _gaps(out) == [(7, 7, "timeout")]
    assert round(t, 6) == 1.1  # the last wait (0.4) ran out too
    s = r.stats()[KEY]
    assert (s.repair_requests_sent, s.permanently_lost, s.missing) == (4, 1, 0)


def test_an_overheard_request_suppresses_ours_and_counts_as_an_attempt() -> None:
    cfg = RequesterConfig(delay=0.05, retry=0.1, attempts=2)
    r = Requester(cfg, rng=random.Random(3))
    r.on_gap(KEY, 10, 12, now=0.0)
    other = RepairRequest(to=10, type_name="t.a", boot=5, ranges=[[10, 11]])
    r.on_overheard(b"\x00" * 7 + b"\x0b", other, now=0.0)
    first = _requests(r.poll(0.05))
    assert [q.ranges for q in first] == [[[12, 12]]]  # only what nobody asked for
    assert r.stats()[KEY].repair_requests_suppressed == 1
    # the overheard request counted as attempt 1: one more try, then lost
    assert [q.ranges for q in _requests(r.poll(0.1))] == [[[10, 11]]]
    out = _run(r, 2.0)
    assert sorted(_gaps(out)) == [(10, 11, "timeout"), (12, 12, "timeout")]


def test_an_overheard_request_for_another_stream_changes_nothing() -> None:
    r = Requester(RequesterConfig(delay=0.0), rng=random.Random(3))
    r.on_gap(KEY, 1, 1, now=0.0)
    for req in (RepairRequest(to=11, type_name="t.a", boot=5, ranges=[[1, 1]]),
                RepairRequest(to=10, type_name="t.b", boot=5, ranges=[[1, 1]]),
                RepairRequest(to=10, type_name="t.a", boot=4, ranges=[[1, 1]])):
        r.on_overheard(b"\x01" * 8, req, now=0.0)
    assert len(_requests(r.poll(0.0))) == 1


def test_gone_and_restart_end_the_wait_at_once() -> None:
    r = Requester(rng=random.Random(0))
    r.on_gap(KEY, 1, 9, now=0.0)
    r.on_gone(KEY, 2, 4, now=0.0)
    r.on_restart(A, "t.a", 6, now=0.0)  # a newer boot: boot 5's numbers are lost
    out = r.poll(0.0)
    assert _gaps(out) == [(2, 4, "gone"), (1, 1, "restart"), (5, 9, "restart")]
    assert r.next_deadline() is None
    s = r.stats()[KEY]
    assert (s.gone, s.permanently_lost) == (3, 9)


def test_a_repeated_tail_creates_the_gap_once() -> None:
    r = Requester(RequesterConfig(delay=0.0, attempts=1, retry=0.1), rng=random.Random(0))
    r.on_tail(KEY, 20, highest=17, now=0.0)
    assert [q.ranges for q in _requests(r.poll(0.0))] == [[[18, 20]]]
    r.on_tail(KEY, 20, highest=17, now=0.05)  # the next heartbeat, same tail
    out = _run(r, 1.0)
    assert _requests(out) == [] and _gaps(out) == [(18, 20, "timeout")]
    r.on_tail(KEY, 20, highest=17, now=2.0)  # still the same: recorded already
    r.on_tail(KEY, 5, highest=None, now=2.0)  # no baseline: says nothing
    assert r.next_deadline() is None


def test_a_huge_gap_gives_up_all_but_the_window() -> None:
    r = Requester(RequesterConfig(max_missing=100, delay=0.0), rng=random.Random(0))
    r.on_gap(KEY, 0, 10**9, now=0.0)
    out = r.poll(0.0)
    assert _gaps(out) == [(0, 10**9 - 100, "behind")]
    assert r.outstanding == 100
    reqs = _requests(out)
    assert [q.ranges for q in reqs] == [[[10**9 - 99, 10**9]]]


def test_numbers_falling_out_of_the_window_are_given_up() -> None:
    r = Requester(RequesterConfig(max_missing=10, delay=1.0), rng=random.Random(0))
    r.on_gap(KEY, 0, 2, now=0.0)
    r.on_gap(KEY, 20, 21, now=0.0)  # 0..2 are now more than 10 below the newest
    assert _gaps(r.poll(0.0)) == [(0, 2, "behind")]
    assert r.outstanding == 2


def test_node_wide_bounds_on_numbers_and_streams() -> None:
    cfg = RequesterConfig(max_outstanding=50, max_streams=4, delay=0.0)
    r = Requester(cfg, rng=random.Random(0))
    for i in range(10):
        r.on_gap((bytes([i]) * 8, "t.a", 1), 0, 29, now=0.0)
        assert r.outstanding <= 50
    assert len(r.stats()) <= 4
    assert r.counts["streams_evicted"] == 6
    lost = sum(g.last - g.first + 1 for g in r.poll(0.0) if isinstance(g, PermanentGap))
    assert lost + r.outstanding == 300  # every number missing is awaited or recorded


def test_requests_are_rate_limited_node_wide() -> None:
    cfg = RequesterConfig(delay=0.0, requests_per_second=10.0, request_burst=5, attempts=50,
                          retry=0.01, max_retry=0.01)
    r = Requester(cfg, rng=random.Random(0))
    for i in range(100):
        r.on_gap((bytes([i]) * 8, "t.a", 1), 0, 0, now=0.0)
    sent = len(_requests(_run(r, 2.0)))
    assert sent <= 5 + 10 * 2 + 1
    assert r.counts["request_rate_limited"] > 0


def test_a_request_never_exceeds_the_wire_limits() -> None:
    r = Requester(RequesterConfig(delay=0.0, max_missing=4096), rng=random.Random(0))
    r.on_gap(KEY, 0, 1999, now=0.0)  # 2000 numbers in one range
    r2 = Requester(RequesterConfig(delay=0.0), rng=random.Random(0))
    for seq in range(0, 200, 2):  # 100 single numbers
        r2.on_gap(KEY, seq, seq, now=0.0)
    for machine, total in ((r, 2000), (r2, 100)):
        reqs = _requests(machine.poll(0.0))
        assert all(len(q.ranges) <= 32 for q in reqs)
        assert all(sum(b - a + 1 for a, b in q.ranges) <= 512 for q in reqs)
        assert sum(b - a + 1 for q in reqs for a, b in q.ranges) == total


def test_forget_stops_asking_for_a_type_but_keeps_its_counters() -> None:
    r = Requester(RequesterConfig(delay=0.0), rng=random.Random(0))
    r.on_gap(KEY, 0, 5, now=0.0)
    r.poll(0.0)
    r.forget("t.a")
    assert r.next_deadline() is None and r.outstanding == 0 and r.poll(10.0) == []
    s = r.stats()[KEY]
    assert (s.repair_requests_sent, s.missing, s.permanently_lost) == (1, 0, 0)


@pytest.mark.parametrize("field", ["delay", "retry", "attempts", "max_missing"])
def test_config_refuses_values_out_of_range(field: str) -> None:
    with pytest.raises(ValueError):
        RequesterConfig(**{field: -1})


def test_numbers_given_up_are_remembered_so_a_late_repair_is_not_delivered() -> None:
    r = Requester(RequesterConfig(delay=0.0, attempts=1, retry=0.1, max_missing=8,
                                  max_outstanding=8), rng=random.Random(0))
    r.on_gap(KEY, 3, 4, now=0.0)
    _run(r, 1.0)
    assert r.abandoned(KEY, 3) and r.abandoned(KEY, 4) and not r.abandoned(KEY, 5)
    r.on_gap(KEY, 100, 10**6, now=2.0)  # gives up all but 8; remembers 8 in all
    r.poll(2.0)
    assert not r.abandoned(KEY, 3)
    assert r.abandoned(KEY, 10**6 - 8) and not r.abandoned(KEY, 10**6 - 7)


def test_the_driver_is_told_when_a_gap_brings_the_deadline_nearer() -> None:
    r = Requester(rng=random.Random(0))
    calls: list[float | None] = []
    r.on_change = lambda: calls.append(r.next_deadline())
    r.on_gap(KEY, 1, 2, now=5.0)
    assert calls and calls[0] is not None and 5.0 <= calls[0] <= 5.1


B = b"\x00" * 7 + b"\x0b"


def test_a_first_request_rides_the_next_heartbeat_when_it_is_near() -> None:
    cfg = RequesterConfig(delay=0.02, carry_wait=0.35)
    r = Requester(cfg, rng=random.Random(1))
    r.on_gap(KEY, 3, 4, now=0.0)
    r.on_gap((B, "t.b", 1), 9, 9, now=0.0)
    # the heartbeat leaves at 0.3: nothing is sent alone, the numbers wait for it
    assert _requests(r.poll(0.02, carrier=0.3)) == []
    assert r.riding == 3
    assert r.next_deadline() == pytest.approx(0.3 + cfg.carry_grace)
    carried = r.carry(0.3)
    assert sorted((q.to, q.type_name, q.ranges) for q in carried) == [
        (10, "t.a", [[3, 4]]), (11, "t.b", [[9, 9]])]
    assert r.riding == 0
    s = r.stats()[KEY]
    assert (s.repair_requests_sent, s.repair_requests_carried, s.numbers_requested) == (1, 1, 2)
    # asked for: the retry waits as for a request sent alone, and goes alone
    assert r.next_deadline() == pytest.approx(0.3 + cfg.retry)
    retry = _requests(r.poll(0.3 + cfg.retry, carrier=0.5))
    assert sorted(q.type_name for q in retry) == ["t.a", "t.b"]
    assert r.carry(0.5) == []


def test_a_far_heartbeat_a_burst_or_carrying_off_sends_the_request_alone() -> None:
    for carrier, last, wait in ((0.5, 4, 0.35), (0.2, 3 + 16, 0.35), (0.2, 4, 0.0)):
        r = Requester(RequesterConfig(delay=0.0, carry_wait=wait, carry_max=16),
                      rng=random.Random(2))
        r.on_gap(KEY, 3, last, now=0.0)
        assert [q.ranges for q in _requests(r.poll(0.0, carrier=carrier))] == [[[3, last]]]
        assert r.carry(carrier) == []


def test_numbers_still_in_their_delay_join_the_heartbeat_leaving_now() -> None:
    r = Requester(RequesterConfig(delay=0.1), rng=random.Random(5))
    r.on_gap(KEY, 3, 3, now=0.0)
    carried = r.carry(0.001)  # before its random delay ended: no need to wait for it
    assert [q.ranges for q in carried] == [[[3, 3]]]
    assert _requests(_run(r, 0.1)) == []  # not asked for twice


def test_riding_numbers_go_alone_when_the_heartbeat_is_late() -> None:
    cfg = RequesterConfig(delay=0.0, carry_grace=0.1)
    r = Requester(cfg, rng=random.Random(3))
    r.on_gap(KEY, 3, 3, now=0.0)
    assert _requests(r.poll(0.0, carrier=0.2)) == []
    assert _requests(r.poll(0.29, carrier=0.2)) == []
    assert [q.ranges for q in _requests(r.poll(0.301, carrier=0.7))] == [[[3, 3]]]
    assert r.carry(0.31) == []  # asked for: nothing rides any more


def test_a_request_riding_another_receivers_heartbeat_suppresses_ours() -> None:
    # Another receiver's heartbeat carried a request for numbers we miss (some waiting
    # for our own heartbeat, some still in their delay): we neither carry them nor send
    # them alone; it counts as our attempt, like any overheard request.
    cfg = RequesterConfig(delay=0.05, retry=0.15, attempts=3)
    r = Requester(cfg, rng=random.Random(4))
    r.on_gap(KEY, 10, 11, now=0.0)
    assert _requests(r.poll(0.05, carrier=0.2)) == []
    r.on_gap(KEY, 12, 12, now=0.1)
    other = RepairRequest(to=10, type_name="t.a", boot=5, ranges=[[10, 12]])
    r.on_overheard(B, other, now=0.12)
    assert r.riding == 0
    assert r.carry(0.2) == []
    assert _requests(r.poll(0.2, carrier=0.7)) == []
    assert r.stats()[KEY].repair_requests_suppressed == 1
    assert r.next_deadline() == pytest.approx(0.12 + cfg.retry)


def test_a_heartbeat_carries_at_most_carry_streams_requests() -> None:
    r = Requester(RequesterConfig(delay=0.0, carry_streams=2), rng=random.Random(6))
    for i in range(4):
        r.on_gap((bytes([i + 1]) * 8, "t.a", 1), 5, 5, now=0.0)
    assert len(_requests(r.poll(0.0, carrier=0.1))) == 2  # two ride, two cannot
    assert len(r.carry(0.1)) == 2
    # numbers still in their delay when the heartbeat leaves: the ones without room
    # in it are asked for alone, at once
    r = Requester(RequesterConfig(delay=0.1, carry_streams=2), rng=random.Random(6))
    for i in range(4):
        r.on_gap((bytes([i + 1]) * 8, "t.a", 1), 5, 5, now=0.0)
    assert len(r.carry(0.001)) == 2
    assert len(_requests(r.poll(0.001, carrier=0.5))) == 2
    # and within the bytes given: one request of these is 44 bytes
    r = Requester(RequesterConfig(delay=0.1), rng=random.Random(6))
    for i in range(4):
        r.on_gap((bytes([i + 1]) * 8, "t.a", 1), 5, 5, now=0.0)
    carried = r.carry(0.001, max_bytes=100)
    assert len(carried) == 2 and sum(len(encode_payload(q)) for q in carried) <= 100
    assert len(_requests(r.poll(0.001, carrier=0.5))) == 2


_EVENT = st.one_of(
    st.tuples(st.just("gap"), st.integers(0, 3), st.integers(0, 60), st.integers(0, 40)),
    st.tuples(st.just("filled"), st.integers(0, 3), st.integers(0, 100), st.just(0)),
    st.tuples(st.just("gone"), st.integers(0, 3), st.integers(0, 100), st.integers(0, 10)),
    st.tuples(st.just("heard"), st.integers(0, 3), st.integers(0, 100), st.integers(0, 10)),
    st.tuples(st.just("restart"), st.integers(0, 3), st.just(0), st.just(0)),
    st.tuples(st.just("forget"), st.integers(0, 3), st.just(0), st.just(0)),
    st.tuples(st.just("wait"), st.just(0), st.integers(0, 500), st.just(0)),
    st.tuples(st.just("beat"), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=int(os.environ.get("REPAIR_EXAMPLES", "150")), deadline=None)
@given(st.lists(_EVENT, max_size=80), st.integers(0, 2**32))
def test_every_missing_number_is_awaited_filled_or_recorded_once(
        events: list[tuple[str, int, int, int]], seed: int) -> None:
    cfg = RequesterConfig(delay=0.01, retry=0.02, max_retry=0.1, attempts=3, max_missing=50,
                          max_outstanding=120, max_streams=3, carry_wait=0.04, carry_max=6,
                          carry_streams=2, carry_grace=0.01)
    r = Requester(cfg, rng=random.Random(seed))
    boots = {i: 1 for i in range(4)}
    key_of = {}
    reported: dict[StreamKey, set[int]] = {}  # numbers given to on_gap, per stream
    done: dict[StreamKey, set[int]] = {}  # filled or recorded
    now = 0.0

    def key(i: int) -> StreamKey:
        k = (bytes([i]) * 8, "t.a" if i < 3 else "t.b", boots[i])
        key_of[k] = i
        return k

    def take(out: list[RequestAction | PermanentGap]) -> None:
        for action in out:
            if isinstance(action, PermanentGap):
                numbers = set(range(action.first, action.last + 1))
                mine = done.setdefault(action.key, set())
                assert not numbers & mine, "a number recorded (or filled) twice"
                mine |= numbers
            else:
                req = action.request
                assert valid_ranges(req.ranges) and req.ranges
                assert (req.to.to_bytes(8, "big"), req.type_name, req.boot) == action.key

    def carrier() -> float:  # heartbeats every 0.05 s
        return (int(now / 0.05) + 1) * 0.05

    for kind, i, a, b in events:
        if kind == "gap":
            k = key(i)
            highest = max(reported.get(k, {-1}) | {-1})
            first = max(a, highest + 1)
            r.on_gap(k, first, first + b, now)
            reported.setdefault(k, set()).update(range(first, first + b + 1))
        elif kind == "filled":
            k = key(i)
            before = r.stats().get(k)
            r.on_filled(k, a, now)
            after = r.stats().get(k)
            if before is not None and after is not None and after.repaired > before.repaired:
                mine = done.setdefault(k, set())
                assert a not in mine
                mine.add(a)
        elif kind == "gone":
            r.on_gone(key(i), a, a + b, now)
        elif kind == "heard":
            k = key(i)
            r.on_overheard(b"\xff" * 8, RepairRequest(to=int.from_bytes(k[0], "big"),
                                                      type_name=k[1], boot=k[2],
                                                      ranges=[[a, a + b]]), now)
        elif kind == "restart":
            boots[i] += 1
            r.on_restart(bytes([i]) * 8, "t.a" if i < 3 else "t.b", boots[i], now)
        elif kind == "forget":
            r.forget("t.a" if i < 3 else "t.b")
            for k in list(reported):
                if k[1] == ("t.a" if i < 3 else "t.b"):
                    # dropped unrecorded: nobody subscribes any more
                    done.setdefault(k, set()).update(reported[k])
        elif kind == "beat":
            for req in r.carry(now):
                assert valid_ranges(req.ranges) and req.ranges
                assert len(req.ranges) <= cfg.carry_max
        else:
            now += a / 1000
        take(r.poll(now, carrier=carrier() if seed % 2 else None))
        stats = r.stats()
        assert r.outstanding == sum(s.missing for s in stats.values())
        assert r.outstanding <= cfg.max_outstanding
        assert len(stats) <= cfg.max_streams
    # Run out the clock: everything ends filled or recorded, nothing stays.
    for _ in range(200):
        due = r.next_deadline()
        if due is None:
            break
        now = max(now, due)
        take(r.poll(now))
    assert r.next_deadline() is None and r.outstanding == 0
