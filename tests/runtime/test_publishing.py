"""The publish side without I/O: ``Publisher`` over a real ``Outgoing`` with fakes.

The publisher and the send side import no event loop and no socket, so these tests
drive them with a scheduler whose loop iterations the test runs by hand and a send
function that decodes every datagram: what leaves, with which numbers, what is held,
kept and delivered, with no network and no timing.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ganglion.runtime._outgoing as outgoing_module
import ganglion.runtime._publishing as publishing_module
from ganglion.errors import EncodeError, LocalError, MessageTooLarge
from ganglion.runtime._outgoing import Outgoing
from ganglion.runtime._publishing import Held, HoldQueue, Publisher, Route
from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.types import Record, message, type_of
from ganglion.wire import Envelope, decode_datagram

NODE = bytes(range(8))
NAME = "test_publishing.Reading"
GROUP = "239.255.61.1"


@message(NAME)
@dataclasses.dataclass
class Reading:
    value: int
    note: str = ""


class Handle:
    def __init__(self, scheduler: Scheduler, callback: Callable[[], object]) -> None:
        self.scheduler, self.callback = scheduler, callback

    def cancel(self) -> None:
        self.scheduler.pending.remove(self)


class Scheduler:
    """An event loop's ``call_soon`` whose iterations the test runs (:meth:`turn`)."""

    def __init__(self) -> None:
        self.pending: list[Handle] = []

    def call_soon(self, callback: Callable[[], object], /) -> Handle:
        handle = Handle(self, callback)
        self.pending.append(handle)
        return handle

    def turn(self) -> None:
        due, self.pending = self.pending, []
        for handle in due:
            handle.callback()


