"""Guards of the compiled paths (ganglion._speedups) against a quiet fall back to Python.

The extension reads private attributes of Python classes by name, and some of them in
place at the offset their ``__slots__`` member gives. Were one renamed, the compiled
path would quietly hand its work back to Python (or stop at run time), and every
behaviour test would still pass, only slower. So these tests ask the extension what it
reads (``NAMES``) and what its lanes resolved (``Lane.tracker_slots``,
``SendLane.packer_slots``), check each against the real classes of a running endpoint,
and send real messages with the Python methods the lanes replace made to fail. The
sources are also compiled with ``-Wall -Wextra -Werror``, so a warning fails the suite.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _lane_harness import speedups

from ganglion.runtime._incoming import Incoming
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.sequence import SequenceTracker
from ganglion.types import message
from ganglion.types._decodegen import FALLBACK
from ganglion.wire import Packer

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(speedups is None, reason="ganglion._speedups is not built")]

SOURCES = Path(__file__).resolve().parents[2] / "ganglion" / "_c"


@message("test_speedups_guard.Reading")
@dataclass
class Reading:
    n: int
    celsius: float
    probe: str


def owner_class(owner: str) -> type:
    """The class a ``NAMES`` row names ("module:Class")."""
    module, _, name = owner.partition(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def live(cls: type) -> list[Any]:
    """Every live instance of exactly ``cls``."""
    return [o for o in gc.get_objects() if type(o) is cls]


def missing(cls: type, name: str, instances: list[Any]) -> str | None:
    """Why ``name`` is not an attribute of ``cls`` (class or every live instance); None
    when it is."""
    if hasattr(cls, name):
        return None
    if not instances:
        return f"{cls.__qualname__}.{name}: not on the class, and no live instance to ask"
    if all(hasattr(o, name) for o in instances):
        return None
    return f"{cls.__qualname__}.{name}: neither on the class nor on its instances"


def exchange(interface: str, port: int, inspect: Callable[[], None],
             monkeypatch: pytest.MonkeyPatch | None = None) -> list[Reading]:
    """Runs two endpoints on loopback that exchange three messages, calls ``inspect``
    while they still run, then (with ``monkeypatch``) refuses the Python methods the
    lanes replace and sends three more. Returns what arrived."""
    got: list[Reading] = []

    async def send(first: int) -> None:
        for i in range(first, first + 3):
            tx.publish(Reading(i, i / 2, "p"))
            await asyncio.sleep(0.02)  # idle again: each goes alone
        for _ in range(250):
            if len(got) == first + 3:
                break
            await asyncio.sleep(0.02)

    async def main() -> None:
        nonlocal tx
        async with Endpoint(interface=interface, port=port) as rx, \
                Endpoint(interface=interface, port=port) as tx:
            rx.subscribe(Reading, callback=lambda m, i: got.append(m))
            await asyncio.sleep(0.1)
            await send(0)
            inspect()
            if monkeypatch is not None:
                forbid(monkeypatch)
                await send(3)
                monkeypatch.undo()

    tx: Endpoint
    asyncio.run(asyncio.wait_for(main(), 20))
    return got


def test_every_name_the_extension_reads_is_an_attribute_of_its_class(
        multicast_loopback: str, free_udp_port: int) -> None:
    owners = {owner for owner, _name in speedups.NAMES}
    # The table covers the classes the C sources reach (a new one is added there too).
    assert owners == {"ganglion.runtime._incoming:Incoming", "ganglion.sequence:SequenceTracker",
                      "ganglion.runtime.subscription:Subscription",
                      "ganglion.wire._packer:Packer", "ganglion.runtime._sender:MulticastSender",
                      "ganglion.runtime._outgoing:Outgoing", "ganglion.runtime.transport:_Slot",
                      "ganglion.runtime.subscription:MessageInfo"}

    problems: list[str | None] = []

    def check() -> None:
        for owner, name in speedups.NAMES:
            cls = owner_class(owner)
            problems.append(missing(cls, name, live(cls)))

    assert len(exchange(multicast_loopback, free_udp_port, check)) == 3
    assert len(problems) == len(speedups.NAMES)
    assert [p for p in problems if p] == []


def test_every_name_in_the_c_sources_is_in_the_table() -> None:
    # The table is what the sources intern: a string interned outside it is not checked.
    text = "".join(p.read_text() for p in sorted(SOURCES.glob("*.c")))
    assert text.count("PyUnicode_InternFromString") == 1
    assert "PyObject_GetAttrString" not in text and "PyObject_SetAttrString" not in text
    assert "PyObject_CallMethod(" not in text


def test_the_lanes_resolve_every_slot_they_read_in_place(
        multicast_loopback: str, free_udp_port: int) -> None:
    found: list[list[Any]] = []

    def check() -> None:
        found.extend((live(speedups.Lane), live(speedups.SendLane)))

    assert len(exchange(multicast_loopback, free_udp_port, check)) == 3
    lanes, send_lanes = found
    assert lanes and send_lanes
    names = set(speedups.NAMES)
    for lane in lanes:
        slots = lane.tracker_slots
        assert set(slots) <= {n for o, n in names if o.endswith(":SequenceTracker")}
        assert len(slots) == 7 and all(off > 0 for off in slots.values()), slots
    for send_lane in send_lanes:
        slots = send_lane.packer_slots
        assert set(slots) <= {n for o, n in names if o.endswith(":Packer")}
        assert len(slots) == 9 and all(off > 0 for off in slots.values()), slots
    # Distinct offsets: each name resolved to its own slot.
    assert len(set(lanes[0].tracker_slots.values())) == 7
    assert len(set(send_lanes[0].packer_slots.values())) == 9


def renamed(cls: type, old: str) -> type:
    """A class with ``cls``'s slots, one of them renamed (what a refactoring might do)."""
    slots = tuple(f"{n}_renamed" if n == old else n for n in cls.__slots__)
    return type(f"Renamed{cls.__name__}", (), {"__slots__": slots})


