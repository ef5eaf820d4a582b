"""Repair end to end in the deterministic simulation (ganglion.repair.sim).

One sender, N receivers, independent random loss on every link, duplicates,
reordering and restarts, driving the real History, Responder, Requester and
SequenceTracker with a fake clock.
"""

from __future__ import annotations

import os
import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganglion.repair import RequesterConfig
from ganglion.repair.sim import simulate


@pytest.mark.parametrize("loss", [0.10, 0.20])
def test_every_reading_is_delivered_once_at_10_to_20_percent_loss(loss: float) -> None:
    r = simulate(receivers=3, loss=loss, rate=50.0, duration=60.0, seed=11)
    assert r.data_lost > 0.8 * loss * 3 * 3000  # the loss really happened
    assert all(held == r.required[i] for i, held in enumerate(r.held))
    assert r.permanent == [set(), set(), set()]
    assert r.duplicates_delivered == 0


@pytest.mark.parametrize("loss", [0.10, 0.20])
def test_cost_per_lost_datagram(loss: float) -> None:
    # The target: at most 1.5 requests plus repairs per lost datagram. With
    # independent loss on every link each receiver misses different datagrams, so the
    # cost falls as receivers are added (suppression and repairs shared by all).
    three = simulate(receivers=3, loss=loss, duration=60.0, seed=12)
    twenty = simulate(receivers=20, loss=loss, duration=20.0, seed=12)
    assert twenty.overhead <= 1.0
    assert three.overhead <= 1.5
    assert twenty.suppressed > twenty.requests  # most receivers held back


def test_without_repair_the_same_run_loses_readings() -> None:
    # The simulation would notice missing readings: with requests that can never be
    # answered (history off) every loss becomes a recorded gap.
    from ganglion.repair import HistoryLimits
    r = simulate(receivers=3, loss=0.1, duration=10.0, seed=3,
                 history=HistoryLimits(max_bytes=0, max_age=0.0))
    lost = sum(len(req - held) for req, held in zip(r.required, r.held, strict=True))
    assert lost > 100
    assert r.silently_lost() == [set(), set(), set()]  # ... each one recorded


def test_one_loss_seen_by_20_receivers_costs_about_one_request_and_one_repair() -> None:
    # Datagrams lost on the sender's own link: all 20 receivers miss the same ones.
    r = simulate(receivers=20, loss=0.0, sender_loss=0.05, duration=30.0, seed=4)
    assert r.common_losses > 50
    assert all(held == req for held, req in zip(r.held, r.required, strict=True))
    assert r.requests <= 1.5 * r.common_losses  # suppression: not 20 per loss
    assert r.repairs <= 1.2 * r.common_losses
    assert r.suppressed >= 15 * r.common_losses


@pytest.mark.parametrize(("carry_wait", "p50"), [(0.0, 0.15), (0.35, 0.4)])
def test_repaired_readings_come_within_a_fraction_of_a_second(carry_wait: float,
                                                              p50: float) -> None:
    # Requests riding the heartbeat wait for it: up to 0.35 s more, 0.12 s on average.
    r = simulate(receivers=3, loss=0.1, duration=30.0, seed=5,
                 config=RequesterConfig(carry_wait=carry_wait))
    assert statistics.median(r.latencies) < p50
    assert sorted(r.latencies)[int(0.99 * len(r.latencies))] < 1.2


@pytest.mark.parametrize("loss", [0.01, 0.05])
def test_at_low_loss_requests_ride_the_heartbeat_and_the_cost_falls_below_the_target(
        loss: float) -> None:
    # Independent loss per receiver: every loss is alone, nothing to share. Sent alone,
    # an isolated loss costs a request and a repair (about 2 per lost datagram); riding
    # the heartbeat every node sends anyway, the request costs no datagram, and the
    # receivers' requests reach the sender together (heartbeats share the wall clock's
    # grid), so one repair answers several of them.
    alone = simulate(receivers=3, loss=loss, duration=60.0, seed=21,
                     config=RequesterConfig(carry_wait=0.0))
    riding = simulate(receivers=3, loss=loss, duration=60.0, seed=21)
    assert alone.carried == 0 and alone.overhead > 1.5
    assert riding.carried > riding.requests  # most first requests rode a heartbeat
    assert riding.overhead <= 1.2
    for r in (alone, riding):
        assert all(held == r.required[i] for i, held in enumerate(r.held))
        assert r.permanent == [set(), set(), set()] and r.duplicates_delivered == 0


def test_at_30_percent_nothing_is_silently_lost() -> None:
    r = simulate(receivers=5, loss=0.3, duration=30.0, seed=6)
    assert r.silently_lost() == [set()] * 5
    assert r.duplicates_delivered == 0


def test_a_restarted_sender_never_answers_old_numbers_with_new_data() -> None:
    r = simulate(receivers=3, loss=0.15, duration=20.0, seed=7, sender_restart=10.0)
    assert {b for b, _s in r.published} == {1, 2}
    assert r.silently_lost() == [set()] * 3
    assert r.duplicates_delivered == 0
    # what boot 1 had not repaired when it went is recorded lost, never delivered late
    for held, perm in zip(r.held, r.permanent, strict=True):
        assert not held & perm


@settings(max_examples=int(os.environ.get("REPAIR_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), loss=st.floats(0.0, 0.4),
       receivers=st.integers(1, 6), duplicate=st.floats(0.0, 0.2),
       jitter=st.floats(0.0, 0.05), rate=st.sampled_from([5.0, 50.0, 200.0]),
       sender_restart=st.none() | st.floats(0.5, 4.5),
       receiver_restart=st.none() | st.floats(0.5, 4.5),
       delay=st.sampled_from([0.0, 0.01, 0.04]),
       carry_wait=st.sampled_from([0.0, 0.35, 0.6]), heartbeat=st.sampled_from([0.2, 0.5]))
def test_random_loss_duplicates_reordering_and_restarts(
        seed: int, loss: float, receivers: int, duplicate: float, jitter: float, rate: float,
        sender_restart: float | None, receiver_restart: float | None, delay: float,
        carry_wait: float, heartbeat: float) -> None:
    r = simulate(receivers=receivers, loss=loss, rate=rate, duration=5.0, seed=seed,
                 duplicate=duplicate, jitter=jitter, sender_restart=sender_restart,
                 receiver_restarts=None if receiver_restart is None else {0: receiver_restart},
                 config=RequesterConfig(delay=delay, carry_wait=carry_wait),
                 heartbeat=heartbeat, drain=15.0)
    # Exactly once, nothing silently lost: every number a receiver could know of is
    # delivered or recorded as a gap, and a recorded gap is never delivered after all.
    assert r.duplicates_delivered == 0
    assert r.silently_lost() == [set()] * receivers
    for held, perm in zip(r.held, r.permanent, strict=True):
        assert held <= r.published
        if receiver_restart is None:
            assert not held & perm
    if loss == 0.0 and duplicate == 0.0:
        assert r.requests == 0 or jitter > 0  # no loss, no reordering: no traffic
