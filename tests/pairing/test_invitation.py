"""An invite's budget with time passed in: single use, burnt by three failures, one a second, expiry."""

from __future__ import annotations

import pytest

from ganglion.errors import ConfigError
from ganglion.pairing.frames import Refusal
from ganglion.pairing.invitation import MAX_FAILURES, MIN_INTERVAL, Invitation, InviteStatus


def test_an_open_invite_admits_one_exchange_and_is_used_once_the_key_is_sent() -> None:
    inv = Invitation(created=100.0, ttl=300)
    assert inv.admit(100.5) is None and inv.busy
    assert inv.end(spent=True, key_sent=True) is InviteStatus.USED
    assert inv.admit(200.0) is Refusal.CLOSED
    assert inv.status_at(1e9) is InviteStatus.USED  # used stays used; it never "expires"
    assert (inv.stats.attempts, inv.stats.failures, inv.stats.refused) == (1, 0, 1)


def test_three_failed_exchanges_burn_the_invite() -> None:
    inv = Invitation(created=0.0, ttl=300)
    for n in range(MAX_FAILURES):
        assert inv.status_at(n * 2.0) is InviteStatus.OPEN
        assert inv.admit(n * 2.0) is None
        inv.end(spent=True, key_sent=False)
    assert inv.status_at(10.0) is InviteStatus.BURNT
    assert inv.admit(10.0) is Refusal.CLOSED
    assert inv.stats.failures == MAX_FAILURES


def test_exchanges_that_never_guessed_do_not_burn_it() -> None:
    inv = Invitation(created=0.0, ttl=300)
    for n in range(10):
        assert inv.admit(n * 1.0) is None
        assert inv.end(spent=False, key_sent=False) is InviteStatus.OPEN
    assert (inv.stats.malformed, inv.stats.failures) == (10, 0)


def test_at_most_one_exchange_runs_and_starts_are_a_second_apart() -> None:
    inv = Invitation(created=0.0, ttl=300)
    assert inv.admit(1.0) is None
    assert inv.admit(1.1) is Refusal.BUSY  # another exchange runs
    inv.end(spent=True, key_sent=False)
    assert inv.admit(1.0 + MIN_INTERVAL / 2) is Refusal.BUSY  # too soon after the last start
    assert inv.admit(1.0 + MIN_INTERVAL) is None
    assert inv.stats.refused == 2 and inv.stats.attempts == 2


def test_a_burst_of_connections_gets_one_guess_a_second() -> None:
    inv = Invitation(created=0.0, ttl=300, max_failures=1000)
    admitted = 0
    for ms in range(0, 10_000, 10):  # a connection every 10 ms for 10 s
        if inv.admit(ms / 1000) is None:
            admitted += 1
            inv.end(spent=True, key_sent=False)
    assert admitted == 10


def test_the_invite_expires_after_its_ttl() -> None:
    inv = Invitation(created=50.0, ttl=300)
    assert inv.status_at(349.9) is InviteStatus.OPEN
    assert inv.status_at(350.0) is InviteStatus.EXPIRED
    assert inv.admit(350.0) is Refusal.CLOSED


def test_an_exchange_running_at_expiry_may_still_finish_and_use_it() -> None:
    inv = Invitation(created=0.0, ttl=10)
    assert inv.admit(9.9) is None
    assert inv.status_at(10.5) is InviteStatus.EXPIRED and inv.busy
    assert inv.end(spent=True, key_sent=True) is InviteStatus.USED


@pytest.mark.parametrize("kwargs", [{"ttl": 0}, {"ttl": -1}, {"ttl": 5, "max_failures": 0},
                                    {"ttl": 5, "min_interval": -1}])
def test_impossible_budgets_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Invitation(created=0.0, **kwargs)  # type: ignore[arg-type]