def test_a_renamed_slot_is_reported_unresolved_and_missing() -> None:
    # What the two tests above would see after a rename: they can fail.
    tracker_cls = renamed(SequenceTracker, "_mask")
    lane = speedups.Lane(Incoming.__new__(Incoming), {}, {}, {}, MessageInfo, FALLBACK,
                         Subscription, tracker_cls)
    assert set(lane.tracker_slots.values()) == {0}
    assert missing(tracker_cls, "_mask", [tracker_cls()]) is not None
    assert missing(tracker_cls, "_seen", []) is None
    packer = renamed(Packer, "_body")()
    send_lane = speedups.SendLane({}, "t", object(), object(), packer, "239.1.2.3", 5000,
                                  (Reading, (), b"", 0, (), (), 0), 100, False)
    assert set(send_lane.packer_slots.values()) == {0}
    real = speedups.Lane(Incoming.__new__(Incoming), {}, {}, {}, MessageInfo, FALLBACK,
                         Subscription, SequenceTracker)
    assert 0 not in real.tracker_slots.values()


def test_a_message_info_of_another_shape_is_refused() -> None:
    from typing import NamedTuple

    class Shorter(NamedTuple):
        type_name: str

    with pytest.raises(TypeError, match="13 _fields"):
        speedups.Lane(Incoming.__new__(Incoming), {}, {}, {}, Shorter, FALLBACK,
                      Subscription, SequenceTracker)


def test_lone_messages_travel_without_the_python_methods_the_lanes_replace(
        monkeypatch: pytest.MonkeyPatch, multicast_loopback: str, free_udp_port: int) -> None:
    # Once a stream is known, a lone message is sent and delivered with none of these
    # run: a lane that fell back to one of them (a renamed slot, say) loses it here.
    got = exchange(multicast_loopback, free_udp_port, lambda: None, monkeypatch)
    assert [r.n for r in got] == list(range(6))


def forbid(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError("the compiled lane fell back to Python")

    for cls, name in ((Packer, "build_one"), (SequenceTracker, "observe_run"),
                      (Subscription, "deliver"), (Incoming, "_deliver"),
                      (Incoming, "_decode_slow"), (Incoming, "_on_new")):
        monkeypatch.setattr(cls, name, refuse)


def compiler() -> list[str] | None:
    """The C compiler the extension is built with, as a command, if there is one."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    return cc if shutil.which(cc[0]) else None


@pytest.mark.skipif(compiler() is None, reason="no C compiler (install gcc)")
def test_the_sources_compile_without_a_warning(tmp_path: Path) -> None:
    cc = compiler()
    assert cc is not None
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        pytest.skip(f"no Python headers in {include} (install python3-dev)")
    for source in sorted(SOURCES.glob("*.c")):
        done = subprocess.run(
            [*cc, "-c", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{include}",
             "-o", str(tmp_path / (source.stem + ".o")), str(source)],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{source.name}:\n{done.stderr}"
