"""The repair messages on the wire, and what an older node makes of them."""

from __future__ import annotations

import dataclasses

import pytest

from ganglion.repair import HistoryRequest, Repair, RepairRequest, Tail
from ganglion.repair.messages import count_numbers, valid_ranges
from ganglion.runtime.control_messages import Heartbeat
from ganglion.types import Record, TypeRegistry, decode_payload, encode_payload


@pytest.mark.parametrize("msg", [
    RepairRequest(to=(1 << 64) - 1, type_name="t.a", boot=(1 << 32) - 1, ranges=[[0, 3], [9, 9]]),
    Repair(type_name="t.a", fingerprint=b"12345678", boot=2, clock_synced=False, seqs=[4, 5],
           sent_ns=[1, 2], payloads=[b"\xa0", b"\xa1\x61x\x01"], gone=[[0, 3]]),
    Repair(type_name="t.a", fingerprint=b"12345678", boot=2, to=17, nonce=b"n" * 8),
    HistoryRequest(type_name="t.a", since_ns=123, nonce=b"n" * 8),
    Heartbeat(name="a", role="member", version="1", clock_synced=True,
              tails=[Tail("t.a", 5), Tail("t.b", 0)]),
    Heartbeat(name="a", role="member", version="1", clock_synced=True,
              repairs=[RepairRequest(to=(1 << 64) - 1, type_name="t.a", boot=3,
                                     ranges=[[4, 4], [7, 9]]),
                       RepairRequest(to=5, type_name="t.b", boot=0, ranges=[[0, 0]])]),
])
def test_messages_round_trip(msg: object) -> None:
    name = {RepairRequest: "ganglion.control.RepairRequest", Repair: "ganglion.control.Repair",
            HistoryRequest: "ganglion.control.HistoryRequest",
            Heartbeat: "ganglion.control.Heartbeat"}[type(msg)]
    assert decode_payload(name, encode_payload(msg)) == msg


@pytest.mark.parametrize("with_tails", [False, True])
def test_an_older_node_reads_a_heartbeat_with_tails_and_repairs(with_tails: bool) -> None:
    # The heartbeat as an older node declares it: without ``tails`` (no repair at all)
    # or with them but without ``repairs`` (the first version of repair). Its
    # fingerprint differs, so it decodes leniently and ignores the unknown fields.
    registry = TypeRegistry()

    @dataclasses.dataclass
    class OldTail:
        type_name: str
        last_seq: int

    fields = [("name", str), ("role", str), ("version", str), ("clock_synced", bool),
              ("publishes", list[str], dataclasses.field(default_factory=list)),
              ("goodbye", bool, False), ("subscribes", list[str] | None, None),
              ("nonce", bytes | None, None), ("ask", list[bytes] | None, None),
              ("echo", list[bytes] | None, None)]
    if with_tails:
        fields.append(("tails", list[OldTail] | None, None))
    old_class = registry.message("ganglion.control.Heartbeat")(
        dataclasses.make_dataclass("OldHeartbeat", fields))

    new = Heartbeat(name="a", role="member", version="2", clock_synced=True, publishes=["t.a"],
                    tails=[Tail("t.a", 41)],
                    repairs=[RepairRequest(to=9, type_name="t.b", boot=1, ranges=[[3, 4]])])
    old = decode_payload("ganglion.control.Heartbeat", encode_payload(new), b"\x00" * 8,
                         registry=registry)
    assert isinstance(old, old_class) and old.publishes == ["t.a"]  # type: ignore[attr-defined]
    assert not hasattr(old, "repairs")
    if with_tails:
        assert old.tails == [OldTail("t.a", 41)]  # type: ignore[attr-defined]
    # and an older node's heartbeat has neither here
    back = decode_payload("ganglion.control.Heartbeat", encode_payload(
        old_class(name="b", role="member", version="1", clock_synced=True),
        registry=registry), b"\x01" * 8)
    assert isinstance(back, Heartbeat) and back.tails is None and back.repairs is None


def test_an_older_node_has_no_class_for_the_repair_messages() -> None:
    empty = TypeRegistry()
    got = decode_payload("ganglion.control.RepairRequest",
                         encode_payload(RepairRequest(to=1, type_name="t.a", boot=1,
                                                      ranges=[[1, 1]])), registry=empty)
    assert isinstance(got, Record)  # no subscriber of it there: dropped unread


@pytest.mark.parametrize(("ranges", "ok"), [
    ([], True), ([[0, 0]], True), ([[0, 5], [7, 9]], True), ([[0, 5], [6, 9]], True),
    ([[5, 4]], False), ([[0, 5], [5, 9]], False), ([[3, 4], [0, 1]], False),
    ([[-1, 2]], False), ([[0, 1 << 64]], False), ([[0, 511]], True), ([[0, 512]], False),
    ([[i * 2, i * 2] for i in range(32)], True), ([[i * 2, i * 2] for i in range(33)], False),
    ([[True, 2]], False), ([[1, 2, 3]], False), ("x", False), ([[1.0, 2]], False),
])
def test_valid_ranges(ranges: object, ok: bool) -> None:
    assert valid_ranges(ranges) is ok


def test_count_numbers() -> None:
    assert count_numbers([[0, 0], [5, 9]]) == 6
