"""The hardware plugin in the node's config: on by default in ``ganglion node``, off by
``hardware = false`` or ``--no-hardware``, GPIO from the file and from ``--gpio``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ganglion.config import NodeConfig, load_config, merge
from ganglion.errors import ConfigError, ConfigFileError
from ganglion.plugins import load_plugins
from hardware.plugin import HardwarePlugin


def test_plain_plugin_specs_are_unchanged_but_the_node_adds_hardware() -> None:
    config = NodeConfig()
    assert config.plugin_specs() == {}
    assert config.plugin_specs(include_hardware=True) == {"hardware": {}}


def test_hardware_false_in_the_file_turns_it_off(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("hardware = false\n")
    assert load_config(path).plugin_specs(include_hardware=True) == {}


def test_the_flag_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("hardware = false\n")
    assert merge(load_config(path), {"hardware": True}).hardware is True
    assert merge(NodeConfig(), {"hardware": False}).hardware is False
    assert merge(NodeConfig(), {"hardware": None}).hardware is True


def test_gpio_from_the_file_and_plugin_table_are_combined(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('gpio = ["input:17"]\n\n[plugin.hardware]\n'
                    'gpio = [{kind = "counter", pin = 27, per_unit = 450}]\nscan_interval = 5\n')
    specs = load_config(path).plugin_specs(include_hardware=True)
    assert specs == {"hardware": {"gpio": [{"kind": "counter", "pin": 27, "per_unit": 450},
                                           "input:17"], "scan_interval": 5}}
    (plugin,) = load_plugins(specs)
    assert isinstance(plugin, HardwarePlugin)
    assert [(g.kind, g.pin) for g in plugin.gpio_specs] == [("counter", "27"), ("input", "17")]


def test_gpio_flags_replace_the_files_list(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('gpio = ["input:17"]\n')
    config = merge(load_config(path), {"gpio": ("input:5",)})
    assert config.plugin_specs(include_hardware=True)["hardware"]["gpio"] == ["input:5"]


def test_a_wrong_hardware_value_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('name = "x"\nhardware = "no"\n')
    with pytest.raises(ConfigFileError, match=r"node.toml:2: 'hardware' must be true or false"):
        load_config(path)


def test_a_listed_hardware_plugin_is_kept_even_when_detection_is_off() -> None:
    config = NodeConfig(plugins=("hardware",), hardware=False)
    assert config.plugin_specs(include_hardware=True) == {"hardware": {}}


def test_a_bad_gpio_flag_stops_the_node_with_the_reason(tmp_path: Path) -> None:
    from ganglion.cli.main import cli

    result = CliRunner().invoke(cli, ["node", "--state-dir", str(tmp_path / "s"),
                                      "--gpio", "door:17"])
    assert result.exit_code != 0
    assert "gpio[0].kind must be 'input' or 'counter'" in result.output


def test_merge_checks_the_flag_type() -> None:
    with pytest.raises(ConfigError, match="--hardware must be true or false"):
        merge(NodeConfig(), {"hardware": "yes"})
