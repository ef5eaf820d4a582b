"""Every payload decoding and encoding route, side by side in one run (not a test).

    .venv/bin/python bench/payload_routes.py [--quick]

A registered type's payload can be read four ways and written three:

* decode: the generic path (``cbor2.loads`` then the type's ``StructKind.decode``),
  the generated decoder (``types/_decodegen.py``), layout templates in front of it
  (``types/_templates.py``), and the compiled plan (``ganglion._speedups``, what the
  receive lane reads; ``plan_decode`` is the same reader one payload at a time);
* encode: the generic path (``StructKind.encode`` then ``cbor2.dumps``), the
  generated encoder (``types/_codegen.py``) and the compiled plan (what the send
  lanes write; ``plan_encode``).

For three shapes of message (a 3-field reading, a 5-field sample with a 16-byte blob,
a 12-field record) it prints each route's median time per message over several
repeats, and its ratio to the generic route measured in the same run (the machine is
shared: medians and same-run ratios, not absolute figures, are what to compare).
Templates are also compared with the generated decoder they sit in front of. A last
table decodes a stream of 1,000 readings whose payloads have 25 different lengths (a
type many senders publish with names of many lengths): more lengths than templates
are kept for, where the generated decoder does the work.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path: put the repository first, so that
# tests.sample_type (the shared Sample) is found; bench/ stays last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_BENCH)]

import cbor2  # noqa: E402

from ganglion.runtime import _accel  # noqa: E402
from ganglion.types import message, type_of  # noqa: E402
from ganglion.types._decodegen import FALLBACK, compile_decoder  # noqa: E402
from ganglion.types._payload import _REFUSED_TAGS, MAX_DEPTH  # noqa: E402
from tests.sample_type import sample_class  # noqa: E402

speedups = _accel.load("auto")


@message("bench_routes.Reading")
@dataclass
class Reading:
    celsius: float
    sensor: str
    seq: int


#: The compiled lanes' tests' five-field shape (tests/sample_type.py), under its own name.
Sample: Any = sample_class("bench_routes.Sample", module=__name__)


@message("bench_routes.Wide")
@dataclass
class Wide:
    a: int
    b: int
    c: float
    d: float
    e: str
    f: str
    g: bool
    h: bytes
    i: int
    j: float
    k: str
    m: int


SHAPES: dict[str, object] = {
    "reading (3 fields)": Reading(21.5, "probe-1", 12345),
    "sample (5 fields, 16 B blob)": Sample(70_000, 0.25, True, "kitchen", bytes(range(16))),
    "wide (12 fields)": Wide(1, -300, 1.5, -2.25, "alpha", "beta-gamma", False, b"\x00\x01",
                             2**40, 3.0, "k", 7),
}


def median_ns(table: dict[str, Callable[[], object]], number: int,
              repeat: int) -> dict[str, float]:
    """Median time of one call of each route, in nanoseconds, over ``repeat`` runs of
    ``number`` calls; the routes take turns, so that a busy spell of the machine falls
    on all of them alike."""
    runs: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(repeat):
        for name, fn in table.items():
            runs[name].append(timeit.timeit(fn, number=number) / number * 1e9)
    return {name: statistics.median(times) for name, times in runs.items()}


def routes(msg: Any) -> tuple[dict[str, Callable[[], object]], dict[str, Callable[[], object]]]:
    """The decode and encode routes of ``msg``'s type, each checked to give the same."""
    mtype = type_of(msg)
    fields = tuple((f.name, f.schema) for f in mtype.struct.fields)
    payload = mtype.encode(msg)
    to_class, dumps, loads = mtype.struct.decode, cbor2.dumps, cbor2.loads
    generated = compile_decoder(mtype.cls, fields)
    assert generated is not None and mtype.decode_fast is not None
    decoders: dict[str, Callable[[], object]] = {
        "generic (cbor2)": lambda: to_class(loads(
            payload, max_depth=MAX_DEPTH, strict_hashable_types=True,
            allow_duplicate_keys=False, semantic_decoders=_REFUSED_TAGS)),
        "generated": lambda: generated(payload),
    }
    templated = _templates(mtype.cls, fields, generated)
    if templated is not None:
        decoders["templates"] = lambda: templated(payload)
    encoders: dict[str, Callable[[], object]] = {
        "generic (cbor2)": lambda: dumps(mtype.struct.encode(msg)),
        "generated": lambda: mtype.encode(msg),
    }
    if speedups is not None and mtype.plan is not None:
        plan, plan_decode, plan_encode = mtype.plan, speedups.plan_decode, speedups.plan_encode
        decoders["compiled plan"] = lambda: plan_decode(plan, payload)
        encoders["compiled plan"] = lambda: plan_encode(plan, msg)
    for name, decode in decoders.items():
        got = decode()
        assert got is not FALLBACK and got == msg, (name, got)
    for name, encode in encoders.items():
        assert encode() == payload, name
    return decoders, encoders


