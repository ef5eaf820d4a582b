"""The start-up survey: what the hardware plugin looked at, and hints for the usual Pi mistakes.

Every input is faked: the sysfs and /dev trees are tmp directories, the board
model and the firmware config are strings, and the account (its groups, what it
may open) is an :class:`Account` built here, so no real group or device is needed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from hw_support import RecordingNode, fast_runtime, run, until

from hardware.mock import FakeW1Tree
from hardware.plugin import HardwarePlugin
from hardware.settings import parse_gpio, parse_serial
from hardware.survey import Account, Survey, read_boot_config, read_model, survey

PI = "Raspberry Pi 4 Model B Rev 1.4"
BOOT = Path("/boot/firmware/config.txt")
GPS = "usb-u-blox_AG_-_www.u-blox.com_u-blox_GNSS_receiver-if00"


def pi_user(*, groups: set[str] | None = None, member_of: set[str] | None = None,
            can_open: bool = False) -> Account:
    """A non-root account that may open nothing (or everything)."""
    mine = frozenset(groups if groups is not None else {"pi"})
    return Account(name="pi", root=False, groups=mine,
                   member_of=frozenset(member_of) if member_of is not None else mine,
                   can_use=lambda path: can_open)


def look(tmp_path: Path, *, buses: list[int] | None = None, model: str = PI,
         boot_text: str = "", account: Account | None = None, **kwargs: object) -> Survey:
    return survey(w1_root=tmp_path / "w1", dev=tmp_path / "dev",
                  i2c_buses=[] if buses is None else buses, serial_auto=True, model=model,
                  boot_config=BOOT, boot_text=boot_text, account=account,
                  **kwargs)  # type: ignore[arg-type]


def text(found: Survey) -> str:
    return "\n".join(found.lines + found.hints)


def test_an_empty_machine_says_what_was_scanned_on_every_bus(tmp_path: Path) -> None:
    found = look(tmp_path, model="")
    assert found.lines == (
        f"1-Wire: no bus ({tmp_path / 'w1'} does not exist)",
        f"I2C: no buses ({tmp_path / 'dev'}/i2c-* absent)",
        f"serial: no USB-serial devices ({tmp_path / 'dev/serial/by-id'} is empty or absent)",
        "GPIO: none configured (--gpio or gpio = [...] in the config)",
    )
    assert found.hints == ()  # not a Pi: no Pi advice


def test_what_is_there_is_counted(tmp_path: Path) -> None:
    tree = FakeW1Tree(tmp_path / "w1")
    tree.add_probe("28-0316a2795cff")
    tree.add_probe("28-0416c3a1b2ff")
    (tmp_path / "dev" / "serial" / "by-id").mkdir(parents=True)
    (tmp_path / "dev" / "serial" / "by-id" / GPS).touch()
    found = look(tmp_path, buses=[1, 3], gpio=parse_gpio(["input:17"]))
    assert found.lines[0] == f"1-Wire: 1 bus master(s) at {tmp_path / 'w1'}, 2 thermometer(s)"
    assert found.lines[1].startswith("I2C: bus(es) 1, 3; probing 0x76 and 0x77")
    assert found.lines[2].startswith("serial: 1 known adapter(s) under ")
    assert found.lines[3] == "GPIO: input on pin 17"
    assert found.hints == ()


def test_a_pi_without_the_1wire_overlay_is_told_the_config_line(tmp_path: Path) -> None:
    hints = look(tmp_path).hints
    assert any("1-Wire is not enabled: add 'dtoverlay=w1-gpio' to /boot/firmware/config.txt "
               "and reboot" in h for h in hints), hints


def test_a_pi_with_the_overlay_but_no_bus_yet_is_told_to_reboot(tmp_path: Path) -> None:
    hints = look(tmp_path, boot_text="[all]\ndtoverlay=w1-gpio\n").hints
    assert any("1-Wire is enabled in /boot/firmware/config.txt (dtoverlay=w1-gpio) but the "
               "kernel shows no bus: reboot" in h for h in hints), hints
    # A commented-out line does not count.
    hints = look(tmp_path, boot_text="#dtoverlay=w1-gpio\n").hints
    assert any("1-Wire is not enabled" in h for h in hints), hints


def test_a_pi_without_i2c_is_told_dtparam_i2c_arm(tmp_path: Path) -> None:
    hints = look(tmp_path).hints
    assert any("I2C is not enabled: add 'dtparam=i2c_arm=on' to /boot/firmware/config.txt"
               in h and "raspi-config nonint do_i2c 0" in h for h in hints), hints


def test_a_pi_with_a_1wire_bus_but_no_probe_gets_a_wiring_hint(tmp_path: Path) -> None:
    FakeW1Tree(tmp_path / "w1")  # the bus master only
    hints = look(tmp_path).hints
    assert any("no thermometer answers: check the wiring" in h for h in hints), hints


def test_a_user_outside_the_i2c_group_is_told_how_to_join(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "i2c-1").touch()
    hints = look(tmp_path, buses=[1], account=pi_user()).hints
    assert f"cannot open {tmp_path / 'dev/i2c-1'}: pi is not in group 'i2c'; run " \
           "'sudo usermod -aG i2c pi' and log in again" in hints


def test_a_user_added_to_the_group_but_not_logged_in_again_is_told_so(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "i2c-1").touch()
    account = pi_user(groups={"pi"}, member_of={"pi", "i2c"})
    hints = look(tmp_path, buses=[1], account=account).hints
    assert any("was added to group 'i2c' but this session started before; log out and in "
               "again" in h for h in hints), hints


def test_serial_and_gpio_permissions_name_dialout_and_gpio(tmp_path: Path) -> None:
    by_id = tmp_path / "dev" / "serial" / "by-id"
    by_id.mkdir(parents=True)
    (by_id / GPS).touch()
    (tmp_path / "dev" / "gpiochip0").touch()
    found = look(tmp_path, account=pi_user(), gpio=parse_gpio(["input:17"]))
    assert any("pi is not in group 'dialout'; run 'sudo usermod -aG dialout pi'" in h
               for h in found.hints), found.hints
    assert any("pi is not in group 'gpio'" in h for h in found.hints), found.hints


def test_no_permission_hint_when_the_devices_open(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "i2c-1").touch()
    def about_access(found: Survey) -> list[str]:
        return [h for h in found.hints if "cannot open" in h]

    assert not about_access(look(tmp_path, buses=[1], account=pi_user(can_open=True)))
    root = Account(name="root", root=True, can_use=lambda path: False)
    assert not about_access(look(tmp_path, buses=[1], account=root))
    assert about_access(look(tmp_path, buses=[1], account=pi_user()))


def test_an_unknown_usb_serial_device_is_listed_with_how_to_read_it(tmp_path: Path) -> None:
    by_id = tmp_path / "dev" / "serial" / "by-id"
    by_id.mkdir(parents=True)
    (by_id / "usb-Acme_Weather_Box_42-if00").touch()
    found = look(tmp_path)
    assert "not opened (unknown vendor): usb-Acme_Weather_Box_42-if00" in found.lines[2]
    assert any("[plugin.hardware] serial = [{ port = " in h for h in found.hints)
    # Once configured, no hint; the configured port is reported with its state.
    port = str(by_id / "usb-Acme_Weather_Box_42-if00")
    found = look(tmp_path, serial=parse_serial([port]))
    assert not any("serial = [" in h for h in found.hints)
    assert f"serial: configured {port} (9600 baud, auto): present" in found.lines


def test_switched_off_buses_say_so(tmp_path: Path) -> None:
    found = survey(w1_root=None, dev=tmp_path, i2c_buses=None, serial_auto=False, model=PI)
    assert found.lines[:3] == ("1-Wire: off (onewire = false)", "I2C: off (i2c = false)",
                               "serial: automatic opening off (serial_auto = false)")
    assert found.hints == ()


def test_model_and_boot_config_readers(tmp_path: Path) -> None:
    (tmp_path / "model").write_bytes(PI.encode() + b"\0")
    assert read_model(tmp_path / "model") == PI
    assert read_model(tmp_path / "absent") == ""
    (tmp_path / "config.txt").write_text("dtparam=i2c_arm=on\n")
    assert read_boot_config((tmp_path / "firmware.txt", tmp_path / "config.txt")) == (
        tmp_path / "config.txt", "dtparam=i2c_arm=on\n")
    assert read_boot_config((tmp_path / "x",)) == (tmp_path / "x", "")


def test_the_current_account_is_read_from_the_system() -> None:
    me = Account.current()
    assert me.name and me.groups and me.groups <= me.groups | me.member_of


# -- the plugin says it at start, then the scans stay quiet -----------------------------------


def test_the_plugin_reports_the_survey_and_the_first_scan_then_stays_quiet(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hardware")
    plugin = HardwarePlugin(w1_root=tmp_path / "w1", dev=tmp_path / "dev", scan_interval=0.01,
                            runtime=fast_runtime(), board=PI, account=pi_user())
    node = RecordingNode()
    counted: list[int] = []

    async def main() -> None:
        task = asyncio.create_task(plugin.run(node))
        await until(lambda: plugin.scans >= 2, "two scans")
        counted.append(len(caplog.records))
        await until(lambda: plugin.scans >= 8, "eight scans")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == counted[0]  # scans after the first add nothing
    assert f"looking at 1-Wire: no bus ({tmp_path / 'w1'} does not exist)" in said
    assert any(m.startswith("looking at I2C: no buses") for m in said)
    assert any(m.startswith("looking at serial: no USB-serial devices") for m in said)
    assert "looking at GPIO: none configured (--gpio or gpio = [...] in the config)" in said
    assert any(m.startswith("hint: 1-Wire is not enabled: add 'dtoverlay=w1-gpio'")
               for m in said)
    assert any(m.startswith("hint: I2C is not enabled") for m in said)
    assert said[-1].startswith("first scan: no sensors found; scanning every 0.01 s")
    assert node.published == []

