"""How the CLI talks: one error style, quiet ends of broken pipes, names not ids."""

from __future__ import annotations

import ast
import csv
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cli_procs import REPO, clean_env
from click.testing import CliRunner

from ganglion.cli._format import SenderNames
from ganglion.cli.main import cli
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


# -- names, not ids ------------------------------------------------------------------


@dataclass
class Peer:
    id: bytes
    name: str


def test_senders_are_named_with_the_id_only_where_a_name_is_shared_or_unknown() -> None:
    now = [0.0]
    peers = [Peer(b"\x01" * 8, "brewery"), Peer(b"\x02" * 8, "cellar"), Peer(b"\x03" * 8, "cellar")]
    names = SenderNames(lambda: peers, clock=lambda: now[0])
    assert names.label(b"\x01" * 8) == "brewery"
    assert names.label(b"\x02" * 8) == "cellar (02020202)"
    assert names.label(b"\x09" * 8) == "09090909"
    peers.append(Peer(b"\x09" * 8, "roof"))
    assert names.label(b"\x09" * 8) == "09090909", "looked up at most once a second"
    now[0] = 1.5
    assert names.label(b"\x09" * 8) == "roof"
    assert names.name(b"\x01" * 8) == "brewery" and names.name(b"\x07" * 8) is None


def test_csv_export_names_the_nodes_the_logger_heard(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    writer = Writer(db, batch_rows=10)
    writer.start()
    writer.set_node_names({b"\x01" * 8: "brewery"})
    for sender in (b"\x01" * 8, b"\x02" * 8):
        writer.add(Record("sensors.Temperature", {"sensor": "p1", "celsius": 20.5}),
                   MessageInfo("sensors.Temperature", sender, 0, 1_000, 2_000))
    writer.close()
    result = CliRunner().invoke(cli, ["export", "--db", str(db)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["node"], r["node_name"]) for r in rows] == [
        ("01" * 8, "brewery"), ("02" * 8, "")]


def test_tail_names_the_sender_and_ends_quietly_when_its_reader_goes(free_udp_port: int) -> None:
    port = str(free_udp_port)
    sim = subprocess.Popen([sys.executable, "-m", "ganglion", "sim", "--kind", "temperature",
                            "--name", "brewery", "--interval", "0.1", "--quiet", "--iface", "lo",
                            "--port", port], cwd=REPO, env=clean_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        shown = subprocess.run(
            [sys.executable, "-m", "ganglion", "tail", "sensors.Temperature", "--count", "3",
             "--timeout", "20", "--no-last", "--iface", "lo", "--port", port],
            cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert len(lines) == 3 and all("  brewery " in line for line in lines), lines
        tail = subprocess.Popen(
            [sys.executable, "-m", "ganglion", "tail", "sensors.Temperature", "--timeout", "20",
             "--iface", "lo", "--port", port], cwd=REPO, env=clean_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert tail.stdout is not None and tail.stderr is not None
        tail.stdout.close()  # `| head -0`: the reader is gone before the first reading
        try:
            code = tail.wait(timeout=30)
            err = tail.stderr.read().decode()
        finally:
            tail.kill()
            tail.wait()
        assert code == 141, err
        assert "Traceback" not in err and "Broken pipe" not in err, err
    finally:
        sim.terminate()
        sim.wait(timeout=10)
