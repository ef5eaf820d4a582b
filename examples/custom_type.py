"""A custom message type, published by one node and received by another.

Run it (loopback only, nothing leaves the machine):

    python examples/custom_type.py

It starts two nodes in this process, each with its own throw-away state directory,
lets them agree on a group for ``brewery.Fermenter`` and sends a few readings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import tempfile
from dataclasses import dataclass, field

import ganglion
from ganglion import MessageInfo, Node, message


class Stage(enum.Enum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    CONDITIONING = "conditioning"


@dataclass
class Probe:
    bus: int
    rom: str


# The name is what travels on the network; the class is this program's view of it.
# Field types: int, float, bool, str, bytes, datetime, enums, Optional, nested
# dataclasses and lists.
@message("brewery.Fermenter")
@dataclass
class Fermenter:
    vessel: str
    celsius: float
    gravity: float
    stage: Stage
    probe: Probe
    taken: dt.datetime
    note: str | None = None
    history: list[float] = field(default_factory=list)


async def main(port: int = 47900, count: int = 3) -> int:
    """Publish ``count`` readings from one node to another; return how many arrived."""
    received: list[Fermenter] = []
    done = asyncio.Event()

    def on_reading(msg: Fermenter, info: MessageInfo) -> None:
        print(f"received from {info.sender_hex} #{info.seq}: {msg}")
        received.append(msg)
        if len(received) >= count:
            done.set()

    with tempfile.TemporaryDirectory() as state:
        common = {"interface": "127.0.0.1", "port": port, "control_port": port + 1,
                  "discovery": False}
        async with Node(name="cellar", state_dir=f"{state}/cellar", **common) as cellar, \
                Node(name="office", state_dir=f"{state}/office", **common) as office:
            office.subscribe(Fermenter, callback=on_reading)
            group = await office.wait_for_group("brewery.Fermenter")
            print(f"brewery.Fermenter travels on {group}:{port}")
            for i in range(count):
                await cellar.publish(Fermenter(
                    vessel="FV1", celsius=18.5 + i / 10, gravity=1.050 - i / 1000,
                    stage=Stage.PRIMARY, probe=Probe(bus=1, rom="28-00000a1b2c3d"),
                    taken=dt.datetime.now(dt.UTC), history=[18.4, 18.5]))
            await asyncio.wait_for(done.wait(), timeout=10)
    return len(received)


if __name__ == "__main__":
    ganglion.run(main())  # asyncio.run, on uvloop where it is installed
