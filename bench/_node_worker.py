"""Worker process of the node benchmark: one role per process, driven over stdin/stdout.

    python bench/_node_worker.py ROLE '<json config>'

Theory of operation: each role is a small program that the orchestrator
(``bench/node.py``) starts, commands through stdin and hears from through JSON
lines on stdout (see :mod:`_node_common`). Roles built on a :class:`ganglion.Node`
run on asyncio and read stdin in a thread; the plugin roles use the synchronous
:class:`ganglion.client.PluginClient` and poll stdin. Every role ends on ``quit``,
on end of stdin, or when its own deadline (``deadline_s`` in the config) passes,
so a lost orchestrator never leaves a worker behind for long.

Roles: ``member`` (agreement), ``receiver`` (start-up), ``node-pub`` /
``node-sub`` (node-to-node), ``plugin-pub`` / ``plugin-sub`` (through the plugin
bus), ``types`` (a plugin publishing many types), ``watch`` (an observer counting
the agreed map), ``inprocess``, and for the bus against a bare ``zmq.proxy``:
``proxy``, ``raw-pub``, ``raw-sub`` and ``relay`` (plain pyzmq, :mod:`_node_bus`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

# The script's directory comes first on sys.path, but bench/ holds scripts named like
# packages (a script named like a package, e.g. consensus.py, would shadow it): the repository
# comes first, bench/ (for the _node_* helpers) last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

from _node_async import (  # noqa: E402
    run_member,
    run_node_pub,
    run_node_sub,
    run_receiver,
    run_watch,
)
from _node_bus import run_proxy, run_raw_pub, run_raw_sub, run_relay  # noqa: E402
from _node_sync_roles import (  # noqa: E402
    run_inprocess,
    run_plugin_pub,
    run_plugin_sub,
    run_types,
)

ASYNC_ROLES = {
    "member": run_member,
    "receiver": run_receiver,
    "node-pub": run_node_pub,
    "node-sub": run_node_sub,
    "watch": run_watch,
}
SYNC_ROLES = {
    "plugin-pub": run_plugin_pub,
    "plugin-sub": run_plugin_sub,
    "types": run_types,
    "inprocess": run_inprocess,
    "proxy": run_proxy,
    "raw-pub": run_raw_pub,
    "raw-sub": run_raw_sub,
    "relay": run_relay,
}


def stdin_queue(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str]:
    """Feed stdin lines into an asyncio queue from a daemon thread ("quit" at EOF)."""
    queue: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.strip())
        loop.call_soon_threadsafe(queue.put_nowait, "quit")

    threading.Thread(target=pump, daemon=True).start()
    return queue


async def _run_async(role: str, cfg: dict[str, Any]) -> int:
    commands = stdin_queue(asyncio.get_running_loop())
    deadline = float(cfg.get("deadline_s", 120.0))
    try:
        return int(await asyncio.wait_for(ASYNC_ROLES[role](cfg, commands), deadline))
    except TimeoutError:
        print(f"worker {role}: deadline of {deadline:g} s passed", file=sys.stderr)
        return 3


def main(argv: list[str]) -> int:
    """Run the role named in ``argv[1]`` with the JSON config in ``argv[2]``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if len(argv) != 3 or argv[1] not in ASYNC_ROLES.keys() | SYNC_ROLES.keys():
        print(f"usage: {argv[0]} ROLE JSON; roles: {sorted(ASYNC_ROLES | SYNC_ROLES)}",
              file=sys.stderr)
        return 2
    role, cfg = argv[1], json.loads(argv[2])
    started = time.monotonic()
    code = SYNC_ROLES[role](cfg) if role in SYNC_ROLES else asyncio.run(_run_async(role, cfg))
    if code:
        print(f"worker {role} exited {code} after {time.monotonic() - started:.1f} s",
              file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
