"""Invariant checks the simulator runs after every step, and at convergence.

Theory of operation: :class:`Checker` hooks into a :class:`SimNetwork` (its
``ready_hook``) and checks every ``Ready`` as it is carried out, so a violation is
reported at the step that caused it. Checks, by property (see ``docs/consensus.md``):

* Uniqueness (always): no two types share a group in any node's map, and every group is
  assignable.
* Stability (always): a restarted node rebuilds exactly the map it had when it crashed.
  With static views also: a type never changes group at any node (leaving the map
  through a decided ``Retire`` is not a change of group).
* The fold (always): each node's map equals :func:`reference_fold` of its entries, a
  plain re-statement of the rules (no incremental path, no re-fold, no queues) that
  also checks the retire grace: no type is placed on a group another type was retired
  from less than ``GRACE_ENTRIES`` entries before.
* Classic Paxos safety (static views only, where the quorum is a majority of the full
  membership): a ballot carries one value; every learned value was chosen (accepted by
  a majority at one ballot); no slot ever has two learned values anywhere.
* Agreement and catch-up (at convergence): every live node, observers included, knows
  the same entries and so holds the same map.
* Convergence after partitions (at convergence): every group a live member ever held for
  a type since it last saw the type retired is linked to the type's final group by
  decided ``Move`` entries.
* Liveness (at convergence): every type a live node asked for has a group, and no live
  node still has a retire to get decided.
"""

from __future__ import annotations

from collections import defaultdict
from ipaddress import IPv4Address

from consensus.allocator import allocate, is_assignable
from consensus.commands import Assign, Move, Retire, decode_command
from consensus.errors import AddressSpaceExhausted, InvalidCommand
from consensus.groupmap import GRACE_ENTRIES, Entry
from consensus.proposer import quorum_size
from consensus.ready import Ready
from consensus.sim.network import SimNetwork

__all__ = ["Checker", "reference_fold"]


