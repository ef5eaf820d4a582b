"""One contract per port type, run against every back-end's fake.

I2C: the mock bus handle, and the smbus2 adapter over a stand-in with smbus2's
methods. Input pins: :class:`MockInputPin`, and the gpiozero adapter over
gpiozero's own ``MockFactory`` (its module clock replaced by a fake one).
Serial: :class:`MockSerialPort`, and the pyserial adapter over a real pty pair.
Back-ends whose library is missing are skipped, not failed.
"""

from __future__ import annotations

import errno
import importlib.util
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hardware.backends import SystemPortFactory
from hardware.backends.smbus import SMBusI2C
from hardware.mock import FakeClock, MockI2CBus, MockPortFactory, PtyDevice, RegisterDevice
from hardware.port import I2CBus, InputPin, SerialPort

HAVE_GPIOZERO = importlib.util.find_spec("gpiozero") is not None
HAVE_SERIAL = importlib.util.find_spec("serial") is not None
HAVE_SMBUS2 = importlib.util.find_spec("smbus2") is not None

# -- I2C -------------------------------------------------------------------------------------


class StandInSMBus:
    """smbus2.SMBus's method names and behaviour, over a mock bus."""

    def __init__(self, bus: MockI2CBus) -> None:
        self.bus = bus
        self.closed = False

    def read_byte_data(self, address: int, register: int) -> int:
        return self.bus.read_byte_data(address, register)

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        return list(self.bus.read_block(address, register, length))

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self.bus.write_byte_data(address, register, value)

    def close(self) -> None:
        self.closed = True


def _mock_handle(bus: MockI2CBus) -> I2CBus:
    factory = MockPortFactory()
    factory.buses[bus.number] = bus
    return factory.i2c_bus(bus.number)


def _smbus_adapter(bus: MockI2CBus) -> I2CBus:
    return SMBusI2C(bus.number, smbus=StandInSMBus(bus))


@pytest.fixture(params=[_mock_handle, _smbus_adapter], ids=["mock", "smbus2-adapter"])
def i2c(request: pytest.FixtureRequest) -> Iterator[I2CBus]:
    bus = MockI2CBus(3, {0x50: RegisterDevice({0x10: 0xAB, 0x11: 0xCD, 0x12: 0xEF})})
    handle = request.param(bus)
    yield handle
    handle.close()


def test_i2c_bus_knows_its_number(i2c: I2CBus) -> None:
    assert i2c.number == 3


def test_i2c_reads_a_register(i2c: I2CBus) -> None:
    assert i2c.read_byte_data(0x50, 0x10) == 0xAB


def test_i2c_block_read_auto_increments(i2c: I2CBus) -> None:
    assert i2c.read_block(0x50, 0x10, 3) == bytes([0xAB, 0xCD, 0xEF])


def test_i2c_write_then_read_back(i2c: I2CBus) -> None:
    i2c.write_byte_data(0x50, 0x20, 0x5A)
    assert i2c.read_byte_data(0x50, 0x20) == 0x5A


def test_i2c_absent_address_is_oserror(i2c: I2CBus) -> None:
    with pytest.raises(OSError):
        i2c.read_byte_data(0x51, 0)
    with pytest.raises(OSError):
        i2c.write_byte_data(0x51, 0, 0)


def test_i2c_block_length_is_checked(i2c: I2CBus) -> None:
    with pytest.raises(ValueError):
        i2c.read_block(0x50, 0, 33)


def test_i2c_closed_handle_is_oserror_and_close_is_idempotent(i2c: I2CBus) -> None:
    i2c.close()
    i2c.close()
    with pytest.raises(OSError):
        i2c.read_byte_data(0x50, 0x10)


def test_i2c_context_manager_closes(i2c: I2CBus) -> None:
    with i2c:
        pass
    with pytest.raises(OSError):
        i2c.read_byte_data(0x50, 0x10)


