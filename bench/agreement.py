"""Benchmark of the consensus package; one command, prints the issue's figures.

    python bench/agreement.py [--quick]

1. Decisions per second of the state machine alone: messages are handed from node to
   node as objects (no encoding, no simulator), for a lone node and for 3 nodes.
2. Messages per decision and simulated rounds to decide, for 3, 5, 10 and 25 nodes,
   on the simulator with a one-tick delay (one round = one message hop); every message
   goes through CBOR there.
3. Time to assign 1,000 types: wall clock and simulated ticks on a 5-node cluster, and
   wall clock for the state machine alone.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.messages import Message, Status
from consensus.node import Config, PaxosNode
from consensus.sim.network import SimNetwork


def _in_process(ids: tuple[int, ...], types: int) -> tuple[float, int]:
    """Assign ``types`` types through ``ids`` nodes with direct delivery; return (s, decisions)."""
    nodes = {i: PaxosNode(Config(node_id=i, heartbeat_ticks=0), rng=random.Random(i)) for i in ids}
    for node in nodes.values():
        node.set_view(ids)
    queue: deque[tuple[int, Message]] = deque()

    def flush(i: int) -> None:
        node = nodes[i]
        if node.has_ready():
            rd = node.ready()
            rd.mark_persisted()  # an in-memory journal: nothing to wait for
            for env in rd.outbox:
                targets = [env.to] if env.to is not None else [j for j in ids if j != i]
                queue.extend((dst, env.msg) for dst in targets)
            node.advance(rd)

    began = time.perf_counter()
    leader = nodes[min(ids)]
    for k in range(types):
        leader.propose(f"bench.T{k}")
        flush(min(ids))
        while queue:
            dst, msg = queue.popleft()
            nodes[dst].step(msg)
            flush(dst)
    elapsed = time.perf_counter() - began
    assert all(len(n.groups) == types for n in nodes.values())
    return elapsed, types


def _simulated(n: int, types: int) -> dict[str, float]:
    """Assign ``types`` types one after another on an n-node simulated cluster."""
    net = SimNetwork(
        range(1, n + 1), seed=n, trace=False,
        make_config=lambda i, obs: Config(node_id=i, observer=obs, heartbeat_ticks=1000),
    )
    for _ in range(2):
        net.tick()
    protocol = [0]
    deliveries = [0]

    def hook(src: int, dst: int, msg: Message) -> bool:
        if not isinstance(msg, Status):
            deliveries[0] += 1
        return True

    net.msg_hook = hook
    rounds = []
    sent_before = net.sent
    began = time.perf_counter()
    for k in range(types):
        name = f"bench.T{k}"
        start = net.now
        net.propose(n, name)  # from the highest id: a follower, so the forward is counted
        while not all(name in node.groups for node in net.nodes.values()):
            net.tick()
        rounds.append(net.now - start)
    wall = time.perf_counter() - began
    protocol[0] = net.sent - sent_before
    return {
        "sent": protocol[0] / types,
        "delivered": deliveries[0] / types,
        "rounds": sum(rounds) / len(rounds),
        "ticks": float(net.now),
        "wall": wall,
    }


def main() -> int:
    """Run every benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    opts = parser.parse_args()
    types = 100 if opts.quick else 1000

    print(f"consensus benchmark (python {sys.version.split()[0]})")
    print("\n1. decisions per second, state machine alone (no encoding, no simulator)")
    for ids in ((1,), (1, 2, 3)):
        elapsed, decisions = _in_process(ids, types)
        print(f"   {len(ids)} node(s): {decisions / elapsed:10.0f} decisions/s  ({decisions} in {elapsed:.2f} s)")

    print("\n2. per decision on the simulator (1-tick delay, CBOR on every message)")
    print("   nodes  messages sent  deliveries  rounds to decide (ticks)")
    for n in (3, 5, 10, 25):
        stats = _simulated(n, 10 if opts.quick else 50)
        print(f"   {n:5d}  {stats['sent']:13.1f}  {stats['delivered']:10.1f}  {stats['rounds']:8.1f}")

    print(f"\n3. time to assign {types} types")
    elapsed, _ = _in_process((1, 2, 3, 4, 5), types)
    print(f"   state machine alone, 5 nodes: {elapsed:.2f} s")
    stats = _simulated(5, types)
    print(f"   simulated 5-node cluster: {stats['ticks']:.0f} ticks (one after another), "
          f"{stats['wall']:.2f} s wall clock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
