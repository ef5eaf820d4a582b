"""How the CLI talks: one error style, quiet ends of broken pipes, names not ids."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from cli_procs import REPO, clean_env

from ganglion.logger.writer import Writer
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record


def make_log(db: Path, count: int = 3000) -> None:
    """A log big enough that exporting it overfills a pipe nobody reads."""
    writer = Writer(db, batch_rows=1000)
    writer.start()
    for i in range(count):
        writer.add(Record("sensors.Temperature", {"sensor": "p1", "celsius": 20.0 + i / 100}),
                   MessageInfo("sensors.Temperature", b"\x01" * 8, i, 1_000 + i, 2_000 + i))
    writer.close()


def test_every_error_line_of_the_cli_uses_clicks_style() -> None:
    """No command prints its own "error:" line: they all go through _report.error."""
    offenders = []
    for path in sorted((REPO / "ganglion" / "cli").glob("cmd_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.lower().startswith("error:"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"error lines printed by hand (use _report.error): {offenders}"


def test_a_failure_a_command_reports_itself_looks_like_a_usage_error(free_udp_port: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ganglion", "publish", "test.Nobody", "--json", "{}", "--timeout",
         "0.2", "--iface", "lo", "--port", str(free_udp_port)],
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Error: no group agreed for test.Nobody" in done.stderr, done.stderr


def test_export_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`ganglion export | head`: no error message, no traceback, SIGPIPE's exit status."""
    db = tmp_path / "log.db"
    make_log(db)
    proc = subprocess.Popen([sys.executable, "-m", "ganglion", "export", "--db", str(db)],
                            cwd=REPO, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()  # the header: the reader took what it wanted, and goes
    proc.stdout.close()
    try:
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert err == "", err
    assert code == 141
