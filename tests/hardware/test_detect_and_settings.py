"""Detection rules (known adapters, configured ports) and the plugin's settings parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ganglion.errors import ConfigError
from hardware.detect import I2CSpec, OneWireSpec, known_adapter, scan
from hardware.mock import FakeBme280, FakeW1Tree, MockPortFactory, RegisterDevice
from hardware.settings import GpioSpec, SerialSpec, parse_gpio, parse_serial


@pytest.mark.parametrize("name", [
    "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0",
    "usb-Silicon_Labs_CP2102_USB_to_UART_Bridge_Controller_0001-if00-port0",
    "usb-1a86_USB2.0-Serial-if00-port0",
    "usb-Arduino__www.arduino.cc__0043_75833353035351E0E1C1-if00",
    "usb-u-blox_AG_-_www.u-blox.com_u-blox_GNSS_receiver-if00",
    "usb-Raspberry_Pi_Pico_E660C0D1C7436B2F-if00",
    "USB-ftdi_lowercase-if00",
])
def test_known_adapters_are_recognised(name: str) -> None:
    assert known_adapter(name)


@pytest.mark.parametrize("name", [
    "usb-Huawei_Technologies_HUAWEI_Mobile-if00-port0",  # a modem: AT commands, not readings
    "usb-Logitech_USB_Receiver-if02",
    "pci-0000:00:14.0-usb-0:2:1.0-port0",
])
def test_other_devices_are_not(name: str) -> None:
    assert not known_adapter(name)


def test_scan_of_an_empty_machine_finds_nothing(tmp_path: Path) -> None:
    assert scan(MockPortFactory(), w1_root=tmp_path / "w1", dev=tmp_path / "dev") == {}


def test_scan_finds_each_kind_with_its_id(tmp_path: Path) -> None:
    FakeW1Tree(tmp_path / "w1").add_probe("28-00000000000c")
    factory = MockPortFactory()
    bus = factory.add_i2c_bus(1)
    bus.attach(0x77, FakeBme280())
    bus.attach(0x76, RegisterDevice({0xD0: 0x61}))  # a BME680: left alone
    by_id = tmp_path / "dev" / "serial" / "by-id"
    by_id.mkdir(parents=True)
    (by_id / "usb-FTDI_X-if00-port0").touch()
    found = scan(factory, w1_root=tmp_path / "w1", dev=tmp_path / "dev")
    assert found == {
        "w1:28-00000000000c": OneWireSpec("28-00000000000c"),
        "i2c:1/0x77": I2CSpec(1, 0x77, "BME280"),
        f"serial:{by_id}/usb-FTDI_X-if00-port0": SerialSpec(
            f"{by_id}/usb-FTDI_X-if00-port0", 9600, "auto", configured=False),
    }


def test_a_configured_port_wins_over_the_automatic_rule(tmp_path: Path) -> None:
    by_id = tmp_path / "dev" / "serial" / "by-id"
    by_id.mkdir(parents=True)
    path = by_id / "usb-u-blox_GNSS-if00"
    path.touch()
    configured = SerialSpec(str(path), 38400, "nmea")
    found = scan(MockPortFactory(), w1_root=None, dev=tmp_path / "dev", serial=[configured])
    assert list(found.values()) == [configured]


def test_a_configured_port_is_present_only_while_its_path_exists(tmp_path: Path) -> None:
    spec = SerialSpec(str(tmp_path / "ttyUSB0"))
    assert scan(MockPortFactory(), w1_root=None, dev=None, serial=[spec]) == {}
    (tmp_path / "ttyUSB0").touch()
    assert list(scan(MockPortFactory(), w1_root=None, dev=None, serial=[spec])) == [
        spec.sensor_id]


def test_serial_settings_accept_paths_and_tables() -> None:
    specs = parse_serial(["/dev/ttyUSB0", {"port": "/dev/ttyACM0", "baud": 115200,
                                           "format": "csv", "units": {"t": "°C"}}])
    assert specs == [SerialSpec("/dev/ttyUSB0"),
                     SerialSpec("/dev/ttyACM0", 115200, "csv", (("t", "°C"),))]
    assert specs[0].sensor_id == "serial:/dev/ttyUSB0"


@pytest.mark.parametrize("entries, match", [
    ([{"baud": 9600}], r"serial\[0\].port"),
    ([{"port": "/dev/x", "baud": 1000}], r"serial\[0\].baud"),
    ([{"port": "/dev/x", "baud": True}], r"serial\[0\].baud"),
    ([{"port": "/dev/x", "units": {"t": 1}}], r"serial\[0\].units"),
    ([{"port": "/dev/x", "parity": "E"}], "unknown key 'parity'"),
    (["/dev/x", "/dev/x"], "listed twice"),
    ([3], "port path or a table"),
    (5, "must be a list"),
])
def test_bad_serial_settings_name_the_entry(entries: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_serial(entries)


def test_gpio_strings_and_tables() -> None:
    specs = parse_gpio(["input:17", "counter:27:per_unit=450,unit=litre,edge=rising",
                        {"kind": "input", "pin": 4, "pull": "down"},
                        "input:GPIO5:active_low=false,debounce=0"])
    assert specs[0] == GpioSpec("17", "input", "up", True, 0.02, 1.0, "pulse", "falling", 60.0)
    assert (specs[1].kind, specs[1].per_unit, specs[1].unit, specs[1].edge, specs[1].debounce,
            specs[1].interval) == ("counter", 450.0, "litre", "rising", 0.005, 5.0)
    assert (specs[2].pin, specs[2].pull, specs[2].active_low) == ("4", "down", False)
    assert (specs[3].active_low, specs[3].debounce) == (False, 0.0)
    assert [s.sensor_id for s in specs] == ["gpio:17", "gpio:27", "gpio:4", "gpio:GPIO5"]


def test_a_single_gpio_string_is_one_entry() -> None:
    assert [s.pin for s in parse_gpio("input:17")] == ["17"]


@pytest.mark.parametrize("entry, match", [
    ("17", "KIND:PIN"), ("input:", "KIND:PIN"), ("door:17", "kind"),
    ("input:17:pull=sideways", "pull"), ("counter:3:per_unit=0", "per_unit"),
    ("counter:3:edge=both", "edge"), ("input:17:debounce=-1", "debounce"),
    ("input:17:active_low=maybe", "active_low"), ("input:17:colour=red", "unknown key"),
    ("input:17:pull", "KEY=VALUE"), ({"kind": "input"}, "pin"), ({"pin": True}, "pin"),
    ({"pin": 3, "unit": ""}, "unit"), (42, "KIND:PIN"),
])
def test_bad_gpio_entries_name_the_problem(entry: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_gpio([entry])


def test_a_pin_used_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        parse_gpio(["input:17", "counter:17"])
