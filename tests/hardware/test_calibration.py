"""Sensor names and calibration: ``[sensors."ID"]`` applied at the publishing node, raw kept."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from hw_support import RecordingNode, fast_runtime, run, until

from ganglion.config import load_config
from ganglion.errors import ConfigError, ConfigFileError
from ganglion.plugins import load_plugins
from ganglion.types import as_dict, type_of
from hardware.calibration import (
    CalibratedPublisher,
    Linear,
    SensorSettings,
    calibrate,
    parse_sensors,
)
from hardware.messages import Calibration, Position, Reading, SensorInfo
from hardware.mock import FakeBme280, FakeW1Tree, MockPortFactory
from hardware.plugin import HardwarePlugin
from hardware.readings import Humidity, Pressure, Temperature

ROM = "28-0316a2795cff"
W1 = f"w1:{ROM}"


# -- the pure part ---------------------------------------------------------------------------


def test_an_offset_corrects_the_value_and_nothing_else() -> None:
    settings = parse_sensors({W1: {"name": "mash tun", "offset": -0.3}})[W1]
    assert settings == SensorSettings(W1, "mash tun", Linear(1.0, -0.3))
    assert calibrate(Temperature(sensor=W1, celsius=66.25), settings) == \
        Temperature(sensor=W1, celsius=65.95)  # rounded: no 65.94999999999999


def test_per_quantity_tables_win_and_other_quantities_pass_as_read() -> None:
    settings = parse_sensors({"i2c:1/0x76": {"celsius": {"offset": -0.8},
                                             "percent": {"scale": 1.02, "offset": -1.5}}})
    bme = settings["i2c:1/0x76"]
    assert calibrate(Temperature("i2c:1/0x76", 25.08), bme) == Temperature("i2c:1/0x76", 24.28)
    assert calibrate(Humidity("i2c:1/0x76", 50.0), bme) == Humidity("i2c:1/0x76", 49.5)
    pressure = Pressure("i2c:1/0x76", 1006.53)
    assert calibrate(pressure, bme) is pressure


def test_a_serial_device_is_calibrated_per_quantity_or_all_at_once() -> None:
    port = "serial:/dev/ttyUSB0"
    one = parse_sensors({port: {"moisture": {"scale": 0.5}}})[port]
    assert calibrate(Reading(port, "moisture", 80.0, "%"), one) == \
        Reading(port, "moisture", 40.0, "%")
    temp = Reading(port, "temp", 20.0, "°C")
    assert calibrate(temp, one) is temp
    every = parse_sensors({port: {"offset": 1}})[port]
    assert calibrate(temp, every) == Reading(port, "temp", 21.0, "°C")
    fix = Position(sensor=port, latitude_deg=48.1, longitude_deg=11.5, sentence="GGA")
    assert calibrate(fix, every) is fix  # not a calibratable value


@pytest.mark.parametrize("tables, match", [
    ({ROM: {"name": "x"}}, f"a 1-Wire probe is 'w1:{ROM}'"),
    ({"mash tun": {}}, "ids look like w1:28-0316a2795cff, i2c:1/0x76"),
    ({W1: {"offset": "-0.3"}}, "offset must be a number"),
    ({W1: {"scale": 0}}, "scale must be a non-zero number"),
    ({W1: {"ofset": -0.3}}, "unknown key 'ofset'; valid: name, offset, scale"),
    ({W1: {"celsius": {"offest": 1}}}, "unknown key 'offest'; valid: offset, scale"),
    ({W1: {"name": 3}}, "name must be a string"),
    ({"i2c:1/0x76": {"offset": -0.5}}, "calibrate each, e.g. celsius"),
])
def test_bad_tables_are_refused_naming_the_entry(tables: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_sensors(tables)


def test_the_info_states_the_calibration_so_the_raw_value_can_be_recovered() -> None:
    settings = parse_sensors({W1: {"name": "mash tun", "offset": -0.3, "scale": 1.01}})[W1]
    info = settings.info("1-Wire thermometer")
    assert info == SensorInfo(sensor=W1, name="mash tun", kind="1-Wire thermometer",
                              calibration=[Calibration("*", 1.01, -0.3)])
    published = calibrate(Temperature(W1, 64.0625), settings)
    entry = info.calibration[0]
    raw = (published.celsius - entry.offset) / entry.scale  # type: ignore[attr-defined]
    assert round(raw, 4) == 64.0625


def test_the_reading_types_keep_their_fingerprints() -> None:
    """Names and calibration travel in sensors.SensorInfo, so old nodes see no new schema."""
    assert type_of(Temperature).schema == "{celsius:float,sensor:str}"
    assert type_of(Reading).schema == "{quantity:str,sensor:str,unit:str,value:float}"
    assert type_of(SensorInfo).schema == (
        "{calibration:list<{offset:float,quantity:str,scale:float}>,kind:str,name:str,"
        "sensor:str}")
    assert as_dict(SensorInfo(W1, "mash tun", "1-Wire thermometer",
                              [Calibration("*", 1.0, -0.3)]))["calibration"] == [
        {"quantity": "*", "scale": 1.0, "offset": -0.3}]


def test_the_publisher_announces_before_the_first_reading_and_then_every_minute() -> None:
    node = RecordingNode()
    now = [100.0]
    settings = parse_sensors({W1: {"name": "mash tun", "offset": -0.3}})[W1]
    publisher = CalibratedPublisher(node, settings, "1-Wire thermometer",
                                    clock=lambda: now[0], every=60.0)

    async def main() -> None:
        for second in (0, 5, 59, 60, 61):
            now[0] = 100.0 + second
            await publisher.publish(Temperature(W1, 20.0))

    asyncio.run(main())
    kinds = [type(m).__name__ for m in node.published]
    assert kinds == ["SensorInfo", "Temperature", "Temperature", "Temperature", "SensorInfo",
                     "Temperature", "Temperature"]
    assert all(m.celsius == 19.7 for m in node.published if isinstance(m, Temperature))
    assert publisher.name == "pi"


# -- in the plugin ---------------------------------------------------------------------------


def test_the_plugin_publishes_calibrated_readings_and_the_info(tmp_path: Path) -> None:
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe(ROM, 66.25)
    tree.add_probe("28-0416c3a1b2ff", 20.5)
    factory = MockPortFactory()
    factory.add_i2c_bus(1).attach(0x76, FakeBme280())
    plugin = HardwarePlugin(w1_root=tree.root, dev=tmp_path / "dev", scan_interval=0.02,
                            interval=0.02, factory=factory, runtime=fast_runtime(),
                            sensors={W1: {"name": "mash tun", "offset": -0.3},
                                     "i2c:1/0x76": {"name": "cellar",
                                                    "celsius": {"offset": -0.08}}})
    node = RecordingNode()

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: node.of(W1, Temperature) and node.of("i2c:1/0x76", Humidity),
                    "readings of both configured sensors")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    mine = node.of(W1)
    assert isinstance(mine[0], SensorInfo) and mine[0].name == "mash tun"
    assert {m.celsius for m in mine[1:]} == {65.95}
    assert node.of("w1:28-0416c3a1b2ff", Temperature)[0].celsius == 20.5  # no table: as read
    assert node.of("i2c:1/0x76", Temperature)[0].celsius == 25.0  # 25.08 - 0.08
    assert node.of("i2c:1/0x76", SensorInfo)[0].calibration == [
        Calibration("celsius", 1.0, -0.08)]


def test_a_configured_sensor_that_is_not_found_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="hardware")
    plugin = HardwarePlugin(w1_root=tmp_path / "w1", dev=tmp_path / "dev", scan_interval=0.02,
                            factory=MockPortFactory(), runtime=fast_runtime(),
                            sensors={W1: {"name": "mash tun"}})

    async def main() -> None:
        task = asyncio.create_task(plugin.run(RecordingNode()))
        await until(lambda: plugin.scans >= 2, "two scans")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert any(f'[sensors."{W1}"] is configured but no such sensor was found' in r.getMessage()
               and r.levelname == "WARNING" for r in caplog.records)


# -- in the config file ----------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_the_config_file_passes_the_tables_to_the_hardware_plugin(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"""
[sensors."{W1}"]
name = "mash tun"
offset = -0.3

