"""Issue 20, defect 7: ``ganglion export --type`` says which logged types are close to a
pattern that matches none (a typo), and still exports what does match."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from log_support import info

from ganglion.cli.main import cli
from ganglion.logger.writer import Writer
from ganglion.types import Record


def _log(db: Path) -> None:
    writer = Writer(db)
    writer.start()
    for seq in range(3):
        writer.add(Record("sensors.Temperature", {"celsius": 20.0 + seq}),
                   info("sensors.Temperature", seq=seq))
    writer.close()


def test_export_of_a_typo_names_the_close_type(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    result = CliRunner().invoke(cli, ["export", "--db", str(db), "--type", "sensors.Temperatur"])
    assert result.exit_code == 0, result.output
    assert ("ganglion export: --type sensors.Temperatur matches no type in the log; "
            "did you mean sensors.Temperature?") in result.stderr
    assert "exported 0 readings" in result.stderr


def test_export_of_a_matching_pattern_prints_no_hint(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    result = CliRunner().invoke(cli, ["export", "--db", str(db), "--type", "sensors.*"])
    assert result.exit_code == 0, result.output
    assert "matches no type" not in result.stderr and "exported 3 readings" in result.stderr
