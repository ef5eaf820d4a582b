"""The forwarder's compiled batch encoder (ganglion._copyfast), run over a real SQLite log
for a leak check.

A log of :data:`ROWS` readings (two types, one with a fingerprint and a name beyond
ASCII, two nodes, every combination of the five flags, u64 sequence numbers beyond
2**63) is written into a private temporary directory with the logger's own schema.
The path reads it again and again in windows of :data:`WINDOW` rows with the
``Reader`` the forwarder uses, every fourth window leaving one type out (the
``--type`` filter), and checks each window's stream against the length the same
window gave the first time round, so a reader that went wrong shows as errors, not
only a leak. One "message" is one row read and encoded. Nothing leaves the process:
no server is needed, the encoder's output is the COPY stream a server would get.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ganglion.forward import _copy_accel, pgcopy
from ganglion.logger.schema import open_log, read_only_uri

copyfast = _copy_accel.load("auto")

#: Rows in the log, and rows per read (the forwarder's default batch is larger; a
#: smaller window makes more calls, which is what a per-call leak needs to show).
ROWS = 20_000
WINDOW = 500


def _write_log(path: Path) -> tuple[int, int]:
    """Write the log; returns the two type ids."""
    conn = open_log(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        plain = conn.execute(
            "INSERT INTO types (name, fingerprint, fields, source, first_ns) VALUES "
            "('leakcheck.Temperature', NULL, '[]', 'observed', 0)").lastrowid
        printed = conn.execute(
            "INSERT INTO types (name, fingerprint, fields, source, first_ns) VALUES "
            "('leakcheck.Größe', '0123456789abcdef', '[]', 'class', 0)").lastrowid
        one = conn.execute("INSERT INTO nodes (node) VALUES ('0102030405060708')").lastrowid
        two = conn.execute("INSERT INTO nodes (node, name) VALUES ('ffffffffffffffff', 'pi')"
                           ).lastrowid
        rows = [(plain if n % 3 else printed, one if n % 2 else two, 7,
                 n - 2**63 if n % 5 == 0 else n, 1_700_000_000_000_000_000 + n * 1_001,
                 1_700_000_000_000_500_000 + n * 1_000, n % 32,
                 f'{{"sensor":"w{n % 4}","celsius":{n / 8},"s":"\\u00e9 {n}"}}')
                for n in range(ROWS)]
        conn.executemany("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, "
                         "received_ns, flags, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        assert plain is not None and printed is not None
        return plain, printed
    finally:
        conn.close()


class CopyPath:
    """A log and the compiled reader over it (``ganglion._copyfast.Reader``)."""

    def __init__(self) -> None:
        if copyfast is None:
            raise RuntimeError("ganglion._copyfast is not built or cannot find SQLite")
        self.sent = self.delivered = self.fallbacks = 0
        self.errors: list[str] = []
        self._dir = Path(tempfile.mkdtemp(prefix="ganglion-leak-copy-"))
        db = self._dir / "log.db"
        self._left_out = frozenset({_write_log(db)[1]})
        self._sql = pgcopy.READ_ROWS
        self._reader: Any = copyfast.Reader(read_only_uri(db), self._sql)
        self._after = 0
        self._calls = 0
        self._lengths: dict[tuple[int, bool], int] = {}

    def run(self, count: int) -> None:
        left = count
        while left > 0:
            limit = min(WINDOW, left)
            if self._after + limit > ROWS:  # start again from the top: every window is whole
                self._after = 0
            skip = self._left_out if self._calls % 4 == 3 else frozenset()
            self._calls += 1
            done = self._reader.read(self._after, limit, skip)
            if done is None:  # a row the compiled path is not sure of: none here
                self.fallbacks += limit
                self.errors.append(f"window after {self._after} went the Python way")
            else:
                data, read, encoded, last_id, _types, _nodes = done
                key = (self._after, bool(skip))
                if self._lengths.setdefault(key, len(data)) != len(data):
                    self.errors.append(f"window after {self._after} changed length")
                # A row left out by the filter is read but not encoded: it still passed.
                self.delivered += read
                if read != limit:
                    self.errors.append(f"window after {self._after} read {read} of {limit}")
                del data, encoded
                self._after = last_id
            self.sent += limit
            left -= limit

    def watched(self) -> dict[str, object]:
        # Every read passes the SQL (bound once) and the filter set to C.
        return {"reader": self._reader, "sql": self._sql, "left_out": self._left_out}

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
