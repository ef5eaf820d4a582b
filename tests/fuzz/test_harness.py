"""The harness itself: its field cut matches the encoder, its inputs replay from a
seed and carry the findings' bytes, and each of its monitors catches what it claims.

A fuzz test that passes proves something only if its monitors would have failed it;
the tests at the end break each property on purpose and check that it is reported.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import cbor2
import pytest

from consensus import Prepare, message_from_wire
from ganglion.types import decode_payload
from ganglion.wire import decode_datagram

from .datagrams import MUTATIONS, Shape, fields_of, join, mutate, set_int
from .drive import BUS_NAMES
from .extremes import DEEP, cbor_item, fixed_extremes
from .fuzztypes import PLAIN
from .inputs import BusInputs, ControlInputs, DataInputs, directed, encode_datagram_for
from .watch import MAX_RECORD_CHARS, Watch

OWN = bytes.fromhex("0102030405060708")
PEER = bytes.fromhex("1112131415161718")
KEY = bytes(range(32))


# -- the field cut --------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, KEY])
def test_the_field_cut_joins_back_to_the_encoders_bytes(key: bytes | None) -> None:
    rng = random.Random(1)
    for _ in range(200):
        n = rng.randint(1, 6)
        shape = Shape(node_id=rng.randbytes(8), type_name=rng.choice(("a.B", PLAIN, "x." * 50 + "y")),
                      fingerprint=rng.randbytes(8), first_seq=rng.randrange(2**64 - n),
                      timestamps=tuple(rng.randrange(2**63) for _ in range(n)),
                      payloads=tuple(rng.randbytes(rng.randint(1, 300)) for _ in range(n)),
                      boot=rng.randrange(2**32), key=key)
        fields = fields_of(shape)  # asserts the join itself
        assert [f.name for f in fields[:11]] == [
            "magic", "version", "flags", "node_id", "boot", "fingerprint", "name_len", "name",
            "first_seq", "base_ts", "count"]
        assert decode_datagram(join(fields), key=key).payloads == shape.payloads


@pytest.mark.parametrize("name, value, attribute", [
    ("first_seq", 2**64 - 1, "first_seq"), ("first_seq", 2**63 - 1, "first_seq"),
    ("boot", 2**32 - 1, "boot"), ("boot", 2**31, "boot"),
])
def test_setting_a_field_changes_exactly_what_the_decoder_reads(name: str, value: int,
                                                                attribute: str) -> None:
    fields = fields_of(Shape(node_id=OWN, type_name=PLAIN, fingerprint=b"f" * 8, first_seq=5,
                             timestamps=(10,), payloads=(b"\xa0",)))
    set_int(fields, name, value)
    assert getattr(decode_datagram(join(fields), key=None), attribute) == value


def test_fixed_extremes_are_the_issues_values_cut_to_the_width() -> None:
    assert {0, 2**31, 2**32, 2**63 - 1, 2**64 - 1} <= set(fixed_extremes(8))
    assert {0, 2**31, 2**32 - 1} <= set(fixed_extremes(4))
    assert max(fixed_extremes(4)) == 2**32 - 1 and max(fixed_extremes(1)) == 255


def test_every_mutation_kind_changes_the_datagram() -> None:
    rng = random.Random(2)
    shape = Shape(node_id=OWN, type_name=PLAIN, fingerprint=b"f" * 8, first_seq=5,
                  timestamps=(10, 20), payloads=(b"\xa1\x65value\x01", b"\xa0"))
    original = join(fields_of(shape))
    for func, _weight in MUTATIONS:
        changed = 0
        for _ in range(20):
            fields = fields_of(shape)
            func(rng, fields)
            changed += join(fields) != original
        assert changed >= 10, f"{func.__name__} rarely changes anything"
    for _ in range(50):
        fields = fields_of(shape)
        assert mutate(rng, fields)


def test_deep_cbor_is_ten_thousand_levels_and_refused_by_the_payload_decoder() -> None:
    rng = random.Random(3)
    depths = set()
    for _ in range(300):
        detail, item = cbor_item(rng)
        if detail.startswith("nested x"):
            depths.add(int(detail.split()[1][1:]))
            with pytest.raises(Exception):  # noqa: B017 - any refusal; DecodeError in fact
                decode_payload(PLAIN, b"\xa1\x65value" + item)
    assert DEEP in depths


# -- the inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda seed: DataInputs(seed, OWN),
    lambda seed: ControlInputs(seed, OWN, [PEER]),
    lambda seed: BusInputs(seed, BUS_NAMES),
])
def test_a_seed_replays_the_same_inputs(make: object) -> None:
    def first(seed: int) -> list[tuple[bytes, ...]]:
        gen = make(seed)  # type: ignore[operator]
        return [gen.next().frames for _ in range(300)]

    assert first(7) == first(7)
    assert first(7) != first(8)


def test_generated_inputs_cover_every_kind_and_never_forge_the_real_peer() -> None:
    data, control, bus = DataInputs(4, OWN), ControlInputs(4, OWN, [PEER]), BusInputs(4, BUS_NAMES)
    kinds = {gen.next().kind for gen in (data, control, bus) for _ in range(1500)}
    assert {"data/valid", "data/seq-jump", "data/mutated", "data/big-batch", "data/foreign-type",
            "data/random", "control/heartbeat", "control/paxos", "control/lastvalue",
            "control/lastvaluerequest", "bus/publish", "bus/subscription"} <= kinds
    for _ in range(1000):
        frame = control.next().frames[0]
        assert frame[4:12] != PEER


def test_directed_inputs_are_the_findings_bytes() -> None:
    data = directed("data", OWN)
    seqs = [decode_datagram(i.frames[0], key=None).first_seq
            for i in data if i.kind == "finding1/data"]
    assert seqs[:4] == [0, 2**31, 2**32, 2**32 + 2**31]
    assert any(len(i.frames[0]) > 60_000 for i in data)  # finding 8: far above the budget

    control = directed("control", OWN)
    beats = [decode_datagram(i.frames[0], key=None) for i in control
             if i.kind == "finding1/heartbeat"]
    assert len(beats) == 20 and len({b.node_id for b in beats}) == 10
    assert sorted({b.first_seq for b in beats}) == [0, 2**32]
    prepares = []
    for inp in control:
        if inp.kind == "finding2/prepare":
            env = decode_datagram(inp.frames[0], key=None)
            body = cbor2.loads(env.payloads[0])["body"]
            prepares.append(message_from_wire(cbor2.loads(body)))
    assert prepares and all(isinstance(p, Prepare) and p.ballot.round == 2**63 - 1
                            for p in prepares)
    assert sum(i.kind == "finding5/propose" for i in control) == 200

    bus = directed("bus", OWN)
    assert all(len(i.frames[1]) >= 1_000_000 for i in bus)


def test_encode_datagram_for_makes_a_valid_datagram() -> None:
    env = decode_datagram(encode_datagram_for(OWN, PLAIN, 2**32, b"\xa0"), key=None)
    assert (env.node_id, env.type_name, env.first_seq) == (OWN, PLAIN, 2**32)


# -- the monitors: each must catch what it claims ---------------------------------------


def watched(body: object, **kwargs: object) -> Watch:
    """Run ``body(watch)`` (a coroutine function) under a started Watch; return it."""

    async def main() -> Watch:
        watch = Watch(**kwargs)  # type: ignore[arg-type]
        watch.start()
        try:
            await asyncio.sleep(0.05)
            await body(watch)  # type: ignore[operator]
            await asyncio.sleep(0.05)
        finally:
            await watch.stop()
        return watch

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_a_quiet_loop_breaks_nothing() -> None:
    async def body(watch: Watch) -> None:
        await asyncio.sleep(0.3)

    watch = watched(body)
    assert watch.violations() == [], watch.violations()


def test_an_exception_in_a_loop_callback_is_an_escape() -> None:
    async def body(watch: Watch) -> None:
        def boom() -> None:
            raise RuntimeError("from a callback")

        asyncio.get_running_loop().call_soon(boom)
        await asyncio.sleep(0.05)

    watch = watched(body, context=lambda: ["#1 the input"])
    assert any("from a callback" in v and "#1 the input" in v for v in watch.violations())


def test_an_error_log_record_with_a_traceback_is_an_escape() -> None:
    async def body(watch: Watch) -> None:
        try:
            raise ValueError("bad input handled badly")
        except ValueError:
            logging.getLogger("ganglion.runtime.fake").exception("handler failed")

    watch = watched(body)
    found = [v for v in watch.violations() if "exception escaped" in v]
    assert found and "bad input handled badly" in found[0]


def test_a_blocked_loop_is_a_stall_and_a_short_one_is_not() -> None:
    async def body(watch: Watch) -> None:
        time.sleep(0.03)
        await asyncio.sleep(0.05)
        time.sleep(0.25)  # the loop's thread busy (or blocked) for 250 ms

    watch = watched(body)
    stalls = [v for v in watch.violations() if "stalled" in v]
    assert len(stalls) == 1 and watch.worst_charged >= 0.2


def test_a_transient_peak_of_memory_is_caught() -> None:
    async def body(watch: Watch) -> None:
        blob = b"\x01" * (150 << 20)  # touched pages: resident; freed before any sample
        del blob

    watch = watched(body, rss_limit=100 << 20)
    assert any("RSS grew" in v for v in watch.violations()), watch.summary()


def test_an_unbounded_log_record_and_a_log_flood_are_caught() -> None:
    async def body(watch: Watch) -> None:
        log = logging.getLogger("ganglion.runtime.fake")
        log.warning("payload %r", b"x" * (MAX_RECORD_CHARS + 100))
        for i in range(watch.log_budget() + 50):
            log.warning("dropped datagram %d", i)

    watch = watched(body)
    text = "\n".join(watch.violations())
    assert "log record over" in text and "log flood" in text
