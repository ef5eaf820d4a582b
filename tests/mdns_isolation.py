"""When mDNS tests may run: one rule for tests/runtime/test_discovery.py and the pairing
tests. mDNS sends to 224.0.0.251:5353 on the interfaces it uses, so those tests run
only inside a private network namespace (GANGLION_TEST_NETNS, set by the test command)
or where no interface but loopback is up."""

from __future__ import annotations

import os
from pathlib import Path


def mdns_isolation_problem() -> str | None:
    """Why mDNS tests must not run here, or None when they may."""
    if os.environ.get("GANGLION_TEST_NETNS"):
        return None
    try:
        names = [p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo"]
        up = [n for n in names
              if int(Path(f"/sys/class/net/{n}/flags").read_text(), 16) & 0x1]
    except (OSError, ValueError) as exc:
        return f"cannot list interfaces ({exc})"
    if up:
        return (f"mDNS tests send to 224.0.0.251:5353 and {', '.join(sorted(up))} is up; "
                "run them in a private namespace with GANGLION_TEST_NETNS set")
    return None
