"""Two processes exchange 10,000 typed messages over loopback multicast.

Every field of every message is compared with what the publisher sent, and every
counter on both sides is checked: nothing lost, duplicated, reordered or
rejected, and batching actually packed several messages per datagram.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

PEER = Path(__file__).with_name("_two_process_peer.py")
COUNT = 10_000


def _spawn(role: str, port: int, key: bytes | None) -> subprocess.Popen[str]:
    args = [sys.executable, str(PEER), role, str(port), str(COUNT)]
    if key is not None:
        args.append(key.hex())
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.mark.timeout(90)
@pytest.mark.parametrize("signed", [False, True], ids=["plain", "network-key"])
def test_ten_thousand_typed_messages_between_two_processes(free_udp_port: int, signed: bool) -> None:
    key = secrets.token_bytes(32) if signed else None
    sub = _spawn("sub", free_udp_port, key)
    pub = None
    try:
        assert sub.stdout is not None
        assert sub.stdout.readline().strip() == "ready"
        pub = _spawn("pub", free_udp_port, key)
        pub_out, _ = pub.communicate("go\n", timeout=60)
        sub_out, _ = sub.communicate(timeout=60)
    finally:
        for proc in (sub, pub):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert pub.returncode == 0 and sub.returncode == 0
    sent = json.loads(pub_out.strip().splitlines()[-1])
    got = json.loads(sub_out.strip().splitlines()[-1])

    assert sent["published"] == COUNT
    assert sent["sender_dropped"] == 0
    assert sent["datagrams"] < COUNT / 4, "batching should pack several messages per datagram"

    assert got["mismatches"] == []
    assert got["count"] == COUNT
    assert got["seq_equals_index"]
    assert got["senders"] == [sent["node"]]
    assert got["received"] == COUNT
    assert got["streams"] == [[sent["node"], "test.Reading", COUNT, 0]]
    for counter in ("lost", "duplicates", "reordered", "stale", "decode_errors", "bad_mac",
                    "schema_mismatches"):
        assert got[counter] == 0, counter
    assert got["sent_ns_ok"]
    assert got["rcvbuf"] > 0