class Wire:
    """The send functions: every datagram decoded, in order."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def __call__(self, datagram: bytes, type_name: str) -> bool:
        self.sent.append(decode_datagram(datagram, key=None))
        return True

    def seqs(self) -> list[int]:
        return [seq for env in self.sent for seq, _ts, _payload in env.messages()]


@dataclasses.dataclass
class Rig:
    pub: Publisher
    out: Outgoing
    wire: Wire
    scheduler: Scheduler
    groups: dict[str, str | None]
    interest: dict[str, bool]
    subs: dict[str, list[Subscription]]

    def subscribe(self) -> list[tuple[Any, MessageInfo]]:
        got: list[tuple[Any, MessageInfo]] = []
        self.subs.setdefault(NAME, []).append(
            Subscription(NAME, callback=lambda m, i: got.append((m, i)), maxsize=8,
                         on_close=lambda _s: None))
        return got


def rig(*, group: str | None = GROUP, interest: bool | None = True,
        pending_limit: int = 1000) -> Rig:
    """A publisher on a real Outgoing; ``interest`` None: no remote_interest (send all)."""
    wire, scheduler = Wire(), Scheduler()
    subs: dict[str, list[Subscription]] = {}
    groups: dict[str, str | None] = {NAME: group}
    wanted = {NAME: bool(interest)}
    pub = Publisher(node_id=NODE, boot=9, replay=False, subs=subs,
                    group_of=lambda name: groups.get(name),
                    remote_interest=None if interest is None else wanted.__getitem__,
                    pending_limit=pending_limit)
    out = Outgoing(node_id=NODE, boot=9, key=None, send=wire, loop=scheduler,
                   after_idle_send=None)
    pub.out = out
    return Rig(pub, out, wire, scheduler, groups, wanted, subs)


def test_the_publish_side_imports_no_event_loop_and_no_socket() -> None:
    for module in (publishing_module, outgoing_module):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {str(node.module) for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert not imported & {"asyncio", "socket", "selectors", "ganglion.runtime._sockets",
                               "ganglion.runtime.transport", "ganglion.runtime._sender"}, \
            module.__name__


def test_a_local_message_info_is_the_keyword_built_one() -> None:
    r = rig()
    got = r.subscribe()
    r.pub.clock_synced = False
    r.pub.publish(Reading(1))  # no route yet
    r.pub.publish(Reading(2))  # on the route
    fingerprint = type_of(Reading).fingerprint
    for seq, (msg, info) in enumerate(got):
        assert msg == Reading(seq + 1)
        assert info == MessageInfo(type_name=NAME, sender=NODE, seq=seq, sent_ns=info.sent_ns,
                                   received_ns=info.sent_ns, boot=9, local=True, source=None,
                                   clock_synced=False, last_value=False, replayed=False,
                                   fingerprint=fingerprint)


def test_a_route_is_a_slotted_object_made_by_the_first_publish() -> None:
    r = rig()
    assert r.pub.routes() == {}
    r.pub.publish(Reading(0))
    route = r.pub.routes()[Reading]
    assert isinstance(route, Route) and not hasattr(route, "__dict__")
    assert (route.name, route.sends, route.fingerprint) == \
        (NAME, True, type_of(Reading).fingerprint)
    assert route.packer is r.out.packer(NAME, route.fingerprint)
    assert route.packer.fits(route.max_payload) and not route.packer.fits(route.max_payload + 1)
    r.pub.set_interest(NAME, False)
    assert r.pub.routes() == {}
    r.pub.publish(Reading(1))
    assert r.pub.routes()[Reading].sends is False  # the quiet route: checked, not sent


def test_idle_then_busy_numbers_and_batches_every_message_once() -> None:
    r = rig()
    for i in range(5):
        r.pub.publish(Reading(i))
    assert [env.count for env in r.wire.sent] == [1]  # idle: the first left alone
    r.scheduler.turn()  # end of the iteration: the rest leave together
    assert [env.count for env in r.wire.sent] == [1, 4]
    assert r.wire.seqs() == [0, 1, 2, 3, 4]
    assert r.pub.published() == {NAME: 5}
    assert r.out.messages == 5


def test_unwanted_messages_are_numbered_kept_and_not_sent_then_a_gap() -> None:
    r = rig(interest=False)
    got = r.subscribe()
    for i in range(3):
        r.pub.publish(Reading(i))
    assert r.wire.sent == [] and [i.seq for _m, i in got] == [0, 1, 2]
    last = r.pub.last_values(NAME)
    assert [seq for _p, _f, seq, _t in last] == [2]
    r.pub.set_interest(NAME, True)
    r.pub.publish(Reading(3))
    r.scheduler.turn()
    assert r.wire.seqs() == [3]  # numbers taken while unwanted are a gap, never reused


def test_messages_wait_for_the_group_and_leave_with_their_numbers() -> None:
    r = rig(group=None, pending_limit=2)
    got = r.subscribe()
    for i in range(3):
        r.pub.publish(Reading(i))
    assert [i.seq for _m, i in got] == [0, 1, 2]  # delivered locally at once
    assert len(r.pub.held) == 2 and r.pub.held.dropped == 1  # the oldest dropped
    assert r.pub.last_values(NAME) == []  # not the network's yet
    assert r.pub.routes() == {}  # no route while messages wait
    r.groups[NAME] = GROUP
    r.pub.release(NAME)
    r.scheduler.turn()
    assert r.wire.seqs() == [1, 2]
    assert [seq for _p, _f, seq, _t in r.pub.last_values(NAME)] == [2]


def test_a_released_type_nobody_wants_sends_nothing_and_keeps_the_newest() -> None:
    r = rig(group=None)
    r.pub.publish(Reading(0))
    r.pub.publish(Reading(1))
    r.pub.set_interest(NAME, False)
    r.groups[NAME] = GROUP
    r.pub.release(NAME)
    r.scheduler.turn()
    assert r.wire.sent == []
    assert [seq for _p, _f, seq, _t in r.pub.last_values(NAME)] == [1]


def test_refused_messages_take_no_number_on_every_path() -> None:
    for interest in (True, False):
        r = rig(interest=interest)
        r.out = r.pub.out = Outgoing(node_id=NODE, boot=9, key=None, send=r.wire,
                                     loop=r.scheduler, after_idle_send=None, max_datagram=200)
        r.pub.publish(Reading(0))
        for _ in range(2):  # without a route, then on it
            with pytest.raises(EncodeError, match="value"):
                r.pub.publish(Reading("nope"))  # type: ignore[arg-type]
            with pytest.raises(MessageTooLarge):
                r.pub.publish(Reading(1, "x" * 300))
        r.pub.publish(Reading(2))
        assert r.pub.published() == {NAME: 2}, interest


def test_a_record_takes_the_general_path_and_reaches_subscribers_as_its_class() -> None:
    r = rig()
    got = r.subscribe()
    r.pub.publish(Record(NAME, {"value": 7, "note": "r"}))
    r.pub.publish(Record(NAME, {"value": 8, "note": "r"}))
    assert r.pub.routes() == {}  # never a route for a Record
    assert [m for m, _i in got] == [Reading(7, "r"), Reading(8, "r")]
    assert r.wire.seqs() == [0]  # the second waits for the end of the iteration
    r.scheduler.turn()
    assert r.wire.seqs() == [0, 1]


def test_publishing_before_the_send_side_exists_is_refused() -> None:
    r = rig()
    r.pub.out = None
    with pytest.raises(LocalError, match="not started"):
        r.pub.publish(Reading(0))
    assert r.pub.published() == {}


def test_the_hold_queue_is_bounded_per_type() -> None:
    queue = HoldQueue(limit=2)
    for seq in range(3):
        queue.hold("a.A", Held(seq, b"\x01", seq, bytes(8)))
    queue.hold("b.B", Held(0, b"\x01", 0, bytes(8)))
    assert (len(queue), queue.dropped) == (3, 1)
    assert queue.waiting("a.A") and not queue.waiting("c.C")
    assert [held.seq for held in queue.take("a.A")] == [1, 2]
    assert not queue.waiting("a.A") and list(queue.take("a.A")) == []
    assert len(queue) == 1