def test_smbus_adapter_refuses_a_short_block() -> None:
    class Short(StandInSMBus):
        def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
            return [1]

    adapter = SMBusI2C(1, smbus=Short(MockI2CBus(1)))
    with pytest.raises(OSError, match="short I2C read"):
        adapter.read_block(0x50, 0, 4)


@pytest.mark.skipif(not HAVE_SMBUS2, reason="smbus2 is not installed")
def test_system_factory_opening_a_missing_bus_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        SystemPortFactory(tmp_path).i2c_bus(7)


def test_system_factory_lists_buses_from_dev(tmp_path: Path) -> None:
    for name in ("i2c-1", "i2c-20", "i2c-x", "ttyS0"):
        (tmp_path / name).touch()
    assert list(SystemPortFactory(tmp_path).i2c_buses()) == [1, 20]
    assert list(SystemPortFactory(tmp_path / "missing").i2c_buses()) == []


# -- input pins ----------------------------------------------------------------------------------


@dataclass
class PinRig:
    open: Callable[[str], InputPin]  # pull -> pin
    drive: Callable[[bool], None]  # set the level of the pin last opened
    clock: FakeClock


def _mock_pins() -> PinRig:
    clock = FakeClock()
    factory = MockPortFactory(clock)
    pins: list[Any] = []

    def open_pin(pull: str) -> InputPin:
        pin = factory.input_pin("17", pull=pull)  # type: ignore[arg-type]
        pins.append(pin)
        return pin

    return PinRig(open_pin, lambda level: pins[-1].drive(level), clock)


def _gpiozero_pins(monkeypatch: pytest.MonkeyPatch) -> PinRig:
    if not HAVE_GPIOZERO:
        pytest.skip("gpiozero is not installed")
    import gpiozero.pins.mock as gmock

    from hardware.backends.gpio import GpiozeroInputPin

    clock = FakeClock()
    monkeypatch.setattr(gmock, "monotonic", clock)  # MockPin stamps edges with this
    factory = gmock.MockFactory()
    pins: list[Any] = []

    def open_pin(pull: str) -> InputPin:
        pin = GpiozeroInputPin(factory, "17", pull=pull, clock=clock)  # type: ignore[arg-type]
        pins.append(factory.pin(17))
        return pin

    def drive(level: bool) -> None:
        (pins[-1].drive_high if level else pins[-1].drive_low)()

    return PinRig(open_pin, drive, clock)


