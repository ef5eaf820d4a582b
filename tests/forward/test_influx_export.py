"""``ganglion export --format influx``: InfluxDB line protocol, its escaping rules.

The escaping is checked two ways: against literal lines written from the line
protocol reference, and by parsing every exported line back with a parser that
follows the reference (split on unescaped separators, then unescape), which must
give back the type, node, sensor, field names and values the log holds.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from fwd_support import BASE_NS, make_log, reading

from ganglion.logger.influx import escape_key, escape_measurement, line, string_value


def _split(text: str, sep: str, *, strings: bool = False, limit: int = -1) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash; with ``strings``, also not
    inside a string field value (a double quote right after ``=`` opens one). Elsewhere a
    double quote is an ordinary character (tag values, keys)."""
    parts: list[str] = []
    buf: list[str] = []
    i, quoted = 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i:i + 2])
            i += 2
            continue
        if strings and ch == '"' and (quoted or (buf and buf[-1] == "=")):
            quoted = not quoted
        if ch == sep and not quoted and limit != len(parts):
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def parse(text: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """A line -> (measurement, tags, fields, timestamp)."""
    head, rest = _split(text, " ", limit=1)
    fields_text, stamp = rest.rsplit(" ", 1)
    series = _split(head, ",")
    tags = dict(_split(t, "=") for t in series[1:])
    fields: dict[str, Any] = {}
    for item in _split(fields_text, ",", strings=True):
        key, value = _split(item, "=", limit=1)
        if value.startswith('"'):
            fields[_unescape(key)] = _unescape(value[1:-1])
        elif value.endswith("i"):
            fields[_unescape(key)] = int(value[:-1])
        elif value in ("true", "false"):
            fields[_unescape(key)] = value == "true"
        else:
            fields[_unescape(key)] = float(value)
    return (_unescape(series[0]), {_unescape(k): _unescape(v) for k, v in tags.items()}, fields,
            int(stamp))


def test_escaping_follows_the_line_protocol_reference() -> None:
    assert escape_measurement("my measurement,x") == "my\\ measurement\\,x"
    assert escape_measurement("a=b") == "a=b"  # '=' needs no escape in a measurement
    assert escape_key("tag key=1,2") == "tag\\ key\\=1\\,2"
    assert escape_key("C:\\path") == "C:\\\\path"
    assert string_value('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert string_value("two\nlines") == '"two\\nlines"'


def test_a_line_has_type_node_sensor_fields_and_the_sent_time() -> None:
    text = line("sensors.Temperature", "0a0b0c0d0e0f1011",
                {"sensor": "w1:28-00 a,b=c", "celsius": 21.5, "count": 3, "ok": True,
                 "note": 'a "quoted" value', "pos": {"lat": 1.5, "tags": ["x", "y"]},
                 "nan": math.nan, "none": None, "raw": b"\x00", "huge": 2**64 - 1},
                1_700_000_000_123_456_789)
    assert text == ('sensors.Temperature,node=0a0b0c0d0e0f1011,sensor=w1:28-00\\ a\\,b\\=c '
                    'celsius=21.5,count=3i,ok=true,note="a \\"quoted\\" value",pos.lat=1.5,'
                    'pos.tags.0="x",pos.tags.1="y",huge=1.8446744073709552e+19 '
                    '1700000000123456789')


def test_a_reading_with_nothing_line_protocol_carries_is_skipped() -> None:
    assert line("t.Blob", "01" * 8, {"raw": b"\x01", "x": math.inf}, 10) is None
    assert line("t.A", "01" * 8, {"x": 1}, 2**63) is None  # beyond int64 ns


def test_export_influx_round_trips_through_a_parser(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    odd = 'sp ace,comma=eq\\back"quote'
    make_log(db, [
        reading("sensors.Temperature", {"sensor": "w1:28-0001", "celsius": 19.25}, seq=1),
        reading("odd type,name", {"sensor": odd, odd: odd, "n": -7}, seq=2, node=2),
        reading("t.Bytes", {"raw": b"\x00\x01"}, seq=3),
    ])
    out = tmp_path / "x.lp"
    done = subprocess.run([sys.executable, "-m", "ganglion", "export", "--db", str(db),
                           "--format", "influx", "--out", str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "exported 2 readings as line protocol (1 skipped" in done.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    assert parse(lines[0]) == ("sensors.Temperature",
                               {"node": "01" * 8, "sensor": "w1:28-0001"},
                               {"celsius": 19.25}, BASE_NS + 1_000_000)
    assert parse(lines[1]) == ("odd type,name", {"node": "02" * 8, "sensor": odd},
                               {odd: odd, "n": -7}, BASE_NS + 2_000_000)
