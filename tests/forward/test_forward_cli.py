"""``ganglion forward`` and ``ganglion log --forward`` as users run them: bad URL, wrong
password, missing database give one line and a non-zero exit; a password file works."""

from __future__ import annotations

from pathlib import Path

import pytest
from fwd_support import log_rows, make_log, pg_rows, temperatures
from node_support import Spawner
from pg_support import PgServer


def _one_error_line(proc_err: str) -> str:
    lines = [line for line in proc_err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc_err
    assert lines[0].startswith("Error: ") and "Traceback" not in proc_err
    return lines[0]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    db = tmp_path / "log.db"
    make_log(db, temperatures(50))
    return db


@pytest.mark.parametrize(("url", "expected"), [
    ("mysql://u@127.0.0.1/x", "not a PostgreSQL URL"),
    ("postgresql://u@127.0.0.1:notaport/x", "port"),
    ("postgresql://u@127.0.0.1:5432", "name the database"),
])
def test_a_bad_url_is_one_line_and_a_non_zero_exit(spawn: Spawner, log: Path, url: str,
                                                   expected: str) -> None:
    proc = spawn("forward", "--db", str(log), "--to", url, "--once", label="fwd")
    assert proc.finish(30) == 1, proc.describe()
    assert expected in _one_error_line(proc.err)


def test_a_wrong_password_is_one_line_and_a_non_zero_exit(spawn: Spawner, log: Path,
                                                          pg: PgServer) -> None:
    url = pg.url("postgres").replace(":s3cret-pw@", ":wrong@")
    proc = spawn("forward", "--db", str(log), "--to", url, label="fwd")  # follow mode too
    assert proc.finish(30) == 1, proc.describe()
    line = _one_error_line(proc.err)
    assert "password authentication failed" in line and "wrong" not in line


def test_a_missing_database_is_one_line_and_a_non_zero_exit(spawn: Spawner, log: Path,
                                                            pg: PgServer) -> None:
    proc = spawn("forward", "--db", str(log), "--to", pg.url("nosuchdb"), label="fwd")
    assert proc.finish(30) == 1, proc.describe()
    assert 'database "nosuchdb" does not exist' in _one_error_line(proc.err)


def test_an_unreachable_database_with_once_is_one_line_and_a_non_zero_exit(
        spawn: Spawner, log: Path) -> None:
    proc = spawn("forward", "--db", str(log), "--to", "postgresql://u@127.0.0.1:1/x", "--once",
                 label="fwd")
    assert proc.finish(30) == 1, proc.describe()
    assert "cannot reach u@127.0.0.1:1/x" in _one_error_line(proc.err)


def test_log_forward_with_a_wrong_password_exits_at_start(spawn: Spawner, tmp_path: Path,
                                                          pg: PgServer, port: int) -> None:
    url = pg.url("postgres").replace(":s3cret-pw@", ":wrong@")
    proc = spawn("log", "--db", str(tmp_path / "new.db"), "--forward", url, "--port", str(port),
                 "--iface", "127.0.0.1", label="log")
    assert proc.finish(30) == 1, proc.describe()
    assert "password authentication failed" in _one_error_line(proc.err)


def test_a_password_file_and_once(spawn: Spawner, log: Path, tmp_path: Path, central: str,
                                  pg: PgServer) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pw\n")
    url = central.replace(":s3cret-pw@", "@")
    proc = spawn("forward", "--db", str(log), "--to", url, "--password-file", str(secret),
                 "--once", label="fwd")
    assert proc.finish(60) == 0, proc.describe()
    assert "forwarded 50 readings (50 new)" in proc.err
    assert pg_rows(central) == log_rows(log)
