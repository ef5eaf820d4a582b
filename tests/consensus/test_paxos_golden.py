"""Golden traces: scripted runs whose full message trace is checked in.

Each ``testdata/*.txt`` file is a script in the command language of
:mod:`consensus.sim.script`; the expected output of every command is stored under it.
A change in the protocol's behaviour shows up as a reviewable diff. Regenerate with
``pytest tests/consensus/test_paxos_golden.py --update-golden``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.sim.script import ScriptError, parse_script, run_script

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_golden_trace(path: Path, update_golden: bool) -> None:
    expected = path.read_text()
    actual = run_script(expected)
    if update_golden:
        path.write_text(actual)
        return
    assert actual == expected, f"{path.name} changed; rerun with --update-golden and review the diff"


def test_golden_files_exist() -> None:
    assert len(SCRIPTS) >= 5


def test_script_is_deterministic() -> None:
    text = SCRIPTS[0].read_text()
    assert run_script(text) == run_script(text)


def test_script_rejects_unknown_command() -> None:
    with pytest.raises(ScriptError):
        run_script("add-nodes 1\n----\n\nfly 1\n----\n")


def test_script_rejects_block_without_separator() -> None:
    with pytest.raises(ScriptError):
        parse_script("add-nodes 1\n")