class Checker:
    """Step-by-step and convergence invariant checks for one simulated run."""

    def __init__(self, net: SimNetwork) -> None:
        self.net = net
        self.violations: list[str] = []
        self.learned: dict[int, bytes] = {}
        self.held: dict[tuple[int, str], set[IPv4Address]] = defaultdict(set)
        self.map_at_crash: dict[int, dict[str, IPv4Address]] = {}
        self.decisions = 0
        self.retired: list[tuple[int, str]] = []  # (node, type) retire changes not yet handled
        net.ready_hook = self.on_ready

    def fail(self, text: str) -> None:
        """Record a violation, stamped with the simulated time."""
        self.violations.append(f"t={self.net.now}: {text}")

    def on_ready(self, node_id: int, rd: Ready) -> None:
        """Check one node's ``Ready`` right after the network carried it out."""
        for anomaly in self.net.anomalies:
            self.fail(anomaly)
        self.net.anomalies.clear()
        node = self.net.nodes[node_id]
        if rd.changes:
            groups = node.groups
            if len(set(groups.values())) != len(groups):
                self.fail(f"uniqueness: node {node_id} maps two types to one group: {dict(groups)}")
            for name, group in groups.items():
                if not is_assignable(group):
                    self.fail(f"node {node_id} holds non-assignable {group} for {name}")
            for change in rd.changes:
                if change.new is None:
                    # Retired: whatever group the type gets next is a fresh placement,
                    # owing no Move from the old one.
                    self.held.pop((node_id, change.type_name), None)
                    self.retired.append((node_id, change.type_name))
                    continue
                self.held[(node_id, change.type_name)].add(change.new)
                if change.old is not None and self.net.static_views:
                    self.fail(f"stability: node {node_id} {change.describe()} with static views")
            self._check_fold(node_id)
        if self.net.static_views:
            for slot, value in rd.decided:
                self._check_learned(node_id, slot, value)

    def note_crash(self, node_id: int) -> None:
        """Remember a node's map as it crashes (call before ``net.crash``)."""
        self.map_at_crash[node_id] = dict(self.net.nodes[node_id].groups)

    def check_restart(self, node_id: int) -> None:
        """Check a node rebuilt the map it had at its crash (call after ``net.restart``)."""
        before = self.map_at_crash.pop(node_id, None)
        after = dict(self.net.nodes[node_id].groups)
        if before is not None and before != after:
            self.fail(f"stability: node {node_id} restarted with {after}, had {before}")

    def converged(self, wanted: dict[int, set[str]]) -> bool:
        """Tell whether every live node holds the same entries, with no work left."""
        up = self.net.up()
        if not up:
            return True
        nodes = [self.net.nodes[i] for i in up]
        first = nodes[0]
        key = first.summary
        for node in nodes[1:]:
            if node.summary != key:
                return False
        for i in up:
            if i in self.net.members and self.net.nodes[i].pending_moves():
                return False
            if self.net.nodes[i].pending_retires():
                return False
            if any(t not in first.groups for t in wanted.get(i, ())):
                return False
        return True

    def check_final(self, wanted: dict[int, set[str]]) -> None:
        """Check agreement, move decisions and liveness once the run has converged."""
        up = self.net.up()
        if not up:
            return
        final = self.net.nodes[up[0]]
        entries = final.entries()
        self.decisions = len(entries)
        for i in up[1:]:
            if self.net.nodes[i].entries() != entries:
                self.fail(f"agreement: node {i} entries differ from node {up[0]}")
            if dict(self.net.nodes[i].groups) != dict(final.groups):
                self.fail(f"agreement: node {i} map differs from node {up[0]}")
        moves: dict[str, dict[IPv4Address, set[IPv4Address]]] = defaultdict(lambda: defaultdict(set))
        for _, value in entries:
            try:
                cmd = decode_command(value)
            except InvalidCommand:
                continue
            if isinstance(cmd, Move):
                moves[cmd.type_name][cmd.old].add(cmd.new)
        for (node_id, name), groups in sorted(self.held.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if node_id not in up or node_id in self.net.observers or name not in final.groups:
                continue  # observers never propose, so they owe no Move (docs/consensus.md)
            target = final.groups[name]
            for group in groups:
                if group != target and not _reaches(moves[name], group, target):
                    self.fail(f"move: node {node_id} held {name} on {group}, no decided move to {target}")
        for node_id in up:
            for name in wanted.get(node_id, ()):
                if name not in final.groups:
                    self.fail(f"liveness: {name} wanted by node {node_id} never got a group")
            if self.net.nodes[node_id].pending_retires():
                self.fail(f"liveness: node {node_id} still wants "
                          f"{self.net.nodes[node_id].pending_retires()} retired")

    def _check_fold(self, node_id: int) -> None:
        node = self.net.nodes[node_id]
        expected, problems = reference_fold(node.entries())
        for problem in problems:
            self.fail(f"grace: node {node_id}: {problem}")
        if dict(node.groups) != expected:
            self.fail(f"fold: node {node_id} holds {dict(node.groups)}, its entries give {expected}")

    def _check_learned(self, node_id: int, slot: int, value: bytes) -> None:
        prior = self.learned.setdefault(slot, value)
        if prior != value:
            self.fail(f"safety: node {node_id} learned a second value in slot {slot}")
        majority = quorum_size(len(self.net.members))
        chosen = any(
            s == slot and v == value and len(who) >= majority
            for (s, _), (v, who) in self.net.accepts.items()
        )
        if not chosen:
            self.fail(f"safety: node {node_id} learned an unchosen value in slot {slot}")


def _reaches(edges: dict[IPv4Address, set[IPv4Address]], start: IPv4Address, goal: IPv4Address) -> bool:
    seen = {start}
    todo = [start]
    while todo:
        here = todo.pop()
        if here == goal:
            return True
        for nxt in edges.get(here, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def reference_fold(entries: list[Entry]) -> tuple[dict[str, IPv4Address], list[str]]:
    """Fold entries by the rules of ``docs/consensus.md`` written as plainly as possible.

    Args:
        entries: decided ``(slot, value)`` entries, any order.

    Returns:
        The type -> group map, and a description of every placement that broke the
        retire grace (always empty unless the rules below are changed).
    """
    groups: dict[str, IPv4Address] = {}
    retired: dict[IPv4Address, tuple[str, int]] = {}  # group -> (type, position retired)
    problems: list[str] = []
    for pos, (_, value) in enumerate(sorted(entries), start=1):
        try:
            cmd = decode_command(value)
        except InvalidCommand:
            continue
        name = cmd.type_name
        if isinstance(cmd, Assign) and name not in groups:
            cooling = {g for g, (t, at) in retired.items() if t != name and pos < at + GRACE_ENTRIES}
            blocked = set(groups.values()) | cooling
            group = cmd.group
            if group in blocked:
                try:
                    group = allocate(name, blocked)
                except AddressSpaceExhausted:
                    continue
            held = retired.get(group)
            if held is not None and held[0] != name and pos < held[1] + GRACE_ENTRIES:
                problems.append(f"{name} placed on {group} {pos - held[1]} entries after "
                                f"{held[0]} was retired from it")
            if held is not None and held[0] == name:
                del retired[group]
            groups[name] = group
        elif isinstance(cmd, Retire) and groups.get(name) == cmd.group:
            del groups[name]
            retired[cmd.group] = (name, pos)
    return groups, problems
