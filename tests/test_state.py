"""The node state directory: identity, durable boot counter, atomic files, the lock.

Crashes are simulated two ways: by making the rename raise a BaseException (the
writer stops between write and rename, as if killed there), and by a real child
process killed with SIGKILL while it holds the lock. Lock races use real child
processes, synchronised through files, with every wait bounded.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganglion.errors import StateCorruptError, StateError, StateLockedError
from ganglion.state import BOOT_FILE, LOCK_FILE, NODE_ID_FILE, NodeState, default_state_dir

_WAIT = 10.0  # upper bound on any wait for a child process


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def opened(state_dir: Path) -> Iterator[NodeState]:
    with NodeState.open(state_dir) as st:
        yield st


class _Crash(BaseException):
    """Stands for the process dying at the instant the patched call is made."""


# -- identity and boot counter -----------------------------------------------------------


def test_first_open_creates_a_private_dir_with_an_id_and_boot_one(state_dir: Path) -> None:
    with NodeState.open(state_dir) as st:
        assert st.path == state_dir
        assert len(st.node_id) == 8
        assert st.boot == 1
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert (state_dir / NODE_ID_FILE).read_text() == st.node_id.hex() + "\n"
    assert (state_dir / BOOT_FILE).read_text() == "1\n"


def test_an_existing_loose_state_dir_is_tightened_to_0700(state_dir: Path) -> None:
    # Issue 21 finding 8: a directory made by hand (or an older version) kept its mode.
    state_dir.mkdir(mode=0o755)
    os.chmod(state_dir, 0o755)
    with NodeState.open(state_dir):
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_node_id_is_reused_and_boot_grows_on_every_open(state_dir: Path) -> None:
    seen = []
    for _ in range(5):
        with NodeState.open(state_dir) as st:
            seen.append((st.node_id, st.boot))
    assert {node_id for node_id, _ in seen} == {seen[0][0]}
    assert [boot for _, boot in seen] == [1, 2, 3, 4, 5]


def test_two_directories_get_different_ids(tmp_path: Path) -> None:
    with NodeState.open(tmp_path / "a") as a, NodeState.open(tmp_path / "b") as b:
        assert a.node_id != b.node_id


def test_boot_is_persisted_before_open_returns(state_dir: Path) -> None:
    with NodeState.open(state_dir) as st:
        # Still open: a crash now must not let the next start reuse this number.
        assert (state_dir / BOOT_FILE).read_text().strip() == str(st.boot)


def test_a_crash_before_the_boot_rename_never_hands_out_a_lower_boot(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with NodeState.open(state_dir):
        pass  # boot 1 is durable
    real_replace = os.replace

    def crash_on_boot(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == BOOT_FILE:
            raise _Crash
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_boot)
    with pytest.raises(_Crash):
        NodeState.open(state_dir)  # this start never got a boot number: it never used one
    monkeypatch.setattr(os, "replace", real_replace)
    with NodeState.open(state_dir) as st:
        assert st.boot == 2


def test_corrupt_node_id_names_the_file_and_the_fix(state_dir: Path) -> None:
    with NodeState.open(state_dir):
        pass
    (state_dir / NODE_ID_FILE).write_text("not hex at all!!\n")
    with pytest.raises(StateCorruptError) as info:
        NodeState.open(state_dir)
    message = str(info.value)
    assert str(state_dir / NODE_ID_FILE) in message
    assert "delete it" in message and "16 hex digits" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("content", ["", "abcd\n", "0123456789abcdef00\n", "0123456789abcdeg\n"])
def test_node_id_of_wrong_length_or_digits_is_corrupt(state_dir: Path, content: str) -> None:
    state_dir.mkdir()
    (state_dir / NODE_ID_FILE).write_text(content)
    with pytest.raises(StateCorruptError, match="node_id is corrupt"):
        NodeState.open(state_dir)


def test_a_failed_open_releases_the_lock(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / NODE_ID_FILE).write_text("zz\n")
    with pytest.raises(StateCorruptError):
        NodeState.open(state_dir)
    (state_dir / NODE_ID_FILE).unlink()
    with NodeState.open(state_dir) as st:  # would be StateLockedError had the fd leaked
        assert st.boot == 1


def test_corrupt_boot_counter_names_the_file(state_dir: Path) -> None:
    with NodeState.open(state_dir):
        pass
    (state_dir / BOOT_FILE).write_text("-3\n")
    with pytest.raises(StateCorruptError, match=r"boot is corrupt.*'-3'"):
        NodeState.open(state_dir)


def test_missing_boot_with_an_old_id_continues_above_any_counter(state_dir: Path) -> None:
    with NodeState.open(state_dir) as first:
        pass
    (state_dir / BOOT_FILE).unlink()
    before = int(time.time())
    with NodeState.open(state_dir) as st:
        assert st.node_id == first.node_id
        assert st.boot > before
        assert st.boot < 1 << 32


def test_boot_counter_at_the_u32_limit_is_refused(state_dir: Path) -> None:
    with NodeState.open(state_dir):
        pass
    (state_dir / BOOT_FILE).write_text(f"{(1 << 32) - 1}\n")
    with pytest.raises(StateCorruptError, match="at its limit"):
        NodeState.open(state_dir)


def test_existing_dir_with_files_is_used_as_is(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o755)
    (state_dir / NODE_ID_FILE).write_text("00112233aabbccdd\n")
    (state_dir / BOOT_FILE).write_text("41\n")
    with NodeState.open(state_dir) as st:
        assert st.node_id == bytes.fromhex("00112233aabbccdd")
        assert st.boot == 42


def test_default_dir_comes_from_platformdirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "ganglion"
    with NodeState.open() as st:
        assert st.path == tmp_path / "xdg" / "ganglion"


def test_uncreatable_dir_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create the state directory"):
        NodeState.open(blocker / "state")


# -- write_atomic / read ------------------------------------------------------------------


def test_write_atomic_then_read_round_trips(opened: NodeState) -> None:
    assert opened.read("journal") is None
    opened.write_atomic("journal", b"\x00\x01first")
    assert opened.read("journal") == b"\x00\x01first"
    opened.write_atomic("journal", b"second")
    assert opened.read("journal") == b"second"
    opened.write_atomic("journal", b"")
    assert opened.read("journal") == b""
    assert stat.S_IMODE((opened.path / "journal").stat().st_mode) == 0o600


def test_written_files_survive_reopen(state_dir: Path) -> None:
    with NodeState.open(state_dir) as st:
        st.write_atomic("acceptor.cbor", b"promise")
    with NodeState.open(state_dir) as st:
        assert st.read("acceptor.cbor") == b"promise"


def test_write_atomic_fsyncs_the_file_and_then_the_directory(
    opened: NodeState, disk_order: list[str]
) -> None:
    opened.write_atomic("journal", b"x")
    assert disk_order == ["fsync-file", "rename", "fsync-dir"]


def test_crash_between_write_and_rename_keeps_the_old_contents(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = NodeState.open(state_dir)
    st.write_atomic("journal", b"old")
    def crash(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise _Crash

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(_Crash):
        st.write_atomic("journal", b"new and longer")
    monkeypatch.undo()
    leftover = state_dir / ".journal.tmp"
    assert leftover.read_bytes() == b"new and longer"  # the crash left the temp behind
    assert st.read("journal") == b"old"  # ...and reads ignore it
    st.close()
    with NodeState.open(state_dir) as again:
        assert again.read("journal") == b"old"
        assert not leftover.exists()  # cleaned up under the lock at the next open


def test_leftover_temp_of_a_file_never_written_reads_as_absent(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / ".journal.tmp").write_bytes(b"half a reco")
    with NodeState.open(state_dir) as st:
        assert st.read("journal") is None
        assert not (state_dir / ".journal.tmp").exists()


def test_failed_write_is_a_state_error(opened: NodeState, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(StateError, match=r"cannot write .*journal: No space left"):
        opened.write_atomic("journal", b"x")
    monkeypatch.undo()
    assert opened.read("journal") is None


@pytest.mark.parametrize(
    "name", ["", "../escape", "a/b", ".hidden", "x.tmp", "name with space", "n" * 129]
)
def test_names_that_could_escape_or_collide_are_refused(opened: NodeState, name: str) -> None:
    with pytest.raises(StateError, match="not a valid state file name"):
        opened.write_atomic(name, b"x")
    with pytest.raises(StateError, match="not a valid state file name"):
        opened.read(name)


def test_the_lock_file_cannot_be_overwritten(opened: NodeState) -> None:
    with pytest.raises(StateError, match="lock"):
        opened.write_atomic(LOCK_FILE, b"1234")


def test_file_path_names_a_path_inside_the_dir(opened: NodeState) -> None:
    assert opened.file_path("bus.ipc") == opened.path / "bus.ipc"
    with pytest.raises(StateError):
        opened.file_path("../bus.ipc")


def test_a_closed_state_refuses_reads_and_writes(state_dir: Path) -> None:
    st = NodeState.open(state_dir)
    st.close()
    st.close()  # idempotent
    assert st.closed
    assert "closed" in repr(st)
    with pytest.raises(StateError, match="closed"):
        st.read("journal")
    with pytest.raises(StateError, match="closed"):
        st.write_atomic("journal", b"x")


# -- the lock -----------------------------------------------------------------------------


def test_a_second_open_in_the_same_process_is_refused(opened: NodeState) -> None:
    with pytest.raises(StateLockedError) as info:
        NodeState.open(opened.path)
    assert f"process {os.getpid()}" in str(info.value)
    # the state module names no CLI flag: Node and the CLI each add their own words
    assert info.value.remedy == "stop the other node or give this one another state directory"
    assert "--state-dir" not in str(info.value)
    assert info.value.with_remedy("use X").args == (f"{info.value.problem}; use X",)


def test_the_lock_is_released_on_close(state_dir: Path) -> None:
    NodeState.open(state_dir).close()
    with NodeState.open(state_dir) as st:
        assert st.boot == 2


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ganglion.errors import StateLockedError
    from ganglion.state import NodeState

    state, go, release, report = (Path(a) for a in sys.argv[1:5])
    deadline = time.monotonic() + 10
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        st = NodeState.open(state)
    except StateLockedError as exc:
        report.write_text("locked:" + str(exc))
        sys.exit(0)
    report.write_text(f"won:{st.boot}")
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    st.close()
    """
)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, *args])


