"""The loss harness itself: a share of the datagrams arriving at a host is dropped, the
share can change during a test, and the counters add up -- with nftables and iptables.

Theory of operation: two hosts of a lab; a small Python program on host 1 sends
numbered UDP datagrams to a multicast group (on the data port the rules watch),
another on host 2 counts what arrives. The share dropped must be the share set,
within a generous binomial margin (N = 2,000: the standard deviation at 30 % is
about 1 point), and the receiving host's counters must explain every missing one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from node_support import NetnsLab, wait_sync

pytestmark = pytest.mark.netns

PORT = 47800
GROUP = "239.255.77.1"
SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for i in range(int(sys.argv[1])):
    s.sendto(i.to_bytes(4, "big"), (sys.argv[2], int(sys.argv[3])))
    if i % 50 == 49:
        time.sleep(0.005)  # no socket buffer overflow: only the rule may drop
"""
RECEIVE = """
import json, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[2])))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton(sys.argv[1]), socket.inet_aton("0.0.0.0")))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
got = set()
try:
    while True:
        got.add(int.from_bytes(s.recv(64), "big"))
except TimeoutError:
    pass
print(json.dumps(sorted(got)), flush=True)
"""


def _exchange(lab: NetnsLab, count: int) -> set[int]:
    return _exchange_to(lab, count, (2,))[0]


def _exchange_to(lab: NetnsLab, count: int, hosts: tuple[int, ...]) -> list[set[int]]:
    """Host 1 sends ``count`` numbered datagrams; what each of ``hosts`` received."""
    receivers = [subprocess.Popen([*lab.prefix(h), sys.executable, "-c", RECEIVE, GROUP,
                                   str(PORT), "2.0"], stdout=subprocess.PIPE, text=True)
                 for h in hosts]
    try:
        for receiver in receivers:
            assert receiver.stdout is not None
            assert receiver.stdout.readline().strip() == "ready"
        subprocess.run([*lab.prefix(1), sys.executable, "-c", SEND, str(count), GROUP,
                        str(PORT)], check=True, timeout=60)
        return [set(json.loads(receiver.communicate(timeout=30)[0])) for receiver in receivers]
    finally:
        for receiver in receivers:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait(timeout=10)


@pytest.mark.parametrize("tool", ["nft", "iptables"])
def test_a_set_share_of_arriving_datagrams_is_dropped_and_counted(
        lab: NetnsLab, loss_available: None, tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    for _ in range(3):
        lab.add_host()
    lab.set_loss(30.0, tool=tool)
    count = 2000
    got = _exchange(lab, count)
    lost = count - len(got)
    assert 0.22 * count < lost < 0.38 * count, f"{lost} of {count} lost at 30 %"
    counters = lab.loss_counters(2)
    assert counters.arrived[PORT] == count
    assert counters.dropped[PORT] == lost
    assert lab.loss_counters(1).sent[PORT] == count

    # changed during the test: no loss now, and the totals keep counting
    lab.set_loss(0.0)
    wait_sync(lambda: True, "nothing", 1)
    assert len(_exchange(lab, count)) == count
    counters = lab.loss_counters(2)
    assert counters.arrived[PORT] == 2 * count
    assert counters.dropped[PORT] == lost
    if tool != "nft":
        return

    # shared: what host 1 sends is lost at the bridge, for every receiver alike
    lab.set_shared_loss(30.0, hosts=[1])
    got, got3 = _exchange_to(lab, count, (2, 3))
    assert got == got3  # the same datagrams missing at both receivers
    lost_shared = count - len(got)
    assert 0.22 * count < lost_shared < 0.38 * count, f"{lost_shared} of {count} lost at 30 %"
    assert lab.loss_counters(1).dropped_out[PORT] == lost_shared
    assert lab.loss_counters(2).arrived[PORT] == 3 * count - lost_shared
