"""scripts/venv.sh installs only what is missing: one stamp covers any subset of the
extras installed, so `make demo` after `make test` needs no network.

Each test runs the real script in a copy of the repository's layout whose
``.venv/bin/python`` is a stand-in that records what it was asked to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FULL = "dev,bench,pi,fast,secure,postgres,dashboard,mqtt"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "venv.sh", tmp_path / "scripts" / "venv.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "ganglion" / "_c").mkdir(parents=True)
    (tmp_path / "ganglion" / "_c" / "speedups.c").write_text("")
    (tmp_path / "ganglion" / "_speedups.so").write_text("")  # built: no compiler needed
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls"}\n')
    fake.chmod(0o755)
    past = time.time() - 7200
    for path in (tmp_path / "pyproject.toml", tmp_path / "ganglion" / "_c" / "speedups.c"):
        os.utime(path, (past, past))
    return tmp_path


def venv(tree: Path, extras: str) -> list[str]:
    """Run venv.sh; return the extras strings it installed (empty: it installed nothing)."""
    before = (tree / "calls").read_text().splitlines() if (tree / "calls").exists() else []
    subprocess.run(["bash", str(tree / "scripts" / "venv.sh"), extras], cwd=tree, check=True,
                   timeout=30, capture_output=True)
    after = (tree / "calls").read_text().splitlines() if (tree / "calls").exists() else []
    return [c.split("-e ", 1)[1] for c in after[len(before):] if "-e " in c]


def test_a_subset_of_the_installed_extras_installs_nothing(tree: Path) -> None:
    assert venv(tree, FULL) == [".[bench,dashboard,dev,fast,mqtt,pi,postgres,secure]"]
    assert venv(tree, "fast,secure") == []  # make demo after make test: offline
    assert venv(tree, "") == []
    assert venv(tree, "dev,bench,fast") == []
    assert (tree / ".venv" / ".installed").read_text().split() == sorted(FULL.split(","))


def test_a_missing_extra_installs_the_union_never_narrowing_the_venv(tree: Path) -> None:
    assert venv(tree, "fast,secure") == [".[fast,secure]"]
    assert venv(tree, "dev") == [".[dev,fast,secure]"]
    assert venv(tree, "fast") == []


def test_a_newer_pyproject_or_c_source_reinstalls(tree: Path) -> None:
    stamp = tree / ".venv" / ".installed"
    venv(tree, "fast")
    for changed in (tree / "pyproject.toml", tree / "ganglion" / "_c" / "speedups.c"):
        an_hour_ago = time.time() - 3600
        os.utime(stamp, (an_hour_ago, an_hour_ago))  # installed before the change below
        changed.touch()
        assert venv(tree, "") == [".[fast]"], changed
        assert venv(tree, "fast") == []


def test_the_older_per_string_stamps_count_as_installed(tree: Path) -> None:
    (tree / ".venv" / f".installed-{FULL}").write_text("")
    (tree / ".venv" / ".installed-core").write_text("")
    assert venv(tree, "fast,secure") == []
    assert (tree / ".venv" / ".installed").read_text().split() == sorted(FULL.split(","))
