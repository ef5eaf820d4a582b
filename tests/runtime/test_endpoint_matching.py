"""Endpoint side of publisher-side matching (``remote_interest``), over loopback.

The quiet path (nobody else wants the type) must still number, deliver locally,
keep the last value and refuse what cannot fit; switching interest on must send
with the numbers the messages got at publish.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import cbor2
import pytest
from waits import run, until

from ganglion.errors import EncodeError, MessageTooLarge
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, lookup, message
from ganglion.wire import Packer

pytestmark = pytest.mark.usefixtures("multicast_loopback")

LO = "127.0.0.1"


@message("test_matching_ep.Reading")
@dataclasses.dataclass
class Reading:
    value: int
    note: str = ""


def test_quiet_type_is_delivered_numbered_and_kept_but_not_sent(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        changes: list[tuple[str, bool]] = []
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            remote_interest=lambda _n: False,
                            on_subscriptions=lambda n, s: changes.append((n, s))) as tx, \
                Endpoint(interface=LO, port=free_udp_port,
                         group_for=lambda _n: test_group) as rx:
            got: list[tuple[Any, MessageInfo]] = []
            remote: list[tuple[Any, MessageInfo]] = []
            sub = tx.subscribe(Reading, lambda m, i: got.append((m, i)))
            rx.subscribe(Reading, lambda m, i: remote.append((m, i)))
            assert changes == [("test_matching_ep.Reading", True)]
            msgs = [Reading(i) for i in range(5)]
            for m in msgs:
                assert tx.publish(m) == "test_matching_ep.Reading"
            assert [(m, i.seq, i.local) for m, i in got] == [(m, n, True) for n, m in
                                                              enumerate(msgs)]
            assert got[0][0] is msgs[0]  # the object itself
            assert tx.stats().datagrams_sent == 0 and tx.stats().published == 5
            payload, _fp, seq, _ts = tx.last_published("test_matching_ep.Reading") or (b"", 0, 0, 0)
            assert (cbor2.loads(payload), seq) == ({"value": 4, "note": ""}, 4)
            tx.set_remote_interest("test_matching_ep.Reading", True)
            tx.publish(Reading(5))
            await tx.flush()
            await until(lambda: len(remote) == 1, "the remote message", timeout=5.0,
                        interval=0.002)
            assert remote[0][1].seq == 5 and remote[0][0] == Reading(5)
            assert tx.stats().datagrams_sent == 1
            assert tx.remote_interest() == {"test_matching_ep.Reading": True}
            sub.close()
            assert changes[-1] == ("test_matching_ep.Reading", False)

    run(main(), timeout=15.0)


def test_quiet_publish_still_refuses_bad_and_too_large_messages(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            remote_interest=lambda _n: False, max_datagram=200) as tx:
            seqs: list[int] = []
            tx.subscribe(Reading, lambda _m, i: seqs.append(i.seq))
            tx.publish(Reading(1))
            with pytest.raises(MessageTooLarge):
                tx.publish(Reading(2, "x" * 300))
            with pytest.raises(MessageTooLarge):
                tx.publish(Reading(2, "\u00e9" * 100))  # 200 bytes of UTF-8
            with pytest.raises(EncodeError):
                tx.publish(Reading("two"))  # type: ignore[arg-type]
            # a message whose size bound exceeds the budget but whose exact size fits
            mtype = lookup("test_matching_ep.Reading")
            assert mtype is not None
            packer = Packer(node_id=tx.node_id, type_name=mtype.name,
                            fingerprint=mtype.fingerprint, max_datagram=200)
            near = next(Reading(3, "y" * n) for n in range(200, 0, -1)
                        if packer.fits(len(mtype.encode(Reading(3, "y" * n)))))
            assert not packer.fits(mtype.size_bound(near))
            tx.publish(near)
            tx.publish(Record("test_matching_ep.Reading", {"value": 4}))
            assert seqs == [0, 1, 2]
            assert tx.stats().datagrams_sent == 0

    run(main(), timeout=15.0)


def test_endpoint_without_remote_interest_sends_everything(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with Endpoint(interface=LO, port=free_udp_port,
                            group_for=lambda _n: test_group) as tx:
            tx.set_remote_interest("test_matching_ep.Reading", False)  # ignored
            tx.publish(Reading(1))
            await tx.flush()
            assert tx.stats().datagrams_sent == 1

    run(main(), timeout=15.0)


def test_last_subscriber_leaving_rebases_the_senders_sequences(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            remote_interest=lambda _n: True) as tx, \
                Endpoint(interface=LO, port=free_udp_port,
                         group_for=lambda _n: test_group) as rx:
            seen: list[int] = []
            sub = rx.subscribe(Reading, lambda _m, i: seen.append(i.seq))
            tx.publish(Reading(0))
            await until(lambda: len(seen) == 1, "the first message", timeout=5.0,
                        interval=0.002)
            sub.close()
            tx.set_remote_interest("test_matching_ep.Reading", False)
            for i in range(10):
                tx.publish(Reading(i))
            tx.set_remote_interest("test_matching_ep.Reading", True)
            rx.subscribe(Reading, lambda _m, i: seen.append(i.seq))
            await asyncio.sleep(0.01)
            tx.publish(Reading(11))
            await until(lambda: len(seen) == 2, "the second message", timeout=5.0,
                        interval=0.002)
            assert seen == [0, 11]
            assert rx.stats().lost == 0

    run(main(), timeout=15.0)
