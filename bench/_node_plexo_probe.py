"""Measure pyplexo's in-process publish -> subscribe rate. Runs under pyplexo's own venv.

    /tmp/ganglion-bench-plexo-venv/bin/python bench/_node_plexo_probe.py COUNT

Theory of operation: this file imports nothing from ganglion or the benchmark
(it runs with the interpreter of a separate venv where ``plexo==1.0.0`` is
installed). It sends the same message shape as ganglion's in-process measurement
(``seq: int, celsius: float, sensor: str``, a dataclass) through pyplexo's
in-process paths with one reacting subscriber, awaiting each ``transmit`` as
pyplexo's API requires: ``GanglionInproc`` directly (its fastest in-process
path) and a ``Plexus`` (what an application normally uses). The rate is
messages delivered to the reactant over the wall time of the send loop. It
also reports whether this pyzmq has PGM, which pyplexo's multicast needs.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class InProcess:
    """The same shape as bench/inprocess.py's message."""

    seq: int
    celsius: float
    sensor: str


async def _rate(kind: str, count: int) -> float:
    from plexo.axon import Axon  # type: ignore[import-not-found,unused-ignore]
    from plexo.codec.pickle_codec import PickleCodec  # type: ignore[import-not-found,unused-ignore]
    from plexo.ganglion.inproc import GanglionInproc  # type: ignore[import-not-found,unused-ignore]
    from plexo.namespace.namespace import Namespace  # type: ignore[import-not-found,unused-ignore]
    from plexo.neuron.neuron import Neuron  # type: ignore[import-not-found,unused-ignore]
    from plexo.plexus import Plexus  # type: ignore[import-not-found,unused-ignore]

    neuron = Neuron(InProcess, Namespace(["bench", "plexo"]), PickleCodec())
    ganglion: Any = Plexus() if kind == "plexus" else GanglionInproc()
    received = 0

    async def react(_data: Any, _neuron: Any, _reaction_id: Any = None) -> None:
        nonlocal received
        received += 1

    await ganglion.adapt(neuron, reactants=[react])
    axon = Axon(neuron, ganglion)
    await axon.transmit(InProcess(-1, 0.0, "warm-up"))
    received = 0
    start = time.perf_counter()
    for seq in range(count):
        await axon.transmit(InProcess(seq, 21.5, "probe-1"))
    elapsed = time.perf_counter() - start
    if received != count:
        raise RuntimeError(f"{kind}: delivered {received} of {count}")
    return count / elapsed


def main(argv: list[str]) -> int:
    """Print ``{"ganglion_inproc": msg/s, "plexus": msg/s, "pgm": bool, "version": str}``."""
    count = int(argv[1]) if len(argv) > 1 else 20_000
    from importlib.metadata import version

    import zmq

    out = {kind: asyncio.run(_rate(kind, count)) for kind in ("ganglion_inproc", "plexus")}
    print(json.dumps({**out, "pgm": bool(zmq.has("pgm")), "version": version("plexo")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
