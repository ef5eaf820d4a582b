"""Free UDP port pairs for tests: a data port P whose control port P + 1 is free too.

One module, so every test directory draws from the same record of ports already
handed out in this session and two helpers never give out the same pair.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"

_handed_out: set[int] = set()


def free_port_pair() -> int:
    """A UDP port P such that P and P + 1 (the control port) are both free now.

    Returns:
        The data port; the control port is the next one.

    Raises:
        RuntimeError: no such pair was found in 200 tries.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
            if port >= 65534 or port in _handed_out or port + 1 in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind((LOOPBACK, port + 1))
                except OSError:
                    continue
        _handed_out.update((port, port + 1))
        return port
    raise RuntimeError("no free UDP port pair after 200 tries")
