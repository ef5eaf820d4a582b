"""The node config file: every key, every error path with its exact line, and merging flags."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganglion import config as config_mod
from ganglion import defaults
from ganglion.config import NodeConfig, load_config, merge
from ganglion.errors import ConfigError, ConfigFileError, LocalError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ConfigFileError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(str(path))
    return info.value


# -- valid files ----------------------------------------------------------------------------


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing set\n")
    cfg = load_config(path)
    assert cfg == NodeConfig(source=path)
    assert cfg.port == defaults.DATA_PORT
    assert cfg.ttl == defaults.DEFAULT_TTL
    assert cfg.max_datagram == defaults.MAX_DATAGRAM
    assert cfg.bus_ipc is True
    assert cfg.plugins == ()
    assert cfg.plugin_specs() == {}


def test_every_key_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name = "brewhouse"
        iface = "eth0"
        port = 48000
        key_file = "keys/net.key"
        ttl = 2
        state_dir = "/var/lib/ganglion"
        max_datagram = 1200
        plugins = ["onewire", "logger"]

        [bus]
        ipc = "bus.sock"
        tcp_port = 47900

        [sim]
        kinds = ["temperature", "flow"]
        interval = 2

        [plugin.logger]
        database = "readings.db"
        batch = { size = 100, seconds = 0.5 }
    """)
    cfg = load_config(path)
    assert cfg.name == "brewhouse"
    assert cfg.iface == "eth0"
    assert cfg.port == 48000
    assert cfg.key_file == tmp_path / "keys" / "net.key"  # relative to the file
    assert cfg.ttl == 2
    assert cfg.state_dir == Path("/var/lib/ganglion")  # absolute stays as written
    assert cfg.max_datagram == 1200
    assert cfg.plugins == ("onewire", "logger")
    assert cfg.bus_ipc == tmp_path / "bus.sock"
    assert cfg.bus_tcp_port == 47900
    assert cfg.sim_kinds == ("temperature", "flow")
    assert cfg.sim_interval == 2.0 and isinstance(cfg.sim_interval, float)
    assert cfg.plugin_settings == {
        "logger": {"database": "readings.db", "batch": {"size": 100, "seconds": 0.5}}
    }
    assert cfg.source == path


def test_home_in_paths_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config(write(tmp_path, 'state_dir = "~/state"\n'))
    assert cfg.state_dir == tmp_path / "home" / "state"


@pytest.mark.parametrize("text, expected", [("ipc = false", False), ("ipc = true", True)])
def test_bus_ipc_takes_a_bool(tmp_path: Path, text: str, expected: bool) -> None:
    assert load_config(write(tmp_path, f"[bus]\n{text}\n")).bus_ipc is expected