def _templates(cls: type, fields: tuple[tuple[str, str], ...],
               generated: Callable[[bytes], Any]) -> Callable[[bytes], Any] | None:
    """Layout templates in front of ``generated``, where the module still exists."""
    try:
        from ganglion.types._templates import with_templates
    except ImportError:
        return None
    return with_templates(cls, fields, generated)


def mixed_stream() -> tuple[list[bytes], list[Reading]]:
    """1,000 readings whose payloads have many lengths (sensor names, counter widths)."""
    rnd = random.Random(1)
    msgs = [Reading(rnd.uniform(-40, 60), "probe-" + "x" * rnd.randrange(20),
                    rnd.randrange(1 << rnd.choice((4, 8, 16, 30)))) for _ in range(1000)]
    mtype = type_of(Reading)
    return [mtype.encode(m) for m in msgs], msgs


def mixed_routes() -> dict[str, Callable[[], object]]:
    """The Python decode routes over :func:`mixed_stream`, each checked to give the same."""
    payloads, msgs = mixed_stream()
    mtype = type_of(Reading)
    fields = tuple((f.name, f.schema) for f in mtype.struct.fields)
    to_class, loads = mtype.struct.decode, cbor2.loads
    generated = compile_decoder(Reading, fields)
    assert generated is not None

    def generic(d: bytes) -> object:
        return to_class(loads(d, max_depth=MAX_DEPTH, strict_hashable_types=True,
                              allow_duplicate_keys=False, semantic_decoders=_REFUSED_TAGS))

    decoders: dict[str, Callable[[bytes], object]] = {"generic (cbor2)": generic,
                                                      "generated": generated}
    templated = _templates(Reading, fields, generated)
    if templated is not None:
        decoders["templates"] = templated
    if speedups is not None and mtype.plan is not None:
        plan, plan_decode = mtype.plan, speedups.plan_decode
        decoders["compiled plan"] = lambda d: plan_decode(plan, d)
    for name, decode in decoders.items():
        assert [decode(p) for p in payloads] == msgs, name
    return {name: (lambda decode=decode: [decode(p) for p in payloads])
            for name, decode in decoders.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args(argv)
    number, repeat = (2_000, 3) if args.quick else (50_000, 11)
    print(f"compiled plan: {'built' if speedups is not None else 'not built (skipped)'}; "
          f"median of {repeat} x {number:,} calls")
    for shape, msg in SHAPES.items():
        decoders, encoders = routes(msg)
        print(f"\n{shape}: payload {len(type_of(msg).encode(msg))} B")
        for what, table in (("decode", decoders), ("encode", encoders)):
            times = median_ns(table, number, repeat)
            base = times["generic (cbor2)"]
            for name, ns in times.items():
                extra = ""
                if name == "templates":
                    extra = f"  ({ns / times['generated']:.2f}x generated)"
                print(f"  {what} {name:<16} {ns:8.0f} ns  {ns / base:5.2f}x generic{extra}")
    print("\na stream of 1,000 readings, 25 payload lengths:")
    times = {name: ns / 1000 for name, ns in
             median_ns(mixed_routes(), max(1, number // 1000), repeat).items()}
    for name, ns in times.items():
        extra = f"  ({ns / times['generated']:.2f}x generated)" if name == "templates" else ""
        print(f"  decode {name:<16} {ns:8.0f} ns  {ns / times['generic (cbor2)']:5.2f}x "
              f"generic{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
