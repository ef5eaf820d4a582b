"""Bursts of large messages between two hosts: trains (UDP GSO) over a real veth and bridge.

Theory of operation: the ``lab`` fixture joins two network namespaces by veth pairs
to a bridge (see ``node_support.NetnsLab``). An ``Endpoint`` on host 2 publishes
bursts of 1 KiB messages, which cannot share datagrams, so under load they leave in
trains: one segmented ``sendmsg`` per run, cut into datagrams by the kernel before
(or, with offload, at) the veth, or one ``sendto`` each where the interface refuses
GSO. An ``Endpoint`` on host 1 must get every message once, in order, either way.
Both run as subprocesses inside their namespaces, killed by PID at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from node_support import NetnsLab

pytestmark = pytest.mark.timeout(90)

GROUP = "239.255.77.7"
COUNT, BURST = 3000, 30

_COMMON = """
import asyncio, json, sys, time
from dataclasses import dataclass
import ganglion
from ganglion import message
from ganglion.runtime.endpoint import Endpoint

@message("test_bursts.Big")
@dataclass
class Big:
    n: int
    data: bytes

ADDRESS, PORT, COUNT, BURST = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
GROUP = sys.argv[5]
"""

_SUBSCRIBER = _COMMON + """
async def main():
    got = []
    async with Endpoint(interface=ADDRESS, port=PORT, group_for=lambda _: GROUP) as ep:
        ep.subscribe(Big, callback=lambda msg, info: got.append((msg.n, info.seq, msg.data)))
        print("READY", flush=True)
        deadline, last = time.monotonic() + 30, 0
        while len(got) < COUNT and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if len(got) != last:
                last, deadline = len(got), time.monotonic() + 5
        stats = ep.stats()
        print(json.dumps({"n": [n for n, _s, _d in got], "seq": [s for _n, s, _d in got],
                          "intact": all(d == bytes([n % 251]) * 1000 for n, _s, d in got),
                          "lost": stats.lost, "coalesced": stats.receiver.coalesced}))

ganglion.run(main())
"""

_PUBLISHER = _COMMON + """
async def main():
    async with Endpoint(interface=ADDRESS, port=PORT, group_for=lambda _: GROUP) as ep:
        for n in range(COUNT):
            ep.publish(Big(n, bytes([n % 251]) * 1000))
            if n % BURST == BURST - 1:
                await asyncio.sleep(0.001)  # bursts, not a flood the receiver cannot take
        await ep.flush()
        sender = ep.stats().sender
        print(json.dumps({"sent": sender.sent, "segmented": sender.segmented,
                          "gso": sender.gso, "dropped": sender.dropped}))

ganglion.run(main())
"""


def test_bursts_of_large_messages_cross_hosts_complete_and_in_order(lab: NetnsLab,
                                                                     tmp_path: Path) -> None:
    lab.add_host()
    lab.add_host()
    sub_script, pub_script = tmp_path / "sub.py", tmp_path / "pub.py"
    sub_script.write_text(textwrap.dedent(_SUBSCRIBER))
    pub_script.write_text(textwrap.dedent(_PUBLISHER))
    repo = str(Path(__file__).resolve().parents[2])
    args = ["47930", str(COUNT), str(BURST), GROUP]
    subscriber = subprocess.Popen(
        [*lab.prefix(1), sys.executable, str(sub_script), lab.address(1), *args],
        stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert subscriber.stdout is not None
        assert subscriber.stdout.readline().strip() == "READY"
        published = subprocess.run(
            [*lab.prefix(2), sys.executable, str(pub_script), lab.address(2), *args],
            capture_output=True, text=True, cwd=repo, timeout=60, check=True)
        received = json.loads(subscriber.communicate(timeout=60)[0])
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    sent = json.loads(published.stdout)
    assert sent["sent"] == COUNT and sent["dropped"] == 0
    if sent["gso"]:
        assert sent["segmented"] > COUNT // 2  # most left in trains
    assert received["n"] == list(range(COUNT))
    assert received["seq"] == list(range(COUNT))
    assert received["intact"] and received["lost"] == 0
