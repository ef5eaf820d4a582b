"""ganglion does not depend on ``hardware``: types and simulated sensors come in by entry points.

The commands that show or check readings learn the installed message types from the
``ganglion.types`` entry points (:func:`ganglion.plugins.load_installed_types`), and
``ganglion sim`` gets its sensors from the ``sim`` plugin's entry point. Each test runs
a fresh interpreter (a subprocess, ended by its timeout) in which ``hardware`` cannot
be imported, or with a made-up distribution's entry points on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI_MODULES = sorted(p.stem for p in (ROOT / "ganglion" / "cli").glob("*.py")
                     if p.stem != "__init__")

#: Makes ``import hardware`` (and every ``hardware.*``) raise ImportError.
NO_HARDWARE = "import sys; sys.modules['hardware'] = None\n"


def _python(code: str, *, path: list[Path] | None = None, timeout: float = 60.0,
            ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(p) for p in path or []] + [str(ROOT)] + [env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_every_cli_module_imports_without_hardware() -> None:
    code = NO_HARDWARE + textwrap.dedent(f"""
        import importlib
        for name in {CLI_MODULES!r}:
            importlib.import_module("ganglion.cli." + name)
        assert "hardware" not in [m.split(".")[0] for m in sys.modules if sys.modules[m]]
        print("ok")
    """)
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("command", ["tail", "publish", "info", "demo", "sim"])
def test_commands_that_showed_hardware_types_run_their_help_without_it(command: str) -> None:
    code = NO_HARDWARE + textwrap.dedent(f"""
        from click.testing import CliRunner
        from ganglion.cli.main import cli
        result = CliRunner().invoke(cli, [{command!r}, "--help"])
        assert result.exit_code == 0, result.output
        print(result.output.splitlines()[0])
    """)
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert command in done.stdout


def test_info_runs_without_hardware(tmp_path: Path) -> None:
    """``info`` imported the sensor types by name; now it runs on whatever is installed."""
    db = tmp_path / "log.db"
    code = NO_HARDWARE + textwrap.dedent(f"""
        from click.testing import CliRunner
        from ganglion.cli.main import cli
        from ganglion.logger.schema import open_log
        open_log({str(db)!r}).close()
        result = CliRunner().invoke(cli, ["info", "--db", {str(db)!r}, "--json"])
        assert result.exit_code == 0, (result.output, result.exception)
        print("ok")
    """)
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_types_missing_from_the_environment_are_skipped_with_a_warning() -> None:
    code = NO_HARDWARE + textwrap.dedent("""
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        from ganglion.plugins import load_installed_types
        print(load_installed_types())
    """)
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # the installed hardware modules could not load


def test_sim_without_the_sim_plugin_is_a_one_line_error() -> None:
    code = NO_HARDWARE + textwrap.dedent("""
        from click.testing import CliRunner
        from ganglion.cli.main import cli
        result = CliRunner().invoke(cli, ["sim", "--kind", "temperature", "--count", "1"])
        print(result.exit_code)
        print(result.output)
    """)
    done = _python(code)
    assert done.returncode == 0, done.stderr
    code_line, *rest = done.stdout.splitlines()
    assert code_line == "1"
    assert "plugin 'sim'" in rest[0] and "cannot be imported" in rest[0], done.stdout
    assert "Traceback" not in done.stdout


def _distribution(tmp_path: Path, entry_points: str, modules: dict[str, str]) -> Path:
    """A made-up installed distribution: a dist-info with entry points, and its modules."""
    info = tmp_path / "house_types_test-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: house-types-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source)
    return tmp_path


def test_load_installed_types_registers_what_the_entry_points_name(tmp_path: Path) -> None:
    where = _distribution(tmp_path, textwrap.dedent("""
        [ganglion.types]
        good = house_types_good
        broken = house_types_broken
    """), {
        "house_types_good": textwrap.dedent("""
            from dataclasses import dataclass
            from ganglion import message

            @message("housetest.Reading")
            @dataclass
            class Reading:
                value: float
        """),
        "house_types_broken": "raise RuntimeError('broken on purpose')\n",
    })
    code = textwrap.dedent("""
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        from ganglion.types import lookup
        from ganglion.plugins import load_installed_types
        assert lookup("housetest.Reading") is None
        loaded = load_installed_types()
        print([m for m in loaded if m.startswith("house_types")])
        print(lookup("housetest.Reading").cls.__name__)
    """)
    done = _python(code, path=[where])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['house_types_good']", "Reading"]
    assert "'broken'" in done.stderr and "broken on purpose" in done.stderr
