"""A program's node, as a user writes one: run by tests in another process (or namespace).

Usage: ``program_node_child.py NAME SECONDS [--interface I] [--port P] [--until-peer N] [--no-mdns]``

Starts ``Node(name=NAME)`` with nothing else chosen unless given (so the interface,
the ports and the state directory are the API's defaults), prints one JSON line
with what it chose, then publishes an ``apitest.Hello`` every 0.1 s and collects
the ids of the *other* nodes whose hellos arrive. It ends when it has heard another
node and has published for one more second since (so that node hears it too), or
when a peer called ``--until-peer`` is live, or after SECONDS; the last JSON line
says whose hellos it heard and which peers it saw live at some point (a peer that
ended first has said goodbye by then). Exit code 0 either way: the test reads the lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from ganglion import Node, message


@message("apitest.Hello")
@dataclass
class Hello:
    name: str
    n: int


async def main(name: str, seconds: float, interface: str | None, port: int | None,
               until_peer: str | None, discovery: bool) -> None:
    heard: set[str] = set()
    peers: set[str] = set()
    ports = {} if port is None else {"port": port, "control_port": port + 1}
    async with Node(name=name, interface=interface, discovery=discovery, **ports) as node:
        print(json.dumps({"interface": node.interface, "interface_name": node.interface_name,
                          "state_dir": str(node.state_dir), "id": node.node_id.hex()}),
              flush=True)

        def on_hello(msg: Any, info: Any) -> None:
            if info.sender_hex != node.node_id.hex():
                heard.add(info.sender_hex)

        node.subscribe(Hello, callback=on_hello)
        deadline = time.monotonic() + seconds
        heard_at: float | None = None
        n = 0
        while time.monotonic() < deadline:
            await node.publish(Hello(name=name, n=n))
            n += 1
            if heard and heard_at is None:
                heard_at = time.monotonic()
            if heard_at is not None and time.monotonic() - heard_at > 1.0:
                break
            peers.update(p.name for p in node.peers())
            if until_peer is not None and until_peer in peers:
                break
            await asyncio.sleep(0.1)
        print(json.dumps({"heard": sorted(heard),
                          "peers": sorted(peers)}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--interface")
    parser.add_argument("--port", type=int)
    parser.add_argument("--until-peer")
    parser.add_argument("--no-mdns", action="store_true")  # on loopback outside a namespace
    args = parser.parse_args()
    asyncio.run(main(args.name, args.seconds, args.interface, args.port, args.until_peer,
                     not args.no_mdns))