@pytest.fixture(params=["mock", "gpiozero-mock"])
def pins(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> PinRig:
    return _mock_pins() if request.param == "mock" else _gpiozero_pins(monkeypatch)


def test_pin_idles_at_its_pull(pins: PinRig) -> None:
    up = pins.open("up")
    assert up.value is True and up.name == "17"
    up.close()
    assert pins.open("down").value is False


def test_pin_reports_edges_with_the_time_on_the_factory_clock(pins: PinRig) -> None:
    pin = pins.open("up")
    seen: list[tuple[float, bool]] = []
    pin.on_edge(lambda t, level: seen.append((t, level)))
    pins.clock.advance(0.25)
    pins.drive(False)
    pins.clock.advance(0.5)
    pins.drive(True)
    assert [level for _, level in seen] == [False, True]
    assert [t for t, _ in seen] == pytest.approx([1000.25, 1000.75])
    assert pin.value is True


def test_pin_reports_no_edge_without_a_change(pins: PinRig) -> None:
    pin = pins.open("up")
    seen: list[tuple[float, bool]] = []
    pin.on_edge(lambda t, level: seen.append((t, level)))
    pins.drive(True)
    assert seen == []


def test_pin_callback_can_be_removed(pins: PinRig) -> None:
    pin = pins.open("up")
    seen: list[tuple[float, bool]] = []
    pin.on_edge(lambda t, level: seen.append((t, level)))
    pin.on_edge(None)
    pins.drive(False)
    assert seen == []


def test_a_closed_pin_calls_nothing(pins: PinRig) -> None:
    pin = pins.open("up")
    seen: list[tuple[float, bool]] = []
    pin.on_edge(lambda t, level: seen.append((t, level)))
    pin.close()
    pins.drive(False)
    assert seen == []


def test_mock_factory_refuses_a_pin_in_use() -> None:
    factory = MockPortFactory()
    factory.input_pin("4")
    with pytest.raises(ValueError, match="already in use"):
        factory.input_pin("4")


@pytest.mark.skipif(not HAVE_GPIOZERO, reason="gpiozero is not installed")
def test_gpiozero_adapter_refuses_a_bad_pin_as_valueerror() -> None:
    from gpiozero.pins.mock import MockFactory

    from hardware.backends.gpio import GpiozeroInputPin

    with pytest.raises(ValueError, match="GPIO pin GPIO99"):
        GpiozeroInputPin(MockFactory(), "GPIO99")


@pytest.mark.skipif(not HAVE_GPIOZERO, reason="gpiozero is not installed")
def test_system_factory_uses_the_given_gpiozero_factory() -> None:
    from gpiozero.pins.mock import MockFactory

    gfactory = MockFactory()
    pin = SystemPortFactory(pin_factory=gfactory).input_pin("GPIO22", pull="down")
    seen: list[bool] = []
    pin.on_edge(lambda t, level: seen.append(level))
    gfactory.pin(22).drive_high()
    assert seen == [True]
    pin.close()


# -- serial ----------------------------------------------------------------------------------------


@dataclass
class SerialRig:
    port: SerialPort
    send: Callable[[bytes], None]
    unplug: Callable[[], None]


@pytest.fixture(params=["mock", "pyserial-pty"])
def serial_rig(request: pytest.FixtureRequest) -> Iterator[SerialRig]:
    if request.param == "mock":
        factory = MockPortFactory()
        fake = factory.add_serial("/dev/ttyACM0")
        port = factory.serial_port("/dev/ttyACM0", 9600)
        yield SerialRig(port, fake.feed, fake.unplug)
        port.close()
        return
    if not HAVE_SERIAL:
        pytest.skip("pyserial is not installed")
    with PtyDevice() as device:
        port = SystemPortFactory().serial_port(device.path, 115200)
        yield SerialRig(port, device.write, device.close)
        port.close()


def test_serial_line_arrives_whole(serial_rig: SerialRig) -> None:
    serial_rig.send(b"t=21.5\r\n")
    assert serial_rig.port.read_line(2.0) == b"t=21.5\r\n"


def test_serial_lines_come_one_at_a_time(serial_rig: SerialRig) -> None:
    serial_rig.send(b"a=1\nb=2\n")
    assert serial_rig.port.read_line(2.0) == b"a=1\n"
    assert serial_rig.port.read_line(2.0) == b"b=2\n"


def test_serial_timeout_returns_what_arrived(serial_rig: SerialRig) -> None:
    serial_rig.send(b"par")
    started = time.monotonic()
    first = serial_rig.port.read_line(0.2)
    assert first == b"par"
    assert time.monotonic() - started < 1.5
    serial_rig.send(b"tial\n")
    assert serial_rig.port.read_line(2.0) == b"tial\n"


def test_serial_silence_times_out_empty(serial_rig: SerialRig) -> None:
    assert serial_rig.port.read_line(0.1) == b""


def test_serial_closed_port_reads_none(serial_rig: SerialRig) -> None:
    serial_rig.port.close()
    serial_rig.port.close()
    assert serial_rig.port.read_line(0.1) is None


def test_serial_unplugged_device_is_oserror(serial_rig: SerialRig) -> None:
    serial_rig.unplug()
    with pytest.raises(OSError):
        for _ in range(5):  # a pty may first hand back what was buffered
            serial_rig.port.read_line(0.2)


def test_serial_opening_a_missing_device_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        MockPortFactory().serial_port(str(tmp_path / "ttyUSB9"), 9600)
    assert info.value.errno == errno.ENOENT
    if HAVE_SERIAL:
        with pytest.raises(OSError):
            SystemPortFactory().serial_port(str(tmp_path / "ttyUSB9"), 9600)
