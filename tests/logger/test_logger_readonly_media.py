"""The tools read a log on read-only media (a read-only mount), as docs/logging.md says.

A log is in WAL mode; a reader of a WAL database creates the ``-shm`` file, which
fails where the directory cannot be written. The mount test builds a real
read-only tmpfs in a private mount namespace (``unshare --mount``, root), so
nothing outside the test sees it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from log_support import info

from ganglion.errors import LogDatabaseError
from ganglion.logger import schema
from ganglion.logger.schema import open_log, read_only_uri
from ganglion.logger.writer import Writer
from ganglion.types import Record

REPO = Path(__file__).resolve().parents[2]


def make_log(db: Path, count: int = 20) -> None:
    writer = Writer(db, batch_rows=10)
    writer.start()
    for i in range(count):
        writer.add(Record("sensors.Temperature", {"sensor": "p1", "celsius": 20.0 + i}),
                   info("sensors.Temperature", seq=i, sent_ns=1_000_000 + i))
    writer.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a private read-only mount")
def test_info_and_export_read_a_log_on_a_read_only_mount(tmp_path: Path) -> None:
    make_log(tmp_path / "made.db")
    media = tmp_path / "media"
    media.mkdir()
    python = sys.executable
    script = (f"mount -t tmpfs none {media} && cp {tmp_path / 'made.db'} {media}/log.db && "
              f"mount -o remount,ro {media} && "
              f"{python} -m ganglion info --db {media}/log.db && "
              f"{python} -m ganglion export --db {media}/log.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                          text=True, env=env, timeout=60)
    if "mount:" in done.stderr and "permission denied" in done.stderr.lower():
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert "20 readings" in done.stdout
    assert done.stdout.count("sensors.Temperature,") == 20
    assert "exported 20 readings" in done.stderr


def test_a_writable_directory_opens_the_log_read_only_as_before(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    make_log(db)
    assert read_only_uri(db).endswith("?mode=ro")


def test_an_unwritable_directory_opens_a_cleanly_closed_log_as_immutable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "log.db"
    make_log(db)
    monkeypatch.setattr(schema.os, "access", lambda path, mode: False)
    assert read_only_uri(db).endswith("?mode=ro&immutable=1")
    conn = open_log(db, write=False)
    try:
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 20
    finally:
        conn.close()
    assert not db.with_name("log.db-shm").exists()


def test_a_wal_with_readings_in_an_unwritable_directory_is_refused_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "log.db"
    make_log(db)
    db.with_name("log.db-wal").write_bytes(b"\0" * 32)  # as a killed logger leaves it
    monkeypatch.setattr(schema.os, "access", lambda path, mode: False)
    with pytest.raises(LogDatabaseError, match=r"log\.db-wal holds readings"):
        open_log(db, write=False)
    db.with_name("log.db-shm").write_bytes(b"")  # with both files SQLite reads the WAL
    assert read_only_uri(db).endswith("?mode=ro")