def test_dotted_and_quoted_keys_and_inline_tables_are_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        "name" = "n1"
        bus.tcp_port = 5000
        sim = { kinds = ["humidity"] }
    """))
    assert (cfg.name, cfg.bus_tcp_port, cfg.sim_kinds) == ("n1", 5000, ("humidity",))


def test_config_is_frozen_and_plugin_settings_are_read_only(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[plugin.x]\na = 1\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.plugin_settings["x"]["a"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.plugin_settings["y"] = {}  # type: ignore[index]


# -- unknown keys: line and closest key ------------------------------------------------------


def test_unknown_top_level_key_names_line_and_closest_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, """
        # my node
        port = 47800

        nmae = "x"
    """)
    assert err.line == 4
    assert err.key == "nmae"
    assert str(err) == f"{tmp_path / 'node.toml'}:4: unknown key 'nmae'; did you mean 'name'?"


def test_unknown_key_in_a_table_suggests_the_table_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, """
        name = "a"
        [bus]
        ipc = true
        tcp_prot = 4000
    """)
    assert (err.line, err.key) == (4, "bus.tcp_prot")
    assert "did you mean 'bus.tcp_port'?" in str(err)


def test_table_key_written_at_top_level_points_to_its_table(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'name = "a"\ninterval = 2\n')
    assert err.line == 2
    assert "unknown key 'interval'; did you mean 'sim.interval'?" in str(err)


def test_unknown_table_is_blamed_on_its_header(tmp_path: Path) -> None:
    err = error_of(tmp_path, """
        name = "a"

        [buss]
        ipc = true
    """)
    assert (err.line, err.key) == (3, "buss")
    assert "did you mean 'bus'?" in str(err)


def test_with_no_close_match_the_valid_keys_are_listed(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[sim]\nzzzzzzzz = 1\n")
    assert err.line == 2
    assert str(err).endswith("unknown key 'sim.zzzzzzzz'; valid keys here: interval, kinds")


def test_with_no_close_match_at_top_level_tables_are_listed_too(tmp_path: Path) -> None:
    err = error_of(tmp_path, "qqqqqqqqqqqq = 1\n")
    assert "valid keys here:" in str(err)
    assert "[bus]" in str(err) and "[plugin]" in str(err) and "max_datagram" in str(err)


def test_unknown_dotted_key_gets_its_own_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'name = "a"\n\nbus.tcpport = 5\n')
    assert (err.line, err.key) == (3, "bus.tcpport")
    assert "did you mean 'bus.tcp_port'?" in str(err)


def test_unknown_key_in_an_inline_table_gets_the_inline_tables_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'name = "a"\nbus = { ipc = true, tcp_prot = 1 }\n')
    assert (err.line, err.key) == (2, "bus.tcp_prot")


def test_keys_inside_multiline_strings_do_not_fool_the_line_finder(tmp_path: Path) -> None:
    err = error_of(tmp_path, '''
        [plugin.notes]
        text = """
        [bus]
        tcp_prot = 3
        """
        raw = \'\'\'
        [bus]
        tcp_prot = 4 \'\'\'

        [bus]
        tcp_prot = 5
    ''')
    assert err.line == 11


def test_quotes_and_hashes_inside_strings_do_not_fool_the_line_finder(tmp_path: Path) -> None:
    err = error_of(tmp_path, r'''
        name = "a # not a comment \" still = inside"
        iface = 'c:\path = x'
        plugins = [
          "one",  # a comment with """ in it
          "two",
        ]
        nmae = 3
    ''')
    assert err.line == 7


def test_quoted_table_names_are_understood(tmp_path: Path) -> None:
    err = error_of(tmp_path, """
        [plugin."my.plugin"]
        a = 1
        [ "sim" ]
        kind = ["flow"]
    """)
    assert (err.line, err.key) == (4, "sim.kind")
    assert "did you mean 'sim.kinds'?" in str(err)


# -- wrong types: key, expected type, line -------------------------------------------------


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('port = "80"', "port", "must be an integer from 1 to 65534, not '80'"),
        ("port = 0", "port", "must be an integer from 1 to 65534, not 0"),
        ("port = 65535", "port", "must be an integer from 1 to 65534, not 65535"),
        ("port = true", "port", "must be an integer from 1 to 65534, not True"),
        ("ttl = 256", "ttl", "must be an integer from 0 to 255"),
        ("max_datagram = 100", "max_datagram", "must be an integer from 256 to 65507"),
        ('name = ""', "name", "must be a non-empty string, not ''"),
        ("iface = 3", "iface", "must be a non-empty string"),
        ("key_file = 1.5", "key_file", "must be a non-empty string"),
        ('plugins = "sim"', "plugins", "must be a list of non-empty strings, not 'sim'"),
        ('plugins = ["a", 3]', "plugins", "must be a list of non-empty strings"),
        ('plugins = ["a", "a"]', "plugins", "must be a list without repeats"),
        ("bus.ipc = 3", "bus.ipc", "must be true, false or a socket path, not 3"),
        ("bus.tcp_port = 70000", "bus.tcp_port", "must be an integer from 1 to 65535"),
        ("sim.interval = 0", "sim.interval", "must be a number of seconds greater than 0"),
        ("sim.interval = -1.5", "sim.interval", "must be a number of seconds greater than 0"),
        ('sim.kinds = "flow"', "sim.kinds", "must be a list of non-empty strings"),
    ],
)
def test_wrong_type_names_key_expected_type_and_line(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    err = error_of(tmp_path, f"# line 1\n\n{text}\n")
    assert err.line == 3
    assert err.key == key
    assert f"node.toml:3: {key!r} {expected}" in str(err)


def test_wrong_type_in_a_table_names_the_line_in_the_table(tmp_path: Path) -> None:
    err = error_of(tmp_path, """
        [sim]
        kinds = ["flow"]

        interval = "fast"
    """)
    assert (err.line, err.key) == (4, "sim.interval")
    assert "'sim.interval' must be a number of seconds greater than 0, not 'fast'" in str(err)


def test_a_multiline_list_is_blamed_on_its_key_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'name = "a"\nplugins = [\n  "a",\n  7,\n]\n')
    assert (err.line, err.key) == (2, "plugins")


@pytest.mark.parametrize(
    "text, line, key, message",
    [
        ('name = "a"\nbus = 5\n', 2, "bus", "'bus' must be a table ([bus])"),
        ('name = "a"\nplugin = 3\n', 2, "plugin", "'plugin' must hold one table per plugin"),
        ('name = "a"\nplugin.x = 3\n', 2, "plugin.x", "'plugin.x' must be a table of that"),
    ],
)
def test_a_scalar_where_a_table_belongs(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    err = error_of(tmp_path, text)
    assert (err.line, err.key) == (line, key)
    assert message in str(err)


# -- file and syntax errors ------------------------------------------------------------------


def test_syntax_error_keeps_tomllibs_line_and_column(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'name = "a"\nport = \n')
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert err.line == 2
    assert err.key is None
    assert re.search(r"node\.toml: invalid TOML: .*\(at line 2, column \d+\)", str(err))


def test_duplicate_key_is_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'name = "a"\n\nname = "b"\n')
    assert err.line == 3


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"cannot read config file .*absent\.toml") as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.line is None


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        load_config(path)


# -- plugin specs ----------------------------------------------------------------------------


def test_plugin_specs_pass_each_plugins_table_in_order(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        plugins = ["b", "a"]
        [plugin.a]
        x = 1
        [plugin.unused]
        y = 2
    """))
    specs = cfg.plugin_specs()
    assert list(specs) == ["b", "a"]
    assert specs == {"b": {}, "a": {"x": 1}}
    specs["a"]["x"] = 99  # a copy: the config is untouched
    assert cfg.plugin_settings["a"]["x"] == 1


def test_sim_kinds_enable_the_sim_plugin_and_win_over_its_table(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        plugins = ["logger"]
        [sim]
        kinds = ["flow"]
        interval = 0.25
        [plugin.sim]
        kinds = ["humidity"]
        interval = 9
        seed = 4
    """))
    assert cfg.plugin_specs() == {
        "logger": {},
        "sim": {"kinds": ["flow"], "interval": 0.25, "seed": 4},
    }


def test_sim_plugin_named_without_kinds_keeps_its_table(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'plugins = ["sim"]\n[plugin.sim]\ninterval = 3\n'))
    assert cfg.plugin_specs() == {"sim": {"interval": 3}}


# -- merge -------------------------------------------------------------------------------------


def test_flags_win_and_flags_not_given_leave_the_file_alone(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'name = "file"\nport = 48000\nttl = 2\nplugins = ["a"]\n'))
    merged = merge(cfg, {"name": "cli", "port": None, "ttl": 3, "plugins": ()})
    assert (merged.name, merged.port, merged.ttl, merged.plugins) == ("cli", 48000, 3, ("a",))
    assert cfg.name == "file"  # the original is untouched


def test_a_repeated_flag_replaces_the_files_list() -> None:
    merged = merge(NodeConfig(plugins=("a", "b"), sim_kinds=("flow",)),
                   {"plugins": ("c",), "sim_kinds": ["temperature", "humidity"]})
    assert merged.plugins == ("c",)
    assert merged.sim_kinds == ("temperature", "humidity")


def test_relative_flag_paths_are_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    merged = merge(NodeConfig(), {"state_dir": Path("st"), "key_file": "/abs/k"})
    assert merged.state_dir == tmp_path / "st"
    assert merged.key_file == Path("/abs/k")


def test_a_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--bus-tcp-port must be an integer from 1 to 65535, not 0$"):
        merge(NodeConfig(), {"bus_tcp_port": 0})


def test_an_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(LocalError, match="'colour' is not a NodeConfig field"):
        merge(NodeConfig(), {"colour": "red"})
    with pytest.raises(LocalError):
        merge(NodeConfig(), {"plugin_settings": {}})


# -- the line finder as a property ---------------------------------------------------------------

# Values whose text looks like the key under test: a line finder fooled by the inside of a
# string, comment or array would report one of these lines instead of the real one.
_DECOYS = [
    '"a = b # [sim] kindz = 1"',
    '"""\nkindz = 2\n[sim]\nkindz = 2\n"""',
    "'''\n[sim]\nkindz = 3'''",
    '[\n  "x", # kindz = 4\n  """\n[sim]\nkindz = 4\n""",\n]',
    '{ a = 1, b = "] [sim]" }',
    "'c:\\p\\'",
    '"""one line with \\""" inside"""',
]
_LINES = ["", "# [sim]", "  # kindz = 9", "\t"]


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.one_of(st.sampled_from(_DECOYS).map(lambda d: ("value", d)),
                                st.sampled_from(_LINES).map(lambda line: ("line", line))),
                      max_size=10),
       gap=st.integers(0, 3))
def test_line_of_an_unknown_key_after_decoys_is_exact(
    tmp_path_factory: pytest.TempPathFactory, items: list[tuple[str, str]], gap: int
) -> None:
    body = ["[plugin.fill]"]
    for index, (kind, text) in enumerate(items):
        body.extend((f"k{index} = {text}" if kind == "value" else text).split("\n"))
    body.append("[sim]")
    body.extend([""] * gap)
    body.append("kindz = 1")
    path = tmp_path_factory.mktemp("prop") / "c.toml"
    path.write_text("\n".join(body) + "\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert info.value.key == "sim.kindz", str(info.value)
    assert info.value.line == len(body)


# -- docs ------------------------------------------------------------------------------------------


def test_every_key_is_documented_with_type_and_default() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for dotted in config_mod._SCHEMA:
        key = dotted.rpartition(".")[2]
        assert re.search(rf"^\| `{re.escape(key)}` \|", text, re.MULTILINE), f"{dotted} undocumented"
    assert "[plugin.<name>]" in text
