"""Deterministic verification of the consensus state machine.

* :class:`SimNetwork` - real ``PaxosNode`` objects over a simulated network (delay, loss,
  duplication, reordering, partitions, crashes, joins and leaves) driven by one seed.
* :class:`Checker` - the invariants, checked after every step and at convergence.
* :func:`run_seed` - one random fault scenario; ``python -m consensus.sim`` runs many.
* ``python -m consensus.sim.explore`` - exhaustive search of small configurations.
* :func:`run_script` - the golden-trace command language used by the tests.
"""

from __future__ import annotations

from consensus.sim.invariants import Checker
from consensus.sim.network import Faults, SimNetwork, TraceLine
from consensus.sim.scenario import RunResult, replay_command, run_seed
from consensus.sim.script import run_script

__all__ = [
    "Checker",
    "Faults",
    "RunResult",
    "SimNetwork",
    "TraceLine",
    "replay_command",
    "run_script",
    "run_seed",
]
