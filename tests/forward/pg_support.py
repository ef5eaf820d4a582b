"""A throw-away PostgreSQL server for tests and bench/forward.py.

Theory of operation: :class:`PgServer` runs Debian's PostgreSQL binaries
(``initdb``, then ``postgres`` itself as a child process) in a fresh temporary
directory owned by the ``postgres`` user (PostgreSQL refuses to run as root),
listening on 127.0.0.1 with a free port and its unix socket in that directory,
so it never meets a system cluster. The superuser ``ganglion`` has a password
(``scram-sha-256`` over TCP) so wrong-password tests are real. ``stop`` ends
the server by its PID (fast shutdown, then SIGKILL after a bound) and removes
the directory; ``start`` after ``stop(keep=True)`` starts the same cluster again
(the "server restarted" tests). Every wait is bounded.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14", "13")]
USER = "ganglion"
PASSWORD = "s3cret-pw"


def pg_bin() -> Path | None:
    """The directory with initdb/postgres, or None when PostgreSQL is not installed."""
    for path in BIN_DIRS:
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    return None


def missing() -> str | None:
    """Why a server cannot be started here (None when it can)."""
    if pg_bin() is None:
        return "PostgreSQL server binaries (Debian package postgresql) are not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no `postgres` user to run PostgreSQL as"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        return "tests must run as root (to start PostgreSQL as `postgres`) or as `postgres`"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One private PostgreSQL cluster (see the module docstring)."""

    def __init__(self, settings: Sequence[str] = ()) -> None:
        binary = pg_bin()
        if binary is None:
            raise RuntimeError(missing() or "no PostgreSQL")
        self.bin = binary
        self.dir = Path(tempfile.mkdtemp(prefix="ganglion-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings = tuple(settings)  # more ``name=value`` server settings
        entry = pwd.getpwnam("postgres")
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        os.chown(self.dir, self._uid, self._gid)
        os.chmod(self.dir, 0o700)
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        os.chown(pwfile, self._uid, self._gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile",
                   str(pwfile), "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                   "--no-sync", "--locale=C.UTF-8"], timeout=120)
        pwfile.unlink()

    @property
    def host_url(self) -> str:
        """``postgresql://ganglion@127.0.0.1:PORT`` (no database, no password)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}"

    def url(self, db: str = "postgres", password: bool = True) -> str:
        auth = f"{USER}:{PASSWORD}" if password else USER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def _demote(self) -> None:
        os.setgid(self._gid)
        os.setuid(self._uid)

    def _run(self, argv: list[str], timeout: float) -> None:
        preexec = self._demote if os.geteuid() == 0 else None
        done = subprocess.run(argv, preexec_fn=preexec, capture_output=True, timeout=timeout,
                              cwd=self.dir, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}")

    def start(self, timeout: float = 60.0) -> None:
        """Start ``postgres`` and wait until it accepts connections."""
        preexec = self._demote if os.geteuid() == 0 else None
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=50",
                 "-c", "shared_buffers=64MB",
                 *(arg for setting in self.settings for arg in ("-c", setting))],
                preexec_fn=preexec, stdout=log, stderr=log, cwd=self.dir)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.server_log()[-2000:]}")
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start within {timeout} s")

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far: the postmaster and every process it
        started (backends that ended included: the postmaster reaped them). Linux."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        fields = _stat(self.proc.pid)
        total = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                child = _stat(int(entry.name))
                if len(child) > 12 and child[1] == str(self.proc.pid):
                    total += int(child[11]) + int(child[12])
        return total / tick

    def server_log(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, keep: bool = False, timeout: float = 30.0) -> None:
        """Stop the server (by PID); remove its directory unless ``keep``."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def createdb(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first); [] when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text.rsplit(")", 1)[1].split()
