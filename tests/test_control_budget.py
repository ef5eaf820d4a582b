"""Request budgets of the control channel (pure): who is served, how often, and where."""

from __future__ import annotations

from ganglion import defaults
from ganglion.control_budget import RequestBudget, UnicastChoice

KNOWN = {b"peer-one", b"peer-two"}


def budget() -> RequestBudget:
    return RequestBudget(lambda node_id: node_id in KNOWN)


def test_requests_from_unknown_ids_are_refused_and_counted() -> None:
    b = budget()
    assert not b.allow_propose(b"stranger", "10.0.0.9", 0.0)
    assert not b.allow_catchup(b"stranger", 0.0)
    assert b.counts == {"propose_unknown": 1, "catchup_unknown": 1}


def test_proposals_per_requester_get_the_burst_then_the_rate() -> None:
    b = budget()
    rate, burst = defaults.PROPOSE_PER_REQUESTER
    served = sum(b.allow_propose(b"peer-one", "10.0.0.1", 0.0) for _ in range(2000))
    assert served == burst
    served += sum(b.allow_propose(b"peer-one", "10.0.0.1", 1.0) for _ in range(2000))
    assert served == burst + rate
    assert b.counts["propose_rate_limited"] == 4000 - served
    # another requester on another address has its own budget
    assert b.allow_propose(b"peer-two", "10.0.0.2", 1.0)


def test_proposals_are_bounded_per_source_address_and_in_total() -> None:
    known: set[bytes] = set()
    b = RequestBudget(lambda node_id: node_id in known)
    per_source = defaults.PROPOSE_PER_SOURCE[1]
    total = defaults.PROPOSE_TOTAL[1]
    # many announced ids behind one address: the address's budget binds
    ids = [i.to_bytes(8, "big") for i in range(1000)]
    known.update(ids)
    served = sum(b.allow_propose(i, "10.0.0.1", 0.0) for i in ids)
    assert served == per_source
    # and from many addresses: the node's total binds
    served += sum(b.allow_propose(i, f"10.0.{n // 250}.{n % 250}", 0.0)
                  for n, i in enumerate(ids))
    assert served == total


def test_catch_up_answers_per_requester_and_in_total() -> None:
    b = budget()
    rate, burst = defaults.CATCHUP_PER_REQUESTER
    answers = sum(b.allow_catchup(b"peer-one", t / 100) for t in range(300))  # 3 s of flood
    assert answers <= burst + rate * 3
    assert b.counts["catchup_answered"] == answers
    assert b.counts["catchup_rate_limited"] == 300 - answers
    known = {i.to_bytes(8, "big") for i in range(100)}
    b2 = RequestBudget(lambda node_id: node_id in known)
    assert sum(b2.allow_catchup(i, 0.0) for i in sorted(known)) == defaults.CATCHUP_TOTAL[1]


def test_last_value_answers_per_requester_and_in_total_even_for_unknown_ids() -> None:
    b = budget()
    burst = defaults.LAST_VALUE_PER_REQUESTER[1]
    # a tool that just started asks before its heartbeat is heard: it is served
    assert b.allow_last_value(b"new-tool", 0.0)
    served = 1 + sum(b.allow_last_value(b"new-tool", 0.0) for _ in range(5000))
    assert served == burst
    assert b.counts["last_value_rate_limited"] == 5001 - burst
    # forged requests under made-up ids meet the node's total
    b2 = budget()
    flood = sum(b2.allow_last_value(i.to_bytes(8, "big"), 0.0) for i in range(5000))
    assert flood == defaults.LAST_VALUE_TOTAL[1]


def test_keyed_last_values_cost_one_token_per_answer() -> None:
    b = budget()
    burst = defaults.LAST_VALUE_PER_REQUESTER[1]
    # three probes: three answers, three tokens
    assert b.allow_last_values(b"tool", 0.0, 3) == 3
    # a type with more keys than the requester has left: the rest are refused, counted
    assert b.allow_last_values(b"tool", 0.0, burst) == burst - 3
    assert b.counts["last_value_rate_limited"] == 3
    assert b.allow_last_values(b"tool", 0.0, 5) == 0
    assert b.counts["last_value_rate_limited"] == 8
    assert b.allow_last_values(b"tool", 1.0, 100) == int(defaults.LAST_VALUE_PER_REQUESTER[0])


def test_a_repeated_request_soon_after_a_unicast_answer_goes_to_the_group() -> None:
    choice = UnicastChoice(retry_seconds=5.0)
    assert choice.address(7, "10.0.0.7", 0.0) == "10.0.0.7"
    assert choice.address(7, "10.0.0.7", 1.0) is None  # asked again within 5 s
    assert choice.address(7, "10.0.0.7", 2.0) == "10.0.0.7"
    assert choice.address(7, "10.0.0.7", 8.0) == "10.0.0.7"  # long after: unicast again
    assert choice.address(8, None, 8.0) is None  # no address of its own


def test_unicast_choice_remembers_a_bounded_number_of_requesters() -> None:
    choice = UnicastChoice(max_keys=4)
    for to in range(100):
        assert choice.address(to, "10.0.0.1", 0.0) == "10.0.0.1"
    assert choice.address(0, "10.0.0.1", 0.1) == "10.0.0.1"  # forgotten: unicast again
    assert choice.address(99, "10.0.0.1", 0.1) is None  # remembered
