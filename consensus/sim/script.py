"""A small command language for golden traces (raft's ``interaction_test.go`` style).

A script is a sequence of blocks; each block is one command, a ``----`` line, and the
output that command produced::

    add-nodes 3
    ----
    ok

    propose 1 brewery.Temperature
    stabilize
    ----
    ...

Commands (node ids are integers; members are numbered from 1):

* ``add-nodes N [static]`` - N members on a network that delivers only when told to;
  ``static`` gives every member the full membership forever.
* ``add-observer ID`` - an observer node.
* ``propose ID TYPE`` - node ID asks for a group for TYPE.
* ``retire ID TYPE`` - node ID asks for TYPE to be retired (observers ask the leader).
* ``deliver [n=K]`` / ``drop [n=K]`` - deliver or drop the next K datagrams in flight
  (default 1), in send order.
* ``stabilize`` - deliver until nothing is in flight.
* ``tick [n=K]`` - tick every running node K times (no delivery).
* ``crash ID [lose-outbox]``, ``restart ID``, ``join ID``, ``leave ID``.
* ``partition A,B C,D`` / ``heal`` - cut the network into sides / remove every cut.
* ``maps`` - print every running node's map; ``log ID`` - print a node's decided entries.

Output lines are the simulator's trace lines (without the tick) plus what ``maps`` and
``log`` print. :func:`run_script` returns the script text with fresh outputs, so the
test compares it to the file and ``--update-golden`` writes it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import ConsensusError
from consensus.node import Config
from consensus.sim.network import SimNetwork

__all__ = ["Block", "ScriptError", "parse_script", "render_script", "run_script"]

SEPARATOR = "----"


class ScriptError(ConsensusError, ValueError):
    """A golden script has a syntax error or an unknown command."""


@dataclass(frozen=True, slots=True)
class Block:
    """One command block: the command lines and the output recorded for them."""

    commands: tuple[str, ...]
    output: tuple[str, ...]


def parse_script(text: str) -> list[Block]:
    """Split a script into blocks.

    Args:
        text: the file's contents.

    Returns:
        The blocks in order.

    Raises:
        ScriptError: a block has no ``----`` line.
    """
    blocks: list[Block] = []
    for chunk in text.strip("\n").split("\n\n"):
        lines = chunk.split("\n")
        if all(line.startswith("#") for line in lines):
            continue
        if SEPARATOR not in lines:
            raise ScriptError(f"block without {SEPARATOR!r}: {lines[0]!r}")
        cut = lines.index(SEPARATOR)
        blocks.append(Block(tuple(lines[:cut]), tuple(lines[cut + 1 :])))
    return blocks


def render_script(blocks: list[Block]) -> str:
    """Return the text of a script (the inverse of :func:`parse_script`)."""
    return "\n\n".join("\n".join([*b.commands, SEPARATOR, *b.output]) for b in blocks) + "\n"


def run_script(text: str, *, seed: int = 0) -> str:
    """Run every block of a script and return the script with the outputs produced.

    Args:
        text: the script (outputs in it are ignored).
        seed: the network seed (only the nodes' RNGs draw from it).

    Returns:
        The script text with fresh outputs.
    """
    runner = _Runner(seed)
    out = []
    for block in parse_script(text):
        lines: list[str] = []
        for command in block.commands:
            lines += runner.run(command)
        out.append(Block(block.commands, tuple(lines) or ("ok",)))
    return render_script(out)


def _config(node_id: int, observer: bool) -> Config:
    return Config(node_id=node_id, observer=observer, heartbeat_ticks=5, retry_ticks=5, backoff_ticks=0)


class _Runner:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.net: SimNetwork | None = None
        self.observers: list[int] = []

    def run(self, command: str) -> list[str]:
        words = command.split()
        if not words or words[0].startswith("#"):
            return []  # comments are kept in the block and echoed back unchanged
        verb, args = words[0], words[1:]
        handler = getattr(self, "do_" + verb.replace("-", "_"), None)
        if handler is None:
            raise ScriptError(f"unknown command {verb!r}")
        net = self.net
        mark = len(net.trace) if net is not None else 0
        extra: list[str] = handler(args)
        net = self.net
        if net is None:
            return extra
        events = [line.format().split(None, 1)[1] for line in net.trace[mark:]]
        return events + extra

    @property
    def _net(self) -> SimNetwork:
        if self.net is None:
            raise ScriptError("add-nodes first")
        return self.net

    @staticmethod
    def _count(args: list[str]) -> int:
        for arg in args:
            if arg.startswith("n="):
                return int(arg[2:])
        return 1

    def do_add_nodes(self, args: list[str]) -> list[str]:
        self.net = SimNetwork(
            range(1, int(args[0]) + 1), seed=self.seed, observers=self.observers,
            static_views="static" in args, make_config=_config, auto_deliver=False,
        )
        return []

    def do_add_observer(self, args: list[str]) -> list[str]:
        self.observers.append(int(args[0]))
        return []

    def do_propose(self, args: list[str]) -> list[str]:
        self._net.propose(int(args[0]), args[1])
        return []

    def do_retire(self, args: list[str]) -> list[str]:
        self._net.retire(int(args[0]), args[1])
        return []

    def do_deliver(self, args: list[str]) -> list[str]:
        for _ in range(self._count(args)):
            self._net.deliver_next()
        return []

    def do_drop(self, args: list[str]) -> list[str]:
        for _ in range(self._count(args)):
            self._net.deliver_next(drop=True)
        return []

    def do_stabilize(self, args: list[str]) -> list[str]:
        self._net.stabilize(limit=10_000)
        return []

    def do_tick(self, args: list[str]) -> list[str]:
        for _ in range(self._count(args)):
            self._net.tick()
        return []

    def do_crash(self, args: list[str]) -> list[str]:
        self._net.crash(int(args[0]), lose_outbox="lose-outbox" in args)
        return []

    def do_restart(self, args: list[str]) -> list[str]:
        self._net.restart(int(args[0]))
        return []

    def do_join(self, args: list[str]) -> list[str]:
        self._net.join(int(args[0]))
        return []

    def do_leave(self, args: list[str]) -> list[str]:
        self._net.leave(int(args[0]))
        return []

    def do_partition(self, args: list[str]) -> list[str]:
        self._net.partition(*[[int(x) for x in side.split(",")] for side in args])
        return []

    def do_heal(self, args: list[str]) -> list[str]:
        self._net.heal()
        return []

    def do_maps(self, args: list[str]) -> list[str]:
        lines = []
        for node_id in self._net.up():
            node = self._net.nodes[node_id]
            shown = ", ".join(f"{t}={g}" for t, g in sorted(node.groups.items())) or "(empty)"
            moved = "".join(f" [{t} moved from {g}]" for t, g in sorted(node.moved_from.items()))
            held = node.reserved_groups
            reserved = "".join(f" [{g} reserved for {t}]" for g, t in sorted(held.items()))
            lines.append(f"node {node_id}: {shown}{moved}{reserved}")
        return lines

    def do_log(self, args: list[str]) -> list[str]:
        node = self._net.nodes[int(args[0])]
        return [f"slot {slot}: {value.decode('ascii', 'replace')}" for slot, value in node.entries()]
