"""The ``[history]`` table and ``repair`` key of the node config file, and their flags."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ganglion.config import NodeConfig, load_config, merge
from ganglion.errors import ConfigError, ConfigFileError
from ganglion.node import make_history
from ganglion.repair import DEFAULT_LIMITS, DEFAULT_TOTAL_BYTES, HistoryLimits


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as info:
        load_config(write(tmp_path, text))
    return info.value


def test_without_a_history_table_the_defaults_apply() -> None:
    base, per, total = NodeConfig().history()
    assert base == DEFAULT_LIMITS and per == {} and total == DEFAULT_TOTAL_BYTES
    assert NodeConfig().repair is True


def test_the_history_table_and_per_type_tables_are_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        repair = false

        [history]
        max_age = 30
        max_bytes = 100000
        total_bytes = 2000000

        [history.types."sensors.Temperature"]
        max_age = 600

        [history.types."camera.Frame"]
        max_bytes = 0
    """))
    base, per, total = cfg.history()
    assert base == HistoryLimits(max_bytes=100000, max_age=30.0) and total == 2000000
    assert per == {"sensors.Temperature": HistoryLimits(max_bytes=100000, max_age=600.0),
                   "camera.Frame": HistoryLimits(max_bytes=0, max_age=30.0)}
    assert cfg.repair is False
    history = make_history(base, per, total_bytes=total)
    assert history is not None and not history.enabled("camera.Frame")
    assert history.enabled("sensors.Temperature") and history.enabled("other.Type")


@pytest.mark.parametrize(("text", "line", "expected"), [
    ("[history]\nmax_age = -5\n", 2, "'history.max_age' must be a number of seconds, 0 or more "
     "(0 keeps no history), e.g. 60, not -5"),
    ("[history]\nmax_bytes = 1.5\n", 2, "'history.max_bytes' must be a whole number of bytes"),
    ("[history]\nmaxage = 5\n", 2, "did you mean 'history.max_age'?"),
    ('[history.types."sensors.Temperature"]\nmax_age = "long"\n', 2,
     'history.types."sensors.Temperature".max_age must be a number of seconds'),
    ('[history.types."sensors.Temperature"]\nmax_agee = 5\n', 2, "did you mean 'max_age'?"),
    ('[history.types."not a type"]\nmax_age = 5\n', 1, "not a type name"),
    ("repair = 1\n", 1, "'repair' must be true or false"),
])
def test_a_bad_history_value_names_the_line_and_the_fix(tmp_path: Path, text: str,
                                                        line: int, expected: str) -> None:
    err = error_of(tmp_path, text)
    assert expected in str(err)
    if line is not None:
        assert err.line == line and f"node.toml:{line}:" in str(err)


def test_flags_win_over_the_history_table(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[history]\nmax_age = 30\nmax_bytes = 1000\n"))
    cfg = merge(cfg, {"history_max_age": 0.0, "history_max_bytes": None, "repair": False})
    base, _per, _total = cfg.history()
    assert base == HistoryLimits(max_bytes=1000, max_age=0.0) and base.off
    assert cfg.repair is False
    with pytest.raises(ConfigError):
        merge(NodeConfig(), {"history_max_age": -1})


def test_make_history_takes_seconds_limits_or_none() -> None:
    assert make_history(None) is None
    assert make_history(DEFAULT_LIMITS, total_bytes=0) is None
    seconds = make_history(5.0)
    assert seconds is not None and seconds.limits == HistoryLimits(DEFAULT_LIMITS.max_bytes, 5.0)
    only = make_history(None, {"a.B": 10})
    assert only is not None and only.enabled("a.B") and not only.enabled("c.D")
    with pytest.raises(ConfigError, match=r"history of a\.B"):
        make_history(1.0, {"a.B": -1})
    with pytest.raises(ConfigError, match="number of seconds"):
        make_history("60")  # type: ignore[arg-type]


def test_a_node_checks_its_history_options_at_once(tmp_path: Path) -> None:
    from ganglion.node import Node

    with pytest.raises(ConfigError, match="history"):
        Node(name="n", interface="127.0.0.1", state_dir=tmp_path, history=-1.0)
    with pytest.raises(ConfigError, match=r"history of a\.B"):
        Node(name="n", interface="127.0.0.1", state_dir=tmp_path,
             history_per_type={"a.B": -3})
    node = Node(name="n", interface="127.0.0.1", state_dir=tmp_path, history=None,
                repair=False)
    assert node.history is None  # made at start
