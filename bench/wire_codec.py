"""Micro-benchmark of the pure codec path, per message (not a test; run it directly).

    .venv/bin/python bench/wire_codec.py [--quick]

Measures, for a small sensor reading (three fields, ~30-byte payload): payload
encode/decode (general and the endpoint's fast paths), datagram pack/decode alone and
batched (as many as fit in 1,400 bytes), with and without a network key, and
the sequence tracker. Prints the best of several repeats in microseconds per
message, since the machine may be shared, and for the payload rows the ratio to a
baseline measured in the same run: cbor2 itself (``cbor2.dumps`` of the field map,
``cbor2.loads`` of the payload), which every ganglion payload path must beat or match.
``--quick`` runs a tenth of the iterations (seconds; what ``run_all.py --quick`` passes).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import cbor2

from ganglion.sequence import SequenceTracker
from ganglion.types import (
    decode_payload,
    encode_message,
    encode_payload,
    message,
    payload_decoder,
    type_of,
)
from ganglion.wire import Packer, decode_datagram, decode_fields


@message("bench.Reading")
@dataclass(slots=True)
class Reading:
    celsius: float
    sensor: str
    seq: int


TS = 1_700_000_000_000_000_000
KEY = bytes(range(32))


#: Iterations per timing: full run, and with --quick.
NUMBER = 20000
SCALE = 1


def best(fn: Callable[[], object], per_call: int = 1, number: int = NUMBER) -> float:
    """Best-of-5 time in microseconds per message."""
    number = max(1, number // SCALE)
    return min(timeit.repeat(fn, number=number, repeat=5)) / number / per_call * 1e6


def main(argv: list[str] | None = None) -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    SCALE = 10 if parser.parse_args(argv).quick else 1
    msg = Reading(21.5, "probe-1", 12345)
    mtype = type_of(msg)
    payload = encode_payload(msg)
    fp = mtype.fingerprint
    decode_reading = payload_decoder("bench.Reading", fp)
    fields = {"celsius": msg.celsius, "sensor": msg.sensor, "seq": msg.seq}
    base_encode = best(lambda: cbor2.dumps(fields))
    base_decode = best(lambda: cbor2.loads(payload))
    print(f"baseline, same run: cbor2.dumps {base_encode:.2f} us, cbor2.loads {base_decode:.2f} us")
    ratios = [
        (f"encode_payload ({len(payload)} B)", best(lambda: encode_payload(msg)), base_encode),
        ("encode_message (type known)", best(lambda: encode_message(msg, mtype)), base_encode),
        ("decode_payload", best(lambda: decode_payload("bench.Reading", payload, fp)),
         base_decode),
        ("payload_decoder's function", best(lambda: decode_reading(payload)), base_decode),
    ]
    for name, us, base in ratios:
        print(f"{name:<40} {us:6.2f} us/msg  ({1 / us:6.2f} M msg/s)  {us / base:5.2f} x cbor2")
    rows: list[tuple[str, float]] = []
    for key in (None, KEY):
        tag = "signed" if key else "unsigned"
        p = Packer(node_id=b"benchnod", type_name="bench.Reading", fingerprint=fp, key=key)

        def pack_one(p: Packer = p) -> bytes:
            p.add(payload, TS)
            return p.build()

        def pack_full(p: Packer = p) -> bytes:
            while p.add(payload, TS):
                pass
            return p.build()

        single = pack_one()
        full = pack_full()
        n = decode_datagram(full, key=key).count
        rows += [
            (f"pack 1/datagram, {tag}", best(pack_one)),
            (f"pack {n}/datagram, {tag}", best(pack_full, n, 2000)),
            (f"decode_datagram 1/datagram, {tag}", best(lambda d=single, k=key: decode_datagram(d, key=k))),
            (f"decode_datagram {n}/datagram, {tag}",
             best(lambda d=full, k=key: decode_datagram(d, key=k), n, 2000)),
            (f"decode_fields 1/datagram, {tag}", best(lambda d=single, k=key: decode_fields(d, k))),
            (f"decode_fields {n}/datagram, {tag}",
             best(lambda d=full, k=key: decode_fields(d, k), n, 2000)),
        ]
    tracker = SequenceTracker()
    counter = iter(range(10**9))
    rows.append(("SequenceTracker.observe", best(lambda: tracker.observe(next(counter)))))
    for name, us in rows:
        print(f"{name:<40} {us:6.2f} us/msg  ({1 / us:6.2f} M msg/s)")


if __name__ == "__main__":
    main()
