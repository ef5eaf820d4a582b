"""History downsampling equals a brute-force computation over the same rows (Hypothesis).

A real log (the logger's schema, created by ``open_log``) is filled with random
readings: several nodes and sensors, numbers, bools, strings and missing fields.
Each query is answered three ways that must agree with a plain Python
computation of min/max/mean/count per (node, sensor, bucket): straight from the
log, from a complete rollup, and from a rollup that holds only part of the rows
(the rest read from the log and merged).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ganglion.dashboard import history
from ganglion.dashboard.history import MINUTE_NS, HistoryQuery, Rollup, query_history
from ganglion.logger.schema import open_log

T0 = 1_700_000_000 * 10**9 // MINUTE_NS * MINUTE_NS + 17 * 10**9  # not minute-aligned
SPAN = 45 * MINUTE_NS
NODES = {1: "00000000000000a1", 2: "00000000000000b2", 3: "00000000000000c3"}

values = st.one_of(st.integers(-10**6, 10**6),
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                   st.booleans(), st.text(max_size=3), st.none())
samples = st.lists(st.tuples(st.sampled_from(sorted(NODES)),
                             st.sampled_from(["a", "b", None]),
                             # mostly the first two minutes: rows of one minute then
                             # span several rollup chunks, which must merge
                             st.one_of(st.integers(0, 2 * MINUTE_NS),
                                       st.integers(0, SPAN - 1)),
                             values,
                             st.sampled_from(["t.A", "t.B"])),
                   max_size=120)


def _fill(db: Path, rows: list[tuple[int, str | None, int, Any, str]]) -> None:
    conn = open_log(db)
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO sessions (started_ns) VALUES (1)")
        for node_id, node in NODES.items():
            conn.execute("INSERT INTO nodes (id, node, name) VALUES (?, ?, ?)",
                         (node_id, node, f"n{node_id}"))
        fields = json.dumps([{"name": "v", "kind": "float"}])
        conn.execute("INSERT INTO types (id, name, fields, source, first_ns) "
                     "VALUES (1, 't.A', ?, 'observed', 0), (2, 't.B', ?, 'observed', 0), "
                     "(3, 't.A', ?, 'observed', 0)", (fields, fields, fields))
        for i, (node_id, sensor, offset, value, type_name) in enumerate(rows):
            data: dict[str, Any] = {} if value is None else {"v": value}
            if sensor is not None:
                data["sensor"] = sensor
            # t.A has two versions (ids 1 and 3): both are read.
            type_id = (1 if i % 2 else 3) if type_name == "t.A" else 2
            conn.execute("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, "
                         "data) VALUES (?, ?, 1, ?, 0, ?, ?)",
                         (type_id, node_id, i, T0 + offset, json.dumps(data)))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _expected(rows: list[tuple[int, str | None, int, Any, str]], q: HistoryQuery
              ) -> dict[tuple[str, str], list[tuple[int, float, float, float, int]]]:
    """Per (node, sensor): (bucket start ms, min, max, mean, count), by brute force."""
    span = q.until_ns - q.since_ns
    width = -(-span // q.points)
    since, until = q.since_ns, q.until_ns
    if width >= MINUTE_NS or span >= history.ROLLUP_SPAN_NS:  # whole slots, widened range
        slot = 10 * MINUTE_NS if width >= 10 * MINUTE_NS else MINUTE_NS
        since = since // slot * slot
        until = -(-until // slot) * slot
        per_bucket = -((since - until) // q.points)  # ceil((until - since) / points)
        width = -(-per_bucket // slot) * slot
    acc: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for node_id, sensor, offset, value, type_name in rows:
        t = T0 + offset
        if type_name != q.type or not since <= t < until:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        acc[(NODES[node_id], sensor or "", (t - since) // width)].append(value)
    out: dict[tuple[str, str], list[tuple[int, float, float, float, int]]] = defaultdict(list)
    for (node, sensor, bucket), vs in sorted(acc.items()):
        out[(node, sensor)].append(((since + bucket * width) // 10**6, min(vs), max(vs),
                                    sum(vs) / len(vs), len(vs)))
    return dict(out)


def _got(series: list[history.Series]) -> dict[tuple[str, str], list[tuple[int, float, float, float, int]]]:
    return {(s.node, s.sensor): list(zip(s.t_ms, s.min, s.max, s.mean, s.count, strict=True))
            for s in series}


def _same(got: dict[Any, Any], want: dict[Any, Any]) -> None:
    assert got.keys() == want.keys()
    for key, rows in want.items():
        assert len(got[key]) == len(rows), key
        for g, w in zip(got[key], rows, strict=True):
            assert g[0] == w[0] and g[1] == w[1] and g[2] == w[2] and g[4] == w[4], (key, g, w)
            assert g[3] == pytest.approx(w[3], rel=1e-9, abs=1e-6), (key, g, w)


queries = st.builds(
    lambda type_name, a, b, points: HistoryQuery(type_name, "v", T0 + min(a, b),
                                                 T0 + max(a, b) + 1, points),
    st.sampled_from(["t.A", "t.B"]), st.integers(-MINUTE_NS, SPAN), st.integers(-MINUTE_NS, SPAN),
    st.integers(1, 40))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=samples, q=queries, partial=st.integers(0, 130))
# One minute of one sensor, falling then rising, spread over several rollup chunks.
@example(rows=[(1, "a", i * 10**9, float(abs(15 - i)), "t.A") for i in range(30)],
         q=HistoryQuery("t.A", "v", T0, T0 + SPAN, 3), partial=0)
def test_downsampling_equals_brute_force(rows: list[Any], q: HistoryQuery, partial: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db, cache = Path(tmp) / "log.db", Path(tmp) / "cache.db"
        _fill(db, rows)
        want = _expected(rows, q)
        plain = sqlite3.connect(":memory:")
        plain.execute("ATTACH DATABASE ? AS log", (f"{db.as_uri()}?mode=ro",))
        try:
            _same(_got(query_history(plain, q, schema="log")), want)
        finally:
            plain.close()
        with mock.patch.object(history, "ROLLUP_CHUNK", 7):
            rollup = Rollup(db, cache)
            rollup.refresh(max_rows=partial)  # part of the rows rolled up, the rest raw
            conn = rollup.connect()
            try:
                _same(_got(query_history(conn, q, schema="log",
                                         rolled_up_to=rollup.rolled_up_to)), want)
                rollup.refresh()
                _same(_got(query_history(conn, q, schema="log",
                                         rolled_up_to=rollup.rolled_up_to)), want)
            finally:
                conn.close()


def test_long_ranges_are_whole_minutes_even_when_more_points_are_asked() -> None:
    q = HistoryQuery("t.A", "v", T0, T0 + 4 * 3600 * 10**9, 10_000)
    since, until, width, level = q.buckets()
    assert level == 1 and width == MINUTE_NS and since % MINUTE_NS == 0 and until % MINUTE_NS == 0
    short = HistoryQuery("t.A", "v", T0, T0 + 3600 * 10**9, 1000)
    assert short.buckets() == (T0, T0 + 3600 * 10**9, 3_600_000_000, 0)
    week = HistoryQuery("t.A", "v", T0, T0 + 7 * 86400 * 10**9, 1000)
    since, until, width, level = week.buckets()
    assert level == 10 and width == 20 * MINUTE_NS and (until - since) // width <= 1000


def test_an_unknown_type_raises_key_error(tmp_path: Path) -> None:
    _fill(tmp_path / "log.db", [(1, "a", 5, 1.0, "t.A")])
    conn = sqlite3.connect(":memory:")
    conn.execute("ATTACH DATABASE ? AS log", (f"{(tmp_path / 'log.db').as_uri()}?mode=ro",))
    with pytest.raises(KeyError):
        query_history(conn, HistoryQuery("t.Nope", "v", T0, T0 + SPAN, 10), schema="log")
    conn.close()


def test_the_rollup_follows_new_rows_and_forgets_deleted_ones(tmp_path: Path) -> None:
    db, cache = tmp_path / "log.db", tmp_path / "cache.db"
    _fill(db, [(1, "a", 5 * 10**9, 1.0, "t.A"), (1, "a", 10 * MINUTE_NS, 3.0, "t.A")])
    rollup = Rollup(db, cache)
    assert rollup.refresh() == 2
    q = HistoryQuery("t.A", "v", T0 - MINUTE_NS, T0 + 15 * MINUTE_NS, 2)
    conn = rollup.connect()
    assert [s.count for s in query_history(conn, q, schema="log", rolled_up_to=2)] == [[1, 1]]
    log = open_log(db)
    log.execute("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, data) "
                "VALUES (1, 1, 1, 9, 0, ?, '{\"v\": 5, \"sensor\": \"a\"}')", (T0 + 11 * MINUTE_NS,))
    log.execute("DELETE FROM samples WHERE id = 1")  # retention removed the oldest reading
    log.close()
    assert rollup.refresh() == 1
    assert rollup.rolled_up_to == 3
    series = query_history(conn, q, schema="log", rolled_up_to=rollup.rolled_up_to)
    assert [(s.count, s.max) for s in series] == [([2], [5.0])]
    conn.close()
    # A second Rollup on the same cache resumes where the first stopped.
    assert Rollup(db, cache).rolled_up_to == 3


def test_a_cache_of_another_log_starts_over(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    _fill(tmp_path / "one.db", [(1, "a", 5, 1.0, "t.A")] * 3)
    Rollup(tmp_path / "one.db", cache).refresh()
    _fill(tmp_path / "two.db", [(1, "a", 5, 1.0, "t.A")])
    other = Rollup(tmp_path / "two.db", cache)
    assert other.rolled_up_to == 0
    assert other.refresh() == 1