def _wait_for(paths: list[Path]) -> None:
    deadline = time.monotonic() + _WAIT
    while not all(p.exists() and p.read_text() for p in paths):
        assert time.monotonic() < deadline, "child processes did not report in time"
        time.sleep(0.01)


def test_processes_racing_for_one_dir_exactly_one_wins(tmp_path: Path) -> None:
    state, go, release = tmp_path / "state", tmp_path / "go", tmp_path / "release"
    reports = [tmp_path / f"report{i}" for i in range(4)]
    children = [_spawn(str(state), str(go), str(release), str(r)) for r in reports]
    try:
        go.touch()
        _wait_for(reports)  # the winner holds the lock until every loser has reported
        outcomes = [r.read_text() for r in reports]
        winners = [o for o in outcomes if o.startswith("won:")]
        losers = [o for o in outcomes if o.startswith("locked:")]
        assert winners == ["won:1"]
        assert len(losers) == 3
        winner_pid = children[[o.startswith("won:") for o in outcomes].index(True)].pid
        # The PID is written right after the flock; a very fast loser may miss it.
        assert all(f"process {winner_pid}" in o or "another process" in o for o in losers)
        release.touch()
        for child in children:
            assert child.wait(timeout=_WAIT) == 0
    finally:
        release.touch()
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=_WAIT)
    with NodeState.open(state) as st:  # the winner released it on exit
        assert st.boot == 2


def test_a_loser_names_the_holder_pid(tmp_path: Path, state_dir: Path) -> None:
    with NodeState.open(state_dir):
        report, go = tmp_path / "report", tmp_path / "go"
        go.touch()
        child = _spawn(str(state_dir), str(go), str(tmp_path / "release"), str(report))
        try:
            assert child.wait(timeout=_WAIT) == 0
        finally:
            if child.poll() is None:
                child.kill()
        assert report.read_text().startswith(f"locked:the state directory {state_dir} is in use "
                                             f"by process {os.getpid()}")


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path, state_dir: Path) -> None:
    report, go = tmp_path / "report", tmp_path / "go"
    go.touch()
    child = _spawn(str(state_dir), str(go), str(tmp_path / "never"), str(report))
    try:
        _wait_for([report])
        assert report.read_text() == "won:1"
        with pytest.raises(StateLockedError, match=f"process {child.pid}"):
            NodeState.open(state_dir)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=_WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=_WAIT)
    with NodeState.open(state_dir) as st:
        assert st.boot == 2


def test_lock_file_holds_the_holders_pid(opened: NodeState) -> None:
    assert (opened.path / LOCK_FILE).read_text() == f"{os.getpid()}\n"