[sensors."i2c:1/0x76"]
celsius = {{ offset = -0.8 }}
percent = {{ scale = 1.02, offset = -1.5 }}
"""))
    specs = config.plugin_specs(include_hardware=True)
    assert specs["hardware"]["sensors"] == {
        W1: {"name": "mash tun", "offset": -0.3},
        "i2c:1/0x76": {"celsius": {"offset": -0.8}, "percent": {"scale": 1.02, "offset": -1.5}},
    }
    (plugin,) = load_plugins(specs)
    assert isinstance(plugin, HardwarePlugin)
    assert plugin.sensor_settings[W1].every == Linear(1.0, -0.3)


@pytest.mark.parametrize("body, line, message", [
    (f'[sensors."{ROM}"]\nname = "mash tun"\n', 1,
     f'[sensors."{ROM}"]: not a sensor id; a 1-Wire probe is [sensors."w1:{ROM}"]'),
    (f'[sensors."{W1}"]\nname = "mash tun"\nofset = -0.3\n', 3,
     f"unknown key sensors.\"{W1}\".ofset; did you mean 'offset'?"),
    (f'[sensors."{W1}"]\noffset = "-0.3"\n', 2,
     f"sensors.\"{W1}\".offset must be a number, e.g. -0.3; not '-0.3'"),
    (f'[sensors."{W1}"]\nscale = 0\n', 2, "must be a non-zero number, e.g. 1.02"),
    ('[sensors."i2c:1/0x76"]\nname = "cellar"\noffset = -0.5\n', 3,
     "a BME280 measures celsius, hpa and percent; calibrate each, e.g. celsius = { offset"),
    (f'[sensors."{W1}"]\ncelsius = {{ offest = 1 }}\n', 2,
     "did you mean 'offset'? valid: offset, scale"),
    (f'[sensors."{W1}"]\nname = ""\n', 2, 'must be a non-empty string, e.g. name = "mash tun"'),
    ('sensors = 3\n', 1, "'sensors' must hold one table per sensor"),
])
def test_a_bad_entry_names_the_file_the_line_and_the_fix(tmp_path: Path, body: str, line: int,
                                                         message: str) -> None:
    path = write(tmp_path, "# brewery\n" + body)
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert caught.value.line == line + 1
    assert str(caught.value).startswith(f"{path}:{line + 1}: ")
    assert message in str(caught.value)


# -- the documentation's examples, as written ---------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs"


def sensor_examples() -> list[tuple[str, str]]:
    found = []
    for page in ("config.md", "sensors.md"):
        blocks = re.findall(r"```toml\n(.*?)```", (DOCS / page).read_text(), re.S)
        found += [(page, block) for block in blocks if "[sensors." in block]
    return found


@pytest.mark.parametrize("page, block", sensor_examples())
def test_the_documented_sensor_tables_load_and_reach_the_plugin(tmp_path: Path, page: str,
                                                                block: str) -> None:
    config = load_config(write(tmp_path, block))
    (plugin,) = load_plugins(config.plugin_specs(include_hardware=True))
    assert isinstance(plugin, HardwarePlugin)
    assert set(plugin.sensor_settings) == set(config.sensors) and config.sensors


def test_the_documented_error_messages_are_the_real_ones(tmp_path: Path) -> None:
    text = (DOCS / "sensors.md").read_text()
    shown = re.findall(r"^node\.toml:(\d+): (.*)$", text, re.M)
    assert len(shown) == 2
    sources = {"ofset": f'[sensors."{W1}"]\nname = "mash tun"\nofset = -0.3\n',
               "not a sensor id": f'[sensors."{ROM}"]\nname = "mash tun"\n'}
    for line, message in shown:
        body = next(src for key, src in sources.items() if key in message)
        with pytest.raises(ConfigFileError) as caught:
            load_config(write(tmp_path, body))
        assert str(caught.value) == f"{tmp_path / 'node.toml'}:{line}: {message}"
